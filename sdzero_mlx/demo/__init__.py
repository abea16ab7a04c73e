"""The built-in demo: a synthetic arithmetic task and a tiny base model pretrained on it by a seeded script.

`BASE_MODEL` is the shipped mlx-lm model folder made by `python -m sdzero_mlx.demo.pretrain OUT` with its
default arguments (see `pretrain.py` for the recipe and `base_model/build_info.json` for the numbers).
"""

from pathlib import Path

BASE_MODEL = Path(__file__).parent / "base_model"
