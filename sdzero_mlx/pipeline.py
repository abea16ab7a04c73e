"""The whole method in one run: collect -> SRT -> distill -> evaluate base, SRT and SD-Zero.

RUN/ (= run.output_dir)
  recipe.yaml
  collect/   tuples.jsonl, progress.json, summary.json, done        (collect.py)
  srt/       adapters/, model/ (fused mlx-lm folder), metrics.jsonl, done   (srt.py)
  distill/   run_distill's run directory with model.path = RUN/srt/model, plus done
  eval/      base.json, srt.json, distill.json (+ *.rows.jsonl): one file per evaluated model
  results.md, results.json   the final table and the budget spent per stage
Each stage is skipped when its completed output exists (a `done` marker, or the eval file, written
last) and resumes from its own checkpoint otherwise, so rerunning an interrupted run continues it.
Phase 2 starts from, and is taught by, the fused SRT model (its teacher is that model with B = 0
LoRA). Budget accounting follows the paper: generations and sampled tokens per stage (plus
trained tokens); evaluation spends its own, reported apart from training.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from .atomic import write_json, write_text
from .checkpoint import checkpoint_dir
from .stages.collect import collect_made_by, read_summary, run_collect
from .config import Recipe
from .platform.device import use_device
from .configio import to_dict, write_yaml
from .data import make_splits
from .stages.distill import DISTILL_SECTIONS, run_distill
from .evaluate import (
    EVAL_PROTOCOL, EvalResult, ReviseResult, evaluate_model, generations_per_model, results_table, summary, write_rows_jsonl,
)
from .metrics import format_record, last_budget
from .modeling import load_model
from .outputs import check_output_dir
from .fingerprint import adapters_fingerprint, model_fingerprint
from .rundir import RECORD, MadeBy, begin, damaged_outputs, differences, flatten, made_by, reuse_or_clear, run_dir_lock
from .stages import labels
from .stages.loop import ADAPTER_FILES
from .stages.srt import run_srt, srt_made_by

MODELS = ("base", "srt", "distill")  # the models of the SD-Zero chain, by the stage that trains them
LABELS = labels()


def distill_recipe(recipe: Recipe, run_dir: Path) -> Recipe:
    """Phase 2's recipe: the same settings, starting from the fused SRT model, writing into RUN/distill."""
    return replace(
        recipe,
        model=replace(recipe.model, path=str(run_dir / "srt" / "model")),
        run=replace(recipe.run, output_dir=str(run_dir / "distill")),
    )


def _result_from_json(d: dict):
    d = {k: v for k, v in d.items() if k != "kind"}
    return ReviseResult(**d, rows=()) if "revised_accuracy" in d else EvalResult(**d, rows=())


def eval_settings(recipe: Recipe) -> dict:
    """What an evaluation depends on besides the model: the recipe sections, the seed and the protocol."""
    return ({s: to_dict(getattr(recipe, s)) for s in ("eval", "data", "prompts", "verifier")}
            | {"seed": recipe.run.seed, "protocol": EVAL_PROTOCOL})


def eval_key(recipe: Recipe, model_path: str, adapter: Optional[str], split: str) -> dict:
    """A cached evaluation's key: the evaluated model's bytes (its folder's and its adapters' sha256), the
    evaluation settings and the split. A cache under any other key is evaluated again."""
    return eval_settings(recipe) | {"split": split, "model": model_fingerprint(model_path),
                                    "adapters": adapters_fingerprint(adapter)}


def evaluate_cached(
    recipe: Recipe, name: str, model_path: str, adapter: Optional[str], run_dir: Path, log: Callable[[str], None],
    split: str = "test",
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
    results = evaluate_model(model, tokenizer, examples, recipe.prompts, recipe.eval, recipe.verifier, recipe.run.seed,
                             progress, recipe.sampling.batch_size, recipe.data.max_prompt_tokens)
    seconds = time.perf_counter() - tic
    out.parent.mkdir(parents=True, exist_ok=True)
    for res in results:
        kind = "revise" if isinstance(res, ReviseResult) else "sample"
        write_rows_jsonl(res, run_dir / "eval" / f"{stem}.{kind}.rows.jsonl")
    write_json(out, {"settings": key, "results": [summary(r) for r in results], "seconds": seconds})
    return results


def model_of_run(recipe: Recipe, name: str, run_dir: Path) -> tuple[str, Optional[str]]:
    """(model folder, adapters folder or None) of base / srt / distill (SD-Zero) of this run."""
    path = recipe.model.path if name == "base" else str(run_dir / "srt" / "model")
    return path, str(run_dir / "distill" / "adapters") if name == "distill" else None


def evaluate_model_of_run(
    recipe: Recipe, name: str, run_dir: Path, log: Callable[[str], None], split: str = "test"
) -> list:
    """base / srt / distill (SD-Zero) of this run, evaluated (or read from the cache)."""
    return evaluate_cached(recipe, name, *model_of_run(recipe, name, run_dir), run_dir, log, split)


def stage_budgets(run_dir: Path, evals: dict[str, list]) -> dict[str, dict]:
    """Generations, sampled and trained tokens spent by each stage (the paper's budget accounting)."""
    collect = read_summary(run_dir / "collect")
    srt = json.loads((run_dir / "srt" / "state.json").read_text())
    distill = last_budget(run_dir / "distill") or {}
    budgets = {
        "collect": {"generations": collect.generations, "sampled_tokens": collect.sampled_tokens, "trained_tokens": 0,
                    "seconds": collect.elapsed_s},
        "srt": {"generations": 0, "sampled_tokens": 0, "trained_tokens": srt["trained_tokens"], "steps": srt["step"],
                "seconds": srt["elapsed_s"]},
        "distill": {"generations": distill.get("generations", 0), "sampled_tokens": distill.get("sampled_tokens", 0),
                    "trained_tokens": distill.get("trained_tokens", 0), "steps": distill.get("step", 0),
                    "seconds": distill.get("elapsed_s", 0.0)},
    }
    for name, results in evals.items():
        saved = json.loads((run_dir / "eval" / f"{name}.json").read_text())
        budgets[f"eval {name}"] = {
            "generations": sum(r.generations for r in results),
            "sampled_tokens": sum(r.sampled_tokens for r in results),
            "trained_tokens": 0,
            "seconds": saved.get("seconds", 0.0),
        }
    return budgets


def training_budgets(stages: dict[str, dict]) -> dict[str, dict]:
    """Cumulative training budget behind each model: SRT = collect + srt; SD-Zero adds distill."""
    keys = ("generations", "sampled_tokens", "trained_tokens")
    add = lambda *names: {k: sum(stages[n][k] for n in names) for k in keys}  # noqa: E731
    return {LABELS["srt"]: add("collect", "srt"), LABELS["distill"]: add("collect", "srt", "distill")}


def final_table(run_dir: Path, evals: dict[str, list]) -> tuple[str, dict]:
    """results.md text and results.json data of a finished run."""
    stages = stage_budgets(run_dir, evals)
    named = {LABELS[n]: evals[n] for n in MODELS}
    collect = read_summary(run_dir / "collect").to_json()
    lines = [
        f"# SD-Zero run: {run_dir}",
        "",
        "## Held-out evaluation (training budget cumulative per model)",
        "",
        results_table(named, training_budgets(stages)),
        "## Budget per stage",
        "",
        "| stage | generations | sampled tokens | trained tokens | seconds |",
        "|---|---|---|---|---|",
        *[f"| {s} | {b['generations']} | {b['sampled_tokens']} | {b['trained_tokens']} | {b['seconds']:.1f} |"
          for s, b in stages.items()],
        "",
        "## Phase-1 collection",
        "",
        *[f"- {k}: {_fmt(collect[k])}" for k in ("questions_seen", "initial_accuracy", "revisions_tried",
                                                  "revisions_verified", "kept", "correction_rate",
                                                  "answers_corrected_rate", "rephrase_rate")],
        "",
    ]
    data = {
        "models": {LABELS[n]: [summary(r) for r in evals[n]] for n in MODELS},
        "stages": stages,
        "collect": collect,
    }
    return "\n".join(lines), data


def finished(stage_dir: Path) -> bool:
    """A training stage's `done` marker, over adapters that outputs.json vouches for (else it resumes, and repairs)."""
    return (stage_dir / "done").is_file() and not damaged_outputs(stage_dir, ADAPTER_FILES)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def record_splits(recipe: Recipe, run_dir: Path, log: Callable[[str], None]) -> dict:
    """Split sizes and what make_splits dropped (repeats, overlaps between splits): logged and written to
    RUN/splits.json. The test split is only counted here."""
    report = make_splits(recipe.data, with_test=True).report()
    write_json(run_dir / "splits.json", report)
    dropped = {k: v for k, v in report["dropped"].items() if v}
    log(f"data: {', '.join(f'{k} {v}' for k, v in report['sizes'].items())}; dropped: "
        + (", ".join(f"{k} {v}" for k, v in dropped.items()) if dropped else "none (no repeats, no overlap)"))
    return report


CHAIN_STAGES = ("collect", "srt", "distill")  # the chain's stages, each needing the one before


def chain_made_by(recipe: Recipe, run_dir: Path, stage: str) -> MadeBy:
    """What a chain stage's output is made from (rundir.MadeBy); distill's starting model is RUN/srt/model, so
    a retrained SRT makes distill stale in turn."""
    if stage == "collect":
        return collect_made_by(recipe)
    if stage == "srt":
        return srt_made_by(recipe, run_dir / "srt")
    return made_by(distill_recipe(recipe, run_dir), DISTILL_SECTIONS)


def stage_started(stage_dir: Path) -> bool:
    """Whether a stage folder holds work to resume: a training checkpoint, or collect's progress."""
    return checkpoint_dir(stage_dir) is not None or (stage_dir / "progress.json").is_file()


def run_chain_stage(recipe: Recipe, run_dir: Path, stage: str, log: Callable[[str], None] = print) -> None:
    """One stage of the chain in RUN/STAGE: collect (phase-1 tuples), srt (self-revision training, fused into
    RUN/srt/model) or distill (on-policy self-distillation from the SRT model); skipped when done and made from
    this recipe (rundir.reuse_or_clear: else refused, or retrained with run.retrain). Takes only the stage's own
    folder's lock, so `compare` may run it in a worker process (schedule.py)."""
    if stage not in CHAIN_STAGES:
        raise ValueError(f"No chain stage {stage!r}; use one of {list(CHAIN_STAGES)}.")
    stage_dir = run_dir / stage
    done = finished(stage_dir) if stage == "distill" else (stage_dir / "done").is_file()
    reuse = reuse_or_clear(stage_dir, chain_made_by(recipe, run_dir, stage), done, stage_started(stage_dir),
                           recipe.run.retrain, ("distill.steps",) if stage == "distill" else (), log)
    if stage == "collect":
        if reuse:
            collected = read_summary(stage_dir)
            log("collect: done, skipped")
        else:
            collected = run_collect(
                recipe, stage_dir,
                on_batch=lambda b, n, s: log(f"collect: batch {b}/{n}  questions {s.questions_seen}  kept {s.kept}  "
                                             f"initial acc {_fmt(s.initial_accuracy)}"),
            )
        log(f"collect: {collected.kept} tuples kept from {collected.questions_seen} questions")
    elif reuse:
        log(f"{stage}: done, skipped")
    elif stage == "srt":
        run_srt(recipe, stage_dir, resume=checkpoint_dir(stage_dir) is not None, on_step=lambda r: log(format_record(r)))
    else:
        run_distill(distill_recipe(recipe, run_dir), stage_dir, resume=checkpoint_dir(stage_dir) is not None,
                    on_step=lambda r: log(format_record(r)))
        write_text(stage_dir / "done", "")


def run_pipeline(recipe: Recipe, log: Callable[[str], None] = print, stop_after: Optional[str] = None) -> dict:
    """Run (or continue) every stage; returns results.json's data. `stop_after`: a stage name (tests).

    Holds RUN's lock throughout (rundir.py): a second `sdzero run` on RUN is refused."""
    use_device(recipe.run.device)
    run_dir = check_output_dir(recipe.run.output_dir, "run.output_dir")  # before any work
    with run_dir_lock(run_dir):
        begin(run_dir, "pipeline", (run_dir / RECORD).is_file())
        return _run_pipeline(recipe, run_dir, log, stop_after)


def _run_pipeline(recipe: Recipe, run_dir: Path, log: Callable[[str], None], stop_after: Optional[str]) -> dict:
    if not (run_dir / "recipe.yaml").is_file():
        write_yaml(recipe, run_dir / "recipe.yaml")
    record_splits(recipe, run_dir, log)

    for stage in CHAIN_STAGES:
        run_chain_stage(recipe, run_dir, stage, log)
        if stop_after == stage:
            return {}

    # 4. held-out evaluation of the three models, 5. the final table
    evals = {name: evaluate_model_of_run(recipe, name, run_dir, log) for name in MODELS}
    text, data = final_table(run_dir, evals)
    write_text(run_dir / "results.md", text)
    write_json(run_dir / "results.json", data)
    log(text)
    return data
