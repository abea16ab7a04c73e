"""Recipes: typed, validated, overridable, and every shipped recipe loads."""

from pathlib import Path

import pytest

from sdzero_mlx.config import Recipe
from sdzero_mlx.recipe import load_recipe, recipe_from_dict

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def test_shipped_recipes_load_and_round_trip(tmp_path):
    from sdzero_mlx.configio import write_yaml

    assert len(RECIPES) >= 2
    for path in RECIPES:
        recipe = load_recipe(path)
        assert isinstance(recipe, Recipe)
        # what a run directory saves (recipe.yaml) loads back as the same recipe: resume compares it
        write_yaml(recipe, tmp_path / "saved.yaml")
        assert load_recipe(tmp_path / "saved.yaml") == recipe, path


def test_overrides_are_coerced(tiny_recipe):
    r = load_recipe(tiny_recipe, ["optim.learning_rate=3e-4", "distill.top_k=0", "lora.keys=[self_attn.q_proj]"])
    assert r.optim.learning_rate == pytest.approx(3e-4) and isinstance(r.optim.learning_rate, float)
    assert r.distill.top_k == 0
    assert r.lora.keys == ("self_attn.q_proj",)


def test_yaml_exponent_string_becomes_float():
    r = recipe_from_dict({"model": {"path": "m"}, "data": {"source": "d.jsonl"}, "optim": {"learning_rate": "1e-5"}})
    assert r.optim.learning_rate == 1e-5


def test_unknown_key_names_valid_keys(tiny_recipe):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rat'\].*learning_rate"):
        load_recipe(tiny_recipe, ["optim.learning_rat=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.teacher_sync=hard", "sync_every"),
        ("distill.sync_every=5", "teacher_sync = hard"),
        ("distill.kl=sideways", "not one of"),
        ("distill.questions_per_step=999", "phase2_size"),
        ("distill.max_teacher_tokens=8", "max_teacher_tokens must exceed"),
        ("distill.forward_weight=1.5", "forward_weight"),
        ("sampling.top_p=0", "top_p"),
        ("lora.rank=0", "lora.rank"),
        ("distill.steps=two", "expected an integer"),
    ],
)
def test_impossible_settings_are_rejected_with_the_fix(tiny_recipe, override, message):
    with pytest.raises(ValueError, match=message):
        load_recipe(tiny_recipe, [override])


def test_missing_recipe_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_recipe("no/such/recipe.yaml")
