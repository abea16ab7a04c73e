"""Metrics sinks (sinks.py): metrics.jsonl by default, W&B and TensorBoard when run.metrics names them.

W&B is not installed here (its dependencies are heavy): a stand-in module checks what the sink
sends. TensorBoard runs for real when tensorboardX is importable."""

import sys
import types

import pytest

from sdzero_mlx.config import RunConfig, load_recipe
from sdzero_mlx.distill import run_distill


def test_jsonl_is_the_default_and_always_required():
    assert RunConfig().metrics == ("jsonl",)
    assert RunConfig(metrics=("jsonl", "wandb", "tensorboard")).metrics[1:] == ("wandb", "tensorboard")
    for bad in (("wandb",), ("jsonl", "mlflow")):
        with pytest.raises(ValueError, match="always with jsonl"):
            RunConfig(metrics=bad)


def fake_wandb():
    calls = {"init": [], "log": [], "finish": 0}

    class Run:
        def log(self, values, step):
            calls["log"].append((step, values))

        def finish(self):
            calls["finish"] += 1

    module = types.ModuleType("wandb")
    module.init = lambda **kw: calls["init"].append(kw) or Run()
    return module, calls


def test_wandb_sink_gets_every_step(tiny_recipe, tmp_path, monkeypatch):
    module, calls = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, wandb]", f"run.output_dir={tmp_path / 'r'}"])
    run_distill(recipe, tmp_path / "r")
    assert len(calls["init"]) == 1 and calls["init"][0]["config"]["distill"]["steps"] == 2
    assert [step for step, _ in calls["log"]] == [1, 2] and calls["finish"] == 1
    assert {"distill/loss", "distill/reward", "distill/peak_memory_gb"} <= set(calls["log"][0][1])
    assert (tmp_path / "r" / "metrics.jsonl").read_text().count("\n") == 2  # jsonl still written


def test_tensorboard_sink_writes_event_files(tiny_recipe, tmp_path):
    pytest.importorskip("tensorboardX")
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, tensorboard]", f"run.output_dir={tmp_path / 'r'}"])
    run_distill(recipe, tmp_path / "r")
    events = list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_a_missing_sink_package_names_the_install(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, tensorboard]", f"run.output_dir={tmp_path / 'r'}"])
    with pytest.raises(RuntimeError, match="pip install tensorboardX"):
        run_distill(recipe, tmp_path / "r")
