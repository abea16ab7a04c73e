"""Real-model speed and memory against mlx-lm itself, ratios from one run (float32 on CPU by default).

1. Rollouts: tokens/s through sdzero's rollout.py vs a raw mlx-lm BatchGenerator on the same model,
   prompts, sampler and batch size (goal >= 0.9x).
2. One distill optimizer step (teacher top-k pass + student KL step) vs a plain mlx-lm LoRA SFT step
   (mlx_lm.tuner.trainer.default_loss, value_and_grad, AdamW update) on the same student tokens, and
   one teacher pass alone (goal: distill <= 1.3 x (SFT + teacher)); peak memory of each; and the
   distill step again with lora.grad_checkpoint.
3. The same against answer length (64 .. 1024 tokens) and batch size.
4. With --quantized: SmolLM2 at 8 and 4 bits (mlx-lm's convert) against float32: rollout tokens/s,
   distill step time and peak memory.
Sequences for 2-4 are synthetic token ids (a 32-token prompt, y, a 16-token separator, y again).

    python benchmarks/bench_real.py [--model tiny|smollm] [--lengths 64,256,1024] [--batches 1,4] [--quantized]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from sdzero_mlx.config import LoraConfig, ModelConfig, PromptConfig, SamplingConfig  # noqa: E402
from sdzero_mlx.stages.distill import DistillConfig
from sdzero_mlx import grad_checkpoint  # noqa: E402
from sdzero_mlx.kd import compute_teacher_targets, distill_step  # noqa: E402
from sdzero_mlx.modeling import load_model, make_trainable, trainable  # noqa: E402
from sdzero_mlx.prompts import prompt_ids, teacher_sequence  # noqa: E402
from sdzero_mlx.rollout import generate_completions  # noqa: E402
from sdzero_mlx.platform.threads import apply_blas_threads  # noqa: E402
from sdzero_mlx.types import DistillItem  # noqa: E402


def model_path(kind: str) -> str:
    if kind == "smollm":
        from smollm import smollm_model_dir

        return str(smollm_model_dir())
    from sdzero_mlx.demo.app import base_model_dir

    return str(base_model_dir())


def measure(fn) -> tuple[float, float]:
    """(seconds, peak GB above what was allocated before) of fn()."""
    mx.synchronize()
    start = mx.get_active_memory()
    mx.reset_peak_memory()
    tic = time.perf_counter()
    fn()
    mx.synchronize()
    return time.perf_counter() - tic, (mx.get_peak_memory() - start) / 1e9


# --- 1. rollouts -----------------------------------------------------------------------------------

def raw_batch_generator(model, tokenizer, prompts, sampling: SamplingConfig) -> int:
    """mlx-lm's BatchGenerator as its own docs use it; returns the number of generated tokens."""
    from mlx_lm.generate import BatchGenerator
    from mlx_lm.sample_utils import make_sampler

    mx.random.seed(0)
    gen = BatchGenerator(model, max_tokens=sampling.max_tokens, stop_tokens=[[t] for t in sorted(tokenizer.eos_token_ids)],
                         sampler=make_sampler(temp=sampling.temperature), completion_batch_size=sampling.batch_size,
                         prefill_batch_size=min(sampling.batch_size, 8))
    gen.insert([list(p) for p in prompts])
    n = 0
    while responses := gen.next_generated():
        n += len(responses)
    gen.close()
    return n


def bench_rollout(model, tokenizer, n_prompts: int, max_tokens: int, repeats: int = 2) -> dict:
    from conftest import arithmetic_rows

    prompts = [prompt_ids(tokenizer, r["problem"], PromptConfig()) for r in arithmetic_rows(n_prompts)]
    sampling = SamplingConfig(temperature=0.7, max_tokens=max_tokens, batch_size=16)
    raw_batch_generator(model, tokenizer, prompts[:4], sampling)  # warm-up
    runs = {
        "raw": lambda: raw_batch_generator(model, tokenizer, prompts, sampling),
        "ours": lambda: sum(len(c.ids) + (c.stop_id is not None)
                            for c in generate_completions(model, tokenizer, prompts, sampling, 0)),
    }
    best = {"raw": 0.0, "ours": 0.0}
    for _ in range(repeats):  # interleaved, best of each: a shared machine's load hits both alike
        for name, run in runs.items():
            count = []
            seconds, _ = measure(lambda: count.append(run()))
            best[name] = max(best[name], count[0] / seconds)
    return {"raw_tok_s": best["raw"], "ours_tok_s": best["ours"]}


# --- 2-3. one distill step vs one mlx-lm SFT step ---------------------------------------------------

def synthetic_items(vocab: int, batch: int, answer: int, seed: int = 0) -> list[DistillItem]:
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(batch):
        prompt, y, sep = (tuple(int(t) for t in rng.integers(10, vocab, n)) for n in (32, answer, 16))
        items.append(DistillItem(prompt + y, (32, 32 + answer), teacher_sequence(prompt, y[:-1], sep, y), 0.0))
    return items


def sft_step(model, optimizer, items):
    """mlx-lm's LoRA training step (tuner/trainer.py) on the student sequences prompt + y."""
    from mlx_lm.tuner.trainer import default_loss

    width = max(len(it.student_ids) for it in items)
    batch = mx.array([list(it.student_ids) + [0] * (width - len(it.student_ids)) for it in items])
    lengths = mx.array([[it.student_span[0], len(it.student_ids)] for it in items])
    (loss, _), grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    optimizer.update(model, grads)
    mx.eval(model.state, optimizer.state, loss)


def bench_step(model, vocab: int, batch: int, answer: int) -> dict:
    items = synthetic_items(vocab, batch, answer)
    config = DistillConfig(micro_batch_size=batch, top_k=64, max_teacher_tokens=4 * answer + 256)
    teacher = trainable(model)
    opt_d, opt_s = optim.AdamW(learning_rate=1e-5), optim.AdamW(learning_rate=1e-5)
    out = {}
    out["sft_s"], out["sft_gb"] = measure(lambda: sft_step(model, opt_s, items))
    out["teacher_s"], out["teacher_gb"] = measure(lambda: compute_teacher_targets(model, teacher, items, 0, config.kl_settings))
    out["distill_s"], out["distill_gb"] = measure(lambda: distill_step(model, opt_d, teacher, items, config.kl_settings, batch, 0, 1.0))
    grad_checkpoint.enable(model)  # the same step with lora.grad_checkpoint
    out["ckpt_s"], out["ckpt_gb"] = measure(lambda: distill_step(model, opt_d, teacher, items, config.kl_settings, batch, 0, 1.0))
    grad_checkpoint.enable(model, on=False)
    return out


def load(path: str):
    model, tok = load_model(ModelConfig(path=path))
    make_trainable(model, LoraConfig(rank=8, num_layers=-1), 0)
    return model, tok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["tiny", "smollm"], default="smollm")
    parser.add_argument("--lengths", default="64,256,1024")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--quantized", action="store_true", help="also SmolLM2 at 8 and 4 bits")
    parser.add_argument("--rollout-only", action="store_true")
    parser.add_argument("--quantized-only", action="store_true", help="only the quantized comparison")
    args = parser.parse_args()
    apply_blas_threads()  # as `sdzero` does
    path = model_path(args.model)
    model, tok = load(path)
    vocab = model.args.vocab_size
    print(f"model {args.model} ({path}), vocab {vocab}, float32, LoRA rank 8 on every block")

    if args.quantized_only:
        bench_quantized(path, model, tok, vocab)
        return
    r = bench_rollout(model, tok, 32, 64)
    print(f"rollout, 32 prompts, <= 64 new tokens, batch 16, best of 2: rollout.py {r['ours_tok_s']:.0f} tok/s, "
          f"raw BatchGenerator {r['raw_tok_s']:.0f} tok/s, ratio {r['ours_tok_s'] / r['raw_tok_s']:.2f}x")
    if args.rollout_only:
        return

    print(f"{'batch':>5} {'answer':>6} | {'SFT s':>7} {'teacher s':>9} {'distill s':>9} {'distill/(SFT+teacher)':>21} | "
          f"{'SFT GB':>6} {'teacher GB':>10} {'distill GB':>10} | {'ckpt s':>7} {'ckpt GB':>7} (distill, lora.grad_checkpoint)")
    for b in (int(x) for x in args.batches.split(",")):
        for n in (int(x) for x in args.lengths.split(",")):
            s = bench_step(model, vocab, b, n)
            print(f"{b:5d} {n:6d} | {s['sft_s']:7.2f} {s['teacher_s']:9.2f} {s['distill_s']:9.2f} "
                  f"{s['distill_s'] / (s['sft_s'] + s['teacher_s']):20.2f}x | {s['sft_gb']:6.2f} {s['teacher_gb']:10.2f} "
                  f"{s['distill_gb']:10.2f} | {s['ckpt_s']:7.2f} {s['ckpt_gb']:7.2f}", flush=True)

    if args.quantized:
        bench_quantized(path, model, tok, vocab)


def bench_quantized_matmul() -> None:
    """One SmolLM2 MLP projection (576 -> 1536) as float32 matmul vs mx.quantized_matmul, by row count."""
    print("quantized_matmul vs float32 matmul, x (M, 576) @ W (576, 1536), group 64, mean of 20:")
    for rows in (1, 16, 256):
        x, w = mx.random.normal((rows, 576)), mx.random.normal((1536, 576))
        times = {}
        for bits in (None, 8, 4):
            if bits is None:
                fn = lambda: x @ w.T  # noqa: E731
            else:
                wq, scales, biases = mx.quantize(w, group_size=64, bits=bits)
                fn = lambda: mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=64, bits=bits)  # noqa: E731
            mx.eval(fn())
            tic = time.perf_counter()
            for _ in range(20):
                mx.eval(fn())
            times[bits] = (time.perf_counter() - tic) / 20
        print(f"  M={rows:4d}: float32 {times[None] * 1e3:7.2f} ms, 8-bit {times[8] * 1e3:7.2f} ms "
              f"({times[8] / times[None]:.1f}x), 4-bit {times[4] * 1e3:7.2f} ms ({times[4] / times[None]:.1f}x)")


def bench_quantized(path: str, model, tok, vocab: int, batch: int = 1, answer: int = 64) -> None:
    """SmolLM2 at 8 and 4 bits (mlx-lm's convert, LoRA on top: QLoRA) against float32.

    Small settings on purpose: on an x86 CPU MLX's quantized matmul is 20-45x slower than float32
    once more than a few rows go through it (bench_quantized_matmul), so the 2 x 256 step of the
    first version of this benchmark did not finish in 15 minutes.
    """
    from mlx_lm.convert import convert

    bench_quantized_matmul()
    print(f"quantized bases (mlx-lm convert, group 64) vs float32: rollouts 8 prompts <= 32 tokens, "
          f"distill step batch {batch} x {answer}-token answers")
    rows = [("float32", model)]
    with tempfile.TemporaryDirectory() as tmp:
        for bits in (8, 4):
            out = Path(tmp) / f"q{bits}"
            convert(path, str(out), quantize=True, q_group_size=64, q_bits=bits)
            rows.append((f"{bits}-bit", load(str(out))[0]))
        base = None
        for name, m in rows:
            r = bench_rollout(m, tok, 8, 32, repeats=1)
            s = bench_step(m, vocab, batch, answer)
            weights_gb = sum(v.nbytes for _, v in tree_flatten(m.parameters())) / 1e9
            base = base or (r, s, weights_gb)
            print(f"{name:8s} weights {weights_gb:.3f} GB ({weights_gb / base[2]:.2f}x)  "
                  f"rollout {r['ours_tok_s']:6.1f} tok/s ({r['ours_tok_s'] / base[0]['ours_tok_s']:.2f}x)  "
                  f"distill step {s['distill_s']:6.2f} s ({s['distill_s'] / base[1]['distill_s']:.2f}x)  "
                  f"peak {s['distill_gb']:.2f} GB ({s['distill_gb'] / base[1]['distill_gb']:.2f}x)", flush=True)

if __name__ == "__main__":
    main()
