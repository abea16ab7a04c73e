"""Metrics sinks (sinks.py): metrics.jsonl by default, W&B and TensorBoard when run.metrics names them.

Both optional sinks run for real (test extra): W&B in offline mode, read back with wandb's own
reader of its .wandb file (`wandb leet inspect --json`), and TensorBoard's event files with
TensorBoard's EventAccumulator. What they hold must be what metrics.jsonl holds, step by step.
Skipped where the packages are missing; with CI=true such a skip fails (ci_guard.py).
"""

import json
import subprocess
import sys

import pytest

from sdzero_mlx.config import RunConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.metrics import StepRecord
from sdzero_mlx.sinks import TensorBoardSink

WANDB_MISSING = "wandb (test extra) not installed"
TENSORBOARD_MISSING = "tensorboardX / tensorboard (test extra) not installed"


def test_jsonl_is_the_default_and_always_required():
    assert RunConfig().metrics == ("jsonl",)
    assert RunConfig(metrics=("jsonl", "wandb", "tensorboard")).metrics[1:] == ("wandb", "tensorboard")
    for bad in (("wandb",), ("jsonl", "mlflow")):
        with pytest.raises(ValueError, match="always with jsonl"):
            RunConfig(metrics=bad)


def jsonl_scalars(run_dir, stage="distill") -> dict[int, dict[str, float]]:
    """metrics.jsonl as step -> {"<stage>/<field>": value} over its numeric fields (what the sinks log)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = {f"{stage}/{k}": v for k, v in row.items()
                            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return out


# --- Weights & Biases, offline --------------------------------------------------------------------


@pytest.fixture
def offline_wandb(tmp_path_factory, monkeypatch):
    """W&B in offline mode, every folder it writes under pytest's temporary directory (one for the
    session: wandb's process-wide setup reads them once); runs go to RUN/wandb (WandbSink's dir)."""
    pytest.importorskip("wandb", reason=WANDB_MISSING)
    home = tmp_path_factory.getbasetemp() / "wandb-home"
    for name in ("dir", "cache", "config", "data", "artifacts"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": home / "dir",
           "WANDB_CACHE_DIR": home / "cache", "WANDB_CONFIG_DIR": home / "config", "WANDB_DATA_DIR": home / "data",
           "WANDB_ARTIFACT_DIR": home / "artifacts", "WANDB_ERROR_REPORTING": "false"}  # no crash reports sent
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_RUN_GROUP",
                 "WANDB_NAME", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(name, raising=False)
    return env


def wandb_runs(run_dir) -> dict[str, dict]:
    """Each W&B run under RUN/wandb, by display name, as read back from its .wandb file by wandb itself:
    project, group, job_type, config, history (step -> logged values), exit_code (None: never finished)
    and the deprecations wandb recorded."""
    runs = {}
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        run = next((r["run"] for r in records if r["type"] == "run"), {})  # {}: nothing written yet
        history = {r["history"]["step"]["num"]: {k: v for k, v in r["history"]["item"].items() if not k.startswith("_")}
                   for r in records if r["type"] == "history"}
        exits = [r["exit"].get("exit_code", 0) for r in records if r["type"] == "exit"]
        deprecated = {}
        for r in records:
            if r["type"] in ("run", "telemetry"):
                deprecated |= (r.get("run", {}).get("telemetry") or r.get("telemetry") or {}).get("deprecated", {})
        runs[run.get("display_name", path.name)] = {
            "project": run.get("project"), "group": run.get("run_group"), "job_type": run.get("job_type"),
            "config": {k: v for k, v in run.get("config", {}).get("update", {}).items() if k != "_wandb"},
            "history": history, "exit_code": exits[-1] if exits else None, "deprecated": deprecated,
        }
    return runs


def test_wandb_offline_logs_every_step_as_metrics_jsonl(tiny_recipe, tmp_path, offline_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "my-project")
    run_dir = tmp_path / "exp" / "distill"  # `sdzero run`'s layout: RUN/distill
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, wandb]", f"run.output_dir={run_dir}"])
    run_distill(recipe, run_dir)
    expected = jsonl_scalars(run_dir)
    assert sorted(expected) == [1, 2]  # jsonl still written
    runs = wandb_runs(run_dir)
    assert list(runs) == ["exp-distill"]  # (it was "distill-distill", as every sdzero run's distill stage)
    run = runs["exp-distill"]
    assert (run["project"], run["group"], run["job_type"]) == ("my-project", "exp", "distill")
    assert run["config"]["distill"]["steps"] == 2  # the recipe
    assert run["history"] == expected  # every numeric field, at its step, to the last digit
    # numbers a reader can check: 4 questions a step, 2 planned steps, the recipe's learning rate
    assert run["history"][1]["distill/total_steps"] == 2 and run["history"][2]["distill/generations"] == 8
    assert run["history"][1]["distill/learning_rate"] == pytest.approx(1e-2)
    assert run["exit_code"] == 0  # close() finished the run
    assert run["deprecated"] == {}  # wandb recorded no deprecated use (reinit=True was one)


class Interrupted(Exception):
    pass


def interrupt_after(step: int):
    """An on_step that raises once `step` is logged (and checkpointed, if run.save_every says so)."""
    def on_step(record):
        if record.step == step:
            raise Interrupted(f"interrupted after step {step}")
    return on_step


def test_a_stage_that_raises_ends_its_wandb_run_as_failed(tiny_recipe, tmp_path, offline_wandb):
    run_dir = tmp_path / "r"
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, wandb]", f"run.output_dir={run_dir}"])
    with pytest.raises(Interrupted):
        run_distill(recipe, run_dir, on_step=interrupt_after(1))
    (run,) = wandb_runs(run_dir).values()
    assert sorted(run["history"]) == [1] and run["history"] == jsonl_scalars(run_dir)
    assert run["exit_code"] == 1  # finished now, as failed (it was left open until the process ended)


# --- TensorBoard ----------------------------------------------------------------------------------


def needs_tensorboard():
    """The writer (tensorboardX) and TensorBoard's reader."""
    pytest.importorskip("tensorboardX", reason=TENSORBOARD_MISSING)
    pytest.importorskip("tensorboard", reason=TENSORBOARD_MISSING)


def tensorboard_scalars(run_dir) -> dict[int, dict[str, float]]:
    """RUN/tensorboard as TensorBoard shows it (its EventAccumulator): step -> {tag: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    out: dict[int, dict[str, float]] = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            assert tag not in out.setdefault(event.step, {}), f"{tag} twice at step {event.step}"
            out[event.step][tag] = event.value
    return out


def float32(values: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
    """TensorBoard scalars are float32."""
    import numpy as np

    return {step: {k: float(np.float32(v)) for k, v in row.items()} for step, row in values.items()}


def test_tensorboard_shows_every_step_as_metrics_jsonl(tiny_recipe, tmp_path):
    needs_tensorboard()
    run_dir = tmp_path / "r"
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, tensorboard]", f"run.output_dir={run_dir}"])
    run_distill(recipe, run_dir)
    shown = tensorboard_scalars(run_dir)
    assert sorted(shown) == [1, 2] and shown == float32(jsonl_scalars(run_dir))
    assert shown[2]["distill/generations"] == 8 and shown[1]["distill/total_steps"] == 2


def record(step: int, loss: float) -> StepRecord:
    return StepRecord(step=step, total_steps=3, stage="distill", loss=loss, grad_norm=0.0, learning_rate=0.0,
                      weight_change=0.0, step_s=0.0, trained_tokens_per_s=0.0, peak_memory_gb=0.0, generations=0,
                      sampled_tokens=0, trained_tokens=0, elapsed_s=0.0)


def test_tensorboard_files_opened_within_one_second_are_kept_and_read_in_order(tmp_path):
    """tensorboardX names an event file by the second it opens: a stage resumed within the same second
    overwrote the interrupted attempt's file. Here three openings, one resumed after step 2 (losses:
    10 x opening + step), follow each other within milliseconds."""
    needs_tensorboard()
    for opening, (resume_step, steps) in enumerate([(0, [1, 2, 3]), (2, [3]), (3, [])]):
        sink = TensorBoardSink(tmp_path, resume_step)
        for step in steps:
            sink.log(record(step, 10.0 * opening + step))
        sink.close()
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 3
    shown = tensorboard_scalars(tmp_path)
    assert {step: row["distill/loss"] for step, row in shown.items()} == {1: 1.0, 2: 2.0, 3: 13.0}


def test_a_resumed_stage_logs_each_step_once_as_metrics_jsonl(tiny_recipe, tmp_path, offline_wandb):
    needs_tensorboard()
    run_dir = tmp_path / "r"
    recipe = load_recipe(tiny_recipe, ["distill.steps=4", "run.save_every=2", f"run.output_dir={run_dir}",
                                       "run.metrics=[jsonl, wandb, tensorboard]"])
    with pytest.raises(Interrupted):
        run_distill(recipe, run_dir, on_step=interrupt_after(3))  # step 3 logged, the checkpoint is step 2's
    run_distill(recipe, run_dir, resume=True)  # steps 3 and 4 again
    expected = jsonl_scalars(run_dir)
    assert sorted(expected) == [1, 2, 3, 4]  # metrics.jsonl dropped the interrupted step 3
    # TensorBoard shows step 3 once: the resumed attempt's (it showed both)
    assert tensorboard_scalars(run_dir) == float32(expected)
    # W&B: the interrupted run keeps steps 1-3, failed; the resumed one holds 3-4 as metrics.jsonl
    runs = wandb_runs(run_dir)
    assert set(runs) == {"r-distill", "r-distill-from-2"}  # (both were "r-distill")
    first, resumed = runs["r-distill"], runs["r-distill-from-2"]
    assert first["group"] == resumed["group"] == "r" and first["project"] == "sdzero-mlx"
    assert sorted(first["history"]) == [1, 2, 3] and first["exit_code"] == 1
    assert first["history"][1] == expected[1] and first["history"][2] == expected[2]
    assert resumed["history"] == {3: expected[3], 4: expected[4]} and resumed["exit_code"] == 0


def test_a_missing_sink_package_names_the_install(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, tensorboard]", f"run.output_dir={tmp_path / 'r'}"])
    with pytest.raises(RuntimeError, match="pip install tensorboardX"):
        run_distill(recipe, tmp_path / "r")


def test_a_missing_sink_package_is_found_before_any_sink_opens(tiny_recipe, tmp_path, offline_wandb, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    run_dir = tmp_path / "r"
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, wandb, tensorboard]", f"run.output_dir={run_dir}"])
    with pytest.raises(RuntimeError, match="pip install tensorboardX"):
        run_distill(recipe, run_dir)
    assert not (run_dir / "wandb").exists()  # no W&B run was started (one was, and left open)


def test_a_sink_that_fails_to_open_ends_those_already_open(tiny_recipe, tmp_path, offline_wandb):
    needs_tensorboard()
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "tensorboard").write_text("")  # a file where the event folder goes: the writer cannot start
    recipe = load_recipe(tiny_recipe, ["run.metrics=[jsonl, wandb, tensorboard]", f"run.output_dir={run_dir}"])
    with pytest.raises(OSError):
        run_distill(recipe, run_dir)
    (run,) = wandb_runs(run_dir).values()
    assert run["history"] == {} and run["exit_code"] == 1  # the W&B run opened first is finished, as failed


def test_two_stages_in_one_process_log_to_their_own_runs(tiny_recipe, tmp_path, offline_wandb):
    """`sdzero run` and `compare` train stage after stage in one process, each in RUN/<stage>: each stage
    is a W&B run of its own, from step 1, in the experiment's group (a shared run would refuse the
    second stage's steps 1, 2, ...: W&B steps only grow)."""
    from sdzero_mlx.stages.grpo import run_grpo

    needs_tensorboard()
    metrics = ["run.metrics=[jsonl, wandb, tensorboard]", "grpo.steps=2"]
    run_distill(load_recipe(tiny_recipe, metrics + [f"run.output_dir={tmp_path / 'exp' / 'distill'}"]),
                tmp_path / "exp" / "distill")
    run_grpo(load_recipe(tiny_recipe, metrics + [f"run.output_dir={tmp_path / 'exp' / 'grpo'}"]),
             tmp_path / "exp" / "grpo")
    for stage in ("distill", "grpo"):
        run_dir = tmp_path / "exp" / stage
        expected = jsonl_scalars(run_dir, stage)
        assert sorted(expected) == [1, 2]
        runs = wandb_runs(run_dir)
        assert list(runs) == [f"exp-{stage}"]
        run = runs[f"exp-{stage}"]
        assert (run["group"], run["job_type"], run["exit_code"]) == ("exp", stage, 0)
        assert run["history"] == expected and tensorboard_scalars(run_dir) == float32(expected)
