"""`sdzero demo`: the whole method on the built-in task and tiny base model, with table and pictures.

Steps: take the base model shipped in the package (made by the seeded `pretrain.py`); write the held-out task problems of that model's build as JSONL into the run directory; run the
pipeline (collect -> SRT -> distill -> evaluate base / SRT / SD-Zero) with the packaged recipe;
then draw the training curves and the self-localisation picture, and write `demo.md`.

The self-localisation picture uses the SRT model in both roles, which is exactly phase 2's first
step: the Generator's log-probabilities of its own wrong answer against the Reviser's, who has read
that answer and the "not correct" cue. Where the two disagree is where the dense signal lands.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..config import ModelConfig, Recipe, load_recipe
from ..configio import write_yaml
from ..outputs import check_output_dir
from . import BASE_MODEL, task

PACKAGE_DIR = Path(__file__).resolve().parent
RECIPE = PACKAGE_DIR / "recipe.yaml"
# --quick: the same pipeline on a sliver of the data, to check that everything runs (CI uses it).
QUICK = (
    "data.phase1_size=64",
    "data.phase2_size=48",
    "data.eval_size=32",
    "collect.questions_per_batch=64",
    "srt.epochs=1",
    "distill.steps=4",
    "eval.k=2",
)


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    table: str  # demo.md
    results: dict  # the pipeline's results.json data
    seconds: float


def base_model_dir() -> Path:
    """The shipped base model (made by `python -m sdzero_mlx.demo.pretrain OUT`, seeded)."""
    if not (BASE_MODEL / "config.json").is_file():
        raise FileNotFoundError(
            f"The demo's base model is missing from {BASE_MODEL}. Rebuild it (about 5 minutes on 2 cores) with "
            f"`python -m sdzero_mlx.demo.pretrain {BASE_MODEL}`."
        )
    return BASE_MODEL


def write_task_files(model_dir: Path, data_dir: Path) -> tuple[Path, Path]:
    """The problems the base model never saw: phase-1 + phase-2 pool, and the test split."""
    build = json.loads((model_dir / "build_info.json").read_text())["config"]
    splits = task.make_splits(build["task_seed"], dict(build["held_out"]), task.Difficulty(**build["difficulty"]))
    data_dir.mkdir(parents=True, exist_ok=True)
    train, test = data_dir / "train.jsonl", data_dir / "test.jsonl"
    task.write_jsonl(splits["phase1"] + splits["phase2"], train, with_solution=False)
    task.write_jsonl(splits["test"], test, with_solution=False)
    return train, test


def demo_recipe(run_dir: Path, model_dir: Path, train: Path, test: Path, quick: bool, overrides: Sequence[str]) -> Recipe:
    filled = [
        f"model.path={model_dir}",
        f"data.source={train}",
        f"data.eval_source={test}",
        f"run.output_dir={run_dir}",
    ]
    return load_recipe(RECIPE, filled + list(QUICK if quick else ()) + list(overrides))


def self_localisation(recipe: Recipe, run_dir: Path, n: int = 48) -> str:
    """Token reports of the SRT model's own answers, Generator vs Reviser; pictures into RUN/explain."""
    from ..data import make_splits
    from ..explain import explain_examples, explain_set_to_dir, write_report
    from ..modeling import load_model
    from ..prompts import separators

    model, tokenizer = load_model(ModelConfig(path=str(run_dir / "srt" / "model")))
    examples = make_splits(recipe.data).eval[:n]
    reports = explain_examples(
        model, tokenizer, model, examples, recipe.prompts, recipe.sampling, recipe.verifier,
        separators(tokenizer, recipe.prompts), recipe.run.seed, top_k=recipe.distill.top_k, kind=recipe.distill.kl,
    )
    out = run_dir / "explain"
    table = explain_set_to_dir(reports, out)
    wrong = [r for r in reports if r.reward < 0.5]
    if wrong:  # the picture for the README: the wrong answer whose KL is most concentrated
        from ..explain import kl_concentration

        write_report(max(wrong, key=lambda r: kl_concentration(r.kl)), out, "wrong-answer")
    return table


def demo_table(results: dict, localisation: str, seconds: float) -> str:
    """demo.md: accuracy, length, correction rate before/after SRT, time per stage."""
    models = results["models"]

    def pick(name: str, key: str):
        for record in models[name]:
            if key in record and record[key] is not None:
                return record[key]
        return None

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [
        "# sdzero demo",
        "",
        "| model | avg@k (%) | pass@k (%) | greedy (%) | mean response tokens | correction rate (%) | revised acc (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("base", "SRT", "SD-Zero"):
        lines.append(
            f"| {name} | {pct(pick(name, 'avg_at_k'))} | {pct(pick(name, 'pass_at_k'))} | {pct(pick(name, 'greedy_accuracy'))} "
            f"| {pick(name, 'mean_tokens') or 0:.1f} | {pct(pick(name, 'correction_rate'))} | {pct(pick(name, 'revised_accuracy'))} |"
        )
    lines += ["", "| stage | seconds | generations | sampled tokens | trained tokens |", "|---|---|---|---|---|"]
    for stage, b in results["stages"].items():
        lines.append(f"| {stage} | {b['seconds']:.1f} | {b['generations']} | {b['sampled_tokens']} | {b['trained_tokens']} |")
    lines += [
        "",
        f"Wall time of the whole demo: {seconds:.0f} s.",
        "",
        "Self-localisation (SRT model as Generator vs as Reviser, its own answers on test problems):",
        "",
        localisation,
        "Pictures: training.png (reward, KL, length, tokens/s over distill steps), "
        "explain/wrong-answer.png and .html (per-token KL on a wrong answer), explain/buckets.png.",
        "",
    ]
    return "\n".join(lines)


def run_demo(run_dir: Path, quick: bool = False, overrides: Sequence[str] = (), log: Callable[[str], None] = print) -> DemoResult:
    """Run (or continue) the demo in run_dir; finished stages are skipped on a rerun."""
    from ..pipeline import run_pipeline
    from ..plots import plot_runs

    tic = time.perf_counter()
    run_dir = check_output_dir(run_dir, "--out")  # before any work: a bad location costs nothing
    model_dir = base_model_dir()
    train, test = write_task_files(model_dir, run_dir / "data")
    recipe = demo_recipe(run_dir, model_dir, train, test, quick, overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(recipe, run_dir / "recipe.yaml")
    log(f"base model: {model_dir}")
    results = run_pipeline(recipe, log=log)
    plot_runs([run_dir / "distill"], run_dir / "training.png", labels=["SD-Zero distill"])
    log("self-localisation pictures ...")
    localisation = self_localisation(recipe, run_dir, n=16 if quick else 64)
    seconds = time.perf_counter() - tic
    table = demo_table(results, localisation, seconds)
    (run_dir / "demo.md").write_text(table)
    return DemoResult(run_dir=run_dir, table=table, results=results, seconds=seconds)
