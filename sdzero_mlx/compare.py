"""`sdzero compare`: SD-Zero against its baselines on the same splits, the same evaluation and a matched budget.

RUN/ (= run.output_dir)
  collect/ srt/ distill/          the SD-Zero chain (pipeline.py), when srt or distill (SD-Zero) is compared
  rft/ grpo/ sft/ sdft/           one run directory per baseline, each trained from model.path
  eval/NAME.json                  each model evaluated with the recipe's eval protocol (cached)
  compare.md, compare.json        the table (accuracy + training budget per method)
  compare.png                     probe-set greedy accuracy against generations spent, per method

Budget (the paper's accounting: generations and sampled tokens). SD-Zero spends collect's
generations (shared with SRT) plus distill's. Each sampling baseline gets `compare.budget_generations`
(0 = what SD-Zero spent): its steps are that budget divided by its generations per step, so every
method sees about as many sampled answers. SFT samples nothing and runs its own epochs.
Each stage resumes from its checkpoint and is skipped once done, so rerunning continues.
With run.workers > 1 the independent stages (the baselines beside the chain, the evaluations) run
in worker processes at once (schedule.py); every number is the same as with one, except the matched
budget when distill skips prompts too long for the model (docs/configuration.md, "Stages side by side").

The methods are the base model and every training stage of the registry (stages/__init__.py): the
chain's srt and distill (labelled SD-Zero), and each baseline stage, which compare trains from
model.path in RUN/NAME. A new baseline is its stage module and its recipe section.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from .stages import baselines, labels
from .atomic import write_json, write_text
from .checkpoint import checkpoint_dir
from .rundir import RECORD, begin, made_by, reuse_or_clear, run_dir_lock
from .stages.collect import read_summary
from .config import Recipe
from .configio import write_yaml
from .evaluate import results_table, summary
from .metrics import format_record, last_budget, read_metrics
from .platform.distributed import world
from .schedule import RECIPE_FILE, plan, run_tasks
from .pipeline import (
    evaluate_cached, evaluate_model_of_run, finished, record_splits, run_pipeline, stage_budgets, stage_started,
    training_budgets,
)


CHAIN = ("srt", "distill")  # the methods whose models the SD-Zero chain trains (pipeline.py)


def baseline_specs() -> dict:
    """Baseline name -> its StageSpec: the stages compare trains from model.path on their own."""
    return {s.name: s for s in baselines()}


def _chain_done(run_dir: Path) -> bool:
    return (run_dir / "collect" / "summary.json").is_file() and (run_dir / "distill" / "done").is_file()


def _sdzero_spent(run_dir: Path) -> int:
    """SD-Zero's spend, also when this call compares only baselines of a run whose chain already finished; else 0."""
    return sdzero_generations(run_dir) if _chain_done(run_dir) else 0


def planned_sdzero_generations(recipe: Recipe, run_dir: Path) -> int:
    """collect's generations (spent) + distill's planned ones (steps x generations per step): SD-Zero's spend,
    known once collect is done (unless distill skips prompts too long for the model)."""
    from .stages import stage_spec

    distill = stage_spec("distill")
    return read_summary(run_dir / "collect").generations + recipe.distill.steps * distill.generations_per_step(recipe)


def sdzero_generations(run_dir: Path) -> int:
    """Generations SD-Zero spent: collect (shared with SRT) + distill."""
    distill = last_budget(run_dir / "distill") or {}
    return read_summary(run_dir / "collect").generations + distill.get("generations", 0)


def budget_steps(recipe: Recipe, method: str, budget: int) -> Recipe:
    """The recipe with the baseline's steps set so that it spends about `budget` generations."""
    stage = baseline_specs()[method]
    if stage.generations_per_step is None:
        return recipe
    steps = max(budget // stage.generations_per_step(recipe), 1)
    return replace(recipe, **{stage.name: replace(getattr(recipe, stage.name), steps=steps)})


def run_baseline(recipe: Recipe, method: str, run_dir: Path, log: Callable[[str], None]) -> None:
    """Train a baseline from model.path in RUN/METHOD; reused when done and made from this recipe (its section,
    steps included: the matched budget sets them), else refused or retrained (rundir.reuse_or_clear)."""
    out, spec = run_dir / method, baseline_specs()[method]
    stage_recipe = replace(recipe, run=replace(recipe.run, output_dir=str(out)))
    if reuse_or_clear(out, made_by(stage_recipe, spec.sections), finished(out), stage_started(out), recipe.run.retrain,
                      (f"{method}.steps",), log):
        log(f"{method}: done; reusing it")
        return
    spec.run(stage_recipe, out, resume=checkpoint_dir(out) is not None, on_step=lambda r: log(format_record(r)))
    write_text(out / "done", "")


def probe_curves(run_dir: Path, methods: list[str]) -> dict[str, list[tuple[int, float]]]:
    """(generations spent, probe accuracy) per method, from the runs' metrics; SD-Zero's start after collect."""
    curves, names = {}, labels()
    for m in methods:
        if m == "distill":
            d, offset = run_dir / "distill", read_summary(run_dir / "collect").generations
        elif m in baseline_specs():
            d, offset = run_dir / m, 0
        else:
            continue
        if (d / "metrics.jsonl").is_file():
            points = [(offset + r.generations, r.probe_accuracy) for r in read_metrics(d) if r.probe_accuracy is not None]
            if points:
                curves[names[m]] = points
    return curves


def plot_curves(curves: dict[str, list[tuple[int, float]]], finals: dict[str, tuple[int, float]], out_png: Path):
    """Probe accuracy against generations (lines) and each model's held-out avg@k at its budget (markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = sorted(set(curves) | set(finals))
    for n, name in enumerate(names):
        c = colours[n % len(colours)]
        if name in curves:
            xs, ys = zip(*curves[name])
            ax.plot(xs, [100 * y for y in ys], "-", color=c, label=f"{name} (probe, greedy)")
        if name in finals:
            x, y = finals[name]
            ax.plot([x], [100 * y], "o", color=c, label=f"{name} (held-out avg@k)")
    ax.set_xlabel("training generations spent")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return fig


def _training_budget(run_dir: Path, method: str) -> dict:
    """Generations, sampled and trained tokens behind a method's model (the SD-Zero chain: pipeline's
    own accounting, collect + srt [+ distill]; a baseline: its stage's last record)."""
    keys = ("generations", "sampled_tokens", "trained_tokens")
    if method in CHAIN:
        return training_budgets(stage_budgets(run_dir, {}))[labels()[method]]
    budget = (last_budget(run_dir / method) or {}) if method in baseline_specs() else {}
    return {k: budget.get(k, 0) for k in keys}


def evaluate_method(recipe: Recipe, method: str, run_dir: Path, log: Callable[[str], None], split: str = "test") -> list:
    """A trained method's model of this run, evaluated on the test or the validation split (cached)."""
    if method in baseline_specs():
        return evaluate_cached(recipe, method, recipe.model.path, str(run_dir / method / "adapters"), run_dir, log, split)
    return evaluate_model_of_run(recipe, method, run_dir, log, split)


def run_compare(
    recipe: Recipe, log: Callable[[str], None] = print, methods: Optional[list[str]] = None, evaluate: bool = True
) -> dict:
    """Train and evaluate every method; write compare.md/json/png; returns compare.json's data.
    With evaluate=False only train (a search evaluates on the validation split itself)."""
    methods = list(methods or recipe.compare.methods)
    recipe = replace(recipe, compare=replace(recipe.compare, methods=tuple(methods)))  # validates the names
    methods = list(recipe.compare.methods)  # old spellings (sd-zero) read as today's (distill)
    run_dir = Path(recipe.run.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):  # one compare (or run) at a time in RUN; run_pipeline takes it again for free
        begin(run_dir, "pipeline", (run_dir / RECORD).is_file())
        return _run_compare(recipe, run_dir, methods, log, evaluate)


def _run_compare(recipe: Recipe, run_dir: Path, methods: list[str], log: Callable[[str], None], evaluate: bool) -> dict:
    write_yaml(recipe, run_dir / RECIPE_FILE)
    baseline, names = baseline_specs(), labels()
    chain = any(m in CHAIN for m in methods)
    parallel = recipe.run.workers > 1
    if parallel and world() > 1:
        raise ValueError(f"run.workers is {recipe.run.workers} in a distributed launch of {world()} processes: "
                         "the ranks already share every stage; set run.workers=1.")
    if chain and parallel and not (run_dir / "recipe.yaml").is_file():
        write_yaml(recipe, run_dir / "recipe.yaml")  # what run_pipeline writes, for `sdzero run RUN/recipe.yaml`
    if parallel or not chain:  # else the pipeline records them
        record_splits(recipe, run_dir, log)
    sampling_baselines = [m for m in methods if m in baseline and baseline[m].generations_per_step]
    if not recipe.compare.budget_generations and sampling_baselines and not chain and not _chain_done(run_dir):
        raise ValueError("compare.budget_generations is 0 and this run has no SD-Zero chain to match: "
                         "compare srt or distill too, or set compare.budget_generations.")

    if parallel:  # independent stages side by side in worker processes (schedule.py)
        decided = []

        def baseline_budget() -> int:  # asked when the first sampling baseline starts: after collect, maybe before distill ends
            if not decided:
                spent = _sdzero_spent(run_dir)  # the chain already finished (a rerun): what it spent, as with one worker
                decided.append(recipe.compare.budget_generations or spent or planned_sdzero_generations(recipe, run_dir))
            return decided[0]

        tasks = plan(methods, chain, baseline, evaluate, budget_given=bool(recipe.compare.budget_generations))
        run_tasks(tasks, run_dir, recipe.run.workers, baseline_budget, log)
        budget = decided[0] if decided else recipe.compare.budget_generations or _sdzero_spent(run_dir)
        spent = sdzero_generations(run_dir) if decided and not recipe.compare.budget_generations else budget
        if spent != budget:
            log(f"note: the baselines were matched to SD-Zero's planned {budget} generations; distill skipped prompts "
                f"too long for the model, so SD-Zero spent {spent} (with run.workers=1 the baselines would have been "
                "matched to that).")
    else:
        if chain:  # the SD-Zero chain: collect -> SRT -> distill (evaluated below)
            run_pipeline(recipe, log=log, stop_after="distill")
        budget = recipe.compare.budget_generations or _sdzero_spent(run_dir)
        for m in methods:
            if m in baseline:
                log(f"{m}: {'its own steps' if baseline[m].generations_per_step is None else f'budget {budget} generations'}")
                run_baseline(budget_steps(recipe, m, budget), m, run_dir, log)

    if not evaluate:
        return {"budget_generations": budget, "methods": methods}

    evals = {m: evaluate_method(recipe, m, run_dir, log) for m in methods}
    named = {names[m]: evals[m] for m in methods}
    budgets = {names[m]: _training_budget(run_dir, m) for m in methods}
    table = results_table(named, budgets)
    text = "\n".join([
        f"# sdzero compare: {run_dir}", "",
        f"Matched budget: {budget} generations per sampling method (SD-Zero: collect + distill).", "",
        table,
    ])
    write_text(run_dir / "compare.md", text)
    data = {"budget_generations": budget, "methods": methods,
            "models": {names[m]: [summary(r) for r in evals[m]] for m in methods}, "budgets": budgets}
    write_json(run_dir / "compare.json", data)
    finals = {}
    for m in methods:
        sample = next((summary(r) for r in evals[m] if "avg_at_k" in summary(r)), None)
        if sample is not None:
            finals[names[m]] = (budgets[names[m]]["generations"], sample["avg_at_k"])
    plot_curves(probe_curves(run_dir, methods), finals, run_dir / "compare.png")
    log(text)
    return data
