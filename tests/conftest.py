"""Shared fixtures: a tiny random llama with a real tokenizer and chat template, and a small
arithmetic dataset, both written to disk so that every test uses the same loading code as a user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sdzero_mlx.demo.tinymodel import make_model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tiny") / "model", hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, seed=0)


def arithmetic_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = (7 * i) % 13 + 1, (5 * i) % 11 + 2
        rows.append({"id": f"q{i}", "problem": f"What is {a} + {b}?", "answer": str(a + b)})
    return rows


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "arith.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in arithmetic_rows(40)))
    return path


def tiny_recipe_dict(model_dir: Path, data: Path, out: Path) -> dict:
    return {
        "model": {"path": str(model_dir)},
        "data": {"source": str(data), "fields": {"id": "id"}, "phase1_size": 8, "phase2_size": 16, "eval_size": 8},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 1.0, "max_tokens": 12, "batch_size": 8},
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 2, "top_k": 16,
                    "max_teacher_tokens": 128},
        "optim": {"learning_rate": 1e-2},
        "run": {"output_dir": str(out), "seed": 3},
    }


@pytest.fixture
def tiny_recipe(tiny_model_dir, tiny_data, tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, tiny_data, tmp_path / "run")))
    return path


# CI=true turns skips for prerequisites that `make setup` installs into failures (see ci_guard.py)
from ci_guard import pytest_runtest_makereport  # noqa: E402,F401
