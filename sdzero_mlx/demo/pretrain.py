"""Seeded from-scratch pretraining of the demo's tiny llama on solutions of the demo task.

Algorithm: build the tokenizer and a randomly initialised llama (`sdzero_mlx.demo.tinymodel`, init from
`seed`); deal the task's splits (`task.split_problems(task_seed, ...)`, so the pretraining problems never
overlap phase-1 / phase-2 / test); turn each pretraining problem into one chat sequence
`chat([user: problem], add_generation_prompt) + assistant turn + <|im_end|>`; train with next-token
cross-entropy on the gold-solution tokens only (mean over the step's trained tokens), AdamW (lr 2e-3,
weight decay 0.01, batch 64), linear warmup over 50 steps then a constant rate (`min_lr_ratio=1.0`; a
cosine decay is available), float32, one `mx.eval` per step. Data order and transcript kinds come from a
numpy generator seeded with `seed`, weights from `mx.random.seed(seed)`: the same arguments give the same
weights, byte for byte. With a constant rate the schedule does not depend on `steps`, so a checkpoint
at step N of a longer run equals a run with steps=N; that is how the budget below was chosen.

Two-attempt transcripts (`revision_share`, default 0.5). SD-Zero later asks the model to continue its own
answer after `"\\n\\n" + P_r + "\\n\\n"` in the same assistant turn, and phase 2's teacher is the model
reading an answer back, so half of the pretraining turns show that layout:
- `1 - restart_fraction` of them: gold solution, "Let me rephrase the above solution.", the same gold
  solution again (the Reviser learns to keep a right answer);
- `restart_fraction` (0.5) of them: another problem's solution (a truly wrong answer with nothing to copy),
  "Wait, this response is not correct, let me start over.", then the gold solution (the Reviser learns
  to re-solve from the question). Making a wrong answer worth reading is left for SRT to teach.
Only gold solutions are trained (`assistant_pieces`): never the cue (the environment says it) nor the
wrong first attempt, so the Generator never learns to write a cue or a wrong answer.

The shipped base model (`sdzero_mlx/demo/base_model`, made by `python -m sdzero_mlx.demo.pretrain OUT`
with the defaults here) and how its budget was found, on 2 shared CPU cores, float32 + OpenBLAS:
- Model: llama, hidden 128, 4 layers, 4 heads (head dim 32), SwiGLU 256, tied embeddings: 0.68M
  parameters, 2.7 MB. Task: `task.Difficulty()` defaults (single-digit running totals, exactly 5 steps,
  so every solution is 55 tokens and every transcript has the same offsets).
- 280 steps x 64 sequences (18k problems, about 110 tokens each), about 7,000 tokens/s here: about
  5 minutes. Checkpoints of the seeded run, 300 test problems (greedy / T=0.7 / after "not correct",
  the share of wrong first answers fixed / after "rephrase", the share of right answers lost):
  step 180: 22 / 17 / 12 / 6%, 200: 24 / 20 / 13 / 7%, 220: 30 / 25 / 12 / 7%, 240: 29 / 26 / 15 / 10%,
  260: 31 / 30 / 16 / 3%, 280: 39 / 35 / 19 / 2%. Single-digit steps are learnt in a sharp transition,
  so the budget, not the task, sets the base accuracy.
- What the Reviser needs, measured on earlier designs (each a checkpoint in the 20-50% band):
  * 4-6 steps (solutions of 41-71 tokens) and 10% two-attempt turns: after "rephrase" a right answer
    stayed right only 16% of the time (the Reviser could not find what to copy at varying offsets);
    packing chats into 256-token rows did not help either (6 of 40 kept, though that run stayed under
    20% accuracy for 600 steps). Fixed-length solutions fixed it (0-10% lost at every checkpoint).
  * Training on the whole transcript taught the Generator to write the cue itself (mean length 117
    tokens at a 50% share) and would train it on the wrong first attempts; hence gold-only training.
  * Restarts whose first attempt is another problem's solution, the gold solution with one step off by
    one, the gold layout with every step result random, or the model's own wrong answers (sampled at
    step 200 and used from then on): in every case the Reviser, reading a wrong answer, is less sure
    than the Generator of the sampled tokens (mean probability 0.75-0.92 against 0.89-0.96) and, at the
    first mistaken digit, gives the right digit less than the Generator does (0.13-0.19 against
    0.20-0.38). The simplest, another problem's solution, is kept. That gap is what phase 2 distils on
    wrong samples.
- What did not work (same budget class): two-digit totals with one-digit operands (10..99 or 0..199),
  3-4 steps: 3-6% accuracy after 200-300 steps and 6% greedy / 8% sampled after 1000 steps (9 minutes);
  per-step results stayed under 10% right while copying was ~99% right, in all three scratchpad formats
  tried ("a+b=c" lines, "=c+rest" lines, "a+b=c+rest" lines) and with 2 or 4 heads. Learning rate 5e-3
  with batch 32 diverged to a loss of 1.4 (format not learned).

The inverse task's base (`sdzero_mlx/demo/base_model_inverse`, `app.TASKS["inverse"].pretrain_args`):
the chain base above (`--init-from base_model`) trained 300 more steps at lr 1e-3 (warmup 20) on the
inverse task with 4-step chains (every answer 57 tokens): lazy Generator turns (a valid guess, replay,
check, fix, box = the guess), rephrase turns (gold, cue, gold) and restarts (a lazy wrong answer, cue,
a diligent answer from a fresh valid guess that boxes its fix; `copy_fix_share` 0). Measured on the
way (300 test problems, greedy / T=0.7 / correction rate after "not correct"):
- from scratch, mod-10 chains (2 or 3 steps, 0.68M model): greedy 8-13% at 150-900 steps, the replay
  arithmetic still wrong at step 700 ("4+5=0", "1+5=9"): wrap-around facts were not learnt in budget,
  so the task keeps every total in 0..9, the chain task's facts, and starts from the chain base;
- `copy_fix_share` 0.5 (the Reviser's guess copies the first attempt's fix half the time): 23% / 18% /
  23%, but the teacher then expects every replay to land on the target, and distillation taught the
  student to fake its check (d = 0) and collapsed its guesses (probe accuracy 22% -> 12%);
- `copy_fix_share` 0 (shipped): 25% / 21% / 27%.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from sdzero_mlx.sources import demo_tasks as task
from sdzero_mlx.sources.demo import write_pretrained_problems
from sdzero_mlx.demo.tinymodel import IM_END, PAD, build_tokenizer, init_weights, make_model_dir, model_config

REPHRASE = "Let me rephrase the above solution."
RESTART = "Wait, this response is not correct, let me start over."


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the pretrained weights (saved into build_info.json)."""

    seed: int = 0
    steps: int = 280
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 1.0  # cosine decay to learning_rate * this; 1.0 = constant after warmup
    weight_decay: float = 0.01
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 256
    revision_share: float = 0.5
    restart_fraction: float = 0.5  # of the two-attempt turns, the share that restart after a wrong attempt
    copy_fix_share: float = 0.5  # inverse task: restarts whose guess copies the first attempt's fix line
    init_from: str = ""  # start from this model folder's weights (same architecture) instead of a random init
    task_seed: int = 0
    pretrain_problems: int = 20000
    difficulty: task.Difficulty = field(default_factory=task.Difficulty)
    # Held-out split sizes only fix which problems pretraining must not see.
    held_out: tuple[tuple[str, int], ...] = (("test", 500), ("phase2", 2000), ("phase1", 2000))


def assistant_pieces(p: task.Problem, kind: str, other: task.Problem | str | None) -> list[tuple[str, bool]]:
    """The assistant turn of one pretraining chat as (text, trained) pieces: 'single', 'rephrase' or
    'restart'. Only gold solutions are trained; the cue (the environment's words) and the wrong first
    attempt are context, so the Generator never learns to emit a cue or a wrong answer.

    A restart's wrong first attempt (`other`; only restarts need one) is, for the chain task, the
    solution of another problem of the same length: it holds nothing to copy, so after the "not
    correct" cue the base re-solves from the question. For the inverse task it is this problem's
    solution started from a wrong x (text): its check line shows how far off x was, and the Reviser
    learns to use it (x = x' - d)."""
    if kind == "single":
        return [(p.solution, True)]
    if kind == "rephrase":
        return [(p.solution, True), (f"\n\n{REPHRASE}\n\n", False), (p.solution, True)]
    first = other if isinstance(other, str) else other.solution
    return [(first, False), (f"\n\n{RESTART}\n\n", False), (p.solution, True)]


def next_with_other_answer(problems: list[task.Problem], i: int) -> task.Problem:
    """The first problem after problems[i] (cyclically) with a different answer: a truly wrong attempt."""
    for step in range(1, len(problems)):
        other = problems[(i + step) % len(problems)]
        if other.answer != problems[i].answer:
            return other
    raise ValueError("Restart transcripts need problems with at least two different answers.")


def inverse_pieces(
    p: task.Problem, kind: str, rng: random.Random, copy_fix_share: float, difficulty: task.Difficulty
) -> list[tuple[str, bool]]:
    """The inverse task's turns (see task.py): the Generator answers lazily, the Reviser diligently.

    single: a lazy answer from a uniform valid guess (box = the guess), trained: the Generator
    guesses, checks and fixes, then boxes the guess. rephrase: the gold answer, cue, the gold answer
    again. restart: a lazy answer from a wrong guess, cue, then a diligent answer (box = its own fix)
    whose guess copies the first attempt's fix line (the right x) with probability
    `copy_fix_share`, else is a uniform valid guess. Only the last attempt is trained in two-attempt
    turns."""
    if kind == "single":
        return [(task.inverse_answer(p, task.random_guess(p, rng, difficulty), diligent=False), True)]
    if kind == "rephrase":
        return [(p.solution, True), (f"\n\n{REPHRASE}\n\n", False), (p.solution, True)]
    first = task.wrong_attempt(p, rng, difficulty)
    guess = int(p.answer) if rng.random() < copy_fix_share else task.random_guess(p, rng, difficulty)
    return [(first, False), (f"\n\n{RESTART}\n\n", False), (task.inverse_answer(p, guess, diligent=True), True)]


def encode_examples(
    problems, tokenizer, rng: np.random.Generator, revision_share: float, restart_fraction: float = 0.5,
    copy_fix_share: float = 0.5, difficulty: task.Difficulty = task.Difficulty(),
) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """One chat per problem: token ids and the (start, end) spans of its trained tokens.

    Pieces are tokenised one by one, as the project lays out a Reviser's context at run time
    (prompt ids + answer ids + cue ids + answer ids); the closing <|im_end|> is trained."""
    end_id = tokenizer.token_to_id(IM_END)
    kinds = rng.choice(
        ["single", "rephrase", "restart"],
        size=len(problems),
        p=[1 - revision_share, revision_share * (1 - restart_fraction), revision_share * restart_fraction],
    )
    examples = []
    # guesses of the inverse task's answers; drawn only for that task, so chain builds keep their bytes
    inverse = any(p.id.startswith("inv-") for p in problems)
    wrong_rng = random.Random(int(rng.integers(2**31))) if inverse else None
    for i, (problem, kind) in enumerate(zip(problems, kinds)):
        ids = tokenizer.encode(f"<|im_start|>user\n{problem.problem}<|im_end|>\n<|im_start|>assistant\n").ids
        spans = []
        other = None
        if problem.id.startswith("inv-"):
            pieces = inverse_pieces(problem, kind, wrong_rng, copy_fix_share, difficulty)
        else:
            other = next_with_other_answer(problems, i) if kind == "restart" else None
            pieces = assistant_pieces(problem, kind, other)
        for text, trained in pieces:
            piece = tokenizer.encode(text).ids
            if trained:
                spans.append((len(ids), len(ids) + len(piece)))
            ids = ids + piece
        spans[-1] = (spans[-1][0], len(ids) + 1)  # the last piece is gold: its <|im_end|> is trained too
        examples.append((ids + [end_id], spans))
    return examples


def make_batch(rows, pad_id: int) -> tuple[mx.array, mx.array]:
    """Inputs (B, T) padded to a multiple of 8 (few distinct shapes to compile) and a loss mask (B, T-1).

    `rows`: (ids, [(start, end) of trained tokens, ...]) pairs, one chat each (`encode_examples`)."""
    width = max(len(ids) for ids, _ in rows)
    width = 8 * math.ceil(width / 8) + 1
    ids = np.full((len(rows), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(rows), width - 1), dtype=np.float32)
    for i, (seq, spans) in enumerate(rows):
        ids[i, : len(seq)] = seq
        for start, end in spans:
            mask[i, start - 1 : end - 1] = 1.0  # position t predicts token t+1: trained tokens only
    return mx.array(ids), mx.array(mask)


def resolve_init(path: str) -> Path:
    """A model folder given as a path, or relative to this package (e.g. "base_model")."""
    here = Path(__file__).resolve().parent / path
    return here if (here / "model.safetensors").is_file() else Path(path)


def build_model(config: dict, seed: int):
    from mlx_lm.models import llama

    fields = llama.ModelArgs.__dataclass_fields__
    model = llama.Model(llama.ModelArgs(**{k: v for k, v in config.items() if k in fields}))
    model.update(tree_unflatten(list(init_weights(config, seed).items())))
    return model


def pretrain(
    out_dir: Path, cfg: PretrainConfig = PretrainConfig(), *, log_every: int = 25, checkpoints=(), **overrides
) -> dict:
    """Train from scratch and save an mlx-lm model folder plus build_info.json into out_dir; return the info.

    `checkpoints`: steps at which to also save a model folder `out_dir/step_N`. With min_lr_ratio=1.0 the
    schedule does not depend on `steps`, so step_N equals a fresh run with steps=N (used to pick the budget).
    """
    cfg = PretrainConfig(**{**asdict(cfg), **overrides, "difficulty": overrides.get("difficulty", cfg.difficulty)})
    t0 = time.perf_counter()
    mx.random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    sizes = dict(cfg.held_out) | {"pretrain": cfg.pretrain_problems}
    problems = task.split_problems(cfg.task_seed, sizes, cfg.difficulty)["pretrain"]
    tokenizer = build_tokenizer()
    examples = encode_examples(problems, tokenizer, rng, cfg.revision_share, cfg.restart_fraction, cfg.copy_fix_share,
                               cfg.difficulty)
    pad_id = tokenizer.token_to_id(PAD)

    arch = dict(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
    )
    config = model_config(**arch)
    model = build_model(config, cfg.seed)
    if cfg.init_from:  # e.g. the chain task's base: the inverse task's replay lines are its facts
        model.load_weights(str(resolve_init(cfg.init_from) / "model.safetensors"))
    n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
    schedule = optim.join_schedules(
        [
            optim.linear_schedule(cfg.learning_rate / cfg.warmup_steps, cfg.learning_rate, cfg.warmup_steps),
            optim.cosine_decay(
                cfg.learning_rate, max(1, cfg.steps - cfg.warmup_steps), cfg.learning_rate * cfg.min_lr_ratio
            ),
        ],
        [cfg.warmup_steps],
    )
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)

    def loss_fn(model, ids, mask):
        logits = model(ids[:, :-1]).astype(mx.float32)  # (B, T-1, V)
        nll = nn.losses.cross_entropy(logits, ids[:, 1:], reduction="none")  # (B, T-1)
        return (nll * mask).sum() / mask.sum()

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(ids, mask):
        loss, grads = loss_and_grad(model, ids, mask)
        optimizer.update(model, grads)
        return loss

    print(f"pretrain: {n_params / 1e6:.2f}M params, {len(examples)} sequences, {cfg.steps} steps x {cfg.batch_size}")
    order = rng.permutation(len(examples))
    cursor, tokens, losses = 0, 0, []
    t_train = time.perf_counter()
    for it in range(1, cfg.steps + 1):
        if cursor + cfg.batch_size > len(order):  # next epoch, reshuffled
            order, cursor = rng.permutation(len(examples)), 0
        batch = [examples[j] for j in order[cursor : cursor + cfg.batch_size]]
        cursor += cfg.batch_size
        ids, mask = make_batch(batch, pad_id)
        loss = step(ids, mask)
        mx.eval(state, loss)
        tokens += sum(len(s) for s, _ in batch)
        losses.append(loss.item())
        if it % log_every == 0 or it == cfg.steps:
            dt = time.perf_counter() - t_train
            print(f"step {it:5d}  loss {np.mean(losses[-log_every:]):.4f}  tok/s {tokens / dt:7.0f}  {dt:6.1f}s", flush=True)
        if it in checkpoints:
            make_model_dir(Path(out_dir) / f"step_{it}", **arch, weights=dict(tree_flatten(model.parameters())))

    train_seconds = time.perf_counter() - t_train
    out_dir = make_model_dir(Path(out_dir), **arch, weights=dict(tree_flatten(model.parameters())))
    info = {
        "config": asdict(cfg),
        "params": int(n_params),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "tokens": int(tokens),
        "tokens_per_second": round(tokens / train_seconds, 1),
        "final_loss": round(float(np.mean(losses[-log_every:])), 4),
    }
    (out_dir / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    write_pretrained_problems([p.problem for p in problems], out_dir, info["config"])  # demo:// leaves these out
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    defaults = PretrainConfig()
    for name in ("seed", "steps", "batch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "pretrain_problems", "task_seed", "warmup_steps"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--evaluate", type=int, default=500, help="test problems to measure afterwards (0: skip)")
    p.add_argument("--checkpoints", type=lambda x: tuple(int(v) for v in x.split(",")), default=())
    for name in ("learning_rate", "revision_share", "restart_fraction", "copy_fix_share", "weight_decay", "min_lr_ratio"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    p.add_argument("--kind", choices=["chain", "inverse"], default=defaults.difficulty.kind)
    p.add_argument("--init-from", default=defaults.init_from, help="model folder (or one in sdzero_mlx/demo) to start from")
    p.add_argument("--min-steps", type=int, default=defaults.difficulty.min_steps)
    p.add_argument("--max-steps", type=int, default=defaults.difficulty.max_steps)
    for name in ("start_digits", "operand_digits", "min_total", "max_total"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults.difficulty, name))
    args = vars(p.parse_args(argv))
    out_dir = args.pop("out_dir")
    difficulty = task.Difficulty(**{k: args.pop(k) for k in asdict(defaults.difficulty)})
    n_eval = args.pop("evaluate")
    info = pretrain(out_dir, difficulty=difficulty, **args)
    if n_eval:
        info = evaluate_into_build_info(out_dir, n_eval)
    print(json.dumps(info, indent=2))


def evaluate_into_build_info(out_dir: Path, n: int) -> dict:
    """Greedy and T=0.7 accuracy and generate-then-revise on the test split (the project's own
    evaluation, so the numbers match `sdzero eval`); added to build_info.json."""
    import hashlib

    from sdzero_mlx.config import EvalConfig, ModelConfig, PromptConfig
    from sdzero_mlx.evaluate import EvalSettings, evaluate_examples, generate_then_revise
    from sdzero_mlx.modeling import load_model
    from sdzero_mlx.types import Example
    from sdzero_mlx.verifier import VerifierConfig

    path = Path(out_dir) / "build_info.json"
    info = json.loads(path.read_text())
    cfg = info["config"]
    test = task.split_problems(cfg["task_seed"], {"test": n}, task.Difficulty(**cfg["difficulty"]))["test"]
    examples = [Example(p.id, p.problem, p.answer) for p in test]
    model, tokenizer = load_model(ModelConfig(str(out_dir)))
    prompts, config = PromptConfig(template="{problem}"), EvalConfig(k=1, temperature=0.7, max_tokens=128, greedy=True)
    settings = EvalSettings(config, prompts, VerifierConfig(), seed=0, batch_size=128)
    sampled = evaluate_examples(model, tokenizer, examples, settings)
    revised = generate_then_revise(model, tokenizer, examples, settings)
    info["weights_sha256"] = hashlib.sha256((Path(out_dir) / "model.safetensors").read_bytes()).hexdigest()
    info["test_eval"] = {
        "n": n,
        "greedy": {"accuracy": sampled.greedy_accuracy},
        "temperature_0.7": {"accuracy": sampled.avg_at_k, "mean_tokens": sampled.mean_tokens},
        "revise_temperature_0.7": {
            "first_accuracy": revised.first_accuracy,
            "revised_accuracy": revised.revised_accuracy,
            "correction_rate": revised.correction_rate,
            "degradation_rate": revised.degradation_rate,
        },
    }
    path.write_text(json.dumps(info, indent=2) + "\n")
    return info


if __name__ == "__main__":
    main()
