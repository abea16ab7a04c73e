"""What the run will cost: one real step of each training stage, then the whole run counted from the recipe.

Measured: one optimizer step of distill, of SRT and of every baseline in compare.methods, each through
its own run function from the stage registry (stages/__init__.py) with the recipe's micro-batches and lengths, in a throwaway run
directory under a temporary folder (never run.output_dir; model folders are only read): its seconds
and peak memory, as the stage's own metrics.jsonl records them (mx.reset_peak_memory at the step's
start, mx.get_peak_memory at its end). SRT's step trains on tuples assembled from the doctor's own
samples (an answer, its cue and another answer to the same problem as the "revision"): the lengths
of real tuples, before any collection.
Counted, as compare.py and pipeline.py spend them: collection's generations (1 + k revisions per
question), SRT's steps from the tuples it would keep (correction and rephrase rates of the Reviser,
less duplicates), distill's steps, each baseline's steps at SD-Zero's generation budget (a variant's
at its stage's measured step, with its own settings' step count), one
evaluation per compared method, and every probe; sampled tokens times the measured seconds per
sampled token give the sampling stages' time. With run.workers > 1 the stages run side by side on a
CPU (a core each); on a GPU (Metal or CUDA) the workers share the one GPU, so they are counted one after
another, and each still loads its own model. Memory is compared with the limit of the device in use
(platform/device.memory_limit: Metal's recommended working set on a Mac's GPU, else 80% of the RAM).
Phase 2's loss option (distill.kl, top_k, top_k_from, tail) is in the measured distill step; what
that step cannot show is the loss's memory at answers longer than the doctor's own, and it grows
with the option: distill's peak adds loss_footprint's bytes per token from the measured answer
length up to sampling.max_tokens (the teacher targets for every token of a step, the student's
backward arrays for every token of a micro-batch).
Not counted: pictures, the demo's self-localisation, SRT's fused-model save. The real distill step
runs on the SRT model, whose answers may be longer than the base's.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..config import KlSettings, Recipe
from ..metrics import read_metrics
from ..platform.device import MemoryLimit
from ..recipe import variant_recipe
from ..schedule import makespan
from ..stages import stage_spec, stage_specs
from ..stages.sft import sft_steps
from ..tasks import chain_stages, matched_budget, matched_steps, plan, planned_distill_generations, trained_specs
from ..types import Graded, RevisionTuple


@dataclass(frozen=True)
class StepCost:
    stage: str
    seconds: float
    peak_memory_gb: float


def revision_tuples(graded: Sequence[Graded], k: int, seps) -> list[RevisionTuple]:
    """Tuples of realistic length from k samples per problem: answer j, its cue, answer j + 1 as the revision."""
    out = []
    for i in range(0, len(graded) - k + 1, k):
        group = graded[i:i + k]
        for j, g in enumerate(group):
            rev = group[(j + 1) % k].rollout
            r = g.rollout
            out.append(RevisionTuple(
                id=r.example.id, problem=r.example.problem, answer=r.example.answer, prompt_ids=r.prompt_ids,
                y_init=r.completion_ids, r_init=g.reward, phrase="", sep_ids=seps.for_reward(g.reward),
                y_rev=rev.completion_ids, rev_stop=rev.stop_id, init_index=0, rev_index=j,
            ))
    return out


def throwaway(recipe: Recipe, run_dir: Path) -> Recipe:
    """The recipe writing into run_dir, without probes or extra metric sinks (no W&B run for a test step)."""
    return replace(recipe, run=replace(recipe.run, output_dir=str(run_dir), probe_every=0, metrics=("jsonl",)))


def step_cost(stage: str, run_dir: Path) -> StepCost:
    record = read_metrics(run_dir)[-1]
    return StepCost(stage, record.step_s, record.peak_memory_gb)


def measure_steps(recipe: Recipe, graded: Sequence[Graded], k: int, seps, stages: Sequence[str],
                  log: Callable[[str], None] = print) -> dict[str, StepCost]:
    """One step of each stage in `stages` (the registry's run functions), in a temporary folder removed afterwards.

    SRT reads TMP/collect/tuples.jsonl, written from the doctor's samples (at least srt.batch_size tuples).
    """
    out = {}
    with tempfile.TemporaryDirectory(prefix="sdzero-doctor-") as tmp:
        tuples = revision_tuples(graded, k, seps)
        tuples = (tuples * math.ceil(recipe.srt.batch_size / max(len(tuples), 1)))[: max(recipe.srt.batch_size, 1)]
        path = Path(tmp) / "collect" / "tuples.jsonl"
        path.parent.mkdir()
        path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in tuples))
        recipe = replace(recipe, srt=replace(recipe.srt, tuples=str(path)))
        for stage in stages:
            run_dir = Path(tmp) / stage
            log(f"doctor: one {stage} step ...")
            stage_spec(stage).run(throwaway(recipe, run_dir), run_dir, stop_after=1)
            out[stage] = step_cost(stage, run_dir)
    return out


@dataclass(frozen=True)
class RunRates:
    """What the estimate needs besides the recipe and the step costs, all measured by the doctor."""

    seconds_per_sampled_token: float
    answer_tokens: float  # mean sampled tokens per answer
    revision_tokens: float  # mean tokens per revision
    accuracy: float  # reward rate
    correction_rate: float  # wrong -> right, per revision
    rephrase_rate: float  # right -> right, per revision
    distinct_share: float  # share of verified answers that are not duplicates
    sampling_peak_gb: float
    load_seconds: float
    vocab_size: int = 0  # the model's output vocabulary; 0 = unknown (no loss footprint added)


@dataclass(frozen=True)
class StageEstimate:
    name: str
    work: str  # what is counted, in words
    seconds: float
    peak_memory_gb: float
    stage: str = ""  # the stage it trains, whose fields lower its memory (a variant's stage); "": its name


def probes(recipe: Recipe, steps: int) -> int:
    every = recipe.run.probe_every
    return 0 if not every else steps // every + (steps % every != 0)


def estimate_run(recipe: Recipe, rates: RunRates, steps: dict[str, StepCost], n_solutions: int) -> list[StageEstimate]:
    """The stages `sdzero compare` runs for compare.methods, each with its seconds and peak memory."""
    methods = recipe.compare.methods
    d, c = recipe.data, recipe.collect
    spt = rates.seconds_per_sampled_token
    probe_s = recipe.run.probe_size * rates.answer_tokens * spt  # one probe: greedy answers to the probe set
    out = []
    collect_gens = 0
    trained = trained_specs(recipe)
    chain = chain_stages(recipe, methods, trained)
    if chain:
        answers = d.phase1_size * c.initial_samples
        revised = answers if c.rephrase_correct else answers * (1 - rates.accuracy)
        collect_gens = answers + revised * c.revisions
        tokens = answers * rates.answer_tokens + revised * c.revisions * rates.revision_tokens
        out.append(StageEstimate("collect", f"{collect_gens:.0f} generations", rates.load_seconds + tokens * spt,
                                 rates.sampling_peak_gb))
        per_answer = rates.accuracy * (rates.rephrase_rate if c.rephrase_correct else 0) + (1 - rates.accuracy) * rates.correction_rate
        kept = answers * c.revisions * per_answer * rates.distinct_share
        srt_steps = srt_step_count(recipe, kept)
        out.append(StageEstimate("srt", f"{srt_steps} steps (~{kept:.0f} tuples kept)",
                                 rates.load_seconds + srt_steps * steps["srt"].seconds + probes(recipe, srt_steps) * probe_s,
                                 steps["srt"].peak_memory_gb))
    if "distill" in chain:
        ds = recipe.distill.steps
        distill_peak = steps["distill"].peak_memory_gb + loss_growth_gb(recipe, rates)
        out.append(StageEstimate("distill", f"{ds} steps", rates.load_seconds + ds * steps["distill"].seconds
                                 + probes(recipe, ds) * probe_s, max(distill_peak, rates.sampling_peak_gb if probes(recipe, ds) else 0)))
    budget = matched_budget(recipe, lambda: collect_gens + planned_distill_generations(recipe))
    for m in methods:  # each baseline and each variant, at its stage's measured step
        spec = trained.get(m)
        if spec is None or spec.name not in steps:
            continue
        variant = recipe.compare.variant(m)
        own = variant_recipe(recipe, variant) if variant else recipe
        n = (matched_steps(own, spec, budget) if spec.matched else
             sft_steps(own, n_solutions) if spec.name == "sft" else getattr(own, spec.name).steps)
        cost = steps[spec.name]
        out.append(StageEstimate(m, f"{n} steps", rates.load_seconds + n * cost.seconds + probes(recipe, n) * probe_s,
                                 cost.peak_memory_gb, stage=spec.name))
    e = recipe.eval
    # k samples + greedy answers, and with revise one revision each (its first attempt is the first sample)
    tokens = d.eval_size * ((e.k + e.greedy) * rates.answer_tokens + e.revise * rates.revision_tokens)
    gens = d.eval_size * (e.k + e.greedy + e.revise)
    for m in methods:
        out.append(StageEstimate(f"eval {m}", f"{gens} generations", rates.load_seconds + tokens * spt, rates.sampling_peak_gb))
    return out


@dataclass(frozen=True)
class LossFootprint:
    """Bytes per scored token that phase 2's loss option needs beyond the model's own activations.

    held:    the teacher targets (float32 log-probabilities, int32 ids), kept from the teacher pass to the
             update for every token of the step: 4 V for the full vocabulary, 8 k for a top-k (+4 with the
             tail), 8 for k1 / k3 (the sampled token's log p and id).
    student: what the student's loss keeps for its backward pass, for every token of one micro-batch:
             V-sized float32 arrays, 4 V bytes each (STUDENT_ARRAYS); a renormalised top-k keeps only
             k-sized ones (counted as 0).
    """

    held: int
    student: int


# V-sized arrays the student's loss keeps per token for its backward pass (MLX 0.32): over the full
# vocabulary log p_s, p_s and log p_s - log p_t for reverse KL, two for forward, both KLs' for mixed, the
# mixture's and both KLs' for jsd; with a tail or for k1 / k3 at most the logits that the log-normaliser's
# gradient needs. benchmarks/bench_topk_truncation.py measures them at a 32768-token vocabulary (its
# footprint table): 2.9, 1.9, 3.9, 5.7, and 0.4-0.6 for the tail, k1 and k3.
STUDENT_ARRAYS = {"reverse": 3, "forward": 2, "mixed": 4, "jsd": 6}
NORMALISER_ARRAYS = 1


def loss_footprint(kl: KlSettings, vocab: int) -> LossFootprint:
    """What distill's loss option holds per scored token at a `vocab`-token vocabulary (LossFootprint).

    Example, V = 1000: reverse top-64 (8 x 64, 0); top-64 with tail (516, 4000); k1 (8, 4000);
    full vocabulary reverse (4000, 12000); jsd (4000, 24000).
    """
    if kl.estimator:
        return LossFootprint(held=8, student=4 * vocab * NORMALISER_ARRAYS)
    if kl.top_k == 0 or kl.top_k >= vocab:
        return LossFootprint(held=4 * vocab, student=4 * vocab * STUDENT_ARRAYS[kl.kind])
    if kl.tail:
        return LossFootprint(held=8 * kl.top_k + 4, student=4 * vocab * NORMALISER_ARRAYS)
    return LossFootprint(held=8 * kl.top_k, student=0)


def loss_memory_gb(recipe: Recipe, vocab: int, answer_tokens: float) -> float:
    """The loss's memory (GB) in a distill step whose answers are `answer_tokens` long: the targets of
    the step's answers (questions x group_size), the student's arrays of one micro-batch."""
    d = recipe.distill
    f = loss_footprint(d.kl_settings, vocab)
    answers = d.questions_per_step * d.group_size
    micro = min(d.micro_batch_size, answers)
    return (f.held * answers + f.student * micro) * answer_tokens / 1e9


def loss_growth_gb(recipe: Recipe, rates: RunRates) -> float:
    """How much more the loss holds at answers of sampling.max_tokens than at the doctor's measured length."""
    if not rates.vocab_size:
        return 0.0
    longer = max(recipe.sampling.max_tokens - rates.answer_tokens, 0.0)
    return loss_memory_gb(recipe, rates.vocab_size, longer)


def run_seconds(recipe: Recipe, stages: Sequence[StageEstimate], device: str = "cpu") -> float:
    """The run's estimated wall time: its stages one after another, or with run.workers > 1 on the CPU side by
    side as compare's scheduler runs them (schedule.makespan over the same task graph). On a GPU (`device`
    as platform.device.device_name says it) the workers share it: no faster than one after another."""
    if recipe.run.workers <= 1 or device != "cpu":
        return sum(s.seconds for s in stages)
    trained, methods = trained_specs(recipe), list(recipe.compare.methods)
    tasks = plan(methods, chain_stages(recipe, methods, trained), trained, evaluate=True,
                 budget_given=bool(recipe.compare.budget_generations))
    return makespan(tasks, {f"train {s.name}" if s.name in trained else s.name: s.seconds for s in stages},
                    recipe.run.workers)


def peak_together(stages: Sequence[StageEstimate], workers: int) -> float:
    """The largest stage's peak, or with N workers the N largest added (each loads its own model; a bound:
    they may not overlap)."""
    peaks = sorted((s.peak_memory_gb for s in stages), reverse=True)
    return sum(peaks[: max(workers, 1)])


def run_peak_gb(recipe: Recipe, stages: Sequence[StageEstimate]) -> float:
    """The run's peak memory (peak_together at run.workers)."""
    return peak_together(stages, recipe.run.workers)


def workers_warning(recipe: Recipe, device: str) -> Optional[str]:
    """With run.workers > 1 on a GPU: what the workers cost there and gain nothing the estimate counts."""
    n = recipe.run.workers
    if n <= 1 or device == "cpu":
        return None
    return (f"run.workers = {n} on one GPU ({device}): the {n} worker processes share it and each loads its own model, "
            f"so the estimate counts no speed-up from them and up to {n} models' memory. Set run.workers: 1 unless a "
            "timed run shows them faster here.")


def srt_step_count(recipe: Recipe, kept: float) -> int:
    """SRT's optimizer steps for `kept` tuples (stages/srt.py's plan_parts: one part, or two when staged)."""
    cfg = recipe.srt
    kept = int(round(kept))
    if not kept:
        return 0
    if cfg.mode != "staged":
        return cfg.epochs * -(-kept // cfg.batch_size)
    revision = min(kept, cfg.stage2_size)
    return cfg.epochs * (-(-revision // cfg.batch_size) + -(-(kept - revision) // cfg.batch_size))


EVAL_MEMORY = "sampling.batch_size, eval.max_tokens"  # what lowers an evaluation's peak memory


def memory_fields(estimate: str) -> str:
    """What lowers a stage's (or an evaluation's) peak memory, as recipe fields: its StageSpec's memory."""
    name = estimate.split()[0]
    if name == "eval":
        return EVAL_MEMORY
    specs = {s.name: s for s in stage_specs()}
    return specs[name].memory_fields if name in specs else f"{name}.micro_batch_size"


def memory_warning(stages: Sequence[StageEstimate], limit: Optional[MemoryLimit], workers: int = 1) -> Optional[str]:
    """A warning naming what to lower when a stage's peak, or with N workers the N largest at once, passes the limit."""
    if limit is None:
        return None
    over = [s for s in stages if s.peak_memory_gb > limit.gb]
    if over:
        worst = max(over, key=lambda s: s.peak_memory_gb)
        fields = "; ".join(sorted({f"{s.name}: {memory_fields(s.stage or s.name)}" for s in over}))
        return (f"the run will not fit in memory: {worst.name} peaks at {worst.peak_memory_gb:.1f} GB, over {limit.source} "
                f"({limit.gb:.1f} GB). Lower {fields}.")
    together = peak_together(stages, workers)
    if workers > 1 and together > limit.gb:
        return (f"the run will not fit in memory: with run.workers = {workers} the {workers} largest stages can run at once, "
                f"each with its own model: {together:.1f} GB, over {limit.source} ({limit.gb:.1f} GB). Set run.workers: 1.")
    return None
