"""`sdzero demo`: SD-Zero and its baselines on a built-in task and tiny base model, with table and pictures.

Two tasks ship, each with a base model made by the seeded `pretrain.py` (`--task`):
- inverse (default): find the start x of a chain mod 10. The answer's own check line shows how far
  off a wrong x was, so the Reviser, told "not correct", can fix it with hindsight: the case the
  method is built for.
- chain: compute a running total. A wrong step flows silently to the end and checking a step is the
  same computation as doing it, so the Reviser cannot know where an answer went wrong: the lesson of
  when self-distillation cannot help.
Steps: run `compare` with the task's packaged recipe (data.source demo://TASK: the problems of
data.seed, none seen in the base model's pretraining) (collect -> SRT -> distill, and the baselines at SD-Zero's generation budget,
every model evaluated the same way; the recipes set run.workers: 2, so the baselines and evaluations run beside
the chain in a second process, with the same numbers); draw the training curves; score self-localisation
(a page per answer, a picture of the one the README shows); write demo.md.

The self-localisation picture uses the SRT model in both roles, which is exactly phase 2's first
step: the Generator's log-probabilities of its own wrong answer against the Reviser's, who has read
that answer and the "not correct" cue. Where the two disagree is where the dense signal lands; the
score counts how often the largest-KL tokens of wrong answers sit on the first mistaken line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..config import ModelConfig, Recipe
from ..configio import write_yaml
from ..recipe import load_recipe
from ..sources.demo import MODELS
from ..writable import check_output_dir

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DemoTask:
    name: str
    model: Path  # the shipped base model folder
    recipe: Path  # the packaged recipe
    pretrain_args: tuple[str, ...] = ()  # `python -m sdzero_mlx.demo.pretrain OUT ARGS` rebuilds `model`


TASKS = {
    "inverse": DemoTask(
        "inverse", MODELS["inverse"], PACKAGE_DIR / "recipe_inverse.yaml",
        ("--kind", "inverse", "--min-steps", "4", "--max-steps", "4", "--init-from", "base_model",
         "--learning-rate", "1e-3", "--warmup-steps", "20", "--steps", "300", "--copy-fix-share", "0"),
    ),
    "chain": DemoTask("chain", MODELS["chain"], PACKAGE_DIR / "recipe.yaml"),
}
DEFAULT_TASK = "inverse"
# --quick: the same comparison on a sliver of the data, to check that everything runs (CI uses it).
QUICK = (
    "data.phase1_size=64",
    "data.phase2_size=48",
    "data.eval_size=32",
    "data.validation_size=16",
    "collect.questions_per_batch=64",
    "srt.epochs=1",
    "distill.steps=4",
    "eval.k=2",
    "run.probe_every=2",
    "run.probe_size=16",
)


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    table: str  # demo.md
    results: dict  # compare.json's data
    seconds: float


def base_model_dir(name: str = DEFAULT_TASK) -> Path:
    """The shipped base model of a task (made by `python -m sdzero_mlx.demo.pretrain OUT`, seeded)."""
    if name not in TASKS:
        raise ValueError(f"Unknown demo task {name!r}; use one of {sorted(TASKS)}.")
    path = TASKS[name].model
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The demo's base model is missing from {path}. Rebuild it (about 5 minutes on 2 cores) with "
            f"`python -m sdzero_mlx.demo.pretrain {path} {' '.join(TASKS[name].pretrain_args)}`."
        )
    return path


def demo_recipe(run_dir: Path, name: str, model_dir: Path, quick: bool, overrides: Sequence[str]) -> Recipe:
    filled = [f"model.path={model_dir}", f"run.output_dir={run_dir}"]
    return load_recipe(TASKS[name].recipe, filled + list(QUICK if quick else ()) + list(overrides))


def self_localisation(recipe: Recipe, run_dir: Path, n: int = 48) -> tuple:
    """Token reports of the SRT model's own answers on validation problems (a diagnostic, so never the test
    split), Generator vs Reviser; pictures into RUN/explain."""
    from ..data import make_splits
    from ..explain import (
        ExplainSettings, explain_examples, explain_set_to_dir, kl_concentration, localisation_score, write_report,
    )
    from ..modeling import load_model
    from ..prompts import separators

    model, tokenizer = load_model(ModelConfig(path=str(run_dir / "srt" / "model")))
    examples = make_splits(recipe.data).validation[:n]
    settings = ExplainSettings(recipe.prompts, recipe.sampling, recipe.verifier, separators(tokenizer, recipe.prompts),
                               recipe.run.seed, recipe.distill.kl_settings)
    reports = explain_examples(model, tokenizer, model, examples, settings)
    out = run_dir / "explain"
    table = explain_set_to_dir(reports, out, pictures=False)  # a page each; PNG for the README's one below
    wrong = [r for r in reports if r.reward < 0.5]
    if wrong:  # the picture for the README: the wrong answer whose KL is most concentrated
        write_report(max(wrong, key=lambda r: kl_concentration(r.kl)), out, "wrong-answer")
    gold = {ex.problem: ex.solution for ex in examples}
    return table, localisation_score(reports, gold)


def stage_seconds(run_dir: Path, methods: Sequence[str]) -> list[tuple[str, float]]:
    """Seconds spent by each training stage and each evaluation of the comparison."""
    from ..stages.collect import read_summary
    from ..metrics import last_budget

    out = []
    if (run_dir / "collect" / "summary.json").is_file():
        out.append(("collect", read_summary(run_dir / "collect").elapsed_s))
    if (run_dir / "srt" / "state.json").is_file():
        out.append(("srt", json.loads((run_dir / "srt" / "state.json").read_text())["elapsed_s"]))
    for stage in ("distill", *[m for m in methods if m not in ("base", "srt", "distill")]):
        budget = last_budget(run_dir / stage)
        if budget:
            out.append((stage, budget.elapsed_s))
    for m in methods:
        path = run_dir / "eval" / f"{m}.json"
        if path.is_file():
            out.append((f"eval {m}", json.loads(path.read_text()).get("seconds", 0.0)))
    return out


def demo_table(name: str, results: dict, run_dir: Path, localisation: str, score, seconds: float, workers: int = 1) -> str:
    """demo.md: accuracy, length, correction rate and training budget per method; time per stage; localisation."""
    from ..evaluate import pct

    def pick(model: str, key: str):
        for record in results["models"][model]:
            if record.get(key) is not None:
                return record[key]
        return None

    k = next((pick(m, "k") for m in results["models"] if pick(m, "k")), "k")
    lines = [
        f"# sdzero demo (task: {name})",
        "",
        f"Every sampling method trained on the same questions with about {results['budget_generations']} generations "
        "(SD-Zero's collect + distill); all evaluated on the same held-out problems.",
        "",
        f"| model | avg@{k} (%) | pass@{k} (%) | greedy (%) | mean response tokens | correction rate (%) | revised acc (%) "
        "| train generations | train sampled tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, budget in results["budgets"].items():
        lines.append(
            f"| {model} | {pct(pick(model, 'avg_at_k'))} | {pct(pick(model, 'pass_at_k'))} | {pct(pick(model, 'greedy_accuracy'))} "
            f"| {pick(model, 'mean_tokens') or 0:.1f} | {pct(pick(model, 'correction_rate'))} | {pct(pick(model, 'revised_accuracy'))} "
            f"| {budget['generations']} | {budget['sampled_tokens']} |"
        )
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {sec:.1f} |" for stage, sec in stage_seconds(run_dir, results["methods"])]
    lines += [
        "",
        f"Wall time of the whole demo: {seconds:.0f} s"
        + (f" ({workers} stages at a time, run.workers: the seconds above add up to more)." if workers > 1 else "."),
        "",
        "Self-localisation (SRT model as Generator vs as Reviser, its own answers on validation problems):",
        "",
        f"- top-5% KL tokens of {score.answers} wrong answers on the first mistaken line: {100 * score.hit_share:.1f}% "
        f"(chance {100 * score.chance_share:.1f}%, ratio {score.ratio:.1f}x)",
        "",
        localisation,
        "Pictures: training.png (reward, loss, length, entropy, weight change and probe accuracy per step of "
        "distill and the baselines), compare.png (probe accuracy against generations spent), "
        "explain/wrong-answer.png and .html (per-token KL on a wrong answer), explain/buckets.png.",
        "",
    ]
    return "\n".join(lines)


def run_demo(
    run_dir: Path, quick: bool = False, overrides: Sequence[str] = (), log: Callable[[str], None] = print,
    task_name: str = DEFAULT_TASK,
) -> DemoResult:
    """Run (or continue) the demo in run_dir; finished stages are skipped on a rerun."""
    from ..compare import run_compare
    from ..plots import plot_runs

    tic = time.perf_counter()
    run_dir = check_output_dir(run_dir, "--out")  # before any work: a bad location costs nothing
    model_dir = base_model_dir(task_name)
    recipe = demo_recipe(run_dir, task_name, model_dir, quick, overrides)
    write_yaml(recipe, run_dir / "recipe.yaml")
    log(f"task: {task_name}; base model: {model_dir}")
    results = run_compare(recipe, log=log)
    runs = [m for m in dict.fromkeys(("distill", *recipe.compare.methods)) if (run_dir / m / "metrics.jsonl").is_file()]
    plot_runs([run_dir / m for m in runs], run_dir / "training.png",
              labels=["SD-Zero distill" if m == "distill" else m for m in runs])
    log("self-localisation pictures ...")
    localisation, score = self_localisation(recipe, run_dir, n=16 if quick else 64)
    seconds = time.perf_counter() - tic
    table = demo_table(task_name, results, run_dir, localisation, score, seconds, recipe.run.workers)
    (run_dir / "demo.md").write_text(table)
    return DemoResult(run_dir=run_dir, table=table, results=results, seconds=seconds)
