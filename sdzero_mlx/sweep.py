"""`sdzero sweep`: one recipe over several seeds, one table with per-seed values, means and 95% intervals.

OUT/seed-N/      a `sdzero compare` run with run.seed = data.seed = N: with a generated source
                 (demo://...) or a test split cut from the data file, each seed trains and is tested
                 on its own problems; with data.eval_source the test set is that one file, shared
OUT/sweep.md     per method and metric: per-seed values, mean, bootstrap and seed-t intervals (stats.py);
                 the reference method (SD-Zero) minus each other method, paired on the same problems
OUT/sweep.json   the contract other tools read: methods[label][metric] = {mean, ci_low, ci_high,
                 seed_ci_low, seed_ci_high, per_seed}; pairs["SD-Zero - X"][metric] = {diff_mean,
                 diff_ci_low, diff_ci_high, seed_diff_ci_low, seed_diff_ci_high, per_seed}
OUT/sweep.png    each metric's mean with its bootstrap interval per method, the seeds as dots
Each seed's run resumes and skips finished stages, so rerunning a sweep continues it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from .atomic import write_json, write_text
from .config import Recipe
from .configio import write_yaml
from .data import generated_scheme
from .evaluate import pass_at_k
from .stats import bootstrap_ci, paired_differences, seed_t_ci

# per-problem metrics read from the test rows (`per_problem`); correction rate counts only wrong first attempts
METRICS = ("avg_at_k", "greedy_accuracy", "pass_at_k", "correction_rate")
REFERENCE = "distill"  # SD-Zero


def seed_recipe(recipe: Recipe, seed: int, out: Path) -> Recipe:
    """The recipe of one seed: its own sampling and initialisation, its own problems where the data allows."""
    return replace(recipe, run=replace(recipe.run, seed=seed, output_dir=str(out / f"seed-{seed}")),
                   data=replace(recipe.data, seed=seed))


def test_problems_note(recipe: Recipe) -> str:
    if recipe.data.eval_source:
        return f"one shared test set for every seed ({recipe.data.eval_source})"
    what = "drawn fresh" if generated_scheme(recipe.data.source) else "cut from the data file"
    return f"each seed on its own {recipe.data.eval_size} test problems ({what} with data.seed = seed)"


def per_problem(run_dir: Path, method: str, k: int) -> dict[str, dict[str, float]]:
    """metric -> {problem id: value} of one method's test evaluation in one seed's run."""
    values: dict[str, dict[str, float]] = {m: {} for m in METRICS}
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
            if row["first_reward"] < 0.5:
                values["correction_rate"][row["id"]] = row["revised_reward"]
    return values


def interval_record(per_seed_values: list[dict[str, float]]) -> Optional[dict]:
    """mean, bootstrap interval, seed-t interval and per-seed means of one method's metric."""
    if not per_seed_values or any(not v for v in per_seed_values):
        return None
    per_seed = [sum(v.values()) / len(v) for v in per_seed_values]
    low, high = bootstrap_ci([list(v.values()) for v in per_seed_values])
    seed_low, seed_high = seed_t_ci(per_seed)
    return {"mean": sum(per_seed) / len(per_seed), "ci_low": low, "ci_high": high,
            "seed_ci_low": _nan_none(seed_low), "seed_ci_high": _nan_none(seed_high), "per_seed": per_seed}


def difference_record(a_seeds: list[dict[str, float]], b_seeds: list[dict[str, float]]) -> Optional[dict]:
    """a - b paired on the problems of each seed: mean, bootstrap and seed-t intervals, per-seed means."""
    if any(not a or not b for a, b in zip(a_seeds, b_seeds)):
        return None
    diffs = [paired_differences(a, b) for a, b in zip(a_seeds, b_seeds)]
    per_seed = [sum(d) / len(d) for d in diffs]
    low, high = bootstrap_ci(diffs)
    seed_low, seed_high = seed_t_ci(per_seed)
    return {"diff_mean": sum(per_seed) / len(per_seed), "diff_ci_low": low, "diff_ci_high": high,
            "seed_diff_ci_low": _nan_none(seed_low), "seed_diff_ci_high": _nan_none(seed_high), "per_seed": per_seed}


def _nan_none(x: float) -> Optional[float]:
    return None if math.isnan(x) else x


def aggregate(recipe: Recipe, out: Path, seeds: Sequence[int], methods: Sequence[str], labels: dict[str, str]) -> dict:
    """sweep.json's data from the seeds' finished runs."""
    values = {m: [per_problem(out / f"seed-{s}", m, recipe.eval.k) for s in seeds] for m in methods}
    data = {"seeds": list(seeds), "test_problems": test_problems_note(recipe),
            "interval": "bootstrap over problems within seeds (10,000 resamples), combined as the mean over seeds; "
                        "seed_* : Student-t over the per-seed values",
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


def _cell(rec: Optional[dict], mean: str = "mean", low: str = "ci_low", high: str = "ci_high") -> str:
    if rec is None:
        return "-"
    seeds = " / ".join(f"{100 * v:.1f}" for v in rec["per_seed"])
    return f"{100 * rec[mean]:.1f} [{100 * rec[low]:.1f}, {100 * rec[high]:.1f}] ({seeds})"


def sweep_table(data: dict, k: int) -> str:
    names = {"avg_at_k": f"avg@{k}", "greedy_accuracy": "greedy", "pass_at_k": f"pass@{k}",
             "correction_rate": "correction rate"}
    lines = [f"# sdzero sweep: seeds {', '.join(map(str, data['seeds']))}", "",
             f"Test problems: {data['test_problems']}.", "",
             "Each cell: mean over seeds [95% interval: bootstrap over problems within seeds] (per seed), in %.", "",
             "| model | " + " | ".join(names[m] for m in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for label, metrics in data["methods"].items():
        lines.append(f"| {label} | " + " | ".join(_cell(metrics[m]) for m in METRICS) + " |")
    if data["pairs"]:
        lines += ["", "Paired differences (same seed, same problems), in points: mean [bootstrap 95%] "
                  "{Student-t 95% over seeds} (per seed):", "",
                  "| difference | " + " | ".join(names[m] for m in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for pair, metrics in data["pairs"].items():
            cells = []
            for m in METRICS:
                rec = metrics[m]
                if rec is None:
                    cells.append("-")
                    continue
                seed = ("" if rec["seed_diff_ci_low"] is None else
                        f" {{{100 * rec['seed_diff_ci_low']:+.1f}, {100 * rec['seed_diff_ci_high']:+.1f}}}")
                cells.append(_cell(rec, "diff_mean", "diff_ci_low", "diff_ci_high") + seed)
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(data: dict, out_png: Path) -> None:
    """Each metric's mean per method with its bootstrap interval as an error bar; seeds as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(v[m] for v in data["methods"].values())]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        labels = [lab for lab, v in data["methods"].items() if v[metric]]
        for x, lab in enumerate(labels):
            rec = data["methods"][lab][metric]
            ax.errorbar([x], [100 * rec["mean"]], yerr=[[100 * (rec["mean"] - rec["ci_low"])],
                                                        [100 * (rec["ci_high"] - rec["mean"])]], fmt="o", capsize=4)
            ax.plot([x] * len(rec["per_seed"]), [100 * v for v in rec["per_seed"]], ".", color="grey")
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_title(metric)
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def run_sweep(
    recipe: Recipe, seeds: Sequence[int], out: Path, log: Callable[[str], None] = print,
    methods: Optional[list[str]] = None,
) -> dict:
    """A `compare` run per seed, then sweep.md/json/png over them; returns sweep.json's data."""
    from .compare import run_compare
    from .stages import labels

    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {list(seeds)}: give distinct seeds, e.g. 0,1,2.")
    methods = list(replace(recipe.compare, methods=tuple(methods)).methods if methods else recipe.compare.methods)
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(recipe, out / "sweep-recipe.yaml")
    for seed in seeds:
        log(f"sweep: seed {seed}")
        run_compare(seed_recipe(recipe, seed, out), log=lambda s, n=seed: log(f"[seed {n}] {s}"), methods=methods)
    data = aggregate(recipe, out, seeds, methods, labels())
    text = sweep_table(data, recipe.eval.k)
    write_text(out / "sweep.md", text)
    write_json(out / "sweep.json", data)
    plot_sweep(data, out / "sweep.png")
    log(text)
    return data
