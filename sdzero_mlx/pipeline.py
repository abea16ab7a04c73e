"""`sdzero run`, the whole method in one run: collect -> SRT -> distill -> evaluate base, SRT and SD-Zero.

RUN/ (= run.output_dir)
  recipe.yaml
  collect/   tuples.jsonl, progress.json, summary.json, done        (stages/collect.py)
  srt/       adapters/, model/ (fused mlx-lm folder), metrics.jsonl, done   (stages/srt.py)
  distill/   run_distill's run directory with model.path = RUN/srt/model, and done
  eval/      base.json, srt.json, distill.json (+ *.rows.jsonl): one file per evaluated model
  results.md, results.json   the final table and the budget spent per stage
Each stage is a task of tasks.py: skipped when finished and made from this recipe, resumed from its own
checkpoint otherwise, so rerunning an interrupted run continues it. Phase 2 starts from, and is
taught by, the fused SRT model (its teacher is that model with B = 0 LoRA). Budget accounting follows
the paper: generations and sampled tokens per stage (plus trained tokens); evaluation spends its own,
reported apart from training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from .atomic import write_json, write_text
from .config import Recipe
from .configio import write_yaml
from .evaluate import results_table, summary
from .platform.device import use_device
from .rundir import RECORD, RunDir
from .stages import chain, continue_command, labels
from .stages.collect import read_summary
from .tasks import fmt, chain_budgets, chain_names, evaluate_method, record_splits, run_chain_stage, stage_spending
from .writable import check_output_dir



def chain_models() -> tuple[str, ...]:
    """The models `sdzero run` evaluates: the base and each model the chain trains (srt, distill)."""
    return ("base", *(s.name for s in chain() if s.run is not None))


def final_table(run_dir: Path, evals: dict[str, list]) -> tuple[str, dict]:
    """results.md text and results.json data of a finished run."""
    names, models = labels(), chain_models()
    spent = stage_spending(run_dir, evals)
    named = {names[n]: evals[n] for n in models}
    collect = read_summary(run_dir / "collect").to_json()
    lines = [
        f"# SD-Zero run: {run_dir}",
        "",
        "## Held-out evaluation (training budget cumulative per model)",
        "",
        results_table(named, {names[n]: b for n, b in chain_budgets(spent).items()}),
        "## Budget per stage",
        "",
        "| stage | generations | sampled tokens | trained tokens | seconds |",
        "|---|---|---|---|---|",
        *[f"| {s} | {b.budget.generations} | {b.budget.sampled_tokens} | {b.budget.trained_tokens} | {b.seconds:.1f} |"
          for s, b in spent.items()],
        "",
        "## Phase-1 collection",
        "",
        *[f"- {k}: {fmt(collect[k])}" for k in ("questions_seen", "initial_accuracy", "revisions_tried",
                                                  "revisions_verified", "kept", "correction_rate",
                                                  "answers_corrected_rate", "rephrase_rate")],
        "",
    ]
    data = {
        "models": {names[n]: [summary(r) for r in evals[n]] for n in models},
        "stages": {s: b.to_json() for s, b in spent.items()},
        "collect": collect,
    }
    return "\n".join(lines), data


def run_pipeline(recipe: Recipe, log: Callable[[str], None] = print, stop_after: Optional[str] = None) -> dict:
    """Run (or continue) every stage; returns results.json's data. `stop_after`: a stage name (tests, search).

    Holds RUN's lock throughout (rundir.py): a second `sdzero run` on RUN is refused."""
    use_device(recipe.run.device)
    run = RunDir(check_output_dir(recipe.run.output_dir, "run.output_dir"))  # before any work
    with run.writing():
        run.begin("pipeline", (run.path / RECORD).is_file(), continue_command)
        return _run_pipeline(recipe, run.path, log, stop_after)


def _run_pipeline(recipe: Recipe, run_dir: Path, log: Callable[[str], None], stop_after: Optional[str]) -> dict:
    if not (run_dir / "recipe.yaml").is_file():
        write_yaml(recipe, run_dir / "recipe.yaml")
    record_splits(recipe, run_dir, log)

    for stage in chain_names():
        run_chain_stage(recipe, run_dir, stage, log)
        if stop_after == stage:
            return {}

    # 4. held-out evaluation of the three models, 5. the final table
    evals = {name: evaluate_method(recipe, name, run_dir, log) for name in chain_models()}
    text, data = final_table(run_dir, evals)
    write_text(run_dir / "results.md", text)
    write_json(run_dir / "results.json", data)
    log(text)
    return data
