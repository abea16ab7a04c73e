"""k samples of one prompt with one shared prefill vs k separate prefills, ratio from one run.

    python benchmarks/bench_group_prefill.py [--model smollm|tiny] [--prompt 256] [--groups 4,8] [--max-tokens 32]

`rollout.generate_completions(..., copies=k)` (what sample_groups, evaluate's k samples and
collect use) prefills each prompt once and copies its KV cache k times; the per-sample path is the
same call with every prompt repeated k times and copies=1. Both sample `--max-tokens` tokens per
sequence (no stop token: the tokenizer's stop ids are hidden, so both paths do the same decoding
work) at temperature 0.7, the same batch size (16) and the same number of sequences (16 = prompts x k),
from random-id prompts of `--prompt` tokens. The two are interleaved, best of `--repeats` each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdzero_mlx.platform.blas import reexec_with_fast_blas  # noqa: E402

reexec_with_fast_blas(sys.argv)  # as `sdzero` does; before mlx is imported

import bench_real  # noqa: E402  (model paths and loading; puts the repo and tests/ on sys.path)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from sdzero_mlx.config import SamplingConfig  # noqa: E402
from sdzero_mlx.platform.threads import apply_blas_threads  # noqa: E402
from sdzero_mlx.rollout import generate_completions  # noqa: E402

SEQUENCES = 16


class NoStop:
    """The tokenizer as generate_completions sees it, with no stop ids: every sequence runs to max_tokens."""
    eos_token_ids: set = set()


def timed(fn) -> float:
    mx.synchronize()
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def compare(model, vocab: int, prompt_len: int, k: int, sampling: SamplingConfig, repeats: int) -> dict:
    rng = np.random.default_rng(k)
    prompts = [[int(t) for t in rng.integers(10, vocab, prompt_len)] for _ in range(SEQUENCES // k)]
    runs = {
        "shared": lambda: generate_completions(model, NoStop(), prompts, sampling, 0, copies=k),
        "per-sample": lambda: generate_completions(model, NoStop(), [p for p in prompts for _ in range(k)], sampling, 0),
    }
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):  # interleaved: a shared machine's load hits both alike
        for name, run in runs.items():
            best[name] = min(best[name], timed(run))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm"], default="smollm")
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens")
    parser.add_argument("--groups", default="4,8", help="k values")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    apply_blas_threads()  # as `sdzero` does
    path = bench_real.model_path(args.model)
    model, _ = bench_real.load(path)
    vocab = model.args.vocab_size
    sampling = SamplingConfig(temperature=0.7, max_tokens=args.max_tokens, batch_size=SEQUENCES)
    generate_completions(model, NoStop(), [[11] * 8], sampling, 0, copies=2)  # warm-up
    print(f"model {args.model} ({path}); {SEQUENCES} sequences of {args.prompt}-token prompts + "
          f"{args.max_tokens} sampled tokens, batch {SEQUENCES}, best of {args.repeats}")
    results = {}
    for k in (int(x) for x in args.groups.split(",")):
        results[k] = compare(model, vocab, args.prompt, k, sampling, args.repeats)
        print(f"k={k}: shared prefill {results[k]['shared']:.2f} s, per-sample {results[k]['per-sample']:.2f} s", flush=True)
    for k, r in results.items():
        print(f"group prefill speed-up at k={k}: {r['per-sample'] / r['shared']:.2f}x")


if __name__ == "__main__":
    main()
