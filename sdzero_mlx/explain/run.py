"""`sdzero explain`, the job: load the two roles, sample or read the responses, measure them (tokens.py) and
write each report's page and picture and a set's index, JSONL, buckets picture and table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import mlx.nn as nn

from ..config import KlSettings, ModelConfig, PromptConfig, SamplingConfig
from ..modeling import load_model
from ..prompts import Separators, prompt_ids as make_prompt_ids, text_answer_ids
from ..rollout import sample_rollouts
from ..types import Example
from ..verifier import VerifierConfig, verify, verify_batch
from .pages import render_html, render_index
from .pictures import render_buckets_png, render_png
from .tokens import Teacher, TokenReport, kl_concentration, localisation_summary, summary_table, token_report


@dataclass(frozen=True)
class ExplainSettings:
    """How responses are drawn and read: the chat and the cues (prompts, seps), the student's sampling and seed,
    the verifier that picks sep(r), and the loss whose per-token value is shown (kl_settings)."""

    prompts: PromptConfig
    sampling: SamplingConfig
    verifier: VerifierConfig
    seps: Separators
    seed: int
    kl_settings: KlSettings


def explain_examples(model: nn.Module, tokenizer, teacher: Teacher, examples: Sequence[Example],
                     settings: ExplainSettings) -> list[TokenReport]:
    """One sampled student response per example, graded, then its token report."""
    s = settings
    rollouts = sample_rollouts(model, tokenizer, examples, s.prompts, s.sampling, s.seed)
    rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], s.verifier)
    return [
        token_report(model, tokenizer, teacher, r.prompt_ids, r.target_ids, w, s.seps, s.kl_settings,
                     problem=r.example.problem)
        for r, w in zip(rollouts, rewards)
    ]


def explain_one(model: nn.Module, tokenizer, teacher: Teacher, problem: str, response: Optional[str],
                answer: Optional[str], reward: Optional[float], settings: ExplainSettings) -> TokenReport:
    """The token report of one response: the given text, or one sampled from the student.

    The reward picks sep(r): given, or graded against `answer`.
    """
    s = settings
    if reward is None and answer is None:
        raise ValueError("Give an answer (to grade the response) or a reward 0/1 (to pick the control phrase).")
    if response is None:
        rollout = sample_rollouts(model, tokenizer, [Example("explain", problem, answer or "")], s.prompts, s.sampling,
                                  s.seed)[0]
        p_ids, r_ids, text = rollout.prompt_ids, rollout.target_ids, rollout.text
    else:
        p_ids, r_ids = response_ids(tokenizer, problem, response, s.prompts)
        text = response
    r = reward if reward is not None else verify(text, answer, s.verifier)
    return token_report(model, tokenizer, teacher, p_ids, r_ids, r, s.seps, s.kl_settings, problem=problem)


def response_ids(tokenizer, problem: str, response: str, prompts: PromptConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(prompt ids, response ids) for a response given as text by a user.

    User text has no sampled ids, so it is encoded (prompts.text_answer_ids); the end-of-turn id is
    appended as if the model had stopped.
    """
    ids, eot = text_answer_ids(tokenizer, response)
    return make_prompt_ids(tokenizer, problem, prompts), ids + (eot,)


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


def load_student_and_teacher(model: str, adapter: Optional[str], teacher: Optional[str], teacher_adapter: Optional[str]):
    """(student, teacher, tokenizer). The teacher defaults to MODEL without the student's adapter: with no
    adapter that is the student itself, SD-Zero's Reviser (the Generator's own weights in the revision
    context); with one, the phase-2 setting where the frozen teacher is the model the student started from."""
    student, tokenizer = load_model(ModelConfig(model), adapter_path=adapter)
    if (teacher or model, teacher_adapter) == (model, adapter):  # the same weights: load them once
        return student, student, tokenizer
    teacher_model, teacher_tok = load_model(ModelConfig(teacher or model), adapter_path=teacher_adapter)
    if teacher_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"The teacher {teacher} has a different tokenizer from {model}; both must score the same ids.")
    return student, teacher_model, tokenizer


def write_reports_jsonl(reports: Sequence[TokenReport], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in reports:
            f.write(json.dumps({**asdict(r), "kl_concentration": kl_concentration(r.kl)}, ensure_ascii=False) + "\n")
    return path


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
