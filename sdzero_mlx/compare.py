"""`sdzero compare`: SD-Zero against its baselines on the same splits, the same evaluation and a matched budget.

RUN/ (= run.output_dir)
  collect/ srt/ distill/          the SD-Zero chain, when srt, distill (SD-Zero) or a variant of distill is compared
  rft/ grpo/ sft/ sdft/           one run directory per baseline, each trained from model.path
  sd-zero-paper-loss/ ...         one per variant (compare.variants: a stage with overrides, its own row),
                                  named by its id, the slug of its name
  eval/NAME.json                  each model evaluated with the recipe's eval protocol (cached)
  compare.md, compare.json        the table (accuracy + training budget per method)
  compare.png                     probe-set greedy accuracy against generations spent, per method

Budget (the paper's accounting: generations and sampled tokens). SD-Zero spends collect's
generations (shared with SRT) plus distill's. Each sampling baseline gets `compare.budget_generations`
(0 = what SD-Zero spent): its steps are that budget divided by its generations per step, so every
method sees about as many sampled answers (tasks.matched_budget). SFT samples nothing and runs its own
epochs. Each stage resumes from its checkpoint and is skipped once done, so rerunning continues.
One path: the compare is a task graph (tasks.plan) that schedule.py runs, in this process with
run.workers = 1, and with more the independent stages (the baselines beside the chain, the
evaluations) in worker processes at once; every number is the same for any number of workers, except
the matched budget when distill skips prompts too long for the model (docs/configuration.md, "Stages
side by side").

The methods are the base model and every training stage of the registry (stages/__init__.py): the
chain's srt and distill (labelled SD-Zero), and each baseline stage, which compare trains from
model.path in RUN/NAME. A new baseline is its stage module and its recipe section.
A variant (config.VariantConfig) is a stage with overrides under its own name: a variant of distill
starts from the chain's SRT model as distill does (sharing collect and SRT), a baseline's variant from
model.path at the matched budget; each is reused only under the record of its own effective recipe
(rundir.MadeBy), and evaluated with the recipe's own eval, prompts and verifier like every row.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Optional

from .atomic import write_json, write_text
from .config import Recipe
from .configio import write_yaml
from .evaluate import results_table, summary
from .metrics import read_metrics
from .platform.device import use_device
from .platform.distributed import world
from .recipe import chosen_methods, method_labels
from .rundir import RECORD, RunDir
from .schedule import RECIPE_FILE, run_tasks
from .stages import continue_command
from .stages.collect import read_summary
from .tasks import (
    chain_stages, evaluate_method, matched_budget, method_budget, plan, record_splits, sdzero_generations,
    sdzero_planned, sdzero_spent, trained_specs,
)


def probe_curves(recipe: Recipe, run_dir: Path, methods: list[str]) -> dict[str, list[tuple[int, float]]]:
    """(generations spent, probe accuracy) per method, from the runs' metrics; SD-Zero's (and its variants') start
    after collect."""
    curves, names, trained = {}, method_labels(recipe), trained_specs(recipe)
    for m in methods:
        if m != "distill" and m not in trained:
            continue
        after_collect = m == "distill" or not trained[m].baseline
        d, offset = run_dir / m, read_summary(run_dir / "collect").generations if after_collect else 0
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


def run_compare(
    recipe: Recipe, log: Callable[[str], None] = print, methods: Optional[list[str]] = None, evaluate: bool = True
) -> dict:
    """Train and evaluate every method; write compare.md/json/png; returns compare.json's data.
    With evaluate=False only train (a search evaluates on the validation split itself)."""
    methods = list(chosen_methods(recipe, methods) if methods else recipe.compare.methods)  # names checked, ids
    recipe = replace(recipe, compare=replace(recipe.compare, methods=tuple(methods)))
    use_device(recipe.run.device)  # for the tasks run in this process, as for `sdzero run`
    run_dir = Path(recipe.run.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    top = RunDir(run_dir)
    with top.writing():  # one compare (or run) at a time in RUN
        top.begin("pipeline", (run_dir / RECORD).is_file(), continue_command)
        return _run_compare(recipe, run_dir, methods, log, evaluate)


def _run_compare(recipe: Recipe, run_dir: Path, methods: list[str], log: Callable[[str], None], evaluate: bool) -> dict:
    write_yaml(recipe, run_dir / RECIPE_FILE)
    trained = trained_specs(recipe)
    chain = chain_stages(recipe, methods, trained)
    if recipe.run.workers > 1 and world() > 1:
        raise ValueError(f"run.workers is {recipe.run.workers} in a distributed launch of {world()} processes: "
                         "the ranks already share every stage; set run.workers=1.")
    for v in recipe.compare.variants:
        if v.id not in methods:
            log(f"note: compare.variants {v.name!r} is not among the methods compared ({', '.join(methods)}); name it "
                "in compare.methods or --methods to compare it.")
    if chain and not (run_dir / "recipe.yaml").is_file():
        write_yaml(recipe, run_dir / "recipe.yaml")  # for `sdzero run RUN/recipe.yaml`
    record_splits(recipe, run_dir, log)
    sampling = [m for m in methods if m in trained and trained[m].matched]
    if not recipe.compare.budget_generations and sampling and "distill" not in chain and not sdzero_spent(run_dir):
        raise ValueError("compare.budget_generations is 0 and this run has no SD-Zero chain to match: "
                         "compare srt or distill too, or set compare.budget_generations.")

    # the chain, the baselines and variants, the evaluations: one worker takes them in plan order in this process,
    # several side by side in worker processes (schedule.py)
    decided = []

    def baseline_budget() -> int:  # asked when the first sampling baseline starts: after collect, maybe before distill
        if not decided:  # the chain finished (one worker, or a rerun): what it spent; else what distill will spend
            decided.append(matched_budget(recipe, lambda: sdzero_spent(run_dir) or sdzero_planned(recipe, run_dir)))
        return decided[0]

    tasks = plan(methods, chain, trained, evaluate, budget_given=bool(recipe.compare.budget_generations))
    run_tasks(tasks, run_dir, recipe.run.workers, baseline_budget, log, recipe)
    budget = decided[0] if decided else matched_budget(recipe, lambda: sdzero_spent(run_dir))
    spent = sdzero_generations(run_dir) if decided and not recipe.compare.budget_generations else budget
    if spent != budget:
        log(f"note: the baselines were matched to SD-Zero's planned {budget} generations; distill skipped prompts "
            f"too long for the model, so SD-Zero spent {spent} (with run.workers=1 the baselines would have been "
            "matched to that).")

    if not evaluate:
        return {"budget_generations": budget, "methods": methods}

    names = method_labels(recipe)
    evals = {m: evaluate_method(recipe, m, run_dir, log) for m in methods}
    named = {names[m]: evals[m] for m in methods}
    budgets = {names[m]: method_budget(recipe, m, run_dir) for m in methods}
    table = results_table(named, budgets)
    text = "\n".join([
        f"# sdzero compare: {run_dir}", "",
        f"Matched budget: {budget} generations per sampling method (SD-Zero: collect + distill).", "",
        table,
    ])
    write_text(run_dir / "compare.md", text)
    data = {"budget_generations": budget, "methods": methods,
            "models": {names[m]: [summary(r) for r in evals[m]] for m in methods},
            "budgets": {name: asdict(b) for name, b in budgets.items()}}
    write_json(run_dir / "compare.json", data)
    finals = {}
    for m in methods:
        sample = next((summary(r) for r in evals[m] if "avg_at_k" in summary(r)), None)
        if sample is not None:
            finals[names[m]] = (budgets[names[m]].generations, sample["avg_at_k"])
    plot_curves(probe_curves(recipe, run_dir, methods), finals, run_dir / "compare.png")
    log(text)
    return data
