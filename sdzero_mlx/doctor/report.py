"""The doctor's report: Markdown (terminal and OUT/doctor.md) and JSON (OUT/doctor.json)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_json, write_text
from ..evaluate import pct

if TYPE_CHECKING:
    from .run import DoctorReport


def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _clip(text: str, width: int) -> str:
    """The text, its middle elided when longer than width (0: never)."""
    if not width or len(text) <= width:
        return text
    half = width // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters ...] {text[-half:]}"


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def render(r: "DoctorReport", width: int = 0) -> str:
    """The report as Markdown; `width` > 0 elides the middle of longer sequence parts (the terminal's view)."""
    v, rw, rev, h = r.verdict, r.rewards, r.revision, r.hindsight
    lines = [
        f"# sdzero doctor: {r.recipe}",
        "",
        f"**Verdict: {v.label}**",
        "",
        *[f"- {reason}" for reason in v.reasons],
        "",
        f"Model {r.model}; {r.n_problems} problems of the {r.split} split, {r.k} answers each; "
        f"doctor took {r.seconds:.0f} s.",
        "",
        "## What will go wrong",
        "",
        *([f"- **{f.check}**: {f.message}" for f in r.flags] or ["- nothing found"]),
        *([f"- **memory**: {r.memory_warning}"] if r.memory_warning else []),
        *([f"- **run.workers**: {r.workers_warning}"] if r.workers_warning else []),
        "",
        "## The signal",
        "",
        "| measure | value |",
        "|---|---|",
        f"| reward rate (avg@{r.k}, training sampling) | {pct(rw.reward_rate)}% |",
        f"| pass@{r.k} | {pct(rw.pass_at_k)}% |",
        f"| answers cut at sampling.max_tokens | {pct(rw.truncated_share)}% |",
        f"| mean answer tokens | {rw.mean_tokens:.1f} |",
        f"| problems with right and wrong samples (GRPO's signal) | {pct(rw.mixed_groups)}% |",
        f"| another sample right, given a wrong one (resample rate) | {pct(rw.resample_rate)}% |",
        f"| generate-then-revise: first / revised accuracy | {pct(rev.first_accuracy)}% / {pct(rev.revised_accuracy)}% |",
        f"| correction rate (wrong -> right, {rev.n_first_wrong} wrong) / degradation (right -> wrong) "
        f"| {pct(rev.correction_rate)}% / {pct(rev.degradation_rate)}% |",
        f"| p(gold answer) at the answer: Generator -> Reviser after a wrong answer | {h.gold_student:.3f} -> {h.gold_teacher:.3f} |",
        f"| p(its own wrong answer): Generator -> Reviser | {h.own_student:.3f} -> {h.own_teacher:.3f} |",
        f"| wrong answers whose gold the Reviser raises by >= 0.1 | {pct(h.gold_raised)}% of {h.answers} "
        f"({h.no_final_answer} without a final answer) |",
        f"| mass taken off the wrong answer that goes to the gold | "
        f"{'none taken off' if h.redirected is None else pct(h.redirected) + '%'} |",
    ]
    for name in ("wrong", "right"):
        b = r.kl.get(name)
        if b is not None:
            lines.append(f"| teacher KL on {name} answers: share in top 5% tokens / mean per token ({b.n} answers) "
                         f"| {b.concentration:.3f} / {b.mean_kl:.4f} |")
    lines += [
        "",
        "## The cost",
        "",
        "One real step of each stage, at the recipe's micro-batches and lengths, in a temporary folder:",
        "",
        "| stage | seconds per step | peak memory (GB) |",
        "|---|---|---|",
        *[f"| {s.stage} | {s.seconds:.2f} | {s.peak_memory_gb:.3f} |" for s in r.steps.values()],
        "",
        f"The run (`sdzero compare` over compare.methods) on {r.device}, estimated: **{_duration(r.estimated_run_seconds)}**"
        + ("" if r.workers <= 1 else f" with run.workers = {r.workers} (one GPU: stages counted one after another)"
           if r.workers_warning else f" with run.workers = {r.workers} (stages side by side; one after another they sum "
           f"to {_duration(sum(s.seconds for s in r.estimate))})") + ", "
        f"peak memory **{r.peak_memory_gb:.2f} GB**"
        + (f"; the limit is {r.memory_limit.gb:.1f} GB, {r.memory_limit.source}." if r.memory_limit else "."),
        "",
        *([f"Timed while the machine's load average was {r.load_average:.1f} on {r.cores} cores: times scale with the "
            "load, so a busy machine gives a longer estimate (and a quiet one a shorter run).", ""]
          if r.load_average is not None else []),
        "| stage | work | seconds | peak memory (GB) |",
        "|---|---|---|---|",
        *[f"| {s.name} | {s.work} | {s.seconds:.0f} | {s.peak_memory_gb:.3f} |" for s in r.estimate],
        "",
        "Not counted: pictures and the demo's self-localisation; distill's real steps run on the SRT model, whose "
        "answers may be longer than the base's.",
        "",
        "## The sequences",
        "",
        f"Chat template: {'yes' if r.template.has_template else 'none'}; template variables from the recipe: "
        f"{r.template.args or 'none'} (prompts.enable_thinking); {r.template.turn}; {r.template.system}.",
        "",
    ]
    for seq in r.sequences:
        lines += [f"**{seq.title}** ({seq.tokens} tokens)", "", "```"]
        lines += [f"{p.name} ({len(p.ids)} tokens): {_clip(repr(p.text), width)}" for p in seq.parts]
        lines += ["```", ""]
    return "\n".join(lines)


def report_json(r: "DoctorReport") -> dict:
    """doctor.json: the headline numbers at the top level, the detail below them."""
    return {
        "verdict": r.verdict.label,
        "reasons": list(r.verdict.reasons),
        "reward_rate": r.rewards.reward_rate,
        "truncated_share": r.rewards.truncated_share,
        "correction_rate": r.revision.correction_rate,
        "step_seconds": r.steps["distill"].seconds if "distill" in r.steps else None,
        "peak_memory_gb": r.peak_memory_gb,
        "estimated_run_seconds": r.estimated_run_seconds,
        "gold_prob_generator": r.hindsight.gold_student,
        "gold_prob_reviser": r.hindsight.gold_teacher,
        "gold_gain": r.hindsight.gold_gain,
        "resample_rate": r.rewards.resample_rate,
        "recipe": r.recipe,
        "model": r.model,
        "split": r.split,
        "n_problems": r.n_problems,
        "k": r.k,
        "rewards": asdict(r.rewards),
        "revision": {k: v for k, v in asdict(r.revision).items() if k != "rows"},
        "hindsight": {**asdict(r.hindsight), "gold_gain": r.hindsight.gold_gain, "redirected": r.hindsight.redirected},
        "kl": {name: asdict(b) for name, b in r.kl.items()},
        "step_seconds_by_stage": {s: c.seconds for s, c in r.steps.items()},
        "step_peak_memory_gb_by_stage": {s: c.peak_memory_gb for s, c in r.steps.items()},
        "estimate": [asdict(s) for s in r.estimate],
        "machine_memory_gb": r.machine_memory_gb,
        "memory_limit_gb": r.memory_limit.gb if r.memory_limit else None,
        "memory_limit_source": r.memory_limit.source if r.memory_limit else None,
        "device": r.device,
        "workers_warning": r.workers_warning,
        "load_average": r.load_average,
        "cores": r.cores,
        "memory_warning": r.memory_warning,
        "flags": [asdict(f) for f in r.flags],
        "template": asdict(r.template),
        "sequences": [{"title": s.title, "parts": [{"name": p.name, "tokens": len(p.ids), "ids": list(p.ids), "text": p.text}
                                                  for p in s.parts]} for s in r.sequences],
        "doctor_seconds": r.seconds,
    }


def write_report(r: "DoctorReport", out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    md, js = out_dir / "doctor.md", out_dir / "doctor.json"
    write_text(md, render(r) + "\n")
    write_json(js, report_json(r))
    return md, js
