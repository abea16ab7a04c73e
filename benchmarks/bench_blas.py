"""MLX CPU speed with mlx-cpu's bundled reference BLAS vs OpenBLAS (preloaded by sdzero_mlx.platform.blas).

Runs itself twice as a worker subprocess, once with SDZERO_BLAS=none and once letting
`reexec_with_fast_blas` preload OpenBLAS, and prints the median time of each case and the ratio:

    python benchmarks/bench_blas.py [--repeats 3]

Cases: float32 matmuls (512^3, 1024^3) and one forward+backward step of a small mlx-lm llama
(4 layers, width 256, batch 4 x 128 tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: allocation, lazy graph set-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _matmul_case(n: int):
    import mlx.core as mx

    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))  # float32
    mx.eval(a, b)
    return lambda: mx.eval(a @ b)


def _llama_step_case():
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models import llama

    args = llama.ModelArgs(
        model_type="llama", hidden_size=256, num_hidden_layers=4, intermediate_size=688,
        num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-5, vocab_size=2048,
        tie_word_embeddings=True,
    )
    model = llama.Model(args)
    mx.eval(model.parameters())
    tokens = mx.random.randint(0, args.vocab_size, (4, 129))

    def loss_fn(model, tokens):
        logits = model(tokens[:, :-1]).astype(mx.float32)  # (B, T, V)
        return nn.losses.cross_entropy(logits, tokens[:, 1:], reduction="mean")

    step = nn.value_and_grad(model, loss_fn)
    return lambda: mx.eval(step(model, tokens))


def worker(repeats: int) -> None:
    from sdzero_mlx.platform.blas import blas_in_use, reexec_with_fast_blas

    reexec_with_fast_blas(sys.argv)
    import mlx.core as mx

    mx.random.seed(0)
    cases = {
        "matmul 512^3 f32": _matmul_case(512),
        "matmul 1024^3 f32": _matmul_case(1024),
        "llama fwd+bwd (4L, d256, 4x128)": _llama_step_case(),
    }
    result = {"blas": blas_in_use(), "ms": {name: _median_ms(fn, repeats) for name, fn in cases.items()}}
    print(json.dumps(result), flush=True)


def _run_worker(repeats: int, sdzero_blas: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SDZERO_BLAS", "SDZERO_BLAS_REEXEC", "LD_PRELOAD")}
    if sdzero_blas is not None:
        env["SDZERO_BLAS"] = sdzero_blas
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--repeats", str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.repeats)
        return

    reference = _run_worker(args.repeats, "none")
    fast = _run_worker(args.repeats, None)
    print(f"reference: {reference['blas']}\nfast:      {fast['blas']}\n")
    width = max(len(name) for name in reference["ms"])
    print(f"{'case':<{width}}  {'reference ms':>12}  {'fast ms':>9}  {'ratio':>6}")
    for name, ref_ms in reference["ms"].items():
        fast_ms = fast["ms"][name]
        print(f"{name:<{width}}  {ref_ms:12.1f}  {fast_ms:9.1f}  {ref_ms / fast_ms:5.1f}x")


if __name__ == "__main__":
    main()
