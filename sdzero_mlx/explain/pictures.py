"""Self-localisation as pictures (PNG, matplotlib): one response's token strip and per-token KL, and the
bucketed view of a set; the colour scale the pages share."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .tokens import TokenReport, kl_concentration, top_tokens


def delta_colour(delta: float, scale: float) -> tuple[float, float, float]:
    """White at 0, red where the reviser finds the token less likely (delta > 0), blue where more."""
    a = min(abs(delta) / scale, 1.0) if scale > 0 else 0.0
    return (1.0, 1.0 - a, 1.0 - a) if delta > 0 else (1.0 - a, 1.0 - a, 1.0)


def kl_colour(kl: float, scale: float) -> tuple[float, float, float]:
    a = min(kl / scale, 1.0) if scale > 0 else 0.0
    return (1.0, 1.0 - 0.45 * a, 1.0 - a)  # white -> orange


def colour_scales(report: TokenReport) -> tuple[float, float]:
    return max((abs(d) for d in report.delta), default=0.0), max(report.kl, default=0.0)


def render_png(report: TokenReport, path: str | Path, chars_per_line: int = 110, top_n: int = 10):
    """PNG: the token strip coloured by delta (wrapped, newlines shown as a return sign) above a bar
    chart of per-token KL with the top-n tokens marked. Returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    d_scale, _ = colour_scales(report)
    # lay the pieces out on a character grid
    cells, line, col = [], 0, 0
    for i, piece in enumerate(report.pieces):
        shown = piece.replace("\n", "\u23ce") or " "
        if col + len(shown) > chars_per_line and col > 0:
            line, col = line + 1, 0
        cells.append((i, shown, line, col))
        col += len(shown)
        if "\n" in piece:
            line, col = line + 1, 0
    n_lines = line + 1
    fig, (ax_text, ax_kl) = plt.subplots(
        2, 1, figsize=(10, 1.2 + 0.25 * n_lines + 2.2), gridspec_kw={"height_ratios": [max(n_lines, 2) * 0.25 + 0.4, 2.2]}
    )
    ax_text.set_xlim(0, chars_per_line)
    ax_text.set_ylim(n_lines, 0)
    ax_text.axis("off")
    for i, shown, ln, c in cells:
        ax_text.add_patch(Rectangle((c, ln), len(shown), 1, color=delta_colour(report.delta[i], d_scale)))
    ax_text.set_title(f"r = {report.reward:g}: log p_student - log p_teacher per token (red: reviser doubts it)", fontsize=9)
    positions = list(range(len(report.kl)))
    ax_kl.bar(positions, report.kl, color="tab:orange", width=1.0)
    for i, piece, k, _ in top_tokens(report, top_n):
        ax_kl.annotate(repr(piece)[1:-1][:12], (i, k), fontsize=6, rotation=45, ha="left", va="bottom")
    ax_kl.set_xlabel("token position")
    ax_kl.set_ylabel(f"{report.kl_settings.kind} KL")
    ax_kl.set_title(f"per-token KL; top-5% share {kl_concentration(report.kl):.2f}", fontsize=9)
    fig.tight_layout()
    # widen the strip to the figure and size the font so that one character fills one grid cell
    # (a monospace advance is about 0.6 em)
    box = ax_text.get_position()
    ax_text.set_position([0.02, box.y0, 0.96, box.height])
    fontsize = 0.96 * fig.get_figwidth() * 72 / chars_per_line / 0.6
    for i, shown, ln, c in cells:
        ax_text.text(c, ln + 0.5, shown, family="monospace", fontsize=fontsize, va="center")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def render_buckets_png(reports: Sequence[TokenReport], path: str | Path, top_frac: float = 0.05):
    """PNG: sorted per-token KL share curves (the paper's bucketed view), one line per response,
    red for r = 0 and green for r = 1. Returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in reports:
        values = sorted(r.kl, reverse=True)
        total = sum(values) or 1.0
        cumulative, acc = [], 0.0
        for v in values:
            acc += v / total
            cumulative.append(acc)
        xs = [(i + 1) / len(values) for i in range(len(values))]
        ax.plot(xs, cumulative, color="tab:red" if r.reward < 0.5 else "tab:green", alpha=0.6)
    ax.axvline(top_frac, color="gray", linestyle=":")
    ax.set_xlabel("share of tokens (largest KL first)")
    ax.set_ylabel("share of KL mass")
    ax.set_title("KL concentration: red r = 0, green r = 1")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
