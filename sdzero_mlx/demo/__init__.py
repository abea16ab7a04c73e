"""The built-in demo: a synthetic arithmetic task and a tiny base model pretrained on it by a seeded script."""
