"""`sdzero compare`: SD-Zero against its baselines on the same splits, the same evaluation and a matched budget.

RUN/ (= run.output_dir)
  collect/ srt/ distill/          the SD-Zero chain (pipeline.py), when srt, distill (SD-Zero) or a variant of
                                  distill is compared
  rft/ grpo/ sft/ sdft/           one run directory per baseline, each trained from model.path
  sd-zero-paper-loss/ ...         one per variant (compare.variants: a stage with overrides, its own row),
                                  named by its id, the slug of its name
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
A variant (config.VariantConfig) is a stage with overrides under its own name: a variant of distill
starts from the chain's SRT model as distill does (sharing collect and SRT), a baseline's variant from
model.path at the matched budget; each is reused only under the record of its own effective recipe
(rundir.made_by), and evaluated with the recipe's own eval, prompts and verifier like every row.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from .stages import StageSpec, baselines, stage_spec
from .atomic import write_json, write_text
from .checkpoint import checkpoint_dir
from .rundir import RECORD, begin, made_by, reuse_or_clear, run_dir_lock
from .stages.collect import read_summary
from .config import Recipe, variant_recipe
from .configio import write_yaml
from .evaluate import results_table, summary
from .metrics import format_record, last_budget, read_metrics
from .platform.distributed import world
from .schedule import RECIPE_FILE, plan, run_tasks
from .pipeline import (
    CHAIN_STAGES, evaluate_cached, finished, model_of_run, record_splits, run_pipeline, stage_budgets, stage_started, training_budgets,
)


CHAIN = ("srt", "distill")  # the methods whose models the SD-Zero chain trains (pipeline.py)


def baseline_specs() -> dict:
    """Baseline name -> its StageSpec: the stages compare trains from model.path on their own."""
    return {s.name: s for s in baselines()}


def trained_specs(recipe: Recipe) -> dict[str, StageSpec]:
    """Method -> the stage that trains it in RUN/METHOD, outside the chain: each baseline and each variant."""
    return baseline_specs() | {v.id: stage_spec(v.stage) for v in recipe.compare.variants}


def chain_stages(recipe: Recipe, methods, trained: dict[str, StageSpec]) -> tuple[str, ...]:
    """The chain's stages a compare of `methods` runs: all three for srt or SD-Zero, and when a sampling baseline is
    matched to SD-Zero's spend; collect and srt for variants of distill alone (they start from the SRT model)."""
    if any(m in CHAIN for m in methods):
        return CHAIN_STAGES
    distill_variants = any(m in trained and not trained[m].baseline for m in methods)
    if distill_variants and not recipe.compare.budget_generations and any(m in trained and trained[m].matched
                                                                         for m in methods):
        return CHAIN_STAGES
    return CHAIN_STAGES[:2] if distill_variants else ()


def _chain_done(run_dir: Path) -> bool:
    return (run_dir / "collect" / "summary.json").is_file() and (run_dir / "distill" / "done").is_file()


def _sdzero_spent(run_dir: Path) -> int:
    """SD-Zero's spend, also when this call compares only baselines of a run whose chain already finished; else 0."""
    return sdzero_generations(run_dir) if _chain_done(run_dir) else 0


def planned_sdzero_generations(recipe: Recipe, run_dir: Path) -> int:
    """collect's generations (spent) + distill's planned ones (steps x generations per step): SD-Zero's spend,
    known once collect is done (unless distill skips prompts too long for the model)."""
    distill = stage_spec("distill")
    return read_summary(run_dir / "collect").generations + recipe.distill.steps * distill.generations_per_step(recipe)


def sdzero_generations(run_dir: Path) -> int:
    """Generations SD-Zero spent: collect (shared with SRT) + distill."""
    distill = last_budget(run_dir / "distill") or {}
    return read_summary(run_dir / "collect").generations + distill.get("generations", 0)


def budget_steps(recipe: Recipe, spec: StageSpec, budget: int) -> Recipe:
    """The recipe with a sampling stage's steps set so that it spends about `budget` generations."""
    if spec.generations_per_step is None:
        return recipe
    steps = max(budget // spec.generations_per_step(recipe), 1)
    return replace(recipe, **{spec.name: replace(getattr(recipe, spec.name), steps=steps)})


def method_recipe(recipe: Recipe, method: str, run_dir: Path, budget: int) -> tuple[Recipe, StageSpec]:
    """What a method trained outside the chain is trained with, in RUN/METHOD: a variant's overrides applied, a
    sampling baseline's steps set by the matched budget, a variant of distill starting from RUN/srt/model."""
    spec = trained_specs(recipe)[method]
    variant = recipe.compare.variant(method)
    own = variant_recipe(recipe, variant) if variant else recipe
    if spec.matched:
        own = budget_steps(own, spec, budget)
    model = own.model if spec.baseline else replace(own.model, path=str(run_dir / "srt" / "model"))
    return replace(own, model=model, run=replace(own.run, output_dir=str(run_dir / method))), spec


def run_trained(recipe: Recipe, method: str, run_dir: Path, budget: int, log: Callable[[str], None]) -> None:
    """Train a baseline or a variant in RUN/METHOD (method_recipe); reused when done and made from this recipe (its
    stage's sections, the variant's overrides and the matched steps included), else refused or retrained
    (rundir.reuse_or_clear)."""
    stage_recipe, spec = method_recipe(recipe, method, run_dir, budget)
    out = run_dir / method
    if reuse_or_clear(out, made_by(stage_recipe, spec.sections), finished(out), stage_started(out), recipe.run.retrain,
                      (f"{spec.name}.steps",), log):
        log(f"{method}: done; reusing it")
        return
    spec.run(stage_recipe, out, resume=checkpoint_dir(out) is not None, on_step=lambda r: log(format_record(r)))
    write_text(out / "done", "")


def budget_note(spec: StageSpec, budget: int) -> str:
    """What sets a trained method's steps, for the log."""
    return f"budget {budget} generations" if spec.matched else "its own steps"


def probe_curves(recipe: Recipe, run_dir: Path, methods: list[str]) -> dict[str, list[tuple[int, float]]]:
    """(generations spent, probe accuracy) per method, from the runs' metrics; SD-Zero's (and its variants') start
    after collect."""
    curves, names, trained = {}, recipe.compare.labels(), trained_specs(recipe)
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


def _training_budget(recipe: Recipe, run_dir: Path, method: str) -> dict:
    """Generations, sampled and trained tokens behind a method's model (the SD-Zero chain: pipeline's own
    accounting, collect + srt [+ distill]; a variant of distill: collect + srt + its own; a baseline or its
    variant: its stage's last record)."""
    keys = ("generations", "sampled_tokens", "trained_tokens")
    chain = lambda name: training_budgets(stage_budgets(run_dir, {}))[recipe.compare.labels()[name]]  # noqa: E731
    if method in CHAIN:
        return chain(method)
    trained = trained_specs(recipe)
    own = (last_budget(run_dir / method) or {}) if method in trained else {}
    before = chain("srt") if method in trained and not trained[method].baseline else {}
    return {k: before.get(k, 0) + own.get(k, 0) for k in keys}


def method_model(recipe: Recipe, method: str, run_dir: Path) -> tuple[str, Optional[str]]:
    """(model folder, adapters folder or None) of a method of this run."""
    trained = trained_specs(recipe)
    if method not in trained:
        return model_of_run(recipe, method, run_dir)
    start = recipe.model.path if trained[method].baseline else str(run_dir / "srt" / "model")
    return start, str(run_dir / method / "adapters")


def evaluate_method(recipe: Recipe, method: str, run_dir: Path, log: Callable[[str], None], split: str = "test",
                    stem: Optional[str] = None) -> list:
    """A method's model of this run, evaluated on the test or the validation split (cached) with the recipe's
    eval, prompts and verifier: the same for every row, variants included. `stem`: the eval files' name
    (default: the method; a pass@k curve keeps its own)."""
    return evaluate_cached(recipe, stem or method, *method_model(recipe, method, run_dir), run_dir, log, split)


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
    trained = trained_specs(recipe)
    chain = chain_stages(recipe, methods, trained)
    parallel = recipe.run.workers > 1
    if parallel and world() > 1:
        raise ValueError(f"run.workers is {recipe.run.workers} in a distributed launch of {world()} processes: "
                         "the ranks already share every stage; set run.workers=1.")
    for v in recipe.compare.variants:
        if v.id not in methods:
            log(f"note: compare.variants {v.name!r} is not among the methods compared ({', '.join(methods)}); name it "
                "in compare.methods or --methods to compare it.")
    if chain and parallel and not (run_dir / "recipe.yaml").is_file():
        write_yaml(recipe, run_dir / "recipe.yaml")  # what run_pipeline writes, for `sdzero run RUN/recipe.yaml`
    if parallel or not chain:  # else the pipeline records them
        record_splits(recipe, run_dir, log)
    sampling = [m for m in methods if m in trained and trained[m].matched]
    if not recipe.compare.budget_generations and sampling and "distill" not in chain and not _chain_done(run_dir):
        raise ValueError("compare.budget_generations is 0 and this run has no SD-Zero chain to match: "
                         "compare srt or distill too, or set compare.budget_generations.")

    if parallel:  # independent stages side by side in worker processes (schedule.py)
        decided = []

        def baseline_budget() -> int:  # asked when the first sampling baseline starts: after collect, maybe before distill ends
            if not decided:
                spent = _sdzero_spent(run_dir)  # the chain already finished (a rerun): what it spent, as with one worker
                decided.append(recipe.compare.budget_generations or spent or planned_sdzero_generations(recipe, run_dir))
            return decided[0]

        tasks = plan(methods, chain, trained, evaluate, budget_given=bool(recipe.compare.budget_generations))
        run_tasks(tasks, run_dir, recipe.run.workers, baseline_budget, log)
        budget = decided[0] if decided else recipe.compare.budget_generations or _sdzero_spent(run_dir)
        spent = sdzero_generations(run_dir) if decided and not recipe.compare.budget_generations else budget
        if spent != budget:
            log(f"note: the baselines were matched to SD-Zero's planned {budget} generations; distill skipped prompts "
                f"too long for the model, so SD-Zero spent {spent} (with run.workers=1 the baselines would have been "
                "matched to that).")
    else:
        if chain:  # the SD-Zero chain: collect -> SRT [-> distill] (evaluated below)
            run_pipeline(recipe, log=log, stop_after=chain[-1])
        budget = recipe.compare.budget_generations or _sdzero_spent(run_dir)
        for m in methods:
            if m in trained:
                log(f"{m}: {budget_note(trained[m], budget)}")
                run_trained(recipe, m, run_dir, budget, log)

    if not evaluate:
        return {"budget_generations": budget, "methods": methods}

    names = recipe.compare.labels()
    evals = {m: evaluate_method(recipe, m, run_dir, log) for m in methods}
    named = {names[m]: evals[m] for m in methods}
    budgets = {names[m]: _training_budget(recipe, run_dir, m) for m in methods}
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
    plot_curves(probe_curves(recipe, run_dir, methods), finals, run_dir / "compare.png")
    log(text)
    return data
