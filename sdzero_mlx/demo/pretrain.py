"""Seeded from-scratch pretraining of the demo's tiny llama on solutions of the demo task.

Algorithm: build the tokenizer and a randomly initialised llama (`sdzero_mlx.tinymodel`, init from
`seed`); deal the task's splits (`task.make_splits(task_seed, ...)`, so the pretraining problems never
overlap phase-1 / phase-2 / test); turn each pretraining problem into one chat sequence
`chat([user: problem], add_generation_prompt) + assistant turn + <|im_end|>`; train with next-token
cross-entropy on the assistant tokens only (mean over the step's assistant tokens), AdamW (lr 2e-3,
weight decay 0.01, batch 64), linear warmup over 50 steps then a constant rate (`min_lr_ratio=1.0`; a
cosine decay is available), float32, one `mx.eval` per step. Data order and error injection come from a
numpy generator seeded with `seed`, weights from `mx.random.seed(seed)`: the same arguments give the same
weights, byte for byte. With a constant rate the schedule does not depend on `steps`, so a checkpoint
at step N of a longer run equals a run with steps=N; that is how the budget below was chosen.

Two-attempt transcripts (`revision_share`, default 0.1). SD-Zero later asks the model to continue its own
answer after `"\\n\\n" + P_r + "\\n\\n"` in the same assistant turn. A model that only ever saw single
solutions would emit <|im_end|> there, so a small share of pretraining turns shows that layout:
- half of them: gold solution, "Let me rephrase the above solution.", the same gold solution again;
- the other half: a first attempt with one injected local mistake (one step's result off by 1, or by 10
  where the range allows, the later steps computed correctly from the wrong value, so the boxed answer
  is wrong), "Wait, this response is not correct, let me start over.", then the gold solution.
The share is kept small so that the format is known but revision is not a trained skill: the second
attempt is an independent re-solve, so a wrong first answer is fixed only about as often as the model
can solve the problem anyway (the paper's base models correct 2.7%; SRT is what teaches revision).

The shipped base model (`sdzero_mlx/demo/base_model`, made by `python -m sdzero_mlx.demo.pretrain OUT`
with the defaults here) and how its budget was found, on 2 shared CPU cores, float32 + OpenBLAS:
- Model: llama, hidden 128, 4 layers, 4 heads (head dim 32), SwiGLU 256, tied embeddings: 0.68M
  parameters, 2.7 MB. Task: `task.Difficulty()` defaults (single-digit running totals, 4-6 steps).
- 240 steps x 64 sequences (15k problems, one epoch, about 55 tokens each), about 4,000 tokens/s here:
  about 5 minutes. Checkpoints of one seeded run, accuracy on 500 test problems (greedy / T=0.7):
  step 120: 11% / 12%, 160: 18% / 17%, 200: 26% / 25%, 220: 44% / 36%, 240: 38% / 34%, 260: 64% / 52%.
  Single-digit steps are learned in a sharp transition between steps ~150 and ~260 (95% greedy by 300
  steps with a decaying rate), so the budget, not the task, sets the base accuracy; 240 leaves room to
  improve on both sides of the 20-50% target.
- What did not work (same budget class): two-digit totals with one-digit operands (10..99 or 0..199),
  3-4 steps: 3-6% accuracy after 200-300 steps and 6% greedy / 8% sampled after 1000 steps (9 minutes);
  per-step results stayed under 10% right while copying was ~99% right, in all three scratchpad formats
  tried ("a+b=c" lines, "=c+rest" lines, "a+b=c+rest" lines) and with 2 or 4 heads. Learning rate 5e-3
  with batch 32 diverged to a loss of 1.4 (format not learned).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from sdzero_mlx.demo import task
from sdzero_mlx.tinymodel import IM_END, PAD, build_tokenizer, init_weights, make_model_dir, model_config

REPHRASE = "Let me rephrase the above solution."
RESTART = "Wait, this response is not correct, let me start over."


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the pretrained weights (saved into build_info.json)."""

    seed: int = 0
    steps: int = 240
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 1.0  # cosine decay to learning_rate * this; 1.0 = constant after warmup
    weight_decay: float = 0.01
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 256
    revision_share: float = 0.1
    task_seed: int = 0
    pretrain_problems: int = 20000
    difficulty: task.Difficulty = field(default_factory=task.Difficulty)
    # Held-out split sizes only fix which problems pretraining must not see.
    held_out: tuple[tuple[str, int], ...] = (("test", 500), ("phase2", 2000), ("phase1", 2000))


def inject_error(
    start: int, ops: list[tuple[str, int]], rng: np.random.Generator, low: int = 0, high: int = 9
) -> str:
    """A solution with one wrong step result (off by 1 or 10, kept in [low, high] so it looks like the
    usual totals), later steps consistent with it."""
    total, results = start, []
    bad = int(rng.integers(len(ops)))
    for i, (op, b) in enumerate(ops):
        total = total + b if op == "+" else total - b
        if i == bad:
            total += int(rng.choice([d for d in (-10, -1, 1, 10) if low <= total + d <= high]))
        results.append(total)
    return task.render_solution(start, ops, results)


def parse_problem(text: str) -> tuple[int, list[tuple[str, int]]]:
    """Inverse of `task.render_problem`."""
    parts = re.findall(r"\d+|[+-]", text)
    return int(parts[0]), [(parts[i], int(parts[i + 1])) for i in range(1, len(parts), 2)]


def assistant_turn(p: task.Problem, kind: str, rng: np.random.Generator, difficulty: task.Difficulty) -> str:
    """The assistant text for one pretraining sequence: 'single', 'rephrase' or 'restart'."""
    if kind == "single":
        return p.solution
    if kind == "rephrase":
        return f"{p.solution}\n\n{REPHRASE}\n\n{p.solution}"
    wrong = inject_error(*parse_problem(p.problem), rng, difficulty.min_total, difficulty.max_total)
    return f"{wrong}\n\n{RESTART}\n\n{p.solution}"


def encode_examples(problems, tokenizer, rng: np.random.Generator, revision_share: float, difficulty: task.Difficulty):
    """Token id lists and the index where the assistant turn starts, one pair per problem."""
    end_id = tokenizer.token_to_id(IM_END)
    kinds = rng.choice(
        ["single", "rephrase", "restart"],
        size=len(problems),
        p=[1 - revision_share, revision_share / 2, revision_share / 2],
    )
    prompts = [f"<|im_start|>user\n{p.problem}<|im_end|>\n<|im_start|>assistant\n" for p in problems]
    answers = [assistant_turn(p, k, rng, difficulty) for p, k in zip(problems, kinds)]
    prompt_ids = [e.ids for e in tokenizer.encode_batch(prompts)]
    answer_ids = [e.ids for e in tokenizer.encode_batch(answers)]
    return [(p + a + [end_id], len(p)) for p, a in zip(prompt_ids, answer_ids)]


def make_batch(examples, pad_id: int) -> tuple[mx.array, mx.array]:
    """Inputs (B, T) padded to a multiple of 8 (few distinct shapes to compile) and a loss mask (B, T-1)."""
    width = max(len(ids) for ids, _ in examples)
    width = 8 * math.ceil(width / 8) + 1
    ids = np.full((len(examples), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(examples), width - 1), dtype=np.float32)
    for i, (seq, start) in enumerate(examples):
        ids[i, : len(seq)] = seq
        mask[i, start - 1 : len(seq) - 1] = 1.0  # position t predicts token t+1: assistant tokens only
    return mx.array(ids), mx.array(mask)


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
    problems = task.make_splits(cfg.task_seed, sizes, cfg.difficulty)["pretrain"]
    tokenizer = build_tokenizer()
    examples = encode_examples(problems, tokenizer, rng, cfg.revision_share, cfg.difficulty)
    pad_id = tokenizer.token_to_id(PAD)

    arch = dict(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
    )
    config = model_config(**arch)
    model = build_model(config, cfg.seed)
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
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    defaults = PretrainConfig()
    for name in ("seed", "steps", "batch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "pretrain_problems", "task_seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--evaluate", type=int, default=500, help="test problems to measure afterwards (0: skip)")
    p.add_argument("--checkpoints", type=lambda x: tuple(int(v) for v in x.split(",")), default=())
    for name in ("learning_rate", "revision_share", "weight_decay", "min_lr_ratio"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
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
    from sdzero_mlx.evaluate import evaluate_examples, generate_then_revise
    from sdzero_mlx.modeling import load_model
    from sdzero_mlx.types import Example
    from sdzero_mlx.verifier import VerifierConfig

    path = Path(out_dir) / "build_info.json"
    info = json.loads(path.read_text())
    cfg = info["config"]
    test = task.make_splits(cfg["task_seed"], {"test": n}, task.Difficulty(**cfg["difficulty"]))["test"]
    examples = [Example(p.id, p.problem, p.answer) for p in test]
    model, tokenizer = load_model(ModelConfig(str(out_dir)))
    prompts, config = PromptConfig(template="{problem}"), EvalConfig(k=1, temperature=0.7, max_tokens=128, greedy=True)
    sampled = evaluate_examples(model, tokenizer, examples, prompts, config, VerifierConfig(), seed=0, batch_size=128)
    revised = generate_then_revise(model, tokenizer, examples, prompts, config, VerifierConfig(), seed=0, batch_size=128)
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
