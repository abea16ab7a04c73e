"""`sdzero search`: a grid over recipe fields for one method, every point trained and scored on validation.

The method is a training stage or a compare variant (config.VariantConfig): a variant's point is the
recipe with the grid's values, then the variant's own overrides, which the grid may not touch.

OUT/chain/        SD-Zero's collect and SRT, run once and shared by every point when the grid only
                  touches the distill section (they do not depend on it)
OUT/point-NN/     a `compare` run of the method alone, with the point's overrides (its eval/ holds only
                  *.validation.json: a search chooses, so it never reads the test split)
OUT/search.md, search.json   the points sorted by validation avg@k, the best point's overrides
Every method compared in a report should get the same number of points (the search budget); a
sampling baseline trains at compare.budget_generations, which a search must set (there is no
SD-Zero chain to match inside a point).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from .atomic import write_json, write_text
from .recipe import chosen_methods, load_recipe, method_labels

SHARED_CHAIN = ("collect", "srt")  # stage folders a point can borrow from OUT/chain


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`field=v1,v2` options -> [(field, [v1, v2])].

    Example: parse_grid(["distill.optim.learning_rate=3e-5,1e-4"]) == [("distill.optim.learning_rate", ["3e-5", "1e-4"])]
    """
    grid = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not items:
            raise ValueError(f"--grid {spec!r}: write FIELD=V1,V2,..., e.g. distill.optim.learning_rate=3e-5,1e-4.")
        grid.append((name.strip(), items))
    names = [n for n, _ in grid]
    if len(set(names)) != len(names):
        raise ValueError(f"--grid names a field twice: {names}.")
    return grid


def grid_points(grid: list[tuple[str, list[str]]]) -> list[tuple[str, ...]]:
    """Every combination, as `field=value` overrides, in the order the grid lists them."""
    return [tuple(f"{n}={v}" for n, v in zip([n for n, _ in grid], values))
            for values in itertools.product(*[vs for _, vs in grid])]


def run_search(
    recipe_path: Path, overrides: Sequence[str], method: str, grid: list[tuple[str, list[str]]], out: Path,
    log: Callable[[str], None] = print,
) -> dict:
    """Train `method` at every grid point and score it on the validation split; returns search.json's data."""
    from .compare import run_compare
    from .pipeline import run_pipeline
    from .tasks import evaluate_method

    base = load_recipe(recipe_path, list(overrides))  # a bad recipe fails before any work
    names = method_labels(base)
    try:  # sd-zero reads as distill, a variant's name as its id
        method = chosen_methods(base, [method])[0]
    except ValueError:
        raise ValueError(f"--method {method!r}: use one of {sorted(names)} (a variant also by its name).") from None
    if method == "base":
        raise ValueError("--method base trains nothing; search a training method.")
    variant = base.compare.variant(method)
    masked = [n for n, _ in grid if variant and any(o.split("=", 1)[0].strip() == n for o in variant.set)]
    if masked:
        raise ValueError(f"--grid {masked}: the variant {variant.name!r} sets these itself (compare.variants), so the "
                         "grid would not change them; search the stage, or another field.")
    if not (base.data.validation_size or base.data.validation_source):
        raise ValueError("A search scores on the validation split, and this recipe has none: set data.validation_size.")
    points = grid_points(grid)
    out.mkdir(parents=True, exist_ok=True)
    stage = variant.stage if variant else method
    share_chain = stage == "distill" and all(n.startswith("distill.") for n, _ in grid)
    if share_chain:
        log("search: SD-Zero's collect and SRT do not depend on the grid; running them once in chain/")
        run_pipeline(load_recipe(recipe_path, [*overrides, f"run.output_dir={out / 'chain'}"]), log=log, stop_after="srt")
    rows = []
    for i, point in enumerate(points):
        point_dir = out / f"point-{i:02d}"
        recipe = load_recipe(recipe_path, [*overrides, *point, f"run.output_dir={point_dir}"])
        log(f"search: point {i + 1}/{len(points)}: {' '.join(point)}")
        point_dir.mkdir(parents=True, exist_ok=True)
        if share_chain:
            for stage in SHARED_CHAIN:
                link = point_dir / stage
                if not link.exists():
                    os.symlink((out / "chain" / stage).resolve(), link, target_is_directory=True)
        run_compare(recipe, log=log, methods=[method], evaluate=False)
        scoring = replace(recipe, eval=replace(recipe.eval, greedy=False, revise=False))
        result = evaluate_method(scoring, method, point_dir, log, split="validation")[0]
        rows.append({"point": i, "overrides": list(point), "validation_avg_at_k": result.avg_at_k,
                     "validation_pass_at_k": result.pass_at_k, "mean_tokens": result.mean_tokens})
    best = max(rows, key=lambda r: r["validation_avg_at_k"])  # ties: the first listed
    data = {"method": method, "label": names[method], "grid": [[n, v] for n, v in grid], "points": rows,
            "best": best, "validation_problems": base.data.validation_size or base.data.validation_source,
            "k": base.eval.k}
    text = search_table(data)
    write_text(out / "search.md", text)
    write_json(out / "search.json", data)
    log(text)
    return data


def search_table(data: dict) -> str:
    k = data["k"]
    lines = [f"# sdzero search: {data['label']}, {len(data['points'])} points, scored on the validation split", "",
             f"| point | overrides | validation avg@{k} (%) | validation pass@{k} (%) | tokens |", "|---|---|---|---|---|"]
    for r in sorted(data["points"], key=lambda r: -r["validation_avg_at_k"]):
        lines.append(f"| {r['point']} | {' '.join(r['overrides'])} | {100 * r['validation_avg_at_k']:.1f} "
                     f"| {100 * r['validation_pass_at_k']:.1f} | {r['mean_tokens']:.0f} |")
    lines += ["", "Best: " + " ".join(f"--set {o}" for o in data["best"]["overrides"]), ""]
    return "\n".join(lines)
