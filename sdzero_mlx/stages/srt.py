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
    staged (reference code): first the generation loss on the wrong-initial tuples, then, with a
        fresh optimizer, the revision loss on `srt.stage2_size` tuples (correct-initial first, then
        wrong-initial ones the first stage did not use).
Output: LoRA adapters in mlx-lm's format (RUN/srt/adapters) and the model with them fused, saved as
an ordinary mlx-lm model folder (RUN/srt/model): phase 2's starting point and teacher.

Departures from the paper (recipe fields): LoRA by default instead of full fine-tuning
(`lora.fine_tune_type`), learning rate `srt.optim.learning_rate` 1e-4 (paper 5e-6), tuples longer than `srt.max_tokens` are dropped,
`srt.epochs` 1 (reference code: 3 per stage). Options with the paper's value as default:
`srt.generation_tuples` (all; "wrong" = the reference code's generation stage, wrong-initial tuples
only) and `srt.drop_truncated` (false: revisions cut by max_tokens are kept, without an end-of-turn
token). The fused model is saved in the training dtype (float32 on CPU).
"""

from __future__ import annotations

import random
import shutil
import sys
from contextlib import nullcontext
from functools import partial
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from ..atomic import replace_dir, write_json, write_text
from ..checkpoint import TrainingState, checkpoint_dir, read_state
from ..rundir import MadeBy, check_made_by, damaged_outputs, made_by, record_outputs, run_dir_lock
from ..types import load_tuples
from ..config import SrtConfig
from ..data import epoch_order
from ..platform.distributed import is_writer, shard, step_tokens
from .loop import StepOutcome, penalty_reference, restore, start_stage, train_loop
from ..metrics import StepRecord
from ..modeling import fuse_lora, lora_num_layers, trainable
from ..outputs import check_output_dir
from ..seeds import derive_seed
from ..probe import make_probe
from ..loss import WeightedBatch, weighted_nll, with_reference
from ..scoring import chunks, scored_batch
from ..checkpoint import save_adapters
from ..update import make_optimizer, optimizer_step
from ..types import RevisionTuple
from . import StageSpec

if TYPE_CHECKING:
    from ..config import Recipe

REVISION, GENERATION = "revision", "generation"
SRT_SECTIONS = ("model", "lora", "srt")
DONE = "done"


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
    answer when `srt.generation_tuples` is "wrong" (the reference code's generation stage)."""
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


def step_items(stage: SrtPart, step_in_stage: int, config: SrtConfig, seed: int) -> list[SrtItem]:
    """The items of one optimizer step: consecutive slices of a seeded per-epoch order."""
    per_epoch = -(-len(stage.items) // config.batch_size)
    epoch, b = divmod(step_in_stage, per_epoch)
    order = epoch_order(len(stage.items), seed, epoch)
    return [stage.items[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]]


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


def srt_made_by(recipe: Recipe, run_dir: Path) -> MadeBy:
    """What SRT's output is made from: its sections, the base model's bytes and the tuples' (rundir.MadeBy)."""
    return made_by(recipe, SRT_SECTIONS, {"tuples": tuples_path(recipe, run_dir)})


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
    out_dir = check_output_dir(run_dir, "run.output_dir")  # before any work: a bad location costs nothing
    # held through the final writes below (train_loop gives back only its own take)
    with run_dir_lock(out_dir) if is_writer() else nullcontext():
        return _run_srt(recipe, out_dir, resume, on_step, stop_after)


FINAL_OUTPUTS = ("adapters/adapters.safetensors", "adapters/adapter_config.json", "state.json", "summary.json")


def _run_srt(recipe: Recipe, out_dir: Path, resume: bool, on_step, stop_after) -> TrainingState:
    cfg, seed = recipe.srt, recipe.run.seed
    if (out_dir / DONE).is_file():
        check_made_by(out_dir, srt_made_by(recipe, out_dir))
        bad = damaged_outputs(out_dir, FINAL_OUTPUTS)
        if not bad:
            return read_state(out_dir / "state.json")
        # redo the final writes from the last checkpoint (its step is the last: no step runs again)
        print(f"warning: {', '.join(str(out_dir / b) for b in bad)} missing or damaged: rewriting SRT's outputs "
              "from its checkpoint.", file=sys.stderr)
        (out_dir / DONE).unlink()
        resume = True
    source = tuples_path(recipe, out_dir)
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
    stages = [s for s in plan_parts(items, cfg, seed) if s.items]
    bounds, total = [], 0
    for s in stages:
        bounds.append(total)
        total += s.steps(cfg)

    def stage_at(step: int) -> int:
        return max(i for i, b in enumerate(bounds) if b <= step)

    run = start_stage(recipe, out_dir, resume, SRT_SECTIONS, stage="srt", inputs={"tuples": source})
    model, tokenizer, pad = run.model, run.tokenizer, run.pad_id
    # the reference code's second stage is a new fine-tuning run: a fresh optimizer per stage
    initial = penalty_reference(model, cfg.optim)  # taken before any resume
    optimizers = [make_optimizer(cfg.optim, st.steps(cfg)) for st in stages]
    state = TrainingState()
    if resume:
        saved_step = read_state(checkpoint_dir(out_dir) / "state.json").step
        # the saved moments belong to the stage of the last finished step
        state, _ = restore(out_dir, model, optimizers[stage_at(max(saved_step - 1, 0))])

    def step_fn(step: int) -> StepOutcome:
        s = stage_at(step)
        stage = stages[s]
        chunk = shard(step_items(stage, step - bounds[s], cfg, derive_seed(seed, "srt_part", s)))
        batches = srt_batches(chunk, stage.terms, cfg.micro_batch_size, pad, cfg.generation_tuples == "wrong")
        batches = with_reference(model, initial, batches, cfg.optim.kl_to_initial)
        loss = partial(srt_loss, kl_to_initial=cfg.optim.kl_to_initial)
        result = optimizer_step(model, optimizers[s], loss, batches, cfg.optim.grad_clip)
        widest = GENERATION if GENERATION in stage.terms else REVISION
        return StepOutcome(
            result=result,
            trained_tokens=sum(len(it.ids) - it.span(widest)[0] for it in chunk),
            part=stage.name,
            details=(("tuples", float(len(chunk))),),
        )

    state = train_loop(
        recipe=recipe, run_dir=out_dir, stage="srt", steps=total, model=model,
        optimizer_for_step=lambda step: optimizers[stage_at(step)], step_fn=step_fn, state=state,
        probe=make_probe(recipe, tokenizer), on_step=on_step, stop_after=stop_after,
    )
    if state.step < total or not is_writer():
        return state
    # every file atomically, `done` last, outputs.json before it: a `done` run's outputs are checked above
    files = save_adapters(out_dir / "adapters", trainable(model), recipe.lora, lora_num_layers(model, recipe.lora),
                          recipe.model.path)
    files += save_fused_model(model, tokenizer, recipe.model.path, out_dir / "model")
    write_json(out_dir / "state.json", asdict(state))
    summary = {**asdict(state), "tuples": len(items), "dropped_too_long": len(all_items) - len(items),
               "truncated_revisions": len(cut), "dropped_truncated": len(cut) if cfg.drop_truncated else 0,
               "stages": {st.name: {"tuples": len(st.items), "steps": st.steps(cfg)} for st in stages}}
    write_json(out_dir / "summary.json", summary)
    record_outputs(out_dir, [*files, out_dir / "state.json", out_dir / "summary.json"])
    write_text(out_dir / DONE, "")
    return state


SPEC = StageSpec(
    name="srt", label="SRT",
    help="Phase 1: self-revision training on collected tuples -> RUN/srt/adapters and the fused RUN/srt/model.",
    section=SrtConfig, sections=SRT_SECTIONS, order=20, run=run_srt, baseline=False, folder="srt",
)
