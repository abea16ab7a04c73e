"""The tasks of a run, and how each one is done: the SD-Zero chain's stages, each trained method, each evaluation.

RUN/ (= run.output_dir)
  collect/ srt/ distill/    the SD-Zero chain, each stage starting from the one before (stages.chain())
  rft/ grpo/ sft/ sdft/     a baseline each, trained from model.path
  sd-zero-paper-loss/ ...   a variant each (compare.variants), named by its id
  eval/NAME.json            each model evaluated with the recipe's protocol, cached under the model's bytes
  splits.json               the split sizes and what was dropped

A task is a name: a chain stage ("collect", "srt", "distill"), "train METHOD" (a baseline or a variant)
or "eval METHOD". `plan` orders those of a compare into a graph (what each needs first); `run_task`
does one of them in this process, with the recipe: schedule.py runs a plan in this process or in
worker processes, and the doctor counts the same plan. Every stage is reused when finished and made
from this recipe, resumed when started, refused or retrained otherwise (rundir.RunDir.reuse_or_clear).

The matched budget (the paper's accounting): a sampling baseline, or its variant, spends
compare.budget_generations, or (0) what SD-Zero spent, collect's generations plus distill's; its steps
are that budget divided by its generations per step (`matched_budget`, `matched_steps`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from .atomic import write_json
from .config import Recipe
from .configio import to_dict
from .data import make_splits
from .evaluate import (
    EVAL_PROTOCOL, EvalResult, EvalSettings, ReviseResult, evaluate_model, generations_per_model, summary,
    write_rows_jsonl,
)
from .fingerprint import adapters_fingerprint, model_fingerprint
from .metrics import format_record, last_budget
from .modeling import load_model
from .recipe import method_labels, variant_recipe
from .rundir import MODEL, MadeBy, differences, flatten
from .stages import StageSpec, baselines, chain, stage_spec
from .stages.collect import read_summary, run_collect
from .types import Budget, TrainingState

Log = Callable[[str], None]


def chain_names() -> tuple[str, ...]:
    """The chain's stages in order: collect -> srt -> distill."""
    return tuple(s.name for s in chain())


# -- the methods and what trains each --------------------------------------------------------------------


def trained_specs(recipe: Recipe) -> dict[str, StageSpec]:
    """Method -> the stage that trains it in RUN/METHOD, outside the chain: each baseline and each variant."""
    return {s.name: s for s in baselines()} | {v.id: stage_spec(v.stage) for v in recipe.compare.variants}


def method_spec(recipe: Recipe, method: str) -> Optional[StageSpec]:
    """The stage that trains a method's model (a chain stage, a baseline or a variant's stage); None for base."""
    return trained_specs(recipe).get(method) or next((s for s in chain() if s.name == method), None)


def start_model(recipe: Recipe, spec: StageSpec, run_dir: Path) -> str:
    """The model a stage trains from: the fused model of the stage it starts from (distill: RUN/srt/model), else
    model.path."""
    return str(run_dir / spec.starts_from / MODEL) if spec.starts_from else recipe.model.path


def method_model(recipe: Recipe, method: str, run_dir: Path) -> tuple[str, Optional[str]]:
    """(model folder, adapters folder or None) of a method of this run: the base model; a stage that fuses its
    adapters (SRT), its RUN/NAME/model; any other, the model it starts from with RUN/METHOD/adapters."""
    spec = method_spec(recipe, method)
    if spec is None:
        return recipe.model.path, None
    if spec.fuses:
        return str(run_dir / method / MODEL), None
    return start_model(recipe, spec, run_dir), str(spec.run_dir(run_dir / method).adapters)


def chain_stages(recipe: Recipe, methods: Sequence[str], trained: dict[str, StageSpec]) -> tuple[str, ...]:
    """The chain's stages a compare of `methods` runs: all three for srt or SD-Zero, and when a sampling baseline is
    matched to SD-Zero's spend; collect and srt for variants of distill alone (they start from the SRT model)."""
    stages = chain_names()
    if any(m in stages[1:] for m in methods):
        return stages
    distill_variants = any(m in trained and not trained[m].baseline for m in methods)
    if distill_variants and not recipe.compare.budget_generations and any(m in trained and trained[m].matched
                                                                         for m in methods):
        return stages
    return stages[:2] if distill_variants else ()


# -- the matched budget ----------------------------------------------------------------------------------


def matched_budget(recipe: Recipe, sdzero_generations: Callable[[], int]) -> int:
    """The generations each sampling baseline spends: compare.budget_generations, else SD-Zero's (collect's and
    distill's; asked only then)."""
    return recipe.compare.budget_generations or sdzero_generations()


def matched_steps(recipe: Recipe, spec: StageSpec, budget: int) -> int:
    """A sampling stage's steps at `budget` generations (at least one)."""
    return max(budget // spec.generations_per_step(recipe), 1)


def planned_distill_generations(recipe: Recipe) -> int:
    """distill.steps x its generations per step: what distill will spend (unless it skips prompts too long)."""
    return recipe.distill.steps * stage_spec("distill").generations_per_step(recipe)


def sdzero_planned(recipe: Recipe, run_dir: Path) -> int:
    """collect's generations (spent) + distill's planned ones: SD-Zero's spend, known once collect is done."""
    return read_summary(run_dir / "collect").generations + planned_distill_generations(recipe)


def chain_done(run_dir: Path) -> bool:
    return all(s.run_dir(run_dir / s.name).finished() for s in chain())


def sdzero_generations(run_dir: Path) -> int:
    """Generations SD-Zero spent: collect (shared with SRT) + distill."""
    distill = last_budget(run_dir / "distill") or TrainingState()
    return read_summary(run_dir / "collect").generations + distill.generations


def sdzero_spent(run_dir: Path) -> int:
    """SD-Zero's spend, also when a compare runs only baselines of a run whose chain already finished; else 0."""
    return sdzero_generations(run_dir) if chain_done(run_dir) else 0


def budget_note(spec: StageSpec, budget: int) -> str:
    """What sets a trained method's steps, for the log."""
    return f"budget {budget} generations" if spec.matched else "its own steps"


# -- what each model cost ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spent:
    """What one stage (or one evaluation) of a run spent: its budget, its seconds, and a training stage's steps."""

    budget: Budget
    seconds: float
    steps: Optional[int] = None

    def to_json(self) -> dict:
        steps = {} if self.steps is None else {"steps": self.steps}
        return {**asdict(self.budget), **steps, "seconds": self.seconds}


def stage_spending(run_dir: Path, evals: dict[str, list]) -> dict[str, Spent]:
    """What each stage of the chain spent, and each evaluation in `evals` (the paper's budget accounting)."""
    collect = read_summary(run_dir / "collect")
    srt = TrainingState(**json.loads((run_dir / "srt" / "state.json").read_text()))
    distill = last_budget(run_dir / "distill") or TrainingState()
    spent = {
        "collect": Spent(Budget(collect.generations, collect.sampled_tokens, 0), collect.elapsed_s),
        "srt": Spent(Budget(0, 0, srt.trained_tokens), srt.elapsed_s, srt.step),
        "distill": Spent(distill.budget, distill.elapsed_s, distill.step),
    }
    for name, results in evals.items():
        saved = json.loads((run_dir / "eval" / f"{name}.json").read_text())
        spent[f"eval {name}"] = Spent(Budget(sum(r.generations for r in results), sum(r.sampled_tokens for r in results),
                                             0), saved.get("seconds", 0.0))
    return spent


def chain_budgets(spent: dict[str, Spent]) -> dict[str, Budget]:
    """The training budget behind each chain model, cumulative: SRT = collect + srt; SD-Zero adds distill."""
    return {"srt": spent["collect"].budget + spent["srt"].budget,
            "distill": spent["collect"].budget + spent["srt"].budget + spent["distill"].budget}


def method_budget(recipe: Recipe, method: str, run_dir: Path) -> Budget:
    """The training budget behind a method's model: the chain's accounting for its models, a baseline's (or its
    variant's) last record, a variant of distill's own after the chain's collect and SRT."""
    if method in chain_names():
        return chain_budgets(stage_spending(run_dir, {}))[method]
    spec = trained_specs(recipe).get(method)
    if spec is None:
        return Budget()
    own = (last_budget(run_dir / method) or TrainingState()).budget
    return (chain_budgets(stage_spending(run_dir, {}))[spec.starts_from] if spec.starts_from else Budget()) + own


# -- splits -------------------------------------------------------------------------------------------------


def record_splits(recipe: Recipe, run_dir: Path, log: Log) -> dict:
    """Split sizes and what make_splits dropped (repeats, overlaps between splits): logged and written to
    RUN/splits.json. The test split is only counted here."""
    report = make_splits(recipe.data, with_test=True).report()
    write_json(run_dir / "splits.json", report)
    dropped = {k: v for k, v in report["dropped"].items() if v}
    log(f"data: {', '.join(f'{k} {v}' for k, v in report['sizes'].items())}; dropped: "
        + (", ".join(f"{k} {v}" for k, v in dropped.items()) if dropped else "none (no repeats, no overlap)"))
    return report


# -- training: the chain's stages, then the baselines and variants ------------------------------------------


def stage_recipe(recipe: Recipe, spec: StageSpec, run_dir: Path, folder: str) -> Recipe:
    """A stage's recipe in RUN/FOLDER: the same settings, starting from its start model, writing into its folder."""
    return replace(recipe, model=replace(recipe.model, path=start_model(recipe, spec, run_dir)),
                   run=replace(recipe.run, output_dir=str(run_dir / folder)))


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def run_chain_stage(recipe: Recipe, run_dir: Path, stage: str, log: Log = print) -> None:
    """One stage of the chain in RUN/STAGE: collect (phase-1 tuples), srt (self-revision training, fused into
    RUN/srt/model) or distill (on-policy self-distillation from the SRT model); skipped when finished and made
    from this recipe (rundir.RunDir.reuse_or_clear: else refused, or retrained with run.retrain). Takes only the
    stage's own folder's lock, so `compare` may run it in a worker process (schedule.py)."""
    if stage not in chain_names():
        raise ValueError(f"No chain stage {stage!r}; use one of {list(chain_names())}.")
    spec = stage_spec(stage)
    own = stage_recipe(recipe, spec, run_dir, stage)
    run = spec.run_dir(run_dir / stage)
    reuse = run.reuse_or_clear(spec.made_by(own, run.path), recipe.run.retrain, spec.resume_ignore, log)
    if spec.run is None:  # collect: its own run function
        if reuse:
            collected = read_summary(run.path)
            log("collect: done, skipped")
        else:
            collected = run_collect(
                recipe, run.path,
                on_batch=lambda b, n, s: log(f"collect: batch {b}/{n}  questions {s.questions_seen}  kept {s.kept}  "
                                             f"initial acc {fmt(s.initial_accuracy)}"),
            )
        log(f"collect: {collected.kept} tuples kept from {collected.questions_seen} questions")
    elif reuse:
        log(f"{stage}: done, skipped")
    else:
        spec.run(own, run.path, resume=run.resume_from() is not None, on_step=lambda r: log(format_record(r)))


def method_recipe(recipe: Recipe, method: str, run_dir: Path, budget: int) -> tuple[Recipe, StageSpec]:
    """What a method trained outside the chain is trained with, in RUN/METHOD: a variant's overrides applied, a
    sampling baseline's steps set by the matched budget, a variant of distill starting from RUN/srt/model."""
    spec = trained_specs(recipe)[method]
    variant = recipe.compare.variant(method)
    own = variant_recipe(recipe, variant) if variant else recipe
    if spec.matched:
        own = replace(own, **{spec.name: replace(getattr(own, spec.name), steps=matched_steps(own, spec, budget))})
    return stage_recipe(own, spec, run_dir, method), spec


def run_trained(recipe: Recipe, method: str, run_dir: Path, budget: int, log: Log) -> None:
    """Train a baseline or a variant in RUN/METHOD (method_recipe); reused when finished and made from this recipe
    (its stage's sections, the variant's overrides and the matched steps included), else refused or retrained
    (rundir.RunDir.reuse_or_clear)."""
    own, spec = method_recipe(recipe, method, run_dir, budget)
    run = spec.run_dir(run_dir / method)
    if run.reuse_or_clear(spec.made_by(own, run.path), recipe.run.retrain, spec.resume_ignore, log):
        log(f"{method}: done; reusing it")
        return
    spec.run(own, run.path, resume=run.resume_from() is not None, on_step=lambda r: log(format_record(r)))


# -- evaluation ---------------------------------------------------------------------------------------------


def eval_settings(recipe: Recipe) -> dict:
    """What an evaluation depends on besides the model: the recipe sections, the seed, the protocol, and the rows
    decoded at once (sampling.batch_size: which samples a seed draws depends on how rows are batched)."""
    return ({s: to_dict(getattr(recipe, s)) for s in ("eval", "data", "prompts", "verifier")}
            | {"seed": recipe.run.seed, "protocol": EVAL_PROTOCOL, "batch_size": recipe.sampling.batch_size})


def eval_key(recipe: Recipe, model_path: str, adapter: Optional[str], split: str) -> dict:
    """A cached evaluation's key: the evaluated model's bytes (its folder's and its adapters' sha256), the
    evaluation settings and the split. A cache under any other key is evaluated again."""
    return eval_settings(recipe) | {"split": split, "model": model_fingerprint(model_path),
                                    "adapters": adapters_fingerprint(adapter)}


def _result_from_json(d: dict):
    d = {k: v for k, v in d.items() if k != "kind"}
    return ReviseResult(**d, rows=()) if "revised_accuracy" in d else EvalResult(**d, rows=())


def evaluate_cached(
    recipe: Recipe, name: str, model_path: str, adapter: Optional[str], run_dir: Path, log: Log, split: str = "test",
) -> list:
    """Evaluate one model with the recipe's protocol on the test split (a reported number: RUN/eval/NAME.json)
    or the validation split (a choice: RUN/eval/NAME.validation.json); cached under `eval_key`: the model's
    bytes and the settings, so a retrained model or a changed protocol is never read from an old file."""
    if split not in ("test", "validation"):
        raise ValueError(f"split is {split!r}; use test or validation.")
    stem = name if split == "test" else f"{name}.validation"
    out = run_dir / "eval" / f"{stem}.json"
    key = eval_key(recipe, model_path, adapter, split)
    if out.is_file():
        saved = json.loads(out.read_text())
        changed = differences(MadeBy(flatten(saved.get("settings") or {}), {}), MadeBy(flatten(key), {}))
        if not changed:
            log(f"eval {name}: done, skipped")
            return [_result_from_json(d) for d in saved["results"]]
        log(f"eval {name}: {out} holds another model's or another protocol's results ({'; '.join(changed[:4])}"
            f"{'; ...' if len(changed) > 4 else ''}); evaluating again")
    model, tokenizer = load_model(replace(recipe.model, path=model_path), adapter_path=adapter)
    splits = make_splits(recipe.data, with_test=split == "test")
    examples = splits.test if split == "test" else splits.validation
    total = generations_per_model(len(examples), recipe.eval)
    finished = [0]

    def progress(n: int) -> None:
        finished[0] += n
        if finished[0] % max(total // 4, 1) == 0 or finished[0] == total:
            log(f"eval {name}: {finished[0]}/{total} generations")

    tic = time.perf_counter()
    results = evaluate_model(model, tokenizer, examples, EvalSettings.of(recipe), progress)
    seconds = time.perf_counter() - tic
    out.parent.mkdir(parents=True, exist_ok=True)
    for res in results:
        kind = "revise" if isinstance(res, ReviseResult) else "sample"
        write_rows_jsonl(res, run_dir / "eval" / f"{stem}.{kind}.rows.jsonl")
    write_json(out, {"settings": key, "results": [summary(r) for r in results], "seconds": seconds})
    return results


def evaluate_method(recipe: Recipe, method: str, run_dir: Path, log: Log, split: str = "test",
                    stem: Optional[str] = None) -> list:
    """A method's model of this run, evaluated on the test or the validation split (cached) with the recipe's
    eval, prompts and verifier: the same for every row, variants included. `stem`: the eval files' name
    (default: the method; a pass@k curve keeps its own)."""
    return evaluate_cached(recipe, stem or method, *method_model(recipe, method, run_dir), run_dir, log, split)


# -- the graph of a compare, and one task in this process ----------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str  # "collect", "srt", "distill", "train rft", "eval base", ...
    needs: tuple[str, ...]  # tasks that must have finished first
    budget: bool = False  # a baseline's training: started with the matched budget, known once collect is done


def plan(methods: Sequence[str], chain: Sequence[str], trained: dict, evaluate: bool, budget_given: bool = False) -> list[Task]:
    """The tasks of a compare of `methods`, in the order a free worker takes the first ready one:
    the chain's stages first (`chain`: chain_stages, the longest path), then the training of each method
    of `trained` (trained_specs: baselines and variants), then the evaluations, the base's last (it needs
    nothing, so it fills a worker while collect runs). A variant of distill waits for srt (its starting model); a
    sampling baseline or its variant waits for collect, whose generations set its budget, unless `budget_given`
    (compare.budget_generations is set)."""
    tasks = [Task(stage, (chain[i - 1],) if i else ()) for i, stage in enumerate(chain)]
    for m in methods:
        if m in trained:
            spec = trained[m]
            waits = "collect" in chain and spec.matched and not budget_given
            needs = (spec.starts_from,) if spec.starts_from else ("collect",) if waits else ()
            tasks.append(Task(f"train {m}", needs, budget=spec.matched))
    if evaluate:
        trained_by = {s: s for s in chain_names()} | {m: f"train {m}" for m in methods if m in trained}
        tasks += [Task(f"eval {m}", (trained_by[m],)) for m in methods if m != "base"]
        if "base" in methods:
            tasks.append(Task("eval base", ()))
    return tasks


def run_task(recipe: Recipe, run_dir: Path, name: str, budget: int, log: Log = print) -> None:
    """One task of a compare in RUN, in this process: a chain stage, a method's training or an evaluation."""
    kind, _, method = name.partition(" ")
    if name in chain_names():
        run_chain_stage(recipe, run_dir, name, log)
    elif kind == "train":
        log(f"{method}: {budget_note(trained_specs(recipe)[method], budget)}")
        run_trained(recipe, method, run_dir, budget, log)
    elif kind == "eval" and method in ("base", *method_labels(recipe)):
        evaluate_method(recipe, method, run_dir, log)
    else:
        raise ValueError(f"No compare task {name!r}.")
