"""Run plots: the per-step records of one or several training runs, overlaid, as one PNG.

Reads each RUN/metrics.jsonl through `metrics.read_metrics` and draws one line per run in each
panel. The panels are the monitors that show a collapse early: reward (and, dashed, the probe
set's greedy accuracy), the loss (distill: the KL in the recipe's distill.kl direction), response
length, policy entropy, relative weight change per step (log scale), and throughput (sampled
tokens/s solid, trained dashed). A value a run lacks (an SRT run samples nothing, so it has no
reward) simply has no line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .metrics import StepRecord, read_metrics

# (title, [(record attribute, line style)], log scale)
PANELS = [
    ("reward (solid), probe greedy accuracy (dashed)", [("reward", "-"), ("probe_accuracy", "--")], False),
    ("loss (distill: KL, direction distill.kl)", [("loss", "-")], False),
    ("response tokens", [("response_tokens", "-")], False),
    ("policy entropy (nats, trained tokens)", [("entropy", "-")], False),
    ("relative weight change per step", [("weight_change", "-")], True),
    ("tokens/s (solid: sampled, dashed: trained)", [("sampled_tokens_per_s", "-"), ("trained_tokens_per_s", "--")], False),
]


def _series(records: Sequence[StepRecord], name: str) -> list[tuple[int, float]]:
    return [(r.step, getattr(r, name)) for r in records if getattr(r, name) is not None]


def plot_runs(run_dirs: Sequence[str | Path], out_png: str | Path, labels: Optional[Sequence[str]] = None):
    """Write a 3x2 PNG of the runs' curves; returns the matplotlib Figure (closed, for inspection)."""
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
    fig, axes = plt.subplots(3, 2, figsize=(11, 10))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, series, log) in zip(axes.flat, PANELS):
        for n, (records, label) in enumerate(zip(runs, labels)):
            for name, style in series:
                points = _series(records, name)
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, marker="." if len(xs) < 3 else None, color=colours[n % len(colours)],
                            label=label if style == "-" else None)
        if log and ax.lines:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
    # one legend, on the panel that names the most runs
    best = max(axes.flat, key=lambda a: len(a.get_legend_handles_labels()[0]))
    if best.get_legend_handles_labels()[0]:
        best.legend(fontsize=8)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return fig
