"""Phase 1, step 1: collect self-revision tuples (x, y_init, r_init, P_r, y_rev).

For each question of the phase-1 split, in batches of `collect.questions_per_batch` questions:
  1. y_init ~ model(. | chat(x)), n = `collect.initial_samples` per question; r_init = verify(y_init, a)
  2. for wrong answers (and, unless `collect.rephrase_correct` is off, correct ones), k =
     `collect.revisions` samples y_rev ~ model(. | chat(x) + y_init + sep(r_init)), continuing the
     same assistant turn; the revisions of every question of the batch run through one generator
  3. clean (below), verify the cleaned y_rev, keep it only if it verifies and is no duplicate
  4. append the kept tuples to tuples.jsonl and record progress; stop at `collect.target_tuples`
     kept tuples or at the end of the split.
Token ids are the source of truth: every row holds the exact sampled ids (prompt, y_init, sep, y_rev)
and text is only ever decoded from them.

Cleaning (reference code's rules, applied to token ids; `collect.clean` turns it off):
  - a degenerate repeating tail (a block of tokens repeated at least `collect.tail_min_repeats`
    times, covering at least `collect.tail_min_tokens` tokens, at the end) is cut to one copy, in
    y_init and y_rev. A trimmed y_rev is given the end-of-turn token, so training teaches to stop.
  - a sycophantic opener of y_rev ("You're absolutely right", "Good catch", "Thank you for ...")
    is cut at a token boundary. Departure: the reference code also re-capitalises the next word;
    that would need re-tokenising, so we do not. An opener that ends inside a token cannot be cut
    from the ids cleanly and the tuple is dropped instead.
  - exact duplicates (same question, same y_init ids, same y_rev ids) are dropped.
The keep rule is a pure function of (cleaned tuples, rewards): `select_tuples`.

Resume: after each batch, rows are appended (and fsynced) and then progress.json (counters and the
byte length of tuples.jsonl) is replaced atomically. A restart truncates tuples.jsonl to the recorded length
(dropping rows of a batch that did not finish) and redoes that batch with the same seeds, so no row
is lost or duplicated. One process at a time: the folder's lock (rundir.py) refuses a second
collect, which would write every tuple twice; run.json records the data file's hash, and a resume
on changed data is refused.

Departures from the paper (recipe fields): `collect.questions_per_batch` (batching only), the
cleaning thresholds (the reference code uses 3 repeats of >= 10 characters), `sampling.*` as for
phase 2 (paper: temperature 0.7, 16K tokens).

Prompt-cache sharing: the k revisions of one answer share one prefill of prompt + y_init + sep
(`generate_completions(..., copies=k)` deep-copies the KV cache k times). Measured on CPU
(SmolLM2-135M, 8 answers x k = 3): 45.2 s -> 26.0 s with a 256-token y_init and 64-token revisions,
42.6 s -> 34.3 s (per sampled token 24 -> 15 ms) with 128/128 tokens; greedy outputs are identical.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from ..atomic import read_json, write_json
from ..configio import write_yaml
from ..data import make_splits
from ..lengths import fitting, prompt_limit
from ..modeling import load_model
from ..prompts import Separators, prompt_ids, separators
from ..rollout import generate_completions
from ..rundir import PROGRESS, RunDir
from ..seeds import derive_seed
from ..types import Example, RevisionTuple, load_tuples
from ..verifier import verify_batch
from ..writable import check_output_dir
from . import StageSpec, continue_command

if TYPE_CHECKING:
    from ..config import Recipe


@dataclass(frozen=True)
class CollectConfig:
    """Phase 1 collection: initial answers, then revisions continued after sep(r)."""

    initial_samples: int = field(default=1, metadata={"help": "n initial answers per question (paper: 1)."})
    revisions: int = field(default=3, metadata={"help": "k revisions per initial answer (paper: 3)."})
    rephrase_correct: bool = field(default=True, metadata={"help": "Also revise correct answers (rephrase cue)."})
    target_tuples: int = field(default=0, metadata={"help": "Stop after this many kept tuples; 0 = whole split."})
    questions_per_batch: int = field(
        default=16, metadata={"help": "Questions sampled and revised together; also the resume unit (not in the paper)."}
    )
    clean: bool = field(default=True, metadata={"help": "Trim repeating tails, cut sycophantic openers (reference code)."})
    tail_min_repeats: int = field(default=3, metadata={"help": "Copies of a block that make a tail degenerate (reference: 3)."})
    tail_min_tokens: int = field(
        default=16, metadata={"help": "Shortest degenerate tail in tokens (reference: 3 x >= 10 characters)."}
    )

    def __post_init__(self):
        if self.initial_samples < 1 or self.revisions < 1 or self.target_tuples < 0:
            raise ValueError("collect.initial_samples and collect.revisions must be >= 1, target_tuples >= 0.")
        if self.questions_per_batch < 1 or self.tail_min_repeats < 2 or self.tail_min_tokens < 1:
            raise ValueError("collect.questions_per_batch >= 1, tail_min_repeats >= 2 and tail_min_tokens >= 1 are needed.")

TUPLES, SUMMARY = "tuples.jsonl", "summary.json"


# ---------------------------------------------------------------------------------------------
# Cleaning: pure functions of token ids (and a decode function for the opener rule)
# ---------------------------------------------------------------------------------------------


def trim_repeating_tail(ids: Sequence[int], min_repeats: int = 3, min_tokens: int = 16, max_period: int = 512) -> tuple[int, ...]:
    """Cut a tail that repeats one block >= min_repeats times (>= min_tokens tokens) down to one copy.

    For each period p (smallest first) the periodic region is extended backwards while
    ids[i] == ids[i + p]; if it covers enough copies, everything after its first copy is cut.
    Repeated until nothing changes, since a trimmed tail can expose a longer period.
    Example: trim_repeating_tail([9] + [1, 2] * 10, min_repeats=3, min_tokens=6) == (9, 1, 2)
    """
    ids = tuple(ids)
    while True:
        n = len(ids)
        for p in range(1, min(max_period, n // min_repeats) + 1):
            start = n - p
            while start > 0 and ids[start - 1] == ids[start - 1 + p]:
                start -= 1
            span = n - start
            if span >= min_repeats * p and span >= min_tokens and span > p:
                ids = ids[: start + p]
                break
        else:
            return ids


_RIGHT = r"(?:yes[,!.]?\s+|indeed[,!.]?\s+)?you(?:'re|’re| are)\s+(?:absolutely\s+|completely\s+|totally\s+)?(?:right|correct)"
SYCOPHANTIC_OPENERS = (
    re.compile(_RIGHT + r"\s+to\s+[^.!?\n]*[.!?]\s*", re.IGNORECASE),  # "You're right to question that."
    re.compile(_RIGHT + r"\s*[—–\-,:;.!]+\s*", re.IGNORECASE),  # "You're absolutely right — "
    re.compile(r"(?:thank\s+you|thanks)\s+for\b[^.!?\n]*[.!?]\s*", re.IGNORECASE),
    re.compile(r"great\s+question\b[^.!?\n—–\-]*[.!?—–\-]+\s*", re.IGNORECASE),
    re.compile(r"(?:good|nice|great)\s+(?:catch|point|observation)\b[^.!?\n—–\-]*[.!?—–\-]+\s*", re.IGNORECASE),
    re.compile(r"(?:my\s+apologies|i\s+apologi[sz]e)\b[^.!?\n]*[.!?]\s*", re.IGNORECASE),
)


def opener_length(text: str) -> int:
    """Characters of sycophantic opening sentences at the start of `text` (0 if none)."""
    pos = len(text) - len(text.lstrip())
    while True:
        for pattern in SYCOPHANTIC_OPENERS:
            m = pattern.match(text, pos)
            if m and m.end() > pos:
                pos = m.end()
                break
        else:
            return pos if pos > len(text) - len(text.lstrip()) else 0


def strip_opener(ids: Sequence[int], decode: Callable[[list[int]], str]) -> Optional[tuple[int, ...]]:
    """ids without a sycophantic opener, cut at a token boundary; None if no clean cut exists.

    The cut is the longest token prefix whose text lies inside the opener, and what it leaves of
    the opener must be whitespace. Returns the ids unchanged when there is no opener.
    """
    ids = tuple(ids)
    text = decode(list(ids))
    end = opener_length(text)
    if end == 0:
        return ids
    cut = 0
    for k in range(1, len(ids) + 1):
        prefix = decode(list(ids[:k]))
        if len(prefix) > end or not text.startswith(prefix):
            break
        cut = k
    covered = len(decode(list(ids[:cut]))) if cut else 0
    if text[covered:end].strip():
        return None
    return ids[cut:]


@dataclass(frozen=True)
class CleanRules:
    enabled: bool = True
    tail_min_repeats: int = 3
    tail_min_tokens: int = 16

    @classmethod
    def from_config(cls, config: CollectConfig) -> "CleanRules":
        return cls(config.clean, config.tail_min_repeats, config.tail_min_tokens)


def clean_tuple(t: RevisionTuple, rules: CleanRules, decode: Callable[[list[int]], str], eos_id: int) -> Optional[RevisionTuple]:
    """The tuple after trimming tails and cutting an opener; None when it must be dropped."""
    if not rules.enabled:
        return t
    notes = []
    y_init = trim_repeating_tail(t.y_init, rules.tail_min_repeats, rules.tail_min_tokens)
    if y_init != t.y_init:
        notes.append("trimmed_init")
    y_rev, stop = trim_repeating_tail(t.y_rev, rules.tail_min_repeats, rules.tail_min_tokens), t.rev_stop
    if y_rev != t.y_rev:
        notes.append("trimmed_rev")
        stop = eos_id  # one clean copy is a finished answer: teach the model to stop there
    stripped = strip_opener(y_rev, decode)
    if stripped is None:
        return None
    if stripped != y_rev:
        notes.append("opener")
    if not stripped:
        return None
    return replace(
        t,
        y_init=y_init,
        y_init_text=decode(list(y_init)),
        y_rev=stripped,
        y_rev_text=decode(list(stripped)),
        rev_stop=stop,
        cleaned=tuple(notes),
    )


def select_tuples(
    cleaned: Sequence[Optional[RevisionTuple]], rewards: Sequence[float], seen: set
) -> tuple[list[RevisionTuple], Counter]:
    """Keep exactly the cleaned tuples whose revision verifies and that are not duplicates.

    `rewards[i]` is verify(cleaned[i].y_rev_text); `seen` (keys of tuples kept so far) is updated.
    Counts: verified, dropped_unclean (no clean opener cut), duplicate, kept.
    """
    kept, counts = [], Counter()
    for t, r in zip(cleaned, rewards, strict=True):
        if t is None:
            counts["dropped_unclean"] += 1
            continue
        if r < 0.5:
            continue
        counts["verified"] += 1
        if t.key in seen:
            counts["duplicate"] += 1
            continue
        seen.add(t.key)
        kept.append(t)
        counts["kept"] += 1
    return kept, counts


# ---------------------------------------------------------------------------------------------
# The collection run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectProgress:
    """Counters after the last finished batch; `bytes` is the length of tuples.jsonl then."""

    batches: int = 0
    bytes: int = 0
    questions: int = 0
    initial_answers: int = 0
    initial_correct: int = 0
    revisions_wrong: int = 0  # revisions sampled after wrong initial answers (restart cue)
    revisions_right: int = 0  # after correct ones (rephrase cue)
    verified_wrong: int = 0  # of those, verified after cleaning
    verified_right: int = 0
    answers_corrected: int = 0  # wrong initial answers with at least one verified revision
    kept: int = 0
    duplicate: int = 0
    dropped_unclean: int = 0
    trimmed_init: int = 0
    trimmed_rev: int = 0
    opener: int = 0
    skipped_long_prompts: int = 0  # phase-1 questions whose prompt exceeds data.max_prompt_tokens
    generations: int = 0
    sampled_tokens: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class CollectSummary:
    """What phase-1 collection did (summary.json): rates first, then the raw counters."""

    questions_seen: int
    initial_answers: int
    initial_accuracy: Optional[float]
    revisions_tried: int
    revisions_verified: int
    kept: int
    correction_rate: Optional[float]  # per revision of a wrong answer
    answers_corrected_rate: Optional[float]  # wrong answers with >= 1 verified fix
    rephrase_rate: Optional[float]  # per revision of a right answer
    done: bool
    counters: CollectProgress  # raw counters (generations, sampled tokens, cleaning, skipped prompts, ...)

    @property
    def generations(self) -> int:
        return self.counters.generations

    @property
    def sampled_tokens(self) -> int:
        return self.counters.sampled_tokens

    @property
    def elapsed_s(self) -> float:
        return self.counters.elapsed_s

    @property
    def skipped_long_prompts(self) -> int:
        return self.counters.skipped_long_prompts

    def to_json(self) -> dict:
        flat = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "counters"}
        return {**flat, **asdict(self.counters)}

    @classmethod
    def from_json(cls, row: dict) -> "CollectSummary":
        names = set(cls.__dataclass_fields__) - {"counters"}
        counters = {k: v for k, v in row.items() if k in CollectProgress.__dataclass_fields__}
        return cls(**{k: row[k] for k in names}, counters=CollectProgress(**counters))


def summarize(p: CollectProgress, done: bool) -> CollectSummary:
    """The collection summary: rates of the counters, and the counters themselves."""
    wrong = p.initial_answers - p.initial_correct
    rate = lambda a, b: a / b if b else None  # noqa: E731
    return CollectSummary(
        questions_seen=p.questions,
        initial_answers=p.initial_answers,
        initial_accuracy=rate(p.initial_correct, p.initial_answers),
        revisions_tried=p.revisions_wrong + p.revisions_right,
        revisions_verified=p.verified_wrong + p.verified_right,
        kept=p.kept,
        correction_rate=rate(p.verified_wrong, p.revisions_wrong),
        answers_corrected_rate=rate(p.answers_corrected, wrong),
        rephrase_rate=rate(p.verified_right, p.revisions_right),
        done=done,
        counters=p,
    )


def read_summary(collect_dir: Path) -> CollectSummary:
    """RUN/collect/summary.json of a finished collection."""
    return CollectSummary.from_json(json.loads((Path(collect_dir) / SUMMARY).read_text()))


COLLECT_SECTIONS = ("model", "data", "prompts", "sampling", "collect", "verifier")


def within_prompt_budget(model, tokenizer, questions: Sequence[Example], recipe: Recipe, seps: Separators) -> tuple[list[Example], int]:
    """The questions whose prompt fits data.max_prompt_tokens and, with an answer, a cue and a revision
    after it, the model's context (lengths.py); and how many were skipped."""
    after = 2 * recipe.sampling.max_tokens + max(len(seps.right), len(seps.wrong))
    return fitting(tokenizer, questions, recipe.prompts, prompt_limit(model, recipe.data.max_prompt_tokens, after))


def generation_counter(log: Callable[[str], None], every_s: float = 10.0) -> Callable[[int], None]:
    """on_finish callback: the first finished generation, then a line at most every `every_s` seconds."""
    state = {"n": 0, "last": None, "start": time.perf_counter()}

    def on_finish(n: int) -> None:
        state["n"] += n
        now = time.perf_counter()
        if state["last"] is None or now - state["last"] >= every_s:
            state["last"] = now
            log(f"  {state['n']} generations finished ({now - state['start']:.0f}s)")

    return on_finish


def _seed(seed: int, batch: int, role: int) -> int:
    return derive_seed(derive_seed(seed, "collect_batch", batch), "collect_role", role)  # role 0: initial answers, 1: revisions


def collect_batch(
    model, tokenizer, questions: Sequence[Example], recipe: Recipe, seps: Separators, batch_index: int,
    on_finish: Optional[Callable[[int], None]] = None,
) -> tuple[list[Optional[RevisionTuple]], list[RevisionTuple], Counter]:
    """Sample, grade and revise one batch of questions; returns (cleaned candidates, raw candidates, counts).

    Candidates are ordered question by question, initial answer by answer, revision by revision.
    """
    cfg, seed = recipe.collect, recipe.run.seed
    decode = lambda ids: tokenizer.decode(ids)  # noqa: E731
    counts = Counter()
    # 1. n initial answers per question, graded
    prompts = [prompt_ids(tokenizer, q.problem, recipe.prompts) for q in questions]
    slots = [(qi, j) for qi in range(len(questions)) for j in range(cfg.initial_samples)]
    inits = generate_completions(model, tokenizer, [prompts[qi] for qi, _ in slots], recipe.sampling,
                                 _seed(seed, batch_index, 0), on_finish)
    init_texts = [decode(list(c.ids)) for c in inits]
    r_inits = verify_batch(init_texts, [questions[qi].answer for qi, _ in slots], recipe.verifier)
    counts["initial_answers"] += len(inits)
    counts["initial_correct"] += sum(r >= 0.5 for r in r_inits)
    # 2. k revisions of every answer that gets one, all questions of the batch together
    revise = [s for s, r in enumerate(r_inits) if r < 0.5 or cfg.rephrase_correct]
    rev_slots = [(s, k) for s in revise for k in range(cfg.revisions)]
    rev_prompts = [prompts[slots[s][0]] + inits[s].ids + seps.for_reward(r_inits[s]) for s in revise]
    # one prefill per answer, shared by its k revisions (prompt-major order matches rev_slots)
    revs = generate_completions(model, tokenizer, rev_prompts, recipe.sampling, _seed(seed, batch_index, 1), on_finish,
                                copies=cfg.revisions)
    counts["generations"] += len(inits) + len(revs)
    counts["sampled_tokens"] += sum(len(c.ids) for c in inits) + sum(len(c.ids) for c in revs)
    raw = []
    for (s, k), c in zip(rev_slots, revs):
        qi, j = slots[s]
        q, r = questions[qi], r_inits[s]
        raw.append(RevisionTuple(
            id=q.id, problem=q.problem, answer=q.answer, prompt_ids=prompts[qi], y_init=inits[s].ids, r_init=r,
            phrase=recipe.prompts.phrase_right if r >= 0.5 else recipe.prompts.phrase_wrong,
            sep_ids=seps.for_reward(r), y_rev=c.ids, rev_stop=c.stop_id,
            y_init_text=init_texts[s], y_rev_text=decode(list(c.ids)), init_index=j, rev_index=k,
        ))
    # 3. clean, then verify what would be trained on
    rules = CleanRules.from_config(cfg)
    eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else sorted(tokenizer.eos_token_ids)[0]
    cleaned = [clean_tuple(t, rules, decode, eos_id) for t in raw]
    return cleaned, raw, counts


def run_collect(
    recipe: Recipe,
    out_dir: Path,
    on_batch: Optional[Callable[[int, int, "CollectSummary"], None]] = None,
    on_finish: Optional[Callable[[int], None]] = None,
    stop_after: Optional[int] = None,
) -> CollectSummary:
    """Collect phase-1 tuples into out_dir (resuming what is there); returns the summary.

    `stop_after` ends the call after that many batches (tests use it to interrupt).
    """
    run = SPEC.run_dir(check_output_dir(out_dir, "run.output_dir"))  # before any work: a bad location costs nothing
    with run.writing():
        return _run_collect(recipe, run, on_batch, on_finish, stop_after)


def _run_collect(recipe, run: RunDir, on_batch, on_finish, stop_after) -> CollectSummary:
    out_dir = run.path
    record = SPEC.made_by(recipe, out_dir)
    if run.finished():
        run.check_made_by(record)
        return read_summary(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tuples_path, progress_path = out_dir / TUPLES, out_dir / PROGRESS
    progress = CollectProgress()
    if progress_path.is_file():
        run.check_made_by(record)
        progress = CollectProgress(**read_json(progress_path, f"delete {out_dir} to collect again"))
    run.begin("collect", progress_path.is_file(), continue_command, record)
    write_yaml(recipe, out_dir / "recipe.yaml")
    # rows past the recorded length belong to a batch that did not finish: it is redone
    with tuples_path.open("a+b") as f:
        f.truncate(progress.bytes)
    seen = {t.key for t in load_tuples(tuples_path)}
    if len(seen) != progress.kept:
        raise RuntimeError(f"{tuples_path} holds {len(seen)} distinct tuples but progress.json records {progress.kept}.")

    cfg = recipe.collect
    questions = make_splits(recipe.data).phase1
    if not questions:
        raise ValueError("data.phase1_size is 0: phase 1 needs questions. Set data.phase1_size.")
    model, tokenizer = load_model(recipe.model)
    seps = separators(tokenizer, recipe.prompts)
    # one huge problem would stall a whole batch for minutes: skip it, and count it
    questions, skipped = within_prompt_budget(model, tokenizer, questions, recipe, seps)
    if not questions:
        raise ValueError(
            f"All {skipped} phase-1 questions have prompts over data.max_prompt_tokens={recipe.data.max_prompt_tokens} "
            "tokens (or the model's context less two answers). Raise data.max_prompt_tokens or use shorter problems."
        )
    progress = replace(progress, skipped_long_prompts=skipped)
    n_batches = -(-len(questions) // cfg.questions_per_batch)
    if on_batch is not None and progress.batches == 0:
        on_batch(0, n_batches, summarize(progress, False))  # a first line before the first batch's minutes

    def target_reached(p: CollectProgress) -> bool:
        return cfg.target_tuples > 0 and p.kept >= cfg.target_tuples

    last = n_batches if stop_after is None else min(n_batches, progress.batches + stop_after)
    for b in range(progress.batches, last):
        if target_reached(progress):
            break
        tic = time.perf_counter()
        batch = questions[b * cfg.questions_per_batch : (b + 1) * cfg.questions_per_batch]
        cleaned, raw, counts = collect_batch(model, tokenizer, batch, recipe, seps, b, on_finish)
        rewards = verify_batch([t.y_rev_text if t else "" for t in cleaned], [t.answer for t in raw], recipe.verifier)
        kept, keep_counts = select_tuples(cleaned, rewards, seen)
        if cfg.target_tuples:
            kept = kept[: cfg.target_tuples - progress.kept]
        # per-branch rates are over the cleaned revisions that verified
        fixed = {(t.id, t.init_index) for t, r in zip(cleaned, rewards) if t and r >= 0.5 and t.r_init < 0.5}
        with tuples_path.open("a") as f:
            for t in kept:
                f.write(json.dumps(t.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())  # the rows are on disk before progress.json counts them
        notes = Counter(n for t in kept for n in t.cleaned)
        progress = CollectProgress(
            batches=b + 1,
            bytes=tuples_path.stat().st_size,
            questions=progress.questions + len(batch),
            initial_answers=progress.initial_answers + counts["initial_answers"],
            initial_correct=progress.initial_correct + counts["initial_correct"],
            revisions_wrong=progress.revisions_wrong + sum(t.r_init < 0.5 for t in raw),
            revisions_right=progress.revisions_right + sum(t.r_init >= 0.5 for t in raw),
            verified_wrong=progress.verified_wrong + sum(bool(t) and r >= 0.5 and t.r_init < 0.5 for t, r in zip(cleaned, rewards)),
            verified_right=progress.verified_right + sum(bool(t) and r >= 0.5 and t.r_init >= 0.5 for t, r in zip(cleaned, rewards)),
            answers_corrected=progress.answers_corrected + len(fixed),
            kept=progress.kept + len(kept),
            duplicate=progress.duplicate + keep_counts["duplicate"],
            dropped_unclean=progress.dropped_unclean + keep_counts["dropped_unclean"],
            trimmed_init=progress.trimmed_init + notes["trimmed_init"],
            trimmed_rev=progress.trimmed_rev + notes["trimmed_rev"],
            opener=progress.opener + notes["opener"],
            skipped_long_prompts=skipped,
            generations=progress.generations + counts["generations"],
            sampled_tokens=progress.sampled_tokens + counts["sampled_tokens"],
            elapsed_s=progress.elapsed_s + time.perf_counter() - tic,
        )
        write_json(progress_path, asdict(progress))
        if on_batch is not None:
            on_batch(b + 1, n_batches, summarize(progress, False))

    done = progress.batches == n_batches or target_reached(progress)
    summary = summarize(progress, done)
    if done:
        write_json(out_dir / SUMMARY, summary.to_json())
        run.mark_done()
    return summary


# not a training stage (no run function of the common signature): `sdzero collect` and the pipeline call run_collect
SPEC = StageSpec(
    name="collect", label="collect", help="Phase 1: sample answers and revisions, keep verified revisions.",
    section=CollectConfig, sections=COLLECT_SECTIONS, order=10, baseline=False, folder="collect",
    memory="sampling.batch_size, sampling.max_tokens", outputs=(),
)
