"""Self-localisation: where in a response the Reviser disagrees with the Generator.

For a response y to chat(x) with reward r, on exactly the sequences and positions the distillation
loss uses (`distill.distill_item`, `scored_batch`, `logits_at`):
  student: chat(x) + y                 -> log p_s(y_t) and logits at each token of y (+ end-of-turn)
  teacher: chat(x) + y + sep(r) + y    -> log p_t(y_t) and logits at the second copy
per token t:  delta_t = log p_s(y_t) - log p_t(y_t)   (> 0: the reviser finds the token less likely)
              kl_t    = loss.distill_token_kl(student logits, teacher targets, kl_settings)   (the training signal)
The paper's observation: when r = 0, KL mass concentrates on a few "mistake" tokens; when r = 1 it is
flat. `kl_concentration` measures it as the share of a response's KL mass held by its top 5% tokens.

The teacher is either a separate model on the same tokenizer (e.g. the SRT model folder) or a dict of
LoRA values for the student's own model (the in-training teacher of teacher.py).

Each token also carries both roles' top `ALTERNATIVES` next tokens with their probabilities (full
vocabulary, from the logits already computed), so a reader sees not only where the Reviser doubts a
token but what it would write instead. `explain_set_to_dir` adds index.html, a table of its reports
sortable by reward, total KL and top-5% share (plain JavaScript, nothing loaded from the network).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import mlx.core as mx
import mlx.nn as nn

from .config import KlSettings, PromptConfig, SamplingConfig
from .stages.distill import distill_item
from .kd import student_batch, teacher_batch
from .scoring import logits_at
from .loss import distill_targets, distill_token_kl, log_softmax, student_support, token_logprobs
from .modeling import padding_id
from .prompts import Separators, prompt_ids as make_prompt_ids, text_answer_ids
from .rollout import sample_rollouts
from .teacher import lora_values
from .types import Example, Graded, Rollout
from .verifier import VerifierConfig, verify, verify_batch

Teacher = Union[nn.Module, dict]  # a separate model, or LoRA values for the student's model
ALTERNATIVES = 3  # next tokens listed per position for each role


class Alternative(NamedTuple):
    """One candidate next token of a role at a position, with its probability (full vocabulary)."""

    token_id: int
    piece: str  # tokenizer.decode([token_id])
    prob: float


@dataclass(frozen=True)
class TokenReport:
    """Per-token values over the scored tokens of one response (y plus its end-of-turn token)."""

    token_ids: tuple[int, ...]
    pieces: tuple[str, ...]  # text of each token; "".join(pieces) == decode(token_ids)
    student_logp: tuple[float, ...]
    teacher_logp: tuple[float, ...]
    delta: tuple[float, ...]  # student_logp - teacher_logp
    kl: tuple[float, ...]  # distill_token_kl at the same positions
    reward: float
    kl_settings: KlSettings  # the KL's direction, mixing weight and teacher support
    problem: str = ""
    student_top: tuple[tuple[Alternative, ...], ...] = ()  # per token: the Generator's top ALTERNATIVES
    teacher_top: tuple[tuple[Alternative, ...], ...] = ()  # per token: the Reviser's top ALTERNATIVES


def token_pieces(tokenizer, ids: Sequence[int]) -> tuple[str, ...]:
    """Text added by each token: differences of prefix decodes, so multi-byte characters stay whole."""
    pieces, prev = [], ""
    for i in range(1, len(ids) + 1):
        text = tokenizer.decode(list(ids[:i]))
        pieces.append(text[len(prev):] if text.startswith(prev) else text)
        prev = text
    return tuple(pieces)


def top_alternatives(logits: mx.array, tokenizer, n: int = ALTERNATIVES) -> tuple[tuple[Alternative, ...], ...]:
    """The n most likely next tokens at each position of `logits` (1, L, V), most likely first."""
    logp = log_softmax(logits[0])  # (L, V)
    n = min(n, logp.shape[-1])
    ids = mx.argpartition(-logp, kth=n - 1, axis=-1)[:, :n]  # (L, n), unordered
    probs = mx.exp(mx.take_along_axis(logp, ids, axis=-1))
    mx.eval(ids, probs)
    out = []
    for row_ids, row_probs in zip(ids.tolist(), probs.tolist()):
        ranked = sorted(zip(row_ids, row_probs), key=lambda c: -c[1])
        out.append(tuple(Alternative(int(i), tokenizer.decode([int(i)]), float(p)) for i, p in ranked))
    return tuple(out)


def token_report(
    model: nn.Module,
    tokenizer,
    teacher: Teacher,
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    reward: float,
    seps: Separators,
    kl_settings: KlSettings,
    problem: str = "",
) -> TokenReport:
    """Per-token log-prob gap and KL of `response_ids` (a trailing end-of-turn id is its stop token)."""
    response = tuple(int(t) for t in response_ids)
    if not response:
        raise ValueError("The response is empty; give at least one token.")
    stop = response[-1] if response[-1] in set(tokenizer.eos_token_ids) else None
    completion = response[:-1] if stop is not None else response
    rollout = Rollout(
        example=Example("explain", problem, ""),
        prompt_ids=tuple(int(t) for t in prompt_ids),
        completion_ids=completion,
        text="",
        finish_reason="stop" if stop is not None else "length",
        stop_id=stop,
    )
    # no truncation here: the report covers the whole response
    item = distill_item(Graded(rollout, reward), seps, max_teacher_tokens=2 * len(response) + len(prompt_ids) + 64)
    pad = padding_id(tokenizer)
    s_batch, t_batch = student_batch([item], pad), teacher_batch([item], pad)
    was_training = model.training
    model.eval()
    try:
        s_logits = logits_at(model, s_batch)
        if isinstance(teacher, nn.Module):  # checked first: an mlx Module is itself a dict
            t_logits = logits_at(teacher, t_batch)
        else:
            with lora_values(model, teacher):
                t_logits = logits_at(model, t_batch)
    finally:
        model.train(was_training)
    t_logits = mx.stop_gradient(t_logits)
    scored = item.student_ids[item.student_span[0]:item.student_span[1]]
    ids = mx.array([scored])
    targets = distill_targets(t_logits, ids, kl_settings, student_support(s_logits, kl_settings))
    kl = distill_token_kl(s_logits, targets, kl_settings)[0]
    s_lp, t_lp = token_logprobs(s_logits, ids)[0], token_logprobs(t_logits, ids)[0]
    mx.eval(kl, s_lp, t_lp)
    s_list, t_list = s_lp.tolist(), t_lp.tolist()
    return TokenReport(
        token_ids=tuple(scored),
        pieces=token_pieces(tokenizer, scored),
        student_logp=tuple(s_list),
        teacher_logp=tuple(t_list),
        delta=tuple(s - t for s, t in zip(s_list, t_list)),
        kl=tuple(kl.tolist()),
        reward=reward,
        kl_settings=kl_settings,
        problem=problem,
        student_top=top_alternatives(s_logits, tokenizer),
        teacher_top=top_alternatives(t_logits, tokenizer),
    )


def kind_label(kl: KlSettings) -> str:
    """The loss's kind in words, with its weight: 'mixed, forward weight 0.5', 'jsd, beta 0.5', 'reverse'."""
    if kl.kind == "mixed":
        return f"mixed, forward weight {kl.forward_weight:g}"
    return f"jsd, beta {kl.beta:g}" if kl.kind == "jsd" else kl.kind


def support_label(kl: KlSettings) -> str:
    """The loss's support in words: 'full vocabulary', 'teacher top-64', 'student top-20 + tail', 'sampled token'."""
    if kl.estimator:
        return "sampled token"
    if kl.top_k == 0:
        return "full vocabulary"
    return f"{kl.top_k_from} top-{kl.top_k}" + (" + tail" if kl.tail else "")


def top_tokens(report: TokenReport, n: int = 10) -> list[tuple[int, str, float, float]]:
    """(position, piece, kl, delta) of the n tokens with the largest KL, largest first."""
    order = sorted(range(len(report.kl)), key=lambda i: -report.kl[i])[:n]
    return [(i, report.pieces[i], report.kl[i], report.delta[i]) for i in order]


# -- the bucketed view -----------------------------------------------------------------------


def kl_concentration(per_token_kl: Sequence[float], top_frac: float = 0.05) -> float:
    """Share of the total KL held by the top ceil(top_frac * n) tokens (at least one).

    Flat KL gives about top_frac; KL on a single token gives 1. All-zero KL counts as flat.
    Example: kl_concentration([4, 0, 0, 0], 0.25) == 1.0; kl_concentration([1, 1, 1, 1], 0.25) == 0.25
    """
    if not 0 < top_frac <= 1:
        raise ValueError(f"top_frac must be in (0, 1], got {top_frac}.")
    values = sorted((float(v) for v in per_token_kl), reverse=True)
    if not values:
        raise ValueError("kl_concentration needs at least one token.")
    n_top = max(1, math.ceil(top_frac * len(values)))
    total = sum(values)
    if total <= 0:
        return n_top / len(values)
    return sum(values[:n_top]) / total


@dataclass(frozen=True)
class BucketStats:
    reward: float
    n: int
    concentration: float  # mean over responses of kl_concentration
    mean_kl: float  # mean per-token KL over all tokens of the bucket
    mean_tokens: float


def localisation_summary(reports: Sequence[TokenReport], top_frac: float = 0.05) -> tuple[BucketStats, ...]:
    """One BucketStats per reward value present (r = 0 first)."""
    out = []
    for reward in sorted({r.reward for r in reports}):
        group = [r for r in reports if r.reward == reward]
        tokens = sum(len(r.kl) for r in group)
        out.append(
            BucketStats(
                reward=reward,
                n=len(group),
                concentration=sum(kl_concentration(r.kl, top_frac) for r in group) / len(group),
                mean_kl=sum(sum(r.kl) for r in group) / max(tokens, 1),
                mean_tokens=tokens / len(group),
            )
        )
    return tuple(out)


def first_mistake_span(text: str, gold: str) -> Optional[tuple[int, int]]:
    """Character span [start, end) of the first line of `text` that differs from the gold solution's line
    at the same position (the first mistaken step), or None when every line matches.

    Example: first_mistake_span("x=5\n5+3=8", "x=6\n6+3=9") == (0, 3)
    """
    lines, gold_lines = text.split("\n"), gold.split("\n")
    start = 0
    for i, line in enumerate(lines):
        if i >= len(gold_lines) or line != gold_lines[i]:
            return start, start + len(line)
        start += len(line) + 1
    return None


@dataclass(frozen=True)
class LocalisationScore:
    """Where the top KL tokens of wrong answers fall, against chance."""

    answers: int  # wrong answers with a mistaken step
    top_tokens: int  # their top-`top_frac` KL tokens, pooled
    hit_share: float  # share of those that lie on the first mistaken step
    chance_share: float  # the same share if the top tokens were picked at random in each answer

    @property
    def ratio(self) -> float:
        return self.hit_share / self.chance_share if self.chance_share > 0 else 0.0


def localisation_score(reports: Sequence[TokenReport], gold: dict[str, str], top_frac: float = 0.05) -> LocalisationScore:
    """Self-localisation of wrong answers: do their largest-KL tokens sit on the first mistaken step?

    `gold` maps a report's problem text to its gold solution. For each wrong answer, the top
    ceil(top_frac * n) tokens by KL are counted as hits when their text overlaps the first line that
    differs from the gold solution; chance is that line's share of the answer's tokens.
    """
    steps = []
    for r in reports:
        if r.reward >= 0.5 or r.problem not in gold or not r.kl:
            continue
        span = first_mistake_span("".join(r.pieces), gold[r.problem])
        if span is not None:
            steps.append((r, span))
    return step_localisation(steps, top_frac)


def step_localisation(steps: Sequence[tuple[TokenReport, tuple[int, int]]], top_frac: float = 0.05) -> LocalisationScore:
    """Where the top ceil(top_frac * n) tokens by KL of each report fall, against a character span of its text
    (the step that went wrong): hits are tokens whose text overlaps the span, chance is the span's share of the
    report's tokens. A report whose span covers no token is left out.

    Example: KL [0, 5, 0, 0] over pieces "a", "b", "c", "d", span (1, 2), top_frac 0.25 -> hit share 1, chance 0.25
    """
    hits = top = 0
    chance = 0.0
    answers = 0
    for r, span in steps:
        bounds, pos = [], 0
        for piece in r.pieces:
            bounds.append((pos, pos + len(piece)))
            pos += len(piece)
        on_step = [a < span[1] and b > span[0] for a, b in bounds]
        if not any(on_step):
            continue
        n_top = max(1, math.ceil(top_frac * len(r.kl)))
        order = sorted(range(len(r.kl)), key=lambda i: -r.kl[i])[:n_top]
        hits += sum(on_step[i] for i in order)
        top += n_top
        chance += n_top * sum(on_step) / len(on_step)
        answers += 1
    return LocalisationScore(answers, top, hits / top if top else 0.0, chance / top if top else 0.0)


def summary_table(buckets: Sequence[BucketStats], top_frac: float = 0.05) -> str:
    """Markdown table of the bucketed view."""
    pct = f"{100 * top_frac:g}%"
    lines = [f"| reward | responses | KL share in top {pct} tokens | mean KL / token | mean tokens |", "|---|---|---|---|---|"]
    for b in buckets:
        lines.append(f"| {b.reward:g} | {b.n} | {b.concentration:.3f} | {b.mean_kl:.4f} | {b.mean_tokens:.1f} |")
    return "\n".join(lines) + "\n"


def explain_examples(
    model: nn.Module,
    tokenizer,
    teacher: Teacher,
    examples: Sequence[Example],
    prompts: PromptConfig,
    sampling: SamplingConfig,
    verifier: VerifierConfig,
    seps: Separators,
    seed: int,
    kl_settings: KlSettings,
) -> list[TokenReport]:
    """One sampled student response per example, graded, then its token report."""
    rollouts = sample_rollouts(model, tokenizer, examples, prompts, sampling, seed)
    rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], verifier)
    return [
        token_report(model, tokenizer, teacher, r.prompt_ids, r.target_ids, w, seps, kl_settings, problem=r.example.problem)
        for r, w in zip(rollouts, rewards)
    ]


def explain_one(
    model: nn.Module,
    tokenizer,
    teacher: Teacher,
    problem: str,
    response: Optional[str],
    answer: Optional[str],
    reward: Optional[float],
    prompts: PromptConfig,
    sampling: SamplingConfig,
    verifier: VerifierConfig,
    seps: Separators,
    seed: int,
    kl_settings: KlSettings,
) -> TokenReport:
    """The token report of one response: the given text, or one sampled from the student.

    The reward picks sep(r): given, or graded against `answer`.
    """
    if reward is None and answer is None:
        raise ValueError("Give an answer (to grade the response) or a reward 0/1 (to pick the control phrase).")
    if response is None:
        rollout = sample_rollouts(model, tokenizer, [Example("explain", problem, answer or "")], prompts, sampling, seed)[0]
        p_ids, r_ids, text = rollout.prompt_ids, rollout.target_ids, rollout.text
    else:
        p_ids, r_ids = response_ids(tokenizer, problem, response, prompts)
        text = response
    r = reward if reward is not None else verify(text, answer, verifier)
    return token_report(model, tokenizer, teacher, p_ids, r_ids, r, seps, kl_settings, problem=problem)


def response_ids(tokenizer, problem: str, response: str, prompts: PromptConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(prompt ids, response ids) for a response given as text by a user.

    User text has no sampled ids, so it is encoded (prompts.text_answer_ids); the end-of-turn id is
    appended as if the model had stopped.
    """
    ids, eot = text_answer_ids(tokenizer, response)
    return make_prompt_ids(tokenizer, problem, prompts), ids + (eot,)


# -- rendering -------------------------------------------------------------------------------


def _delta_colour(delta: float, scale: float) -> tuple[float, float, float]:
    """White at 0, red where the reviser finds the token less likely (delta > 0), blue where more."""
    a = min(abs(delta) / scale, 1.0) if scale > 0 else 0.0
    return (1.0, 1.0 - a, 1.0 - a) if delta > 0 else (1.0 - a, 1.0 - a, 1.0)


def _kl_colour(kl: float, scale: float) -> tuple[float, float, float]:
    a = min(kl / scale, 1.0) if scale > 0 else 0.0
    return (1.0, 1.0 - 0.45 * a, 1.0 - a)  # white -> orange


def _css(rgb) -> str:
    return "rgb({},{},{})".format(*(round(255 * c) for c in rgb))


def _scales(report: TokenReport) -> tuple[float, float]:
    return max((abs(d) for d in report.delta), default=0.0), max(report.kl, default=0.0)


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
    d_scale, k_scale = _scales(report)

    def strip(colour) -> str:
        spans = []
        for i, piece in enumerate(report.pieces):
            tip = html.escape(token_tip(report, i)).replace("\n", "&#10;")
            spans.append(f'<span title="{tip}" style="background:{_css(colour(i))}">{html.escape(piece)}</span>')
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
{strip(lambda i: _delta_colour(report.delta[i], d_scale))}
<h3>per-token KL (max {k_scale:.4f})</h3>
{strip(lambda i: _kl_colour(report.kl[i], k_scale))}
<h3>Top {top_n} tokens by KL</h3>
<p>Hover over a token for what the Generator and the Reviser would write there, with probabilities.</p>
<table><tr><th>position</th><th>token</th><th>KL</th><th>delta</th>{alt_heads}</tr>{rows}</table>
</body></html>
"""


def render_png(report: TokenReport, path: str | Path, chars_per_line: int = 110, top_n: int = 10):
    """PNG: the token strip coloured by delta (wrapped, newlines shown as a return sign) above a bar
    chart of per-token KL with the top-n tokens marked. Returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    d_scale, _ = _scales(report)
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
        ax_text.add_patch(Rectangle((c, ln), len(shown), 1, color=_delta_colour(report.delta[i], d_scale)))
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


def write_report(
    report: TokenReport, out_dir: str | Path, stem: str = "explain", picture: bool = True
) -> tuple[Path, Optional[Path]]:
    """OUT/STEM.html and (`picture`) OUT/STEM.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page, png = out / f"{stem}.html", out / f"{stem}.png"
    page.write_text(render_html(report), encoding="utf-8")
    if not picture:
        return page, None
    render_png(report, png)
    return page, png


# -- whole jobs (the CLI's `sdzero explain`) ---------------------------------------------------


def load_student_and_teacher(model: str, adapter: Optional[str], teacher: Optional[str], teacher_adapter: Optional[str]):
    """(student, teacher, tokenizer). The teacher defaults to MODEL without the student's adapter: with no
    adapter that is the student itself, SD-Zero's Reviser (the Generator's own weights in the revision
    context); with one, the phase-2 setting where the frozen teacher is the model the student started from."""
    from .config import ModelConfig
    from .modeling import load_model

    student, tokenizer = load_model(ModelConfig(model), adapter_path=adapter)
    if (teacher or model, teacher_adapter) == (model, adapter):  # the same weights: load them once
        return student, student, tokenizer
    teacher_model, teacher_tok = load_model(ModelConfig(teacher or model), adapter_path=teacher_adapter)
    if teacher_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"The teacher {teacher} has a different tokenizer from {model}; both must score the same ids.")
    return student, teacher_model, tokenizer


def write_reports_jsonl(reports: Sequence[TokenReport], path: str | Path) -> Path:
    from dataclasses import asdict
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in reports:
            f.write(json.dumps({**asdict(r), "kl_concentration": kl_concentration(r.kl)}, ensure_ascii=False) + "\n")
    return path


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
        strip = "".join(f'<i style="background:{_css(_kl_colour(k, scale))}"></i>' for k in r.kl)
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


def explain_set_to_dir(
    reports: Sequence[TokenReport], out_dir: str | Path, top_frac: float = 0.05, pictures: bool = True
) -> str:
    """Per-response HTML (and PNG with `pictures`: 0.6 s each on a CPU), index.html, reports.jsonl, buckets.png
    and summary.md in out_dir; returns the table."""
    out = Path(out_dir)
    stems = [f"response-{i:03d}-r{r.reward:g}" for i, r in enumerate(reports)]
    for r, stem in zip(reports, stems):
        write_report(r, out, stem, picture=pictures)
    (out / "index.html").write_text(render_index(reports, stems, top_frac, pictures), encoding="utf-8")
    write_reports_jsonl(reports, out / "reports.jsonl")
    render_buckets_png(reports, out / "buckets.png", top_frac)
    table = summary_table(localisation_summary(reports, top_frac), top_frac)
    (out / "summary.md").write_text(table)
    return table
