"""Sampling a recipe's evaluation in waves (waves.py) against mlx-lm's BatchGenerator and against the bare decoding step.

    python benchmarks/bench_waves.py [--model smollm|tiny] [--problems 96] [--k 4] [--batches 32,128]

The workload is an evaluation as `sdzero compare` runs it: `--problems` test prompts of the model's
recipe (SmolLM2: recipes/smollm2-135m-chain-sum.yaml's chain sums and prompt; tiny: the demo's inverse
task), k samples each at T = 0.7 plus one greedy answer each, at most `--max-tokens` tokens. For each
batch size it prints, per CPU second of this process (the machine is shared; wall seconds too):
- the bare decoding step (greedy, KV cache, the batch full, the prompts' own length): an upper bound
  on what sampling at that batch can reach;
- generate_completions in waves, and the same prompts through mlx-lm's BatchGenerator (the path before);
and the ratios: waves / generator (the speed-up), bare step / waves (how far from the bound).
The same seed draws other samples on the two paths (the batching differs), so their token counts differ a
little: the rates are per sampled token. Greedy answers are compared: they must not depend on the path.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdzero_mlx.platform.blas import reexec_with_fast_blas  # noqa: E402

reexec_with_fast_blas(sys.argv)  # as `sdzero` does; before mlx is imported

import bench_real  # noqa: E402,F401  (puts the repo and tests/ on sys.path)
from clock import on_gpu  # noqa: E402
import mlx.core as mx  # noqa: E402
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402

from sdzero_mlx.config import ModelConfig, SamplingConfig  # noqa: E402
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.data import make_splits  # noqa: E402
from sdzero_mlx.modeling import load_model  # noqa: E402
from sdzero_mlx.platform.threads import apply_blas_threads  # noqa: E402
from sdzero_mlx.prompts import prompt_ids  # noqa: E402
from sdzero_mlx.rollout import generate_completions, sample_with_generator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def start_clock():
    """A stopwatch: called, it returns (rate seconds, wall seconds); rate seconds are this process's CPU time
    on a CPU (the machine is shared) and wall time on a GPU (benchmarks/clock.py)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def stop() -> tuple[float, float]:
        wall = time.perf_counter() - wall0
        return (wall if on_gpu() else time.process_time() - cpu0), wall

    return stop


def workload(name: str, problems: int):
    """(model, tokenizer, prompt ids, max tokens) of a recipe's test split."""
    if name == "smollm":
        from smollm import smollm_model_dir

        recipe = load_recipe(REPO / "recipes" / "smollm2-135m-chain-sum.yaml", [f"model.path={smollm_model_dir()}"])
    else:
        from sdzero_mlx.demo.app import TASKS, base_model_dir

        recipe = load_recipe(TASKS["inverse"].recipe, [f"model.path={base_model_dir('inverse')}"])
    model, tok = load_model(ModelConfig(path=recipe.model.path, dtype="float32"))
    examples = make_splits(recipe.data, with_test=True).test[:problems]
    return model, tok, [prompt_ids(tok, ex.problem, recipe.prompts) for ex in examples], recipe.eval.max_tokens


def bare_step(model, prompts, batch: int, steps: int = 6) -> tuple[float, float]:
    """(cpu, wall) s of the median greedy decoding step with `batch` rows after prompts of the workload's length."""
    length = max(len(p) for p in prompts)
    cache = make_prompt_cache(model)
    token = mx.argmax(model(mx.array([list(prompts[i % len(prompts)])[:length] + [0] * (length - len(prompts[i % len(prompts)]))
                                      for i in range(batch)]), cache=cache)[:, -1:], axis=-1)
    mx.eval(token)
    times = []
    for _ in range(steps):
        clock = start_clock()
        token = mx.argmax(model(token, cache=cache)[:, -1:], axis=-1)
        mx.eval(token)
        times.append(clock())
    times.sort()
    return times[len(times) // 2]


def sample(fn, model, tok, prompts, batch, k, max_tokens) -> tuple[int, float, float, list]:
    """Sampled tokens, cpu s, wall s, greedy ids of an evaluation's sampling (k at T 0.7 and a greedy answer each)."""
    clock = start_clock()
    drawn = fn(model, tok, prompts, SamplingConfig(temperature=0.7, max_tokens=max_tokens, batch_size=batch), k)
    cpu, wall = clock()
    return sum(len(c.ids) for c in drawn), cpu, wall, [c.ids for c in drawn[k::k + 1]]


def waves(model, tok, prompts, sampling, k):
    """As evaluate.py samples: the greedy answer is one more row per prompt."""
    return generate_completions(model, tok, prompts, sampling, 0, copies=k, greedy_copy=True)


def generator(model, tok, prompts, sampling, k):
    """As evaluate.py sampled before waves: k samples, then the greedy answers in a second call."""
    mx.random.seed(0)
    model.eval()
    hot = sample_with_generator(model, tok, prompts, sampling, k)
    greedy = sample_with_generator(model, tok, prompts, replace(sampling, temperature=0.0), 1)
    return [c for i, g in enumerate(greedy) for c in (*hot[i * k:(i + 1) * k], g)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm", "tiny"), default="smollm")
    parser.add_argument("--problems", type=int, default=96)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--batches", default="32,128")
    args = parser.parse_args()
    apply_blas_threads()
    model, tok, prompts, max_tokens = workload(args.model, args.problems)
    print(f"{args.model}: {len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"k = {args.k} at T 0.7 + greedy, <= {max_tokens} tokens")
    print("| batch | bare step tok/s | waves tok/s | generator tok/s | waves / generator | bare / waves | greedy same |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for batch in (int(b) for b in args.batches.split(",")):
        step_cpu, _ = bare_step(model, prompts, batch)
        n_w, cpu_w, wall_w, greedy_w = sample(waves, model, tok, prompts, batch, args.k, max_tokens)
        n_g, cpu_g, wall_g, greedy_g = sample(generator, model, tok, prompts, batch, args.k, max_tokens)
        same = sum(a == b for a, b in zip(greedy_w, greedy_g))
        bare, w, g = batch / step_cpu, n_w / cpu_w, n_g / cpu_g
        print(f"| {batch} | {bare:.0f} | {w:.1f} ({n_w} in {cpu_w:.0f} s, wall {wall_w:.0f} s) | {g:.1f} ({n_g} in {cpu_g:.0f} s, "
              f"wall {wall_g:.0f} s) | {w / g:.2f}x | {bare / w:.2f}x | {same}/{len(greedy_w)} |", flush=True)
        ratios.append((batch, w / g, bare / w))
    for batch, speedup, gap in ratios:
        print(f"batch {batch}: waves {speedup:.2f}x the generator; the bare step {gap:.2f}x waves")


if __name__ == "__main__":
    main()
