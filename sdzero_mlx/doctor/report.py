"""The doctor's report: the record of what it found (DoctorReport), as Markdown (terminal and OUT/doctor.md)
and JSON (OUT/doctor.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..atomic import write_json, write_text
from ..evaluate import ReviseResult, pct
from ..explain.tokens import BucketStats
from ..hindsight import FirstErrorSummary, HindsightSummary
from ..platform.device import MemoryLimit
from .cost import StageEstimate, StepCost
from .sequences import Flag, ShownSequence
from .signal import RewardStats, Signal
from .verdict import ContextChoice, Verdict


@dataclass(frozen=True)
class Template:
    has_template: bool
    args: dict  # extra chat-template variables (enable_thinking)
    turn: str  # how an assistant turn ends
    system: str  # the system prompt check


@dataclass(frozen=True)
class DoctorReport:
    recipe: str
    model: str
    split: str  # which problems were sampled
    n_problems: int
    k: int
    template: Template
    sequences: tuple[ShownSequence, ...]
    flags: tuple[Flag, ...]
    base: Signal  # measured on the recipe's model
    teacher: Optional[Signal]  # measured on the model phase 2's teacher will be (after SRT); None: not measured
    teacher_source: str  # how the teacher model was chosen, or why none was measured
    read: str  # the signal the verdict read: "teacher" (measured on it, or the recipe's model is it) or "base"
    steps: dict[str, StepCost]
    estimate: tuple[StageEstimate, ...]
    machine_memory_gb: Optional[float]
    memory_limit: Optional[MemoryLimit]  # platform.device.memory_limit: what the peaks are held against
    memory_warning: Optional[str]
    device: str  # where the steps ran (platform.device.device_name)
    workers_warning: Optional[str]
    load_average: Optional[float]  # the machine's 1-minute load average when the steps were timed
    cores: int
    verdict: Verdict
    context_choice: ContextChoice  # the teacher context expected to help, from the signal the verdict reads
    seconds: float
    estimated_run_seconds: float  # cost.run_seconds: the stages in sequence, or side by side with run.workers > 1 on a CPU
    peak_memory_gb: float  # cost.run_peak_gb
    workers: int  # run.workers

    # the base model's signal under the names the report has always used
    @property
    def rewards(self) -> RewardStats:
        return self.base.rewards

    @property
    def revision(self) -> ReviseResult:
        return self.base.revision

    @property
    def hindsight(self) -> HindsightSummary:
        return self.base.hindsight

    @property
    def kl(self) -> dict[str, BucketStats]:
        return self.base.kl



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


def signal_rows(sig: Signal, k: int) -> list[tuple[str, str]]:
    """(measure, value) of one model's signal, in the report's order."""
    rw, rev, h, f = sig.rewards, sig.revision, sig.hindsight, sig.first_error
    rows = [
        (f"reward rate (avg@{k}, training sampling)", f"{pct(rw.reward_rate)}%"),
        (f"pass@{k}", f"{pct(rw.pass_at_k)}%"),
        ("answers cut at sampling.max_tokens", f"{pct(rw.truncated_share)}%"),
        ("mean answer tokens", f"{rw.mean_tokens:.1f}"),
        ("problems with right and wrong samples (GRPO's signal)", f"{pct(rw.mixed_groups)}%"),
        ("another sample right, given a wrong one (resample rate)", f"{pct(rw.resample_rate)}%"),
        ("generate-then-revise: first / revised accuracy", f"{pct(rev.first_accuracy)}% / {pct(rev.revised_accuracy)}%"),
        ("correction rate (wrong -> right) / degradation (right -> wrong)",
         f"{pct(rev.correction_rate)}% of {rev.n_first_wrong} / {pct(rev.degradation_rate)}%"),
        ("p(gold answer) at the answer: Generator -> Reviser after a wrong answer", f"{h.gold_student:.3f} -> {h.gold_teacher:.3f}"),
        ("p(its own wrong answer): Generator -> Reviser", f"{h.own_student:.3f} -> {h.own_teacher:.3f}"),
        ("wrong answers whose gold the Reviser raises by >= 0.1",
         f"{pct(h.gold_raised)}% of {h.answers} ({h.no_final_answer} without a final answer)"),
        ("mass taken off the wrong answer that goes to the gold", "none taken off" if h.redirected is None else pct(h.redirected) + "%"),
    ]
    if f is None:
        rows.append(("first wrong step (a line whose equation does not hold)", "not measured (code answers)"))
    else:
        fh, loc = f.hindsight, f.localisation
        rows += [
            ("wrong answers with a first wrong step (coverage)", f"{pct(f.coverage)}% of {f.wrong_answers}"),
            ("p(right value) at the first wrong step: Generator -> Reviser",
             f"{fh.gold_student:.3f} -> {fh.gold_teacher:.3f} ({fh.answers} scored)"),
            ("p(its own wrong value) there: Generator -> Reviser", f"{fh.own_student:.3f} -> {fh.own_teacher:.3f}"),
            ("steps whose right value the Reviser raises by >= 0.1", f"{pct(fh.gold_raised)}% of {fh.answers}"),
            ("top 5% KL tokens on the first wrong line / by chance",
             f"{pct(loc.hit_share)}% / {pct(loc.chance_share)}% ({loc.answers} answers)" if loc.answers else "-"),
        ]
    for name in ("wrong", "right"):
        b = sig.kl.get(name)
        if b is not None:
            rows.append((f"teacher KL on {name} answers: share in top 5% tokens / mean per token ({b.n} answers)",
                         f"{b.concentration:.3f} / {b.mean_kl:.4f}"))
    return rows


def signal_table(r: DoctorReport) -> list[str]:
    """The signal of the base model, and beside it the teacher's when it was measured."""
    base = signal_rows(r.base, r.k)
    if r.teacher is None:
        return ["| measure | value |", "|---|---|", *[f"| {m} | {v} |" for m, v in base]]
    teacher = dict(signal_rows(r.teacher, r.k))
    return ["| measure | base | teacher (after SRT) |", "|---|---|---|",
            *[f"| {m} | {v} | {teacher.get(m, '-')} |" for m, v in base]]


def context_rows(sig: Signal, scores: dict) -> list[str]:
    """The table of the Reviser's hindsight under each teacher context (doctor.signal.ContextMeasure)."""
    lines = ["| teacher context | coverage of wrong answers | p(gold) at the answer: Generator -> Reviser | "
             "p(own wrong answer) there | p(right value) at the first wrong step | per wrong answer |",
             "|---|---|---|---|---|---|"]
    for name, m in sig.contexts.items():
        a, st = m.at_answer, m.at_step
        answer = f"{a.gold_student:.3f} -> {a.gold_teacher:.3f} ({a.answers})" if a.answers else "-"
        own = f"{a.own_student:.3f} -> {a.own_teacher:.3f}" if a.answers else "-"
        step = ("not measured" if st is None else
                f"{st.gold_student:.3f} -> {st.gold_teacher:.3f} ({st.answers})" if st.answers else "-")
        score = scores.get(name)
        lines.append(f"| {name} | {pct(m.coverage)}% of {m.wrong_answers} | {answer} | {own} | {step} | "
                     f"{'-' if score is None else f'{score:+.3f}'} |")
    return lines


def render(r: DoctorReport, width: int = 0) -> str:
    """The report as Markdown; `width` > 0 elides the middle of longer sequence parts (the terminal's view)."""
    v = r.verdict
    read = (f"the teacher after SRT, {r.teacher.model}" if r.teacher is not None else
            "the recipe's model, which is the teacher after SRT" if r.read == "teacher" else
            "the base model; the teacher after SRT was not measured")
    lines = [
        f"# sdzero doctor: {r.recipe}",
        "",
        f"**Verdict: {v.label}** (read on {read})",
        "",
        *[f"- {reason}" for reason in v.reasons],
        "",
        f"Model {r.model}; {r.n_problems} problems of the {r.split} split, {r.k} answers each; "
        f"doctor took {r.seconds:.0f} s. Teacher after SRT: {r.teacher.model if r.teacher else '-'} ({r.teacher_source}).",
        "",
        "## What will go wrong",
        "",
        *([f"- **{f.check}**: {f.message}" for f in r.flags] or ["- nothing found"]),
        *([f"- **memory**: {r.memory_warning}"] if r.memory_warning else []),
        *([f"- **run.workers**: {r.workers_warning}"] if r.workers_warning else []),
        "",
        "## The signal",
        "",
        *signal_table(r),
        "",
        "## The teacher's contexts",
        "",
        f"**Expected to help: {r.context_choice.context or 'none'}** (distill.teacher_context). {r.context_choice.reason}",
        "",
        f"The Reviser ({'the teacher after SRT' if r.teacher is not None else 'the recipe model'}) on the same wrong "
        "answers, reading each context instead of the cue, over the answers the context has something to show for "
        "(its coverage; the problem's k answers stand for distill's group). In brackets: answers scored. Per wrong "
        "answer: coverage x the larger gain of the two places (each where 8 or more were scored), what the ranking "
        "reads.",
        "",
        *context_rows(r.teacher or r.base, r.context_choice.scores),
    ]
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


def first_error_json(f: Optional[FirstErrorSummary]) -> Optional[dict]:
    """doctor.json's hindsight_first_error (None for code answers)."""
    if f is None:
        return None
    h, loc = f.hindsight, f.localisation
    return {
        "wrong_answers": f.wrong_answers, "found": f.found, "coverage": f.coverage,
        "scored": h.answers, "no_written_value": h.no_final_answer,
        "right_prob_generator": h.gold_student, "right_prob_reviser": h.gold_teacher, "gain": h.gold_gain,
        "own_prob_generator": h.own_student, "own_prob_reviser": h.own_teacher, "raised": h.gold_raised,
        "kl_top_tokens_on_step": loc.hit_share if loc.answers else None,
        "kl_chance": loc.chance_share if loc.answers else None,
        "kl_ratio": loc.ratio if loc.answers else None, "kl_answers": loc.answers, "kl_top_tokens": loc.top_tokens,
    }


def contexts_json(sig: Signal) -> dict:
    """doctor.json's teacher_contexts: the hindsight under each context, at the answer and the first wrong step."""
    out = {}
    for name, m in sig.contexts.items():
        a, st = m.at_answer, m.at_step
        out[name] = {
            "wrong_answers": m.wrong_answers, "covered": m.covered, "coverage": m.coverage,
            "scored": a.answers, "gold_prob_generator": a.gold_student, "gold_prob_reviser": a.gold_teacher,
            "gold_gain": a.gold_gain, "own_prob_generator": a.own_student, "own_prob_reviser": a.own_teacher,
            "raised": a.gold_raised,
            "first_error": None if st is None else {
                "found": m.steps_found, "scored": st.answers, "right_prob_generator": st.gold_student,
                "right_prob_reviser": st.gold_teacher, "gain": st.gold_gain, "own_prob_generator": st.own_student,
                "own_prob_reviser": st.own_teacher},
        }
    return out


def signal_json(sig: Signal) -> dict:
    """One model's signal: the headline numbers, then the detail."""
    return {
        "model": sig.model,
        "reward_rate": sig.rewards.reward_rate,
        "truncated_share": sig.rewards.truncated_share,
        "correction_rate": sig.revision.correction_rate,
        "gold_prob_generator": sig.hindsight.gold_student,
        "gold_prob_reviser": sig.hindsight.gold_teacher,
        "gold_gain": sig.hindsight.gold_gain,
        "resample_rate": sig.rewards.resample_rate,
        "rewards": asdict(sig.rewards),
        "revision": {k: v for k, v in asdict(sig.revision).items() if k != "rows"},
        "hindsight": {**asdict(sig.hindsight), "gold_gain": sig.hindsight.gold_gain, "redirected": sig.hindsight.redirected},
        "hindsight_first_error": first_error_json(sig.first_error),
        "kl": {name: asdict(b) for name, b in sig.kl.items()},
        "teacher_contexts": contexts_json(sig),
    }


def report_json(r: DoctorReport) -> dict:
    """doctor.json: the verdict and the base model's signal at the top level (the teacher's under "teacher"), the
    detail below them."""
    base = signal_json(r.base)
    return {
        "verdict": r.verdict.label,
        "reasons": list(r.verdict.reasons),
        "verdict_read": r.read,
        "recommended_context": r.context_choice.context,  # from the signal the verdict reads (verdict_read)
        "recommended_reason": r.context_choice.reason,
        "recommended_place": r.context_choice.place,
        "context_scores": r.context_choice.scores,
        **{key: value for key, value in base.items() if key != "model"},
        "step_seconds": r.steps["distill"].seconds if "distill" in r.steps else None,
        "peak_memory_gb": r.peak_memory_gb,
        "estimated_run_seconds": r.estimated_run_seconds,
        "recipe": r.recipe,
        "model": r.model,
        "teacher": None if r.teacher is None else signal_json(r.teacher),
        "teacher_source": r.teacher_source,
        "split": r.split,
        "n_problems": r.n_problems,
        "k": r.k,
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


def write_report(r: DoctorReport, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    md, js = out_dir / "doctor.md", out_dir / "doctor.json"
    write_text(md, render(r) + "\n")
    write_json(js, report_json(r))
    return md, js
