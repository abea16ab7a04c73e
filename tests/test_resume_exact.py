"""Resume is bit-identical (array_equal, not allclose), read from the run directory's artefacts:
after a stop past a teacher sync (hard and EMA), after a crash between writing a checkpoint and
renaming it (the checkpoint.old fallback), and for staged SRT across its stage boundary. Also: the
teacher stays frozen inside run_distill, and equals the student at a hard sync."""

from pathlib import Path

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
import yaml

from sdzero_mlx import atomic, checkpoint as ckpt
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.rundir import RunDir
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.modeling import make_trainable, load_model, trainable
from sdzero_mlx.stages.srt import run_srt

from conftest import tiny_recipe_dict
from test_srt import with_tuples, write_tuples


def arrays(path: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def distill_recipe(tiny_recipe, out: Path, *overrides):
    return load_recipe(tiny_recipe, [f"run.output_dir={out}", *overrides])


def run_artefacts(run: Path) -> dict[str, dict]:
    return {name: arrays(run / "checkpoint" / f"{name}.safetensors") for name in ("lora", "teacher", "optimizer")} | {
        "adapters": arrays(run / "adapters" / "adapters.safetensors")}


@pytest.mark.parametrize("sync", [["distill.teacher_sync=hard", "distill.sync_every=2"],
                                  ["distill.teacher_sync=ema", "distill.ema_decay=0.5"]], ids=["hard", "ema"])
def test_resume_past_a_teacher_sync_is_bit_identical(tiny_recipe, tmp_path, sync):
    settings = ["distill.steps=4", *sync]
    run_distill(distill_recipe(tiny_recipe, tmp_path / "a", *settings), tmp_path / "a")
    stopped = distill_recipe(tiny_recipe, tmp_path / "b", *settings)
    run_distill(stopped, tmp_path / "b", stop_after=3)  # past the sync after step 2 (hard) / every step (ema)
    run_distill(stopped, tmp_path / "b", resume=True)
    a, b = run_artefacts(tmp_path / "a"), run_artefacts(tmp_path / "b")
    for name in a:
        assert_identical(a[name], b[name])
    assert (tmp_path / "a" / "metrics.jsonl").read_text().count("\n") == 4
    # the metrics differ only in wall-clock fields
    drop = ("step_s", "elapsed_s", "sampled_tokens_per_s", "trained_tokens_per_s", "peak_memory_gb")
    import json
    rows = [[{k: v for k, v in json.loads(l).items() if k not in drop} for l in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in "ab"]
    assert rows[0] == rows[1]


class Crash(Exception):
    pass


def test_crash_between_writing_and_renaming_a_checkpoint_resumes_from_old(tiny_recipe, tmp_path, monkeypatch):
    settings = ["distill.steps=4", "distill.teacher_sync=hard", "distill.sync_every=3"]
    run_distill(distill_recipe(tiny_recipe, tmp_path / "a", *settings), tmp_path / "a")

    # saves: step 1 renames tmp -> checkpoint (1 call); steps 2 and 3 rename checkpoint -> .old then tmp ->
    # checkpoint (2 calls each). Crash on call 5: step 3's checkpoint is written, the old one moved aside.
    # (every other file is renamed into place too: only the checkpoint folder's renames are counted)
    real_replace, calls = atomic.os.replace, [0]

    def replace(src, dst):
        if Path(dst).name in ("checkpoint", "checkpoint.old"):
            calls[0] += 1
            if calls[0] == 5:
                raise Crash
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    recipe = distill_recipe(tiny_recipe, tmp_path / "b", *settings)
    with pytest.raises(Crash):
        run_distill(recipe, tmp_path / "b")
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    run = tmp_path / "b"
    assert not (run / "checkpoint").exists() and (run / "checkpoint.old").is_dir() and (run / "checkpoint.tmp").is_dir()
    assert RunDir(run).resume_from() == run / "checkpoint.old"

    state = run_distill(recipe, run, resume=True)
    assert state.step == 4
    a, b = run_artefacts(tmp_path / "a"), run_artefacts(run)
    for name in a:
        assert_identical(a[name], b[name])
    assert not (run / "checkpoint.old").exists()


def initial_lora(recipe) -> dict[str, np.ndarray]:
    model, _ = load_model(recipe.model)
    make_trainable(model, recipe.lora, recipe.run.seed)
    return {k: np.array(v) for k, v in trainable(model).items()}


def test_teacher_stays_frozen_without_sync(tiny_recipe, tmp_path):
    recipe = distill_recipe(tiny_recipe, tmp_path / "r", "distill.steps=3")
    run_distill(recipe, tmp_path / "r")
    initial = initial_lora(recipe)
    teacher = arrays(tmp_path / "r" / "checkpoint" / "teacher.safetensors")
    student = arrays(tmp_path / "r" / "checkpoint" / "lora.safetensors")
    assert_identical(teacher, initial)
    assert all(not teacher[k].any() for k in teacher if k.endswith("lora_b"))  # B = 0: the base model
    assert any(not np.array_equal(student[k], initial[k]) for k in student)  # while the student moved


def test_teacher_equals_the_student_at_a_hard_sync(tiny_recipe, tmp_path):
    settings = ["distill.steps=3", "distill.teacher_sync=hard", "distill.sync_every=2"]
    two = distill_recipe(tiny_recipe, tmp_path / "two", *settings)
    run_distill(two, tmp_path / "two", stop_after=2)
    student_at_2 = arrays(tmp_path / "two" / "checkpoint" / "lora.safetensors")
    assert_identical(arrays(tmp_path / "two" / "checkpoint" / "teacher.safetensors"), student_at_2)  # synced at 2
    run_distill(two, tmp_path / "two", resume=True)
    teacher_at_3 = arrays(tmp_path / "two" / "checkpoint" / "teacher.safetensors")
    student_at_3 = arrays(tmp_path / "two" / "checkpoint" / "lora.safetensors")
    assert_identical(teacher_at_3, student_at_2)  # frozen again between syncs
    assert any(not np.array_equal(student_at_3[k], student_at_2[k]) for k in student_at_3)


def test_staged_srt_resumes_with_the_right_optimizer(tiny_model_dir, tiny_data, tmp_path):
    raw = tiny_recipe_dict(tiny_model_dir, tiny_data, tmp_path / "run")
    # 6 tuples, 3 wrong-initial and 3 right-initial; stage2_size 3: generation stage on the 3 wrong,
    # revision stage on the 3 right; batch 4 -> 1 step per epoch, 3 epochs -> steps 1-3 and 4-6
    raw["srt"] = {"mode": "staged", "epochs": 3, "batch_size": 4, "micro_batch_size": 2, "optim": {"learning_rate": 1e-2},
                  "stage2_size": 3}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "r.yaml")
    _, tok = mlx_lm.load(str(tiny_model_dir))
    tuples = write_tuples(tmp_path / "tuples.jsonl", tok, [f"What is {i} + 3?" for i in range(6)])

    assert run_srt(with_tuples(recipe, tuples), tmp_path / "straight").step == 6
    straight = arrays(tmp_path / "straight" / "adapters" / "adapters.safetensors")
    for stop in (2, 3, 4):  # inside stage 1, at the boundary, inside stage 2
        out = tmp_path / f"stop{stop}"
        assert run_srt(with_tuples(recipe, tuples), out, stop_after=stop).step == stop
        # the optimizer saved with the checkpoint counts the updates of its own stage
        assert arrays(out / "checkpoint" / "optimizer.safetensors")["step"].item() == (stop if stop <= 3 else stop - 3)
        assert run_srt(with_tuples(recipe, tuples), out, resume=True).step == 6
        assert_identical(straight, arrays(out / "adapters" / "adapters.safetensors"))
