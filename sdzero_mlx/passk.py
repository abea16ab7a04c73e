"""`sdzero pass-curve`: pass@k for k = 1, 2, 4, ..., n and the distinct final answers per problem, per model.

A separate evaluation beside compare's avg@k (the headline): each chosen model of a compare run (or of
each seed of a sweep folder) is sampled n times per test problem at eval.temperature, with neither
greedy answers nor revisions, and cached as RUN/eval/NAME.passN.json (+ rows) under the model's bytes
and these settings (tasks.eval_key), so a rerun reads it back and the avg@k files are untouched.
- pass@k: the unbiased estimator from n samples (evaluate.pass_at_k), per problem, averaged.
- distinct answers: the verifier's final answer of each sample (verifier.extract: the answer it
  grades, normalised), counted per problem; a sample without one counts as no answer (its share is
  reported beside). Two spellings of one value that normalise differently count twice.
Self-distillation has been reported to flatten pass@k at large k (samples that agree with each other):
a curve that rises less from k = 1 to n, and fewer distinct answers.

DIR/pass-curve.json, .md, .png: per model and k the mean over seeds with the intervals of sweep.py
(over seeds and problems the headline; one run: over problems, models fixed), per seed kept.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from .atomic import write_json, write_text
from .config import Recipe
from .evaluate import pass_at_k
from .recipe import chosen_methods, method_labels
from .rundir import RunDir
from .sweep import INTERVALS, interval_cell, interval_record, seed_recipe, test_problems_note
from .tasks import evaluate_method, method_spec
from .verifier.config import VerifierConfig


def ks(n: int) -> list[int]:
    """The k of a curve from n samples: the powers of two up to n, and n.

    Example: ks(16) == [1, 2, 4, 8, 16]; ks(6) == [1, 2, 4, 6]
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1 (samples per problem), got {n}.")
    out = [1]
    while out[-1] * 2 <= n:
        out.append(out[-1] * 2)
    return out if out[-1] == n else out + [n]


def final_answer(text: str, verifier: VerifierConfig) -> Optional[str]:
    """The final answer the verifier grades in `text`, normalised; None when it finds none."""
    if verifier.kind == "code":
        from .verifier.code import extract_program

        program = extract_program(text)
        return None if program is None else program[1].strip()
    from .verifier.extract import extract_answer, normalize

    found = extract_answer(text[-verifier.max_chars:], verifier.last_number_fallback)
    if found is None:
        return None
    value, percent = normalize(found)
    return value + ("%" if percent else "")


def problem_values(rows: Sequence[dict], n: int, verifier: VerifierConfig) -> dict[str, dict[str, float]]:
    """Per problem id: pass@k for each k of ks(n) (keys "pass@K"), "distinct_answers" and "no_answer" (the share
    of its samples without a final answer), from its n sampled rewards and texts."""
    values: dict[str, dict[str, float]] = {f"pass@{k}": {} for k in ks(n)} | {"distinct_answers": {}, "no_answer": {}}
    for row in rows:
        rewards = row["rewards"]
        if len(rewards) != n:
            raise ValueError(f"problem {row['id']} has {len(rewards)} samples, not {n}.")
        correct = sum(r >= 0.5 for r in rewards)
        for k in ks(n):
            values[f"pass@{k}"][row["id"]] = pass_at_k(n, correct, k)
        answers = [final_answer(t, verifier) for t in row["texts"]]
        values["distinct_answers"][row["id"]] = float(len({a for a in answers if a is not None}))
        values["no_answer"][row["id"]] = sum(a is None for a in answers) / n
    return values


def evaluate_curve(recipe: Recipe, method: str, run_dir: Path, n: int, log: Callable[[str], None]) -> list[dict]:
    """One method's model of one run, sampled n times per test problem (cached); its rows."""
    spec = method_spec(recipe, method)
    if spec is not None and not spec.run_dir(run_dir / method).finished():
        raise ValueError(f"{run_dir} has no finished {method} model ({run_dir / method} is not done): run "
                         "`sdzero compare` (or `sdzero sweep`) with it first.")
    curve = replace(recipe, eval=replace(recipe.eval, k=n, greedy=False, revise=False))
    evaluate_method(curve, method, run_dir, log, stem=f"{method}.pass{n}")
    rows = run_dir / "eval" / f"{method}.pass{n}.sample.rows.jsonl"
    return [json.loads(line) for line in rows.read_text().splitlines()]


def run_pass_curve(
    recipe: Recipe, out: Path, n: int, methods: Sequence[str], seeds: Optional[Sequence[int]] = None,
    log: Callable[[str], None] = print,
) -> dict:
    """The curves of `methods` in the compare run `out` (seeds None) or in OUT/seed-N of a sweep; writes
    OUT/pass-curve.json/.md/.png and returns the JSON's data. Holds OUT's lock, and each run's while it is read."""
    with RunDir(out).writing():
        return _run_pass_curve(recipe, out, n, methods, seeds, log)


def _run_pass_curve(recipe: Recipe, out: Path, n: int, methods: Sequence[str], seeds: Optional[Sequence[int]],
                    log: Callable[[str], None]) -> dict:
    methods = list(chosen_methods(recipe, methods))  # names and ids, checked
    runs = [(Path(recipe.run.output_dir), recipe)] if seeds is None else \
        [(out / f"seed-{s}", seed_recipe(recipe, s, out)) for s in seeds]
    labels = method_labels(recipe)
    per_method: dict[str, list[dict]] = {m: [] for m in methods}
    for run_dir, run_recipe in runs:
        with RunDir(run_dir).writing():  # its eval/ is written: not while a compare writes it
            for m in methods:
                log(f"pass-curve: {run_dir.name} {labels[m]} ({n} samples per problem)")
                rows = evaluate_curve(run_recipe, m, run_dir, n, log)
                per_method[m].append(problem_values(rows, n, run_recipe.verifier))
    names = [f"pass@{k}" for k in ks(n)] + ["distinct_answers", "no_answer"]
    data = {"n": n, "k": ks(n), "seeds": None if seeds is None else list(seeds),
            "test_problems": test_problems_note(recipe), "temperature": recipe.eval.temperature, "intervals": INTERVALS,
            "methods": {labels[m]: {name: interval_record([v[name] for v in per_method[m]]) for name in names}
                        for m in methods}}
    write_json(out / "pass-curve.json", data)
    write_text(out / "pass-curve.md", pass_curve_table(data))
    plot_pass_curves(data, out / "pass-curve.png")
    log(pass_curve_table(data))
    return data


def pass_curve_table(data: dict) -> str:
    seeds = f"seeds {', '.join(map(str, data['seeds']))}" if data["seeds"] else "one run"
    names = [f"pass@{k}" for k in data["k"]]
    lines = [f"# sdzero pass-curve: {data['n']} samples per problem at T = {data['temperature']}, {seeds}", "",
             f"Test problems: {data['test_problems']}.", "",
             "Each cell: the mean over seeds [95% interval over seeds and problems] (one run: over problems, models "
             "fixed), in %; distinct answers: final answers per problem that differ after the verifier's "
             "normalisation; no answer: samples without one, in %.", "",
             "| model | " + " | ".join(names) + " | distinct answers | no answer |", "|---" * (len(names) + 3) + "|"]
    for label, rec in data["methods"].items():
        distinct = rec["distinct_answers"]
        lines.append(f"| {label} | " + " | ".join(interval_cell(rec[name]) for name in names)
                     + f" | {distinct['mean']:.2f} | {interval_cell(rec['no_answer'])} |")
    return "\n".join(lines) + "\n"


def plot_pass_curves(data: dict, out_png: Path) -> None:
    """pass@k against k (log scale) per method, its interval as a band; and the distinct answers per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curve, distinct) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [2, 1]})
    labels = list(data["methods"])
    for x, label in enumerate(labels):
        rec = data["methods"][label]
        points = [rec[f"pass@{k}"] for k in data["k"]]
        low, high = ("seeds_problems_ci_low", "seeds_problems_ci_high") if points[0].get("seeds_problems_ci_low") is not None \
            else ("ci_low", "ci_high")
        line, = curve.plot(data["k"], [100 * p["mean"] for p in points], "o-", label=label)
        curve.fill_between(data["k"], [100 * p[low] for p in points], [100 * p[high] for p in points],
                           color=line.get_color(), alpha=0.15)
        d = rec["distinct_answers"]
        distinct.bar([x], [d["mean"]], color=line.get_color(),
                     yerr=[[d["mean"] - d[low]], [d[high] - d["mean"]]], capsize=4)
    curve.set_xscale("log", base=2)
    curve.set_xticks(data["k"], [str(k) for k in data["k"]])
    curve.set_xlabel("k")
    curve.set_ylabel("pass@k (%)")
    curve.grid(alpha=0.3)
    curve.legend(fontsize=8)
    band = "over seeds and problems" if data["seeds"] and len(data["seeds"]) > 1 else "over problems, models fixed"
    curve.set_title(f"pass@k from {data['n']} samples; bands: 95% {band}", fontsize=9)
    distinct.set_xticks(range(len(labels)), labels, rotation=30)
    distinct.set_ylabel("distinct final answers per problem")
    distinct.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
