"""Sampling through LoRA layers vs through LoRA-fused weights (rollout.fused_lora), tiny demo model, one run.

    python benchmarks/bench_fused_sampling.py [--problems 64] [--repeats 2]

The demo's base model with rank-16 LoRA on every linear (its recipe), B seeded to nonzero values as
after training; `generate_completions` on demo://inverse problems at the demo's sampling settings
(temperature 0.7, <= 144 new tokens, batch 64), once with one sample per problem and once with 4
samples per problem (copies=4: RFT / GRPO / evaluation's k). The two ways run interleaved, best of
`--repeats`; prints seconds of wall and of process CPU time, how many completions differ between
the two (expected 0: the logits move by float rounding only), and the ratios as the last lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdzero_mlx.platform.blas import reexec_with_fast_blas  # noqa: E402

reexec_with_fast_blas(sys.argv)  # as `sdzero` does; before mlx is imported

import mlx.core as mx  # noqa: E402
from mlx_lm.tuner.lora import LoRALinear  # noqa: E402

from sdzero_mlx.config import LoraConfig, ModelConfig, PromptConfig, SamplingConfig  # noqa: E402
from sdzero_mlx.demo.app import base_model_dir  # noqa: E402
from sdzero_mlx.sources.demo import examples as demo_examples  # noqa: E402
from sdzero_mlx.modeling import load_model, make_trainable  # noqa: E402
from clock import gpu_note  # noqa: E402  (benchmarks/clock.py)
from sdzero_mlx.platform.threads import apply_blas_threads  # noqa: E402
from sdzero_mlx.prompts import prompt_ids  # noqa: E402
from sdzero_mlx.rollout import generate_completions  # noqa: E402


def trained_lora_model():
    """The demo base with its recipe's LoRA (rank 16, scale 20) and seeded nonzero B, as after training."""
    model, tokenizer = load_model(ModelConfig(str(base_model_dir())))
    make_trainable(model, LoraConfig(rank=16, scale=20.0, dropout=0.0, num_layers=-1), seed=0)
    mx.random.seed(1)
    for _, m in model.named_modules():
        if isinstance(m, LoRALinear):
            m.lora_b = 0.01 * mx.random.normal(m.lora_b.shape)
    mx.eval(model.parameters())
    return model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    apply_blas_threads()  # as `sdzero` does
    model, tokenizer = trained_lora_model()
    prompts = [prompt_ids(tokenizer, ex.problem, PromptConfig(template="{problem}"))
               for ex in demo_examples("inverse", 1, args.problems)]
    sampling = SamplingConfig(temperature=0.7, max_tokens=144, batch_size=64)
    generate_completions(model, tokenizer, prompts[:8], sampling, 0)  # warm-up
    best: dict[tuple, list] = {}  # (copies, fuse): [wall s, CPU s]
    ids: dict[tuple, list] = {}
    for _ in range(args.repeats):  # interleaved: a shared machine's load hits both alike
        for copies in (1, 4):
            for fuse in (False, True):
                tic, cpu = time.perf_counter(), time.process_time()
                out = generate_completions(model, tokenizer, prompts, sampling, 0, copies=copies, fuse=fuse)
                wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
                old = best.setdefault((copies, fuse), [wall, cpu])
                old[:] = min(old[0], wall), min(old[1], cpu)
                ids[copies, fuse] = [c.ids for c in out]
    print(f"tiny demo model + rank-16 LoRA, {args.problems} demo://inverse problems, T=0.7, <= 144 tokens, "
          f"batch 64, best of {args.repeats}")
    if gpu_note():
        print(gpu_note())
    for (copies, fuse), (wall, cpu) in best.items():
        print(f"copies {copies}, {'fused' if fuse else 'LoRA '}: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    for copies in (1, 4):
        differ = sum(a != b for a, b in zip(ids[copies, False], ids[copies, True]))
        print(f"copies {copies}: {differ} of {len(ids[copies, True])} completions differ, "
              f"{sum(map(len, ids[copies, True]))} tokens")
    for copies in (1, 4):
        (w0, c0), (w1, c1) = best[copies, False], best[copies, True]
        print(f"fused vs LoRA sampling, copies {copies}: wall {w0 / w1:.2f}x, CPU {c0 / c1:.2f}x")


if __name__ == "__main__":
    main()
