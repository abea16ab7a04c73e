"""The stage registry: a stage declared once (its module's section and SPEC) reaches the recipe, the CLI, compare,
the doctor's memory advice and the loop's length check.

The stage here is defined in this file, as a new stage module would be: a recipe section, a run function of the
common signature on the shared loop, a StageSpec. Nothing else in the package names it.
"""

import json
from dataclasses import dataclass, field

import pytest
import yaml
from typer.testing import CliRunner

from sdzero_mlx import stages
from sdzero_mlx.config import OptimConfig
from sdzero_mlx.data import make_splits
from sdzero_mlx.loss import nll_batches, weighted_nll
from sdzero_mlx.prompts import prompt_ids, text_answer_ids
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages import StageSpec
from sdzero_mlx.stages.loop import StepOutcome, open_stage
from sdzero_mlx.types import TrainingState
from sdzero_mlx.update import make_optimizer, optimizer_step


@dataclass(frozen=True)
class AnswersConfig:
    steps: int = 2
    max_tokens: int = 256  # each sequence is cut to this many tokens: a cap the model's context must hold
    optim: OptimConfig = field(default=OptimConfig())


def run_answers(recipe, run_dir, resume=False, on_step=None, stop_after=None) -> TrainingState:
    """NLL on the reference answers themselves (chat(x) + answer + end-of-turn), all of them every step."""
    cfg = recipe.answers
    with open_stage(recipe, run_dir, resume, SPEC) as run:
        optimizer = make_optimizer(cfg.optim, cfg.steps)
        state, _ = run.restore([optimizer])
        sequences, spans = [], []
        for ex in make_splits(recipe.data).training:
            prompt = prompt_ids(run.tokenizer, ex.problem, recipe.prompts)
            ids, eot = text_answer_ids(run.tokenizer, ex.answer)
            sequences.append((prompt + ids + (eot,))[: cfg.max_tokens])
            spans.append((len(prompt), len(sequences[-1])))

        def step_fn(step: int) -> StepOutcome:
            batches = nll_batches(sequences, spans, 8, run.pad_id)
            result = optimizer_step(run.model, optimizer, weighted_nll, batches, cfg.optim.grad_clip)
            return StepOutcome(result=result, trained_tokens=sum(e - s for s, e in spans))

        return run.train(cfg.steps, step_fn, [optimizer], state=state, on_step=on_step, stop_after=stop_after)


SPEC = StageSpec(name="answers", label="Answers", help="Test stage: NLL on the reference answers.",
                 section=AnswersConfig, sections=("model", "data", "lora", "prompts", "answers"), order=80,
                 run=run_answers, caps=("answers.max_tokens",), memory="answers.max_tokens, lora.grad_checkpoint: true")


@pytest.fixture
def registered(monkeypatch):
    stages.stage_specs()  # the built-in stages first, so that the test stage comes on top of them
    monkeypatch.setitem(stages._REGISTRY, SPEC.name, SPEC)
    return SPEC


def test_built_in_stages_are_found_in_their_modules():
    assert [s.name for s in stages.stage_specs()] == ["collect", "srt", "distill", "rft", "grpo", "sft", "sdft"]
    assert stages.methods() == ("base", "srt", "distill", "rft", "grpo", "sft", "sdft")
    assert [s.name for s in stages.baselines()] == ["rft", "grpo", "sft", "sdft"]
    assert stages.labels()["distill"] == "SD-Zero"


def test_a_new_stage_appears_in_the_recipe(registered, tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["answers.steps=3", "optim.kl_to_initial=0.25"])
    assert recipe.answers == AnswersConfig(steps=3, optim=OptimConfig(learning_rate=1e-2, kl_to_initial=0.25))
    assert list(recipe.sections())[-5:] == ["answers", "compare", "eval", "verifier", "run"]
    assert "answers" in recipe.compare.methods  # the default compares every method
    with pytest.raises(ValueError, match="answers.steps"):
        load_recipe(tiny_recipe, ["answers.steps=two"])


def test_a_new_stage_is_a_cli_command_and_a_compare_method(registered, tiny_recipe, tmp_path):
    from sdzero_mlx.cli import build_app
    from sdzero_mlx.compare import run_compare

    app, runner = build_app(), CliRunner()
    helped = runner.invoke(app, ["--help"])
    assert "answers" in helped.output and "Test stage" in helped.output
    assert "base,srt,distill,rft,grpo,sft,sdft,answers" in " ".join(runner.invoke(app, ["compare", "--help"]).output.split())
    run = tmp_path / "cli"
    result = runner.invoke(app, ["answers", str(tiny_recipe), "--set", f"run.output_dir={run}"])
    assert result.exit_code == 0, result.output
    assert [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (run / "adapters" / "adapters.safetensors").is_file()

    recipe = load_recipe(tiny_recipe, [f"run.output_dir={tmp_path / 'cmp'}", "compare.budget_generations=8",
                                       "eval.k=1", "eval.greedy=false", "eval.max_tokens=4"])
    data = run_compare(recipe, log=lambda _: None, methods=["answers"])
    assert set(data["models"]) == {"Answers"} and data["methods"] == ["answers"]
    assert yaml.safe_load((tmp_path / "cmp" / "compare-recipe.yaml").read_text())["answers"]["steps"] == 2
    assert (tmp_path / "cmp" / "answers" / "adapters" / "adapters.safetensors").is_file()


def test_old_method_name_is_still_accepted(tiny_recipe):
    assert load_recipe(tiny_recipe, ["compare.methods=[base, sd-zero]"]).compare.methods == ("base", "distill")


def test_a_new_stage_gets_its_own_memory_advice_and_length_check(registered, tiny_recipe, tmp_path):
    from sdzero_mlx.doctor.cost import StageEstimate, memory_warning
    from sdzero_mlx.platform.device import MemoryLimit

    over = [StageEstimate("answers", "2 steps", 1.0, 9.0), StageEstimate("eval answers", "8 generations", 1.0, 0.5)]
    warning = memory_warning(over, MemoryLimit(4.0, "this test's limit"))
    assert warning == ("the run will not fit in memory: answers peaks at 9.0 GB, over this test's limit (4.0 GB). "
                       "Lower answers: answers.max_tokens, lora.grad_checkpoint: true.")
    # the cap is held against the model's context before any step: the tiny model has 4096 positions
    run = tmp_path / "long"
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={run}", "answers.max_tokens=5000"])
    with pytest.raises(ValueError, match=r"answers.max_tokens=5000 exceeds the model's 4096 positions"):
        run_answers(recipe, run)
    assert not (run / "metrics.jsonl").exists()
    run_answers(load_recipe(tiny_recipe, [f"run.output_dir={run}", "answers.max_tokens=4096"]), run, stop_after=1)
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
