"""Phase 1, step 2: Self-Revision Training (SRT) on the collected tuples.

Every tuple gives one token sequence, built from the sampled ids only:
    ids = chat(x) + y_init + sep(r_init) + y_rev + end-of-turn      (no end-of-turn after y_init)
and two negative log-likelihood terms on it:
    revision loss:   the tokens of y_rev + end-of-turn, given chat(x) + y_init + sep
    generation loss: the tokens of y_init + sep + y_rev + end-of-turn, given chat(x)
The prompt is never a target. Each term is a mean over its target tokens of the whole optimizer
step (per-micro-batch sums divided by the step's token count, so accumulation does not change the
gradient); `srt.mode` chooses how they combine:
    summed (paper): loss = revision mean + generation mean, both on every tuple, one forward pass
        (a y_rev token carries weight 1/N_rev + 1/N_gen, a y_init or sep token 1/N_gen);
    revision / generation: that term alone on every tuple (the paper's ablation: 52.2 / 56.4
        against 57.6 for both, Qwen3-4B);
    staged (reference code): two parts (the reference code's "stages"), first the generation loss on
        the wrong-initial tuples, then, with a fresh optimizer, the revision loss on `srt.stage2_size`
        tuples (correct-initial first, then wrong-initial ones the first part did not use).
Output: LoRA adapters in mlx-lm's format (RUN/srt/adapters) and the model with them fused, saved as
an ordinary mlx-lm model folder (RUN/srt/model): phase 2's starting point and teacher.

Departures from the paper (recipe fields): LoRA by default instead of full fine-tuning
(`lora.fine_tune_type`), learning rate `srt.optim.learning_rate` 1e-4 (paper 5e-6), tuples longer than `srt.max_tokens` are dropped,
`srt.epochs` 1 (reference code: 3 per part). Options with the paper's value as default:
`srt.generation_tuples` (all; "wrong" = the reference code's generation part, wrong-initial tuples
only) and `srt.drop_truncated` (false: revisions cut by max_tokens are kept, without an end-of-turn
token). The fused model is saved in the training dtype (float32 on CPU).
"""

from __future__ import annotations

import random
import shutil
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from ..atomic import replace_dir, write_json
from ..checkpoint import read_state
from ..config import OptimConfig, optim_field
from ..data import epoch_order
from ..forward import chunks, scored_batch
from ..loss import WeightedBatch, weighted_nll, with_reference
from ..metrics import StepRecord
from ..modeling import fuse_lora
from ..platform.distributed import is_writer, shard, step_tokens
from ..rundir import ADAPTER_FILES, MODEL
from ..seeds import derive_seed
from ..types import RevisionTuple, TrainingState, load_tuples
from ..update import make_optimizer, optimizer_step
from ..writable import check_output_dir
from . import StageSpec
from .loop import StepOutcome, open_stage, penalty

if TYPE_CHECKING:
    from ..config import Recipe


@dataclass(frozen=True)
class SrtConfig:
    """Phase 1 training on kept tuples: revision loss + generation loss."""

    mode: Literal["summed", "staged", "revision", "generation"] = field(
        default="summed",
        metadata={"help": "Paper: both NLL terms summed; reference code: two consecutive parts; "
                          "revision / generation: one term only (the paper's ablation: 52.2 / 56.4 vs 57.6)."},
    )
    epochs: int = 1
    batch_size: int = field(default=8, metadata={"help": "Tuples per optimizer step."})
    micro_batch_size: int = 4
    max_tokens: int = field(default=2048, metadata={"help": "Longest training sequence; longer tuples are dropped."})
    generation_tuples: Literal["all", "wrong"] = field(
        default="all",
        metadata={"help": "Tuples the generation term trains on: all (paper) or wrong-initial only (reference code's "
                  "generation part), so right first answers do not teach the Generator to write two attempts."},
    )
    drop_truncated: bool = field(
        default=False, metadata={"help": "Drop tuples whose revision max_tokens cut (no end-of-turn token); kept in the paper."}
    )
    stage2_size: int = field(
        default=1000,
        metadata={"help": "staged mode: tuples of the revision part, correct-initial first (reference code: 1000); "
                  "the other wrong-initial tuples train the generation part, which runs first."},
    )
    tuples: str = field(
        default="", metadata={"help": "Tuples JSONL to train on; empty: RUN/collect/tuples.jsonl beside the SRT run."}
    )
    optim: OptimConfig = optim_field("SRT", paper="lr 5e-6, full fine-tuning")

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("srt.epochs, batch_size and micro_batch_size must be >= 1.")
        if self.stage2_size < 1:
            raise ValueError(f"srt.stage2_size must be >= 1, got {self.stage2_size}.")

REVISION, GENERATION = "revision", "generation"
SRT_SECTIONS = ("model", "lora", "srt")


@dataclass(frozen=True)
class SrtItem:
    """One training sequence: ids = prompt + y_init + sep + y_rev (+ end-of-turn)."""

    ids: tuple[int, ...]
    gen_start: int  # first token of y_init: the generation loss covers [gen_start, len(ids))
    rev_start: int  # first token of y_rev: the revision loss covers [rev_start, len(ids))
    r_init: float

    def span(self, term: str) -> tuple[int, int]:
        return (self.rev_start if term == REVISION else self.gen_start, len(self.ids))


def srt_item(t: RevisionTuple) -> SrtItem:
    """The sequence of a tuple, from its sampled ids.

    Example: prompt (1, 2), y_init (7,), sep (5,), y_rev (8, 9), stop 3 -> ids (1, 2, 7, 5, 8, 9, 3),
    generation targets at [2, 7), revision targets at [4, 7).
    """
    ids = t.prompt_ids + t.y_init + t.sep_ids + t.rev_target
    gen_start = len(t.prompt_ids)
    return SrtItem(ids, gen_start, gen_start + len(t.y_init) + len(t.sep_ids), t.r_init)


def item_terms(item: SrtItem, terms: tuple[str, ...], generation_wrong_only: bool = False) -> tuple[str, ...]:
    """The terms that train on this item: all of `terms`, less the generation term on a right first
    answer when `srt.generation_tuples` is "wrong" (the reference code's generation part)."""
    return tuple(t for t in terms if not (t == GENERATION and generation_wrong_only and item.r_init >= 0.5))


def srt_batches(
    items: Sequence[SrtItem], terms: tuple[str, ...], micro_batch_size: int, pad_id: int,
    generation_wrong_only: bool = False,
) -> list[WeightedBatch]:
    """Micro-batches of one optimizer step, weighted so that their losses sum to the step's loss."""
    own = [item_terms(it, terms, generation_wrong_only) for it in items]
    term_tokens = {  # over all ranks
        term: step_tokens([it.span(term) for it, ts in zip(items, own) if term in ts]) for term in terms
    }
    out = []
    for idx in chunks(list(range(len(items))), micro_batch_size):
        chunk = [items[i] for i in idx]
        spans = [it.span(GENERATION if GENERATION in own[i] else REVISION) for i, it in zip(idx, chunk)]
        batch = scored_batch([it.ids for it in chunk], spans, pad_id)
        length = batch.mask.shape[1]
        weights = []
        for i, it, (start, end) in zip(idx, chunk, spans):
            weights.append([
                sum(1.0 / term_tokens[term] for term in own[i] if p < end and p >= it.span(term)[0])
                for p in range(start, start + length)
            ])
        out.append(WeightedBatch(batch, mx.array(weights, dtype=mx.float32)))
    return out


def srt_loss(model: nn.Module, mb: WeightedBatch, kl_to_initial: float = 0.0) -> tuple[mx.array, tuple[mx.array, mx.array]]:
    """Weighted NLL of the micro-batch (weights already divide by the step's token counts)."""
    return weighted_nll(model, mb, kl_to_initial=kl_to_initial)


def mean_nll(model: nn.Module, items: Sequence[SrtItem], term: str, pad_id: int, micro_batch_size: int = 8) -> float:
    """Token-mean NLL of one term over `items` (no gradient); for reports and tests."""
    total = 0.0
    for mb in srt_batches(items, (term,), micro_batch_size, pad_id):
        total += srt_loss(model, mb)[0].item()
    return total


@dataclass(frozen=True)
class SrtPart:
    """One part of SRT's training (`srt.mode` staged has two, each with a fresh optimizer)."""

    name: str
    terms: tuple[str, ...]
    items: tuple[SrtItem, ...]

    def steps(self, config: SrtConfig) -> int:
        return config.epochs * -(-len(self.items) // config.batch_size) if self.items else 0


def plan_parts(items: Sequence[SrtItem], config: SrtConfig, seed: int = 0) -> list[SrtPart]:
    """summed: one part with both terms on every item; revision / generation: one term on every
    item (the paper's ablation); staged: generation, then revision (see top)."""
    if config.mode == "summed":
        return [SrtPart("summed", (REVISION, GENERATION), tuple(items))]
    if config.mode in (REVISION, GENERATION):
        return [SrtPart(config.mode, (config.mode,), tuple(items))]
    rng = random.Random(seed)
    wrong = [it for it in items if it.r_init < 0.5]
    right = [it for it in items if it.r_init >= 0.5]
    rng.shuffle(wrong)
    rng.shuffle(right)
    n_right = min(len(right), config.stage2_size)
    n_wrong = min(len(wrong), config.stage2_size - n_right)
    revision = right[:n_right] + wrong[:n_wrong]
    rng.shuffle(revision)
    return [SrtPart(GENERATION, (GENERATION,), tuple(wrong[n_wrong:])), SrtPart(REVISION, (REVISION,), tuple(revision))]


def step_items(part: SrtPart, step_in_part: int, config: SrtConfig, seed: int) -> list[SrtItem]:
    """The items of one optimizer step: consecutive slices of a seeded per-epoch order."""
    per_epoch = -(-len(part.items) // config.batch_size)
    epoch, b = divmod(step_in_part, per_epoch)
    order = epoch_order(len(part.items), seed, epoch)
    return [part.items[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]]


def save_fused_model(model: nn.Module, tokenizer, source: str, out_dir: Path) -> list[Path]:
    """Fuse the LoRA layers and write an mlx-lm model folder (weights, config, tokenizer) atomically;
    returns its weight files.

    Uses mlx-lm's own save_model / save_config; the model card step of mlx_lm.utils.save is skipped
    because it may reach the Hub.
    """
    from mlx_lm.utils import hf_repo_to_path, load_config, save_config, save_model

    local = Path(source).expanduser()  # model.path may be "~/models/x"; the Hub lookup would reject it
    src = local if local.exists() else hf_repo_to_path(source)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fuse_lora(model)
    save_model(tmp, model)
    save_config(load_config(src), config_path=tmp / "config.json")
    tokenizer.save_pretrained(str(tmp))
    for pattern in ("*.py", "generation_config.json"):
        for f in src.glob(pattern):
            shutil.copy(f, tmp)
    replace_dir(tmp, out_dir)
    return sorted(out_dir.glob("*.safetensors"))


def tuples_path(recipe: Recipe, run_dir: Path) -> Path:
    """srt.tuples, else collect's output beside this run directory (RUN/collect/tuples.jsonl for RUN/srt)."""
    return Path(recipe.srt.tuples).expanduser() if recipe.srt.tuples else Path(run_dir).parent / "collect" / "tuples.jsonl"


def srt_inputs(recipe: Recipe, run_dir: Path) -> dict[str, Path]:
    """What SRT's output is made from besides the base model and the data: the tuples' bytes (rundir.MadeBy)."""
    return {"tuples": tuples_path(recipe, run_dir)}


# what a finished SRT run vouches for in outputs.json (and the fused model's weights, listed there)
FINAL_OUTPUTS = (*ADAPTER_FILES, "state.json", "summary.json")


def run_srt(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Train on the collected tuples into run_dir; then save adapters and the fused model.

    `stop_after` ends the call after that many steps (tests use it to interrupt).
    """
    cfg, seed = recipe.srt, recipe.run.seed
    run = SPEC.run_dir(check_output_dir(run_dir, "run.output_dir"))  # before any work: a bad location costs nothing
    # held through the final writes (open_stage takes it again for free)
    with run.writing() if is_writer() else nullcontext():
        if run.marked_done():
            run.check_made_by(SPEC.made_by(recipe, run.path))
            bad = run.damaged_outputs()
            if not bad:
                return read_state(run.path / "state.json")
            # redo the final writes from the last checkpoint (its step is the last: no step runs again)
            print(f"warning: {', '.join(str(run.path / b) for b in bad)} missing or damaged: rewriting SRT's outputs "
                  "from its checkpoint.", file=sys.stderr)
            run.unmark_done()
            resume = True
        source = tuples_path(recipe, run.path)
        if source.is_dir():
            raise FileNotFoundError(f"{source} is a folder; set srt.tuples to the tuples file (e.g. {source / 'tuples.jsonl'}).")
        if not source.is_file():
            raise FileNotFoundError(f"{source} does not exist: run `sdzero collect` with this recipe first, or set srt.tuples.")
        tuples = load_tuples(source)
        cut = [t for t in tuples if t.rev_stop is None]  # revisions that max_tokens ended, not the model
        if cfg.drop_truncated:
            tuples = [t for t in tuples if t.rev_stop is not None]
        all_items = [srt_item(t) for t in tuples]
        items = [it for it in all_items if len(it.ids) <= cfg.max_tokens]
        if not items:
            raise ValueError(
                f"No SRT tuples to train on: {source} has {len(all_items)} rows, "
                f"{len(all_items) - len(items)} longer than srt.max_tokens={cfg.max_tokens}. Collect more or raise it."
            )
        parts = [p for p in plan_parts(items, cfg, seed) if p.items]
        bounds, total = [], 0
        for p in parts:
            bounds.append(total)
            total += p.steps(cfg)

        def part_at(step: int) -> int:
            return max(i for i, b in enumerate(bounds) if b <= step)

        with open_stage(recipe, run.path, resume, SPEC) as trainee:
            model, tokenizer, pad = trainee.model, trainee.tokenizer, trainee.pad_id
            kl = penalty(model, cfg.optim)  # taken before any resume
            # the reference code's second part is a new fine-tuning run: a fresh optimizer per part
            optimizers = [make_optimizer(cfg.optim, p.steps(cfg)) for p in parts]
            state, _ = trainee.restore(optimizers, part_at)  # the saved moments: the part of the last finished step

            def step_fn(step: int) -> StepOutcome:
                i = part_at(step)
                part = parts[i]
                chunk = shard(step_items(part, step - bounds[i], cfg, derive_seed(seed, "srt_part", i)))
                batches = srt_batches(chunk, part.terms, cfg.micro_batch_size, pad, cfg.generation_tuples == "wrong")
                batches = with_reference(model, kl, batches)
                loss = partial(srt_loss, kl_to_initial=kl.weight)
                result = optimizer_step(model, optimizers[i], loss, batches, cfg.optim.grad_clip)
                widest = GENERATION if GENERATION in part.terms else REVISION
                return StepOutcome(
                    result=result,
                    trained_tokens=sum(len(it.ids) - it.span(widest)[0] for it in chunk),
                    part=part.name,
                    details=(("tuples", float(len(chunk))),),
                )

            def final_outputs(state: TrainingState) -> list[Path]:
                """The fused model, state.json and summary.json, written once the last step is saved."""
                files = save_fused_model(model, tokenizer, recipe.model.path, run.path / MODEL)
                write_json(run.path / "state.json", asdict(state))
                summary = {**asdict(state), "tuples": len(items), "dropped_too_long": len(all_items) - len(items),
                           "truncated_revisions": len(cut), "dropped_truncated": len(cut) if cfg.drop_truncated else 0,
                           "parts": {p.name: {"tuples": len(p.items), "steps": p.steps(cfg)} for p in parts}}
                write_json(run.path / "summary.json", summary)
                return [*files, run.path / "state.json", run.path / "summary.json"]

            return trainee.train(total, step_fn, optimizers, part_at, state=state, on_step=on_step,
                                 stop_after=stop_after, final_outputs=final_outputs)


SPEC = StageSpec(
    name="srt", label="SRT",
    help="Phase 1: self-revision training on collected tuples -> RUN/srt/adapters and the fused RUN/srt/model.",
    section=SrtConfig, sections=SRT_SECTIONS, order=20, run=run_srt, baseline=False, folder="srt",
    caps=("srt.max_tokens",), memory="srt.micro_batch_size, srt.max_tokens, lora.grad_checkpoint: true",
    outputs=FINAL_OUTPUTS, inputs=srt_inputs, fuses=True,
)
