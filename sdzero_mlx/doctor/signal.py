"""The signal SD-Zero would get from this model on this data, measured on the recipe's model without training.

- reward rate: avg@k of the training sampling (sampling.temperature, sampling.max_tokens), k = eval.k;
  the share of answers cut at max_tokens; groups with mixed rewards (the only ones GRPO learns from);
- resample rate: the chance that another sample of a problem is right, given a wrong one (the bar a
  Reviser's correction has to clear to be more than a second try);
- correction rate: evaluate.generate_then_revise at the evaluation's settings (the demo table's);
- hindsight at the answer (hindsight.py): the Reviser's against the Generator's probability of the
  gold final answer, and of the answer's own wrong one, after reading a wrong answer;
- hindsight at the first wrong step (hindsight.py): the same at the first line whose equation
  does not hold, for its right value, with the share of the KL's top tokens on that line and the
  share of wrong answers where such a line was found;
- KL concentration (explain.py): the share of a response's per-token KL in its top 5% tokens, wrong
  against right answers, with the recipe's distill KL (distill.kl_settings: kind, forward weight, top-k);
- each teacher context (contexts.py, distill.teacher_context): the same hindsight, at the answer and at
  the first wrong step, on the same wrong answers, with the Reviser reading that context instead of the
  cue, over the answers the context has something to show for (its coverage: a sibling needs a
  verified answer among the doctor's k samples of the problem, which stand for distill's group; gold
  needs the row's solution; self shows nothing to a wrong answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import mlx.core as mx

from ..config import EvalConfig, Recipe
from ..contexts import CONTEXTS, Reading, context_of
from ..evaluate import EvalSettings, ReviseResult, generate_then_revise, pass_at_k
from ..explain.tokens import BucketStats, TokenReport, localisation_summary, step_localisation, token_report
from ..hindsight import (
    FirstErrorSummary, HindsightSummary, measure_first_error, measure_hindsight, step_spans, summarize_first_error,
    summarize_hindsight,
)
from ..prompts import Separators
from ..rollout import sample_groups
from ..stages.collect import generation_counter
from ..types import Example, Graded, Rollout
from ..verifier import verify_batch


@dataclass(frozen=True)
class Samples:
    """k answers per problem from the training sampling, graded, and what sampling them cost."""

    graded: tuple[Graded, ...]  # problem-major: sample j of problem i at i * k + j
    k: int
    seconds: float
    peak_memory_gb: float

    @property
    def rollouts(self) -> tuple[Rollout, ...]:
        return tuple(g.rollout for g in self.graded)

    @property
    def rewards(self) -> tuple[float, ...]:
        return tuple(g.reward for g in self.graded)

    @property
    def sampled_tokens(self) -> int:
        return sum(len(g.rollout.completion_ids) for g in self.graded)


def sample_answers(model, tokenizer, examples: Sequence[Example], recipe: Recipe, k: int,
                   on_finish: Optional[Callable[[int], None]] = None) -> Samples:
    """k answers to each example with the recipe's training sampling, graded by its verifier."""
    mx.reset_peak_memory()
    tic = time.perf_counter()
    rollouts = sample_groups(model, tokenizer, examples, k, recipe.prompts, recipe.sampling, recipe.run.seed, on_finish)
    seconds = time.perf_counter() - tic
    peak = mx.get_peak_memory() / 1e9
    rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], recipe.verifier)
    return Samples(tuple(Graded(r, w) for r, w in zip(rollouts, rewards)), k, seconds, peak)


@dataclass(frozen=True)
class RewardStats:
    reward_rate: float  # avg@k
    pass_at_k: float
    truncated_share: float  # answers cut at sampling.max_tokens
    mixed_groups: float  # problems whose k rewards differ (GRPO's signal at group size k)
    resample_rate: Optional[float]  # P(another sample right | this one wrong); None when k = 1 or none wrong
    distinct_right: float  # distinct right answers / right answers (phase 1 drops duplicate tuples)
    mean_tokens: float


def reward_stats(rewards: Sequence[float], rollouts: Sequence[Rollout], k: int) -> RewardStats:
    """Example: rewards [1, 0, 0, 0] with k = 2 -> reward 0.25, pass@2 0.5, mixed 0.5, resample 1/3."""
    groups = [list(range(i, i + k)) for i in range(0, len(rewards), k)]
    right = [[rewards[j] >= 0.5 for j in g] for g in groups]
    chances, n_wrong = 0.0, 0
    for flags in right:
        c = sum(flags)
        for f in flags:
            if not f and k > 1:
                chances += c / (k - 1)
                n_wrong += 1
    right_ids = [(r.example.id, r.completion_ids) for r, w in zip(rollouts, rewards) if w >= 0.5]
    n = max(len(rewards), 1)
    return RewardStats(
        reward_rate=sum(rewards) / n,
        pass_at_k=sum(pass_at_k(k, sum(f), k) for f in right) / max(len(groups), 1),
        truncated_share=sum(r.finish_reason == "length" for r in rollouts) / n,
        mixed_groups=sum(0 < sum(f) < k for f in right) / max(len(groups), 1),
        resample_rate=chances / n_wrong if n_wrong else None,
        distinct_right=len(set(right_ids)) / len(right_ids) if right_ids else 1.0,
        mean_tokens=sum(len(r.completion_ids) for r in rollouts) / n,
    )


def revise(model, tokenizer, examples: Sequence[Example], recipe: Recipe, copies: int,
           on_finish: Optional[Callable[[int], None]] = None) -> ReviseResult:
    """Generate-then-revise at the evaluation's temperature and length, as the demo table reports it, on
    `copies` first attempts per problem (one per problem leaves a correction rate of ~20 wrong answers)."""
    config = EvalConfig(k=1, temperature=recipe.eval.temperature, max_tokens=recipe.eval.max_tokens, greedy=False,
                        revise=True)
    repeated = [ex for ex in examples for _ in range(copies)]
    return generate_then_revise(model, tokenizer, repeated, replace(EvalSettings.of(recipe), eval=config), on_finish)


def corrections_by_problem(revision: ReviseResult) -> tuple[tuple[int, int], ...]:
    """(corrected, wrong first attempts) of each problem with a wrong first attempt, in first-seen order:
    the clusters verdict.beats takes the correction rate's standard error over.

    Example: rows of problem a (wrong -> right, wrong -> wrong) and b (right) -> ((1, 2),)
    """
    counts: dict[str, list[int]] = {}
    for row in revision.rows:
        if row.first_reward < 0.5:
            c = counts.setdefault(row.id, [0, 0])
            c[0] += row.revised_reward >= 0.5
            c[1] += 1
    return tuple((c, n) for c, n in counts.values())


def answer_hindsight(model, tokenizer, graded: Sequence[Graded], seps: Separators, pad_id: int,
                     limit: int = 64, last_number_fallback: bool = False) -> HindsightSummary:
    """hindsight.py's measure on up to `limit` wrong answers."""
    wrong = [(g.rollout.prompt_ids, g.rollout.completion_ids, g.rollout.example.answer)
             for g in graded if g.reward < 0.5][:limit]
    values, missing = measure_hindsight(model, tokenizer, wrong, seps.wrong, pad_id,
                                        last_number_fallback=last_number_fallback)
    return summarize_hindsight(values, missing)


def token_reports(model, tokenizer, graded: Sequence[Graded], seps: Separators, recipe: Recipe,
                  limit: int = 24) -> tuple[tuple[Graded, TokenReport], ...]:
    """explain.token_report (per-token KL with the recipe's distill KL) of up to `limit` wrong and `limit` right answers."""
    picked = [g for g in graded if g.reward < 0.5][:limit] + [g for g in graded if g.reward >= 0.5][:limit]
    return tuple(
        (g, token_report(model, tokenizer, model, g.rollout.prompt_ids, g.rollout.target_ids, g.reward, seps,
                         recipe.distill.kl_settings))
        for g in picked
    )


def kl_buckets(reports: Sequence[tuple[Graded, TokenReport]]) -> dict[str, BucketStats]:
    """KL concentration and mean KL of the reports' wrong and right answers ('wrong' / 'right')."""
    return {("right" if b.reward >= 0.5 else "wrong"): b for b in localisation_summary([r for _, r in reports])}


def first_error_hindsight(model, tokenizer, graded: Sequence[Graded], seps: Separators, pad_id: int,
                          reports: Sequence[tuple[Graded, TokenReport]], limit: int = 64) -> FirstErrorSummary:
    """hindsight.py's measure on up to `limit` wrong answers (the ones answer_hindsight reads), and the KL on
    the first wrong step of the wrong answers among `reports`."""
    wrong = [(g.rollout.prompt_ids, g.rollout.completion_ids) for g in graded if g.reward < 0.5][:limit]
    values, found, unwritten = measure_first_error(model, tokenizer, wrong, seps.wrong, pad_id)
    spans = step_spans(tokenizer, [(g.rollout.completion_ids, r) for g, r in reports if g.reward < 0.5])
    return summarize_first_error(values, len(wrong), found, unwritten, step_localisation(spans))


@dataclass(frozen=True)
class ContextMeasure:
    """The Reviser's hindsight on the doctor's wrong answers when it reads one teacher context."""

    context: str  # a distill.teacher_context
    wrong_answers: int  # wrong answers looked at (those answer_hindsight reads)
    covered: int  # ... whose context has something to show (the rest get a fallback, or nothing)
    at_answer: HindsightSummary  # over the covered answers with a final answer
    at_step: Optional[HindsightSummary]  # at the first wrong step of the covered answers; None: code answers
    steps_found: int  # covered answers with a first wrong step

    @property
    def coverage(self) -> Optional[float]:
        """Share of wrong answers the context has something to show for; None without wrong answers."""
        return self.covered / self.wrong_answers if self.wrong_answers else None


def context_hindsight(model, tokenizer, graded: Sequence[Graded], k: int, recipe: Recipe, seps: Separators,
                      pad_id: int, cue: HindsightSummary, cue_step: Optional[FirstErrorSummary],
                      limit: int = 64) -> dict[str, ContextMeasure]:
    """ContextMeasure of every teacher context on up to `limit` wrong answers (answer_hindsight's), the groups being
    the k samples of each problem; the cue's is the measure already taken (`cue`, `cue_step`)."""
    wrong = [i for i, g in enumerate(graded) if g.reward < 0.5][:limit]
    code = recipe.verifier.kind == "code"
    out = {"cue": ContextMeasure("cue", len(wrong), len(wrong), cue, None if cue_step is None else cue_step.hindsight,
                                 0 if cue_step is None else cue_step.found)}
    for name in CONTEXTS:
        if name == "cue":
            continue
        reading = Reading(name, seps, tokenizer, recipe.prompts, answer_phrase=recipe.distill.answer_phrase)
        shown = [(i, context_of(reading, graded[i - i % k:i - i % k + k], i % k)) for i in wrong]
        shown = [(graded[i].rollout, c) for i, c in shown if c is not None and c.hint]
        contexts = [c for _, c in shown]
        values, missing = measure_hindsight(
            model, tokenizer, [(r.prompt_ids, r.completion_ids, r.example.answer) for r, _ in shown], seps.wrong,
            pad_id, last_number_fallback=recipe.verifier.last_number_fallback, contexts=contexts) if shown else ([], 0)
        at_step, found = None, 0
        if not code:
            step_values, found, unwritten = measure_first_error(
                model, tokenizer, [(r.prompt_ids, r.completion_ids) for r, _ in shown], seps.wrong, pad_id,
                contexts=contexts) if shown else ([], 0, 0)
            at_step = summarize_hindsight(step_values, unwritten)
        out[name] = ContextMeasure(name, len(wrong), len(shown), summarize_hindsight(values, missing), at_step, found)
    return out


@dataclass(frozen=True)
class Signal:
    """Everything the doctor measures on one model (the base, or the SRT model phase 2 distils from)."""

    model: str  # its path
    samples: Samples
    rewards: RewardStats
    revision: ReviseResult
    hindsight: HindsightSummary
    first_error: Optional[FirstErrorSummary]  # None for code answers: no equations to check
    kl: dict[str, BucketStats]
    contexts: dict[str, ContextMeasure]  # the hindsight under each teacher context (the cue's is `hindsight`)


def measure_signal(model, tokenizer, model_path: str, examples: Sequence[Example], recipe: Recipe, k: int,
                   seps: Separators, pad_id: int, log: Callable[[str], None] = print, prefix: str = "doctor:") -> Signal:
    """Sample k answers per problem, generate-then-revise, hindsight at the answer and at the first wrong step,
    KL concentration: the doctor's steps 1-3 on one model."""
    log(f"{prefix} [1/5] sampling {len(examples) * k} answers (training sampling: T={recipe.sampling.temperature}, "
        f"max_tokens={recipe.sampling.max_tokens})")
    samples = sample_answers(model, tokenizer, examples, recipe, k, generation_counter(log))
    stats = reward_stats(samples.rewards, samples.rollouts, k)
    log(f"{prefix} reward rate {100 * stats.reward_rate:.1f}%, cut at max_tokens {100 * stats.truncated_share:.1f}%")
    log(f"{prefix} [2/5] generate-then-revise, {k} first attempts per problem")
    revision = revise(model, tokenizer, examples, recipe, k, generation_counter(log))
    log(f"{prefix} [3/5] the Reviser's hindsight on wrong answers (at the answer and at the first wrong step), KL")
    hindsight = answer_hindsight(model, tokenizer, samples.graded, seps, pad_id,
                                 last_number_fallback=recipe.verifier.last_number_fallback)
    reports = token_reports(model, tokenizer, samples.graded, seps, recipe)
    first_error = None if recipe.verifier.kind == "code" else first_error_hindsight(
        model, tokenizer, samples.graded, seps, pad_id, reports)
    log(f"{prefix} the same under each teacher context ({', '.join(CONTEXTS)})")
    contexts = context_hindsight(model, tokenizer, samples.graded, k, recipe, seps, pad_id, hindsight, first_error)
    return Signal(model_path, samples, stats, revision, hindsight, first_error, kl_buckets(reports), contexts)
