"""Draw docs/img/architecture.svg: one run of `sdzero compare` over the package's layers.

    python scripts/draw_architecture.py [--out docs/img/architecture.svg]

The bands are the layers tests/test_layers.py holds (a room imports its own band and the ones below); the
boxes are the modules a run passes through, each in its band; the numbered arrows are the data flow of
one run (recipe -> stages -> run directory -> evaluation -> tables), the grey ones calls down. The
picture is drawn from the names below, not read from the code: when a module moves, change it here and
run the script again (docs/architecture.md shows it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

# (layer name, top y, bottom y, fill): the layers of tests/test_layers.py, top first
BANDS = [
    ("the command", 0.0, 1.0, "#eef3fb"),
    ("jobs", 1.0, 3.2, "#e4eefb"),
    ("stages", 3.2, 5.4, "#e8f5e9"),
    ("shared machinery", 5.4, 7.6, "#fff8e1"),
    ("base", 7.6, 8.6, "#f3e5f5"),
]

# name -> (x, y, width, height, title, detail); x, y: the box's top-left corner
BOXES = {
    "cli": (1.6, 0.2, 3.3, 0.6, "cli.py", "sdzero compare RECIPE"),
    "recipe": (1.6, 1.2, 3.3, 0.8, "recipe.py: load_recipe", "YAML + --set -> Recipe: shared + stage sections"),
    "compare": (5.8, 1.2, 2.6, 0.8, "compare.py", "methods, budget; table, plot"),
    "tasks": (1.6, 2.25, 3.3, 0.75, "tasks.py: plan, run_task", "chain stages, trained methods, evaluations"),
    "schedule": (5.8, 2.25, 2.6, 0.75, "schedule.py: run_tasks", "here, or run.workers at once"),
    "chain": (1.6, 3.4, 3.3, 0.8, "collect -> srt -> distill", "stages/: the SD-Zero chain, a module each"),
    "baselines": (5.8, 3.4, 2.6, 0.8, "rft, grpo, sft, sdft", "and variants, from model.path"),
    "loop": (1.6, 4.45, 6.8, 0.75, "stages/loop.py: open_stage -> Trainee.restore / train",
             "lock and record the folder, load the model; each step: step_fn -> metrics -> checkpoint"),
    "machinery": (1.6, 5.6, 3.3, 0.85, "data, prompts, rollout, loss, kd, update",
                  "splits, roles, sampling, losses, the step"),
    "evaluate": (5.8, 5.6, 2.6, 0.85, "evaluate.py", "for tasks.evaluate_method: avg@k, ..."),
    "rundir": (1.6, 6.65, 6.8, 0.75, "rundir.py: RunDir      config.py: Recipe",
               "lock, run.json's made_by, reuse_or_clear, resume_from, finished, mark_done; the sections"),
    "base": (1.6, 7.8, 6.8, 0.6, "types, verifier/, platform/, sources/, atomic, fingerprint, seeds",
             "records, the reward, where the code runs, data generators, safe writes"),
    "run": (9.2, 1.2, 3.3, 6.2, "RUN/ (run.output_dir)", ""),
}

# what RUN/ holds, listed in its box (the run-directory contract: docs/architecture.md)
RUN_FILES = [
    "compare-recipe.yaml",
    "recipe.yaml, splits.json",
    "",
    "collect/ srt/ distill/",
    "rft/ grpo/ ... one per stage:",
    "  .lock         one writer",
    "  run.json      made_by",
    "  recipe.yaml",
    "  checkpoint/   resume point",
    "  adapters/     mlx-lm's",
    "  metrics.jsonl",
    "  outputs.json  sha256",
    "  done          written last",
    "  model/        srt: fused",
    "",
    "eval/NAME.json",
    "eval/NAME.*.rows.jsonl",
    "compare.md .json .png",
]

# numbered data flow: (from, to, label, from side, to side, label position)
FLOW = [
    ("cli", "recipe", "1 recipe", "bottom", "top", (3.35, 1.04)),
    ("recipe", "compare", "2 Recipe", "right", "left", (4.97, 1.47)),
    ("compare", "tasks", "3 plan", "bottom", "top", (5.0, 2.05)),
    ("tasks", "schedule", "4 tasks", "right", "left", (5.0, 2.5)),
    ("schedule", "chain", "5 run", "bottom", "top", (5.0, 3.12)),
    ("loop", "run", "6 writes", "right", "left", (8.45, 4.64)),
    ("evaluate", "run", "7 scores", "right", "left", (8.45, 5.84)),
    ("run", "compare", "8 tables", "left", "right", (8.45, 1.4)),
]

# calls down (grey): who uses whom along the way
CALLS = [
    ("schedule", "baselines"), ("chain", "loop"), ("baselines", "loop"), ("loop", "machinery"),
    ("loop", "rundir"), ("machinery", "base"), ("rundir", "base"), ("evaluate", "base"),
]


def anchor(box: str, side: str) -> tuple[float, float]:
    x, y, w, h, *_ = BOXES[box]
    return {"top": (x + w / 2, y), "bottom": (x + w / 2, y + h), "left": (x, y + h / 2),
            "right": (x + w, y + h / 2)}[side]


def nearest_sides(a: str, b: str) -> tuple[str, str]:
    ax, ay, aw, ah, *_ = BOXES[a]
    bx, by, bw, bh, *_ = BOXES[b]
    if by >= ay + ah:
        return "bottom", "top"
    if bx >= ax + aw:
        return "right", "left"
    return "left", "right"


def draw(out: Path) -> None:
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, and small
    plt.rcParams["svg.hashsalt"] = "sdzero"  # the same bytes on every run
    fig, ax = plt.subplots(figsize=(12.6, 8.8))
    ax.set_xlim(0, 12.6)
    ax.set_ylim(8.7, -0.1)
    ax.axis("off")
    for name, top, bottom, fill in BANDS:
        ax.add_patch(FancyBboxPatch((0.05, top + 0.03), 8.55, bottom - top - 0.06, boxstyle="round,pad=0,rounding_size=0.05",
                                    fc=fill, ec="#9aa5b1", lw=0.6))
        ax.text(0.15, (top + bottom) / 2, name, rotation=90, va="center", ha="center", fontsize=9, color="#44515e",
                style="italic")
    for key, (x, y, w, h, title, detail) in BOXES.items():
        run = key == "run"
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                    fc="#fdfdfd" if not run else "#f7f7f2", ec="#3b4a5a", lw=1.0))
        ax.text(x + 0.1, y + 0.22, title, fontsize=9, weight="bold", color="#1f2933", va="center",
                family="monospace" if run else None)
        if detail:
            ax.text(x + 0.1, y + min(0.55, h - 0.15), detail, fontsize=7.5, color="#3e4c59", va="center")
    x, y, *_ = BOXES["run"]
    for i, line in enumerate(RUN_FILES):
        ax.text(x + 0.12, y + 0.6 + 0.31 * i, line, fontsize=7.4, family="monospace", color="#323f4b", va="center")
    for a, b in CALLS:
        s, t = nearest_sides(a, b)
        ax.add_patch(FancyArrowPatch(anchor(a, s), anchor(b, t), arrowstyle="-|>", mutation_scale=9, color="#a0aab4",
                                     lw=0.8, shrinkA=1, shrinkB=1))
    for a, b, label, s, t, (lx, ly) in FLOW:
        start, end = anchor(a, s), anchor(b, t)
        if a == "run":  # back up to compare, level with it
            start = (start[0], end[1])
        elif b == "run":  # into RUN's side, level with the box it comes from
            end = (end[0], start[1])
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="#c2410c", lw=1.6,
                                     shrinkA=1, shrinkB=1))
        ax.text(lx, ly, label, fontsize=8.2, color="#c2410c", weight="bold", va="center",
                bbox=dict(fc="white", ec="none", pad=0.5, alpha=0.9))
    ax.text(0.05, 8.72, "One run of `sdzero compare`: red, the data flow (1-8); grey, calls down. Bands: the layers "
            "tests/test_layers.py holds (a module imports its band and the ones below).", fontsize=8, color="#52606d")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", metadata={"Date": None} if out.suffix == ".svg" else None)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "img" / "architecture.svg")
    draw(parser.parse_args().out)


if __name__ == "__main__":
    main()
