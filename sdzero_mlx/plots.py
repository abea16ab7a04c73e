"""Run plots: reward, KL, response length and throughput over optimizer steps, several runs overlaid.

Reads RUN/metrics.jsonl (one JSON object per step, written by `distill.run_distill`) and draws one
line per run in each panel; the throughput panel shows sampled tokens/s (solid) and trained tokens/s
(dashed). A panel whose key a run lacks (e.g. an SRT run has no KL) simply has no line for that run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

# (title, [(metrics key, line style)])
PANELS = [
    ("reward", [("reward", "-")]),
    ("distill KL (direction: distill.kl)", [("kl", "-")]),
    ("response tokens", [("response_tokens", "-")]),
    ("tokens/s (solid: sampled, dashed: trained)", [("sampled_tokens_per_s", "-"), ("trained_tokens_per_s", "--")]),
]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of RUN/metrics.jsonl, in step order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass run directories written by `sdzero distill`.")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"Line {i} of {path} is not valid JSON ({err.msg}).") from None
    if not rows:
        raise ValueError(f"{path} is empty: the run has not finished a step yet.")
    return sorted(rows, key=lambda r: r["step"])


def plot_runs(run_dirs: Sequence[str | Path], out_png: str | Path, labels: Optional[Sequence[str]] = None):
    """Write a 2x2 PNG of the runs' curves; returns the matplotlib Figure (closed, for inspection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not run_dirs:
        raise ValueError("Give at least one run directory.")
    labels = list(labels) if labels else [Path(r).name for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"Got {len(labels)} labels for {len(run_dirs)} runs; give one label per run.")
    runs = [read_metrics(r) for r in run_dirs]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, series) in zip(axes.flat, PANELS):
        for n, (rows, label) in enumerate(zip(runs, labels)):
            for key, style in series:
                points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, color=colours[n % len(colours)], label=label if style == "-" else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return fig
