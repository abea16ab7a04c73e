"""`sdzero sweep`: one recipe over several seeds, one table with per-seed values, means and 95% intervals.

OUT/seed-N/      a `sdzero compare` run with run.seed = data.seed = N: with a generated source
                 (demo://...) or a test split cut from the data file, each seed trains and is tested
                 on its own problems; with data.eval_source the test set is that one file, shared
OUT/sweep.md     per method and metric: the mean over seeds with its interval over seeds and problems
                 (the headline), the reference method (SD-Zero) minus each other method, paired on the
                 same problems; then the second figures (Student-t over seeds, over problems with the
                 models fixed) and the per-seed values
OUT/sweep.json   the contract other tools read: methods[label][metric] = {mean, per_seed,
                 seeds_problems_ci_low, seeds_problems_ci_high (the headline: hierarchical bootstrap over
                 seeds and problems), seed_ci_low, seed_ci_high (Student-t over seeds), ci_low, ci_high
                 (bootstrap over problems, models fixed: the meaning these two keys always had)};
                 pairs["SD-Zero - X"][metric] = the same with diff_ in the names (diff_mean,
                 seeds_problems_diff_ci_low, ..., seed_diff_ci_low, ..., diff_ci_low, ...);
                 `headline` names the headline's keys, `intervals` says what each interval is
OUT/sweep.png    each metric's mean per method with its interval over seeds and problems (thick) and over
                 problems with the models fixed (thin), the seeds as dots
Intervals: stats.py. Correction rate = revisions right / first attempts wrong, each model on its own
wrong first attempts; a difference of correction rates is the difference of the two rows (the same
problems of each seed, resampled together), not a rate on the problems both got wrong.
Each seed's run resumes and skips finished stages, so rerunning a sweep continues it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .atomic import write_json, write_text
from .config import Recipe
from .configio import write_yaml
from .data import generated_scheme
from .evaluate import pass_at_k
from .recipe import chosen_methods, method_labels
from .stats import RESAMPLES, bootstrap_ci, hierarchical_ci, paired, seed_t_ci, seed_value, shares

# per-problem metrics read from the test rows (`per_problem`), each a share per seed (stats.py)
METRICS = ("avg_at_k", "greedy_accuracy", "pass_at_k", "correction_rate")
REFERENCE = "distill"  # SD-Zero
HEADLINE = "seeds_problems_ci"
INTERVALS = {
    "seeds_problems_ci": f"95%, over seeds and problems (the headline): hierarchical bootstrap, seeds drawn with "
                         f"replacement, then each drawn seed's test problems ({RESAMPLES:,} resamples); covers "
                         "training noise and problem noise",
    "seed_ci": "95%, over seeds: Student-t over the per-seed values",
    "ci": f"95%, over problems, models fixed: each seed's test problems resampled, the trained models held fixed "
          f"({RESAMPLES:,} resamples); leaves training noise out",
}
Value = Union[float, tuple[float, float]]  # a problem's value, or its (numerator, denominator) of a share

def seed_recipe(recipe: Recipe, seed: int, out: Path) -> Recipe:
    """The recipe of one seed: its own sampling and initialisation, its own problems where the data allows."""
    return replace(recipe, run=replace(recipe.run, seed=seed, output_dir=str(out / f"seed-{seed}")),
                   data=replace(recipe.data, seed=seed))


def test_problems_note(recipe: Recipe) -> str:
    if recipe.data.eval_source:
        return f"one shared test set for every seed ({recipe.data.eval_source})"
    what = "drawn fresh" if generated_scheme(recipe.data.source) else "cut from the data file"
    return f"each seed on its own {recipe.data.eval_size} test problems ({what} with data.seed = seed)"


def per_problem(run_dir: Path, method: str, k: int) -> dict[str, dict[str, Value]]:
    """metric -> {problem id: value} of one method's test evaluation in one seed's run; the correction rate's
    value is (revised right and first wrong, first wrong) for every revised problem, so its share is the rate."""
    values: dict[str, dict[str, Value]] = {m: {} for m in METRICS}
    sample = run_dir / "eval" / f"{method}.sample.rows.jsonl"
    for row in map(json.loads, sample.read_text().splitlines()):
        rewards = row["rewards"]
        values["avg_at_k"][row["id"]] = sum(rewards) / len(rewards)
        values["pass_at_k"][row["id"]] = pass_at_k(len(rewards), sum(r >= 0.5 for r in rewards), min(k, len(rewards)))
        if row.get("greedy_reward") is not None:
            values["greedy_accuracy"][row["id"]] = row["greedy_reward"]
    revise = run_dir / "eval" / f"{method}.revise.rows.jsonl"
    if revise.is_file():
        for row in map(json.loads, revise.read_text().splitlines()):
            wrong = float(row["first_reward"] < 0.5)
            values["correction_rate"][row["id"]] = (wrong * float(row["revised_reward"] >= 0.5), wrong)
    return values


def _rows(values: dict[str, Value], ids: Sequence[str]) -> np.ndarray:
    """(numerator, denominator) rows of `ids`: a plain value v reads as (v, 1)."""
    pairs = [values[i] if isinstance(values[i], tuple) else (values[i], 1.0) for i in ids]
    return shares([n for n, _ in pairs], [d for _, d in pairs])


def _intervals(data: list[np.ndarray], prefix: str = "") -> Optional[dict]:
    """The mean over seeds, the three intervals (stats.py) and the per-seed values of per-seed rows; None when a
    seed has no value (a correction rate without a wrong first attempt)."""
    per_seed = [seed_value(d) for d in data]
    if any(math.isnan(v) for v in per_seed):
        return None
    t_low, t_high = seed_t_ci(per_seed)
    h_low, h_high = hierarchical_ci(data)
    low, high = bootstrap_ci(data)
    p = prefix
    return {f"{p}mean": sum(per_seed) / len(per_seed),
            f"seeds_problems_{p}ci_low": _nan_none(h_low), f"seeds_problems_{p}ci_high": _nan_none(h_high),
            f"seed_{p}ci_low": _nan_none(t_low), f"seed_{p}ci_high": _nan_none(t_high),
            f"{p}ci_low": low, f"{p}ci_high": high, "per_seed": per_seed}


def interval_record(per_seed_values: list[dict[str, Value]]) -> Optional[dict]:
    """mean, the three intervals and per-seed values of one method's metric (keys: the module docstring)."""
    if not per_seed_values or any(not v for v in per_seed_values):
        return None
    return _intervals([_rows(v, sorted(v)) for v in per_seed_values])


def difference_record(a_seeds: list[dict[str, Value]], b_seeds: list[dict[str, Value]]) -> Optional[dict]:
    """a - b on the same problems of each seed (resampled together): the difference of the two rows' statistics."""
    if any(not a or not b for a, b in zip(a_seeds, b_seeds)):
        return None
    data = []
    for a, b in zip(a_seeds, b_seeds):
        shared = sorted(set(a) & set(b))
        if not shared:
            raise ValueError("The two methods share no evaluated problem: a paired difference needs the same problems.")
        data.append(paired(_rows(a, shared), _rows(b, shared)))
    return _intervals(data, "diff_")


def _nan_none(x: float) -> Optional[float]:
    return None if math.isnan(x) else x


def aggregate(recipe: Recipe, out: Path, seeds: Sequence[int], methods: Sequence[str], labels: dict[str, str]) -> dict:
    """sweep.json's data from the seeds' finished runs."""
    values = {m: [per_problem(out / f"seed-{s}", m, recipe.eval.k) for s in seeds] for m in methods}
    data = {"seeds": list(seeds), "test_problems": test_problems_note(recipe), "headline": HEADLINE,
            "intervals": INTERVALS,
            "interval": "headline seeds_problems_* : over seeds and problems (hierarchical bootstrap); seed_* : "
                        "Student-t over the per-seed values; ci_* : bootstrap over problems within seeds, models fixed",
            "correction_rate": "revised right / first wrong, each model on its own wrong first attempts; a "
                               "difference is the difference of the two rates",
            "methods": {}, "pairs": {}}
    for m in methods:
        data["methods"][labels[m]] = {metric: interval_record([v[metric] for v in values[m]]) for metric in METRICS}
    if REFERENCE in methods:
        for m in methods:
            if m != REFERENCE:
                data["pairs"][f"{labels[REFERENCE]} - {labels[m]}"] = {
                    metric: difference_record([v[metric] for v in values[REFERENCE]], [v[metric] for v in values[m]])
                    for metric in METRICS}
    return data


def _bounds(rec: dict, low: str, high: str, sign: str = "") -> str:
    """"low, high" in %, or "-" where the interval does not exist (one seed)."""
    if rec.get(low) is None:
        return "-"
    return f"{100 * rec[low]:{sign}.1f}, {100 * rec[high]:{sign}.1f}"


def interval_cell(rec: Optional[dict], p: str = "", sign: str = "") -> str:
    """mean [interval over seeds and problems]; with one seed, the models-fixed interval, named."""
    if rec is None:
        return "-"
    mean = f"{100 * rec[f'{p}mean']:{sign}.1f}"
    if rec.get(f"seeds_problems_{p}ci_low") is None:
        return f"{mean} (one seed; over problems [{_bounds(rec, f'{p}ci_low', f'{p}ci_high', sign)}])"
    return f"{mean} [{_bounds(rec, f'seeds_problems_{p}ci_low', f'seeds_problems_{p}ci_high', sign)}]"


def sweep_table(data: dict, k: int) -> str:
    names = {"avg_at_k": f"avg@{k}", "greedy_accuracy": "greedy", "pass_at_k": f"pass@{k}",
             "correction_rate": "correction rate"}
    header = lambda first: ["| " + first + " | " + " | ".join(names[m] for m in METRICS) + " |",  # noqa: E731
                            "|---" * (len(METRICS) + 1) + "|"]
    lines = [f"# sdzero sweep: seeds {', '.join(map(str, data['seeds']))}", "",
             f"Test problems: {data['test_problems']}.", "",
             "Each cell: the mean over seeds [95% interval over seeds and problems: a hierarchical bootstrap that "
             "draws seeds, then each drawn seed's problems, so it covers training noise], in %. Correction rate: "
             "revisions right over first attempts wrong, each model on its own wrong first attempts.", "",
             *header("model")]
    for label, metrics in data["methods"].items():
        lines.append(f"| {label} | " + " | ".join(interval_cell(metrics[m]) for m in METRICS) + " |")
    if data["pairs"]:
        lines += ["", "Paired differences (each seed's same problems, resampled together), in points: mean [95% "
                  "interval over seeds and problems]. A difference of correction rates is the difference of the two "
                  "rows above.", "", *header("difference")]
        for pair, metrics in data["pairs"].items():
            lines.append(f"| {pair} | " + " | ".join(interval_cell(metrics[m], "diff_", "+") for m in METRICS) + " |")
    lines += ["", "Second figures, 95%, in % (points for a difference): over seeds alone (Student-t on the per-seed "
              "values) and over problems with the models fixed (leaves training noise out); then the per-seed values.",
              "", "| model or difference | metric | over seeds (Student-t) | over problems, models fixed | per seed |",
              "|---|---|---|---|---|"]
    rows = [(label, metrics, "", "") for label, metrics in data["methods"].items()]
    rows += [(pair, metrics, "diff_", "+") for pair, metrics in data["pairs"].items()]
    for label, metrics, p, sign in rows:
        for m in METRICS:
            rec = metrics[m]
            if rec is not None:
                seeds = " / ".join(f"{100 * v:{sign}.1f}" for v in rec["per_seed"])
                lines.append(f"| {label} | {names[m]} | {_bounds(rec, f'seed_{p}ci_low', f'seed_{p}ci_high', sign)} "
                             f"| {_bounds(rec, f'{p}ci_low', f'{p}ci_high', sign)} | {seeds} |")
    return "\n".join(lines) + "\n"


def plot_sweep(data: dict, out_png: Path) -> None:
    """Each metric's mean per method: thick bar, the interval over seeds and problems; thin grey bar, over problems
    with the models fixed; the seeds as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(v[m] for v in data["methods"].values())]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        labels = [lab for lab, v in data["methods"].items() if v[metric]]
        for x, lab in enumerate(labels):
            rec = data["methods"][lab][metric]
            mean = 100 * rec["mean"]
            ax.errorbar([x + 0.12], [mean], yerr=[[mean - 100 * rec["ci_low"]], [100 * rec["ci_high"] - mean]],
                        fmt="none", ecolor="grey", capsize=2, lw=1)
            if rec.get("seeds_problems_ci_low") is not None:
                ax.errorbar([x], [mean], yerr=[[mean - 100 * rec["seeds_problems_ci_low"]],
                                               [100 * rec["seeds_problems_ci_high"] - mean]], fmt="o", capsize=4, lw=2)
            else:
                ax.plot([x], [mean], "o")
            ax.plot([x - 0.12] * len(rec["per_seed"]), [100 * v for v in rec["per_seed"]], ".", color="grey")
        # a variant's name ("SD-Zero (paper loss)") breaks before its bracket, else it runs into its neighbours
        ax.set_xticks(range(len(labels)), [lab.replace(" (", "\n(") for lab in labels], rotation=30, ha="right")
        ax.set_title(metric)
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    fig.suptitle("95% intervals: thick, over seeds and problems; thin grey, over problems with the models fixed; "
                 "dots: seeds", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def run_sweep(
    recipe: Recipe, seeds: Sequence[int], out: Path, log: Callable[[str], None] = print,
    methods: Optional[list[str]] = None,
) -> dict:
    """A `compare` run per seed, then sweep.md/json/png over them; returns sweep.json's data."""
    from .compare import run_compare

    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {list(seeds)}: give distinct seeds, e.g. 0,1,2.")
    methods = list(chosen_methods(recipe, methods) if methods else recipe.compare.methods)
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(recipe, out / "sweep-recipe.yaml")
    for seed in seeds:
        log(f"sweep: seed {seed}")
        run_compare(seed_recipe(recipe, seed, out), log=lambda s, n=seed: log(f"[seed {n}] {s}"), methods=methods)
    data = aggregate(recipe, out, seeds, methods, method_labels(recipe))
    text = sweep_table(data, recipe.eval.k)
    write_text(out / "sweep.md", text)
    write_json(out / "sweep.json", data)
    plot_sweep(data, out / "sweep.png")
    log(text)
    return data
