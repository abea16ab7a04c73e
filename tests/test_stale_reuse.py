"""A changed recipe never reports old models: every stage is reused only under the record of what made it
(rundir.MadeBy), and an evaluation only under the evaluated model's bytes (tasks.eval_key)."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.metrics import read_metrics
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.rundir import MadeBy, RunDir, StaleStage, differences
from sdzero_mlx.stages import continue_command, stage_spec

from scripted import scripted_model_dir, write_data

runner = CliRunner()
STAGES = ("collect", "srt", "distill", "rft", "grpo")


# -- the rule on hand-made records ---------------------------------------------------------------------


def test_differences_name_each_changed_field_and_input():
    saved = MadeBy({"distill.optim.learning_rate": 1e-4, "run.seed": 0}, {"model": "a" * 64, "data.source": "b" * 64})
    want = MadeBy({"distill.optim.learning_rate": 7e-5, "run.seed": 0}, {"model": "c" * 64, "data.source": "b" * 64})
    assert differences(saved, want) == ["distill.optim.learning_rate: 0.0001 -> 7e-05",
                                        "model: other bytes (sha256 aaaaaaaaaaaa -> cccccccccccc)"]
    assert differences(saved, saved) == []
    assert differences(saved, want, ignore=("distill.optim.learning_rate",)) == [
        "model: other bytes (sha256 aaaaaaaaaaaa -> cccccccccccc)"]
    legacy = MadeBy({"distill.optim.learning_rate": 7e-5, "run.seed": 0}, None)  # an older sdzero's: no inputs
    assert differences(legacy, want) == ["its inputs: never recorded (made by an older sdzero)"]
    assert differences(legacy, want, settings_only=True) == []


def _stage_dir(tmp_path, record: MadeBy) -> RunDir:
    """A started stage made by `record` (its resume point: progress.json) that vouches for no outputs."""
    run = RunDir(tmp_path / "rft", outputs=())
    run.path.mkdir()
    run.begin("rft", False, continue_command, record)
    (run.path / "progress.json").write_text("{}")
    (run.path / "adapters.safetensors").write_bytes(b"old")
    return run


def test_reuse_or_clear_reuses_resumes_refuses_and_retrains(tmp_path):
    made = MadeBy({"rft.steps": 6, "rft.optim.learning_rate": 1e-4}, {"model": "m"})
    run = _stage_dir(tmp_path, made)
    assert run.started() and not run.finished()
    assert run.reuse_or_clear(made, retrain=False) is False  # unfinished: resume
    run.mark_done()
    assert run.finished() and run.reuse_or_clear(made, retrain=False) is True  # the same: reuse
    longer = MadeBy({**made.settings, "rft.steps": 8}, made.inputs)
    # a resume may train longer (as `--resume` always could); a finished stage with other steps is stale
    with pytest.raises(StaleStage, match=r"rft was trained from other settings .*\(rft\.steps: 6 -> 8\).*--retrain"):
        run.reuse_or_clear(longer, retrain=False, resume_ignore=("rft.steps",))
    run.unmark_done()
    assert run.reuse_or_clear(longer, retrain=False, resume_ignore=("rft.steps",)) is False
    assert (run.path / "adapters.safetensors").read_bytes() == b"old"  # a refusal changes nothing
    other_model = MadeBy(made.settings, {"model": "n"})
    with pytest.raises(StaleStage, match="model: other bytes"):
        run.reuse_or_clear(other_model, retrain=False)
    lines = []
    run.mark_done()
    assert run.reuse_or_clear(longer, retrain=True, log=lines.append) is False
    assert sorted(p.name for p in run.path.iterdir()) == [".lock"] and "training it again" in lines[0]
    # nothing started there: nothing to compare, nothing to keep
    assert RunDir(tmp_path / "none").reuse_or_clear(made, retrain=False) is False


def test_a_shared_stage_is_never_cleared_through_its_link(tmp_path):
    made = MadeBy({"srt.epochs": 1}, {"model": "m"})
    shared = _stage_dir(tmp_path, made)
    shared.mark_done()
    link = tmp_path / "point" / "srt"
    link.parent.mkdir()
    os.symlink(shared.path, link, target_is_directory=True)
    with pytest.raises(StaleStage, match="is shared"):
        RunDir(link, outputs=()).reuse_or_clear(MadeBy({"srt.epochs": 2}, {"model": "m"}), retrain=True)
    assert (shared.path / "adapters.safetensors").read_bytes() == b"old"


def test_sdft_is_made_by_the_distill_fields_it_reads_not_by_distill(tiny_recipe):
    """SDFT trains with distill's loss, teacher cap and micro-batch, nothing else of that section: a finished SDFT
    (its record written by the stage itself) is reused when distill's steps, context or optimizer change, and is
    stale when its loss changes."""
    recipe = load_recipe(tiny_recipe, ["sdft.steps=1", "sdft.questions_per_step=2"])
    spec = stage_spec("sdft")
    run_dir = Path(recipe.run.output_dir) / "sdft"
    spec.run(recipe, run_dir)
    run = spec.run_dir(run_dir)
    assert run.finished()
    for change in ("distill.steps=7", "distill.teacher_context=answer", "distill.optim.learning_rate=3e-3"):
        other = load_recipe(tiny_recipe, ["sdft.steps=1", "sdft.questions_per_step=2", change])
        assert run.reuse_or_clear(spec.made_by(other, run_dir), retrain=False) is True, change
    for change, diff in (("distill.kl=forward", "distill.kl: 'reverse' -> 'forward'"),
                         ("distill.max_teacher_tokens=96", "distill.max_teacher_tokens: 128 -> 96")):
        other = load_recipe(tiny_recipe, ["sdft.steps=1", "sdft.questions_per_step=2", change])
        with pytest.raises(StaleStage, match=re.escape(f"({diff})")):
            run.reuse_or_clear(spec.made_by(other, run_dir), retrain=False)


# -- real runs of compare on the scripted model --------------------------------------------------------


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A finished compare of base, SRT, SD-Zero, RFT and GRPO (the scripted model, a few steps each)."""
    model = scripted_model_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("stale")
    write_data(root / "d.jsonl", 40)
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id"},
                 "phase1_size": 8, "phase2_size": 8, "eval_size": 4, "validation_size": 4},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.7, "max_tokens": 10, "batch_size": 16},
        "collect": {"questions_per_batch": 8, "revisions": 1},
        "srt": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4},
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 4, "top_k": 8, "max_teacher_tokens": 128},
        "rft": {"questions_per_step": 2, "samples_per_question": 2},
        "grpo": {"questions_per_step": 2, "group_size": 2},
        "eval": {"k": 2, "max_tokens": 10, "greedy": False, "revise": False},
        "optim": {"learning_rate": 1e-3},
        "compare": {"methods": ["base", "srt", "distill", "rft", "grpo"]},
        "run": {"output_dir": str(root / "run"), "seed": 0},
    }
    recipe = root / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    first = runner.invoke(app, ["compare", str(recipe)])
    assert first.exit_code == 0, first.output
    return recipe, root / "run"


def _outputs(run):
    """Each stage's trained bytes, and each evaluation's key and results (not its seconds)."""
    files = {"collect": run / "collect" / "tuples.jsonl", "srt": run / "srt" / "model" / "model.safetensors",
             **{s: run / s / "adapters" / "adapters.safetensors" for s in ("distill", "rft", "grpo")}}
    out = {name: path.read_bytes() for name, path in files.items()}
    for m in ("base", "srt", "distill", "rft", "grpo"):
        saved = json.loads((run / "eval" / f"{m}.json").read_text())
        out[f"eval {m}"] = (saved["settings"], saved["results"])
    return out


def test_an_unchanged_rerun_reuses_every_stage_and_evaluation(compared):
    recipe, run = compared
    before = _outputs(run)
    again = runner.invoke(app, ["compare", str(recipe)])
    assert again.exit_code == 0, again.output
    for line in ("collect: done, skipped", "srt: done, skipped", "distill: done, skipped", "rft: done; reusing it",
                 "grpo: done; reusing it", *(f"eval {m}: done, skipped" for m in ("base", "srt", "distill", "rft", "grpo"))):
        assert line in again.output, line
    assert "step 1/" not in again.output and _outputs(run) == before


@pytest.mark.parametrize("stage, field, old, new, retrained", [
    ("distill", "distill.optim.learning_rate", 0.001, 0.003, {"distill", "eval distill"}),
    ("rft", "rft.optim.learning_rate", 0.001, 0.003, {"rft", "eval rft"}),
    # the scripted model's GRPO groups all agree (no advantage, no update): retrained, its bytes come out the same,
    # so its evaluation (keyed by them) stands
    ("grpo", "grpo.optim.learning_rate", 0.001, 0.003, set()),
    # SRT's model is distill's starting model and teacher: distill is stale in turn, and both evaluations
    ("srt", "srt.optim.learning_rate", 0.001, 0.003, {"srt", "distill", "eval srt", "eval distill"}),
])
def test_a_changed_training_field_is_refused_then_retrained_with_what_depends_on_it(compared, stage, field, old, new,
                                                                                      retrained):
    recipe, run = compared
    before = _outputs(run)
    refused = runner.invoke(app, ["compare", str(recipe), "--set", f"{field}={new}"])
    assert refused.exit_code == 2, refused.output
    assert f"{run / stage} was trained from other settings" in refused.output
    assert f"{field}: {old} -> {new}" in refused.output and "--retrain" in refused.output
    assert _outputs(run) == before  # nothing was trained, nothing overwritten

    again = runner.invoke(app, ["compare", str(recipe), "--set", f"{field}={new}", "--retrain"])
    assert again.exit_code == 0, again.output
    after = _outputs(run)
    assert {name for name in before if after[name] != before[name]} == retrained
    assert f"{stage}: was trained from other settings or inputs ({field}: {old} -> {new}); training it again" in again.output
    for name in retrained - {stage}:
        if not name.startswith("eval"):  # downstream: its starting model's bytes changed
            assert f"{name}: was trained from other settings or inputs (model: other bytes" in again.output
    for name in {"srt", "distill", "rft", "grpo"} & retrained:
        assert f"eval {name}: {run / 'eval' / (name + '.json')} holds another model's" in again.output
    made = json.loads((run / stage / "run.json").read_text())["made_by"]
    assert made["settings"][field] == new
    assert read_metrics(run / stage)[0].learning_rate == pytest.approx(new)  # trained again from step 1 at the new rate (float32)

    # back to the recipe as it was: refused again (the folder now holds the 3e-3 models), then retrained
    back = runner.invoke(app, ["compare", str(recipe), "--retrain"])
    assert back.exit_code == 0, back.output
    restored = _outputs(run)
    # every stage and evaluation seeds itself: retraining with the first settings gives the first bytes
    assert restored == before


def test_an_evaluation_cache_of_another_model_is_never_read(compared):
    recipe, run = compared
    rft, grpo = (json.loads((run / "eval" / f"{m}.json").read_text()) for m in ("rft", "grpo"))
    (run / "eval" / "grpo.json").write_text(json.dumps(rft))  # RFT's results filed under GRPO's name
    again = runner.invoke(app, ["compare", str(recipe)])
    assert again.exit_code == 0, again.output
    assert "eval grpo: " in again.output and "adapters: " in again.output and "evaluating again" in again.output
    assert "eval rft: done, skipped" in again.output
    assert json.loads((run / "eval" / "grpo.json").read_text())["results"] == grpo["results"]


def test_a_resume_may_take_the_memory_advice_but_not_another_setting(tiny_recipe, tmp_path):
    """After an out-of-memory stop the advice is a smaller micro-batch or gradient checkpointing: a resume with
    them continues (the same gradient up to rounding); a resume with another learning rate is refused."""
    from sdzero_mlx.recipe import load_recipe
    from sdzero_mlx.stages.distill import run_distill

    run = tmp_path / "d"
    first = load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=2"])
    run_distill(first, run, stop_after=1)
    with pytest.raises(ValueError, match=r"distill\.optim\.learning_rate: 0\.01 -> 0\.02"):
        run_distill(load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=2", "distill.optim.learning_rate=0.02"]),
                    run, resume=True)
    advised = load_recipe(tiny_recipe, [f"run.output_dir={run}", "distill.steps=2", "distill.micro_batch_size=1",
                                        "lora.grad_checkpoint=true"])
    assert run_distill(advised, run, resume=True).step == 2
    made = json.loads((run / "run.json").read_text())["made_by"]["settings"]
    assert made["distill.micro_batch_size"] == 1 and made["lora.grad_checkpoint"] is True  # the record says what ran


def test_an_evaluation_is_keyed_by_the_rows_decoded_at_once(tiny_recipe, tiny_model_dir):
    from sdzero_mlx.recipe import load_recipe
    from sdzero_mlx.tasks import eval_key

    a, b = (load_recipe(tiny_recipe, [f"sampling.batch_size={n}"]) for n in (8, 16))
    assert eval_key(a, str(tiny_model_dir), None, "test") != eval_key(b, str(tiny_model_dir), None, "test")
