"""Issue 23, reliability under real use: one writer per run directory, runs that know their stage, the
interrupt hint, atomic outputs checked before "done", long problems, NaN and inf, and the smaller ones.

The concurrency, interrupt and disk-full tests run the real `sdzero` command in child processes: two
at once, SIGINT / SIGTERM / SIGKILL, and a real EFBIG from RLIMIT_FSIZE (the kernel's answer to a
write past the limit, as ENOSPC is to a full disk)."""

from __future__ import annotations

import json
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sdzero_mlx import fingerprint, rundir
from sdzero_mlx.atomic import DamagedFile
from sdzero_mlx.checkpoint import load_checkpoint, read_state
from sdzero_mlx.cli import app
from sdzero_mlx.config import EvalConfig, ModelConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.demo.tinymodel import make_model_dir, model_config
from sdzero_mlx.evaluate import EvalSettings, evaluate_model
from sdzero_mlx.metrics import read_metrics
from sdzero_mlx.modeling import load_model
from sdzero_mlx.stages.collect import run_collect
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.stages.rft import run_rft
from sdzero_mlx.types import Example
from sdzero_mlx.update import NonFiniteStep

from conftest import arithmetic_rows, tiny_recipe_dict
from test_cli_errors import fails_cleanly

runner = CliRunner()
SDZERO = [sys.executable, "-m", "sdzero_mlx.cli"]


def sdzero(*args, **kw) -> subprocess.Popen:
    """The real command in a child process (same interpreter and PYTHONPATH as the tests)."""
    return subprocess.Popen([*SDZERO, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def recipe_file(tmp_path: Path, tiny_model_dir, tiny_data, **sections) -> Path:
    raw = tiny_recipe_dict(tiny_model_dir, tiny_data, tmp_path / "run")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# -- 1. one writer per run directory ----------------------------------------------------------------


def test_a_second_process_is_refused_and_a_killed_one_leaves_no_stuck_lock(tiny_model_dir, tiny_data, tmp_path):
    recipe = recipe_file(tmp_path, tiny_model_dir, tiny_data)
    run = tmp_path / "run"
    first = sdzero("distill", recipe, "--set", "distill.steps=500", "--set", "run.save_every=5",
                   "--set", "distill.optim.learning_rate=1e-4")
    try:
        wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text())  # it is training
        second = sdzero("distill", recipe, "--set", "distill.steps=10", "--set", "distill.optim.learning_rate=1e-3")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2, (out, err)
        error = [l for l in err.splitlines() if l.startswith("error:")]
        assert len(error) == 1 and f"pid {first.pid}" in error[0] and "sdzero distill" in error[0], err
        assert "Traceback" not in err and "step" not in out  # refused before any work
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # kill -9 left the lock file, but not the lock: the kernel dropped it with the process
    probe = subprocess.run([sys.executable, "-c", "import sys; from sdzero_mlx.rundir import lock_run_dir; "
                            "lock_run_dir(sys.argv[1]); print('locked')", str(run)], capture_output=True, text=True)
    assert probe.stdout.strip() == "locked", probe.stderr


def test_collect_is_refused_while_another_process_holds_the_folder(tiny_recipe, tmp_path):
    folder = tmp_path / "run" / "collect"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from sdzero_mlx.rundir import lock_run_dir; "
                               "lock_run_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(rundir.RunDirBusy, match=f"pid {holder.pid}"):
            run_collect(load_recipe(tiny_recipe), folder)
        assert not (folder / "tuples.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


def test_one_process_may_take_its_own_lock_again(tmp_path):
    with rundir.RunDir(tmp_path).writing():
        with rundir.RunDir(tmp_path).writing():  # compare -> pipeline: the same folder, the same process
            pass
        assert rundir.Path(tmp_path).resolve() in rundir._held
    assert rundir.Path(tmp_path).resolve() not in rundir._held


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_killed_run_resumed_from_the_command_line_matches_an_uninterrupted_one(tiny_model_dir, tiny_data, tmp_path, sig):
    recipe = recipe_file(tmp_path, tiny_model_dir, tiny_data)
    sets = ["--set", "distill.steps=12", "--set", "run.save_every=1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert sdzero("distill", recipe, *sets, "--set", f"run.output_dir={whole}").wait() == 0
    proc = sdzero("distill", recipe, *sets, "--set", f"run.output_dir={cut}")
    wait_for(lambda: (cut / "checkpoint" / "state.json").is_file() or (cut / "checkpoint.old" / "state.json").is_file())
    proc.send_signal(sig)  # lands anywhere, a save included
    proc.communicate(timeout=120)
    assert proc.returncode in (-9, 130)
    resumed = subprocess.run([*SDZERO, "distill", str(recipe), *sets, "--resume", str(cut)], capture_output=True, text=True)
    assert resumed.returncode == 0 and "done: 12 steps" in resumed.stdout, resumed.stderr
    a, b = (mx.load(str(r / "adapters" / "adapters.safetensors")) for r in (whole, cut))
    assert a.keys() == b.keys() and all(np.array_equal(np.array(a[k]), np.array(b[k])) for k in a)


# -- 2. a run knows its stage ---------------------------------------------------------------------


def test_a_resume_with_another_stage_is_refused_naming_both(tiny_recipe, tmp_path):
    run = tmp_path / "d"
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=1", "rft.steps=2",
                                       "rft.questions_per_step=2", "rft.samples_per_question=2"])
    run_distill(recipe, run)
    record = json.loads((run / "run.json").read_text())
    assert record["stage"] == "distill" and record["sdzero_version"]
    assert record["made_by"]["inputs"] == {"model": fingerprint.model_fingerprint(recipe.model.path),
                                           "data.source": fingerprint.file_sha256(recipe.data.source)}
    assert record["made_by"]["settings"]["distill.steps"] == 1 and "model.path" not in record["made_by"]["settings"]
    adapters = (run / "adapters" / "adapters.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"is a distill run; `sdzero rft --resume` cannot continue it"):
        run_rft(recipe, run, resume=True)
    assert (run / "adapters" / "adapters.safetensors").read_bytes() == adapters  # nothing overwritten
    assert read_metrics(run)[-1].stage == "distill"

    rft_run = tmp_path / "r"
    run_rft(load_recipe(tiny_recipe, [f"run.output_dir={rft_run}", "rft.steps=1", "rft.questions_per_step=2",
                                      "rft.samples_per_question=2"]), rft_run)
    with pytest.raises(ValueError, match=r"is a rft run; `sdzero distill --resume` cannot continue it.*sdzero rft"):
        run_distill(load_recipe(tiny_recipe, [f"run.output_dir={rft_run}"]), rft_run, resume=True)


def test_the_run_record_keeps_the_command_line_and_its_overrides(tiny_recipe, tmp_path):
    run = tmp_path / "cli-run"
    result = runner.invoke(app, ["distill", str(tiny_recipe), "--set", f"run.output_dir={run}", "--set", "distill.steps=1"])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    assert record["overrides"] == [f"run.output_dir={run}", "distill.steps=1"]
    assert shlex.split(record["command"]) == ["sdzero", "distill", str(tiny_recipe), "--set", f"run.output_dir={run}",
                                              "--set", "distill.steps=1"]


# -- 3. the interrupt hint ------------------------------------------------------------------------


def test_the_interrupt_hint_keeps_every_set_and_following_it_finishes_the_run(tiny_model_dir, tiny_data, tmp_path):
    recipe = recipe_file(tmp_path, tiny_model_dir, tiny_data)
    run = tmp_path / "run"
    odd = "prompts.phrase_wrong=Wait, that's wrong; again."  # a value that needs quoting for the shell
    sets = ["--set", "distill.steps=12", "--set", "run.save_every=1", "--set", odd]
    proc = sdzero("distill", recipe, *sets)
    wait_for(lambda: (run / "checkpoint" / "state.json").is_file())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    hint = err.split("continue with: ", 1)[1].strip()
    words = shlex.split(hint)
    assert words == ["sdzero", "distill", str(recipe), *sets, "--resume", str(run)], hint
    saved = read_state(run / "checkpoint" / "state.json").step
    assert 1 <= saved < 12
    follow = subprocess.run([*SDZERO, *words[1:]], capture_output=True, text=True, timeout=300)
    assert follow.returncode == 0, follow.stderr
    assert "done: 12 steps" in follow.stdout
    assert [r.step for r in read_metrics(run)] == list(range(1, 13))


def test_before_the_first_checkpoint_the_hint_says_start_again_without_resume(tiny_model_dir, tiny_data, tmp_path):
    recipe = recipe_file(tmp_path, tiny_model_dir, tiny_data)
    run = tmp_path / "run"
    proc = sdzero("distill", recipe, "--set", "distill.steps=500", "--set", "run.save_every=400")
    wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text())
    proc.send_signal(signal.SIGTERM)  # as a job scheduler stops a job
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "no checkpoint was saved yet" in err and "--resume" not in err, err
    words = shlex.split(err.split("start again with: ", 1)[1].strip())
    assert words == ["sdzero", "distill", str(recipe), "--set", "distill.steps=500", "--set", "run.save_every=400",
                     "--set", f"run.output_dir={run}"]
    # and --resume there says what to do instead of failing on a missing file
    out = fails_cleanly(runner.invoke(app, ["distill", str(recipe), "--resume", str(run)]),
                        "has no checkpoint", "without --resume")


def test_a_resume_asking_for_fewer_steps_than_done_says_so(tiny_recipe, tmp_path):
    run = tmp_path / "r"
    run_distill(load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=3"]), run)
    with pytest.raises(ValueError, match=r"has trained 3 steps but this command asks for 2.*distill.steps=3"):
        run_distill(load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=2"]), run, resume=True)


# -- 4. atomic outputs, checked before "done" -------------------------------------------------------


def limit_file_size(size: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    return apply


def test_a_full_disk_names_the_file_leaves_no_half_file_and_resume_finishes(tiny_model_dir, tiny_data, tmp_path):
    recipe = recipe_file(tmp_path, tiny_model_dir, tiny_data)
    run = tmp_path / "run"
    # every file of a run is smaller than the adapters (~20 KB), which no longer fit
    proc = sdzero("distill", recipe, "--set", "distill.steps=2", preexec_fn=limit_file_size(12_000))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    error = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(error) == 1 and str(run / "adapters" / "adapters.safetensors") in error[0], err
    assert "Traceback" not in err
    assert not (run / "adapters" / "adapters.safetensors").exists()  # no truncated file
    assert not list(run.rglob(".*tmp-*")) and not (run / "checkpoint").exists()
    # space again: the same command starts over (no checkpoint was saved) and finishes
    done = subprocess.run([*SDZERO, "distill", str(recipe), "--set", "distill.steps=2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert rundir.RunDir(run).damaged_outputs() == []


def test_resume_of_a_finished_run_rewrites_missing_or_truncated_adapters(tiny_recipe, tmp_path):
    run = tmp_path / "r"
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=2"])
    run_distill(recipe, run)
    weights = run / "adapters" / "adapters.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # a truncated file
    (run / "adapters" / "adapter_config.json").unlink()
    assert rundir.RunDir(run).damaged_outputs() == ["adapters/adapters.safetensors", "adapters/adapter_config.json"]
    state = run_distill(recipe, run, resume=True)
    assert state.step == 2
    assert weights.read_bytes() == good and (run / "adapters" / "adapter_config.json").is_file()
    lora = mx.load(str(run / "checkpoint" / "lora.safetensors"))
    assert all(np.array_equal(np.array(v), np.array(mx.load(str(weights))[k])) for k, v in lora.items())


def test_a_truncated_last_metrics_line_is_dropped_and_its_step_redone(tiny_recipe, tmp_path, capsys):
    run = tmp_path / "r"
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=3"])
    run_distill(recipe, run, stop_after=2)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "total_steps": 3, "stage": "disti')  # killed mid-line
    run_distill(recipe, run, resume=True)
    assert [r.step for r in read_metrics(run)] == [1, 2, 3]
    assert "dropped the unfinished last line" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_named(tiny_recipe, tmp_path):
    run = tmp_path / "r"
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=1"])
    run_distill(recipe, run)
    lora = run / "checkpoint" / "lora.safetensors"
    lora.write_bytes(lora.read_bytes()[:100])
    with pytest.raises(DamagedFile, match=str(lora)):
        load_checkpoint(run, __import__("mlx.optimizers").optimizers.Adam(1e-3))
    state = run / "checkpoint" / "state.json"
    state.write_text(json.dumps({"step": "two", "generations": 0, "sampled_tokens": 0, "trained_tokens": 0,
                                 "elapsed_s": 0.0}))
    result = runner.invoke(app, ["distill", str(tiny_recipe), "--resume", str(run), "--set", "distill.steps=2"])
    fails_cleanly(result, str(state), "step is 'two'")


# -- 5. a long problem never crashes --------------------------------------------------------------


def long_problem() -> str:
    return "Add these: " + "1 + " * 1300 + "1"  # 5,213 tokens: past the tiny model's 4,096 positions


def test_the_tiny_model_has_4096_positions():
    assert model_config()["max_position_embeddings"] == 4096


def test_distill_skips_and_counts_a_problem_longer_than_the_context(tiny_model_dir, tmp_path):
    rows = arithmetic_rows(8)
    rows[3]["problem"] = long_problem()
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = tiny_recipe_dict(tiny_model_dir, data, tmp_path / "run")
    raw["data"].update(phase1_size=0, phase2_size=8, eval_size=0, max_prompt_tokens=100_000)  # the context binds
    raw["distill"].update(steps=1, questions_per_step=8)  # every question, the long one included
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    run_distill(load_recipe(tmp_path / "r.yaml"), tmp_path / "run")
    record = read_metrics(tmp_path / "run")[0]
    assert record.detail("skipped_long_prompts") == 1 and record.generations == 7


def test_evaluation_skips_and_counts_a_problem_longer_than_the_context(tiny_model_dir):
    model, tok = load_model(ModelConfig(path=str(tiny_model_dir)))
    examples = [Example("a", "What is 1 + 1?", "2"), Example("b", long_problem(), "1301"), Example("c", "What is 2 + 2?", "4")]
    settings = EvalSettings(EvalConfig(k=1, max_tokens=4, greedy=False, revise=True), max_prompt_tokens=100_000)
    results = evaluate_model(model, tok, examples, settings)
    assert [r.skipped_long_prompts for r in results] == [1, 1]
    assert [r.n_problems for r in results] == [2, 2]


def test_a_teacher_cap_past_the_context_is_refused(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={tmp_path / 'r'}", "distill.max_teacher_tokens=5000"])
    with pytest.raises(ValueError, match="distill.max_teacher_tokens=5000 exceeds the model's 4096 positions"):
        run_distill(recipe, tmp_path / "r")


# -- 6. NaN and inf -------------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["distill.optim.learning_rate=.nan", "distill.optim.learning_rate=.inf",
                                      "lora.scale=.nan", "optim.grad_clip=.nan", "optim.kl_to_initial=.nan",
                                      "sampling.temperature=-.inf", "lora.scale=nan"])
def test_non_finite_recipe_numbers_are_refused(tiny_recipe, override):
    with pytest.raises(ValueError, match="not a finite number"):
        load_recipe(tiny_recipe, [override])


def test_negative_weight_decay_is_refused(tiny_recipe):
    with pytest.raises(ValueError, match="optim.weight_decay must be a finite number >= 0"):
        load_recipe(tiny_recipe, ["optim.weight_decay=-0.1"])


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_recipe, tmp_path):
    run = tmp_path / "r"
    # a finite but absurd rate: step 1's update makes the weights ~1e20, and step 2's loss is NaN
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=4", "distill.optim.learning_rate=1e20"])
    with pytest.raises(NonFiniteStep, match=r"distill step 2: the loss is nan .*keeps step 1"):
        run_distill(recipe, run)
    assert read_state(run / "checkpoint" / "state.json").step == 1
    assert [r.step for r in read_metrics(run)] == [1]
    for path in (run / "checkpoint" / "lora.safetensors", run / "adapters" / "adapters.safetensors"):
        assert all(np.isfinite(np.array(v)).all() for v in mx.load(str(path)).values())


# -- 7. the smaller ones --------------------------------------------------------------------------


def test_eval_limit_must_be_positive(tiny_model_dir, tiny_data):
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(tiny_data), "--limit", "-1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--limit" in result.output and "problems" not in result.output


def test_verify_file_that_is_a_folder(tmp_path):
    fails_cleanly(runner.invoke(app, ["verify", "--file", str(tmp_path)]), str(tmp_path), "is a folder")


def test_a_folder_where_a_file_is_wanted_is_called_a_folder(tiny_recipe, tmp_path):
    fails_cleanly(runner.invoke(app, ["distill", str(tmp_path)]), str(tmp_path), "is a folder")
    fails_cleanly(runner.invoke(app, ["distill", str(tiny_recipe), "--set", f"data.source={tmp_path}"]), "is a folder")
    fails_cleanly(runner.invoke(app, ["srt", str(tiny_recipe), "--set", f"srt.tuples={tmp_path}"]), "is a folder")


BOMB = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]) + "\n"


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 1024  # 9^9 = 387 million strings once expanded
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
            "from sdzero_mlx.recipe import load_recipe\n"
            "try:\n    load_recipe(sys.argv[1])\nexcept ValueError as err:\n    print(err)")
    done = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert "the alias *a is not allowed in a recipe" in done.stdout and str(bomb) in done.stdout


def test_a_changed_data_file_refuses_the_resume(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in arithmetic_rows(40)))
    raw = tiny_recipe_dict(tiny_model_dir, data, tmp_path / "run")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "r.yaml", ["distill.steps=2"])
    run_distill(recipe, tmp_path / "run", stop_after=1)
    rows = arithmetic_rows(40)
    rows[0]["answer"] = "99"  # same path, other contents
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"run was started with another recipe or inputs \(data.source: other bytes"):
        run_distill(recipe, tmp_path / "run", resume=True)


def test_a_top_level_optim_override_reaches_every_stage_of_a_resolved_recipe(tiny_recipe, tmp_path):
    run = tmp_path / "r"
    run_distill(load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=1"]), run)
    resolved = run / "recipe.yaml"
    assert yaml.safe_load(resolved.read_text())["distill"]["optim"]["learning_rate"] == 1e-2  # spelled out
    recipe = load_recipe(resolved, ["optim.learning_rate=3e-4", "rft.optim.learning_rate=1e-5"])
    assert recipe.distill.optim.learning_rate == recipe.srt.optim.learning_rate == recipe.sdft.optim.learning_rate == 3e-4
    assert recipe.rft.optim.learning_rate == 1e-5  # a stage's own override in the same command wins


def test_adapters_loaded_on_another_base_model_warn(tiny_recipe, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "r"
    run_distill(load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=1"]), run)
    assert json.loads((run / "adapters" / "adapter_config.json").read_text())["model"] == str(tiny_model_dir)
    load_model(ModelConfig(path=str(tiny_model_dir)), adapter_path=str(run / "adapters"))
    assert "warning" not in capsys.readouterr().err
    other = make_model_dir(tmp_path / "other", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, seed=1)  # same shapes: mlx-lm loads it without a word
    load_model(ModelConfig(path=str(other)), adapter_path=str(run / "adapters"))
    err = capsys.readouterr().err
    assert f"were trained on {tiny_model_dir}" in err and f"loaded on {other}" in err


def test_an_interrupt_inside_the_generator_setup_prints_no_finaliser_traceback(tiny_model_dir, monkeypatch):
    import gc
    import importlib

    from sdzero_mlx.config import SamplingConfig
    from sdzero_mlx.rollout import sample_with_generator

    model, tok = load_model(ModelConfig(path=str(tiny_model_dir)))

    # the generator path (models whose caches waves do not batch); waves build no generator
    def interrupted():  # Ctrl-C landing in BatchGenerator.__init__, before it sets _old_wired_limit
        raise KeyboardInterrupt

    generate_module = importlib.import_module("mlx_lm.generate")  # mlx_lm.generate is also a function's name
    monkeypatch.setattr(generate_module, "maybe_set_recommended_wired_limit", interrupted)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(KeyboardInterrupt):
        sample_with_generator(model, tok, [[1, 2, 3]], SamplingConfig(max_tokens=4), copies=1)
    gc.collect()
    assert unraisable == []
