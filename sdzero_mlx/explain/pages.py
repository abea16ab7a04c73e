"""Self-localisation as pages (HTML, CSS and a little JavaScript, nothing loaded from the network): one
response's coloured token strips with a tooltip per token, and index.html over a set, sortable by reward,
total KL and top-5% share."""

from __future__ import annotations

import html
from typing import Sequence

from .pictures import colour_scales, delta_colour, kl_colour
from .tokens import ALTERNATIVES, Alternative, TokenReport, kind_label, kl_concentration, support_label, top_tokens


def css(rgb) -> str:
    return "rgb({},{},{})".format(*(round(255 * c) for c in rgb))


def alternatives_text(alternatives: Sequence[Alternative]) -> str:
    """"'4' 0.95, '5' 0.03, '7' 0.01": candidate tokens with their probabilities, most likely first."""
    return ", ".join(f"{a.piece!r} {a.prob:.2f}" for a in alternatives)


def token_tip(report: TokenReport, i: int) -> str:
    """Tooltip of token i: its values, then what each role would write there (when the report has it)."""
    lines = [f"#{i} id {report.token_ids[i]}: log p_s - log p_t = {report.delta[i]:+.3f}, KL = {report.kl[i]:.4f}"]
    if report.student_top:
        lines.append(f"Generator (student): {alternatives_text(report.student_top[i])}")
    if report.teacher_top:
        lines.append(f"Reviser (teacher): {alternatives_text(report.teacher_top[i])}")
    return "\n".join(lines)


def render_html(report: TokenReport, top_n: int = 10) -> str:
    """A self-contained HTML page: the response coloured by delta and by KL, and the top-n tokens."""
    d_scale, k_scale = colour_scales(report)

    def strip(colour) -> str:
        spans = []
        for i, piece in enumerate(report.pieces):
            tip = html.escape(token_tip(report, i)).replace("\n", "&#10;")
            spans.append(f'<span title="{tip}" style="background:{css(colour(i))}">{html.escape(piece)}</span>')
        return '<div class="strip">' + "".join(spans) + "</div>"

    shown = bool(report.student_top and report.teacher_top)  # reports made before alternatives existed lack them

    def alternatives(tops, i) -> str:
        return f"<td><code>{html.escape(alternatives_text(tops[i]))}</code></td>" if shown else ""

    rows = "".join(
        f"<tr><td>{i}</td><td><code>{html.escape(repr(p))}</code></td><td>{k:.4f}</td><td>{d:+.3f}</td>"
        f"{alternatives(report.student_top, i)}{alternatives(report.teacher_top, i)}</tr>"
        for i, p, k, d in top_tokens(report, top_n)
    )
    alt_heads = f"<th>Generator's top {ALTERNATIVES}</th><th>Reviser's top {ALTERNATIVES}</th>" if shown else ""
    total = sum(report.kl)
    kl = report.kl_settings
    support = support_label(kl)
    kind = kind_label(kl)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>SD-Zero self-localisation</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
.strip {{ font-family: monospace; white-space: pre-wrap; line-height: 1.6; border: 1px solid #ccc; padding: .5em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .2em .6em; border-bottom: 1px solid #ddd; }}
</style></head><body>
<h2>Self-localisation (reward r = {report.reward:g})</h2>
<p>{html.escape(report.problem)}</p>
<p>{len(report.kl)} tokens; total KL {total:.4f} ({kind}, {support}); share of KL in the top 5% of tokens:
{kl_concentration(report.kl):.3f}.</p>
<h3>log p<sub>student</sub> - log p<sub>teacher</sub> (red: the reviser doubts this token; blue: it prefers it; max |delta| {d_scale:.3f})</h3>
{strip(lambda i: delta_colour(report.delta[i], d_scale))}
<h3>per-token KL (max {k_scale:.4f})</h3>
{strip(lambda i: kl_colour(report.kl[i], k_scale))}
<h3>Top {top_n} tokens by KL</h3>
<p>Hover over a token for what the Generator and the Reviser would write there, with probabilities.</p>
<table><tr><th>position</th><th>token</th><th>KL</th><th>delta</th>{alt_heads}</tr>{rows}</table>
</body></html>
"""


# Sorting the index table by a column: numbers by their data-value, text by its content. Inline, so
# the page works offline and opened from disk.
SORT_SCRIPT = """
document.querySelectorAll("th[data-sort]").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = document.querySelector("#reports tbody");
    var rows = Array.prototype.slice.call(body.rows);
    var down = th.getAttribute("aria-sort") !== "descending";
    var key = function (row) {
      var cell = row.cells[column];
      return th.dataset.sort === "number" ? parseFloat(cell.dataset.value) : cell.textContent;
    };
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (down ? -1 : 1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    document.querySelectorAll("th[data-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
  });
});
"""


def render_index(
    reports: Sequence[TokenReport], stems: Sequence[str], top_frac: float = 0.05, pictures: bool = True
) -> str:
    """index.html over a set of reports: one row each, sortable by reward, total KL and top share,
    linking to each report's page and (`pictures`) picture."""
    share = f"top {100 * top_frac:g}% share"
    rows = []
    for i, (r, stem) in enumerate(zip(reports, stems)):
        total, top, scale = sum(r.kl), kl_concentration(r.kl, top_frac), max(r.kl, default=0.0)
        # one narrow cell per token, coloured by its KL on the response's own scale, as on its page
        strip = "".join(f'<i style="background:{css(kl_colour(k, scale))}"></i>' for k in r.kl)
        picture = f' <a href="{stem}.png">picture</a>' if pictures else ""
        rows.append(
            f'<tr><td data-value="{i}">{i}</td><td>{html.escape(r.problem)}</td>'
            f'<td data-value="{r.reward:g}">{r.reward:g}</td><td data-value="{len(r.kl)}">{len(r.kl)}</td>'
            f'<td data-value="{total:.6g}">{total:.4f}</td><td data-value="{top:.6g}">{top:.3f}</td>'
            f'<td class="kl">{strip}</td>'
            f'<td><a href="{stem}.html">page</a>{picture}</td></tr>'
        )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>SD-Zero self-localisation: {len(reports)} responses</title>
<style>
body {{ font-family: sans-serif; max-width: 70em; margin: 2em auto; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .2em .6em; border-bottom: 1px solid #ddd; }}
th[data-sort] {{ cursor: pointer; text-decoration: underline dotted; }}
td.kl {{ white-space: nowrap; line-height: 0; }} td.kl i {{ display: inline-block; width: 3px; height: 1.1em; }}
th[aria-sort=ascending]::after {{ content: " \\25B2"; }} th[aria-sort=descending]::after {{ content: " \\25BC"; }}
</style></head><body>
<h2>Self-localisation: {len(reports)} responses</h2>
<p>Click a column to sort by it (again to reverse). Total KL: the sum over the response's tokens of the
Generator's KL to the Reviser; {share}: the part of it held by the largest {100 * top_frac:g}% of tokens
(about {top_frac:g} when the KL is flat, 1 when one token holds it all); KL per token: the response's
tokens left to right, orange where the Reviser disagrees most. Pictures of the whole set:
<a href="buckets.png">buckets.png</a>; table: <a href="summary.md">summary.md</a>.</p>
<table id="reports"><thead><tr><th data-sort="number">#</th><th data-sort="text">problem</th>
<th data-sort="number">reward</th><th data-sort="number">tokens</th><th data-sort="number">total KL</th>
<th data-sort="number">{share}</th><th>KL per token</th><th>report</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
