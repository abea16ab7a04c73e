"""Distill step time with mlx-cpu's bundled reference BLAS vs a preloaded OpenBLAS, same run.

Each configuration runs in its own subprocess (LD_PRELOAD only acts at process start), performs
one warm-up step and then times `--steps` full phase-2 steps (rollout, verify, teacher, student
step). Prints seconds per step and the ratio. Linux CPU only; on macOS MLX uses Metal.

    python benchmarks/bench_distill_step.py [--model tiny|smollm] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from pathlib import Path
import yaml
sys.path.insert(0, str(Path(sys.argv[1]) / "tests"))
from conftest import arithmetic_rows
from sdzero_mlx.platform.blas import blas_in_use
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages.distill import run_distill
work, model_dir, steps = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
data = work / "data.jsonl"
data.write_text("".join(json.dumps(r) + "\n" for r in arithmetic_rows(64)))
recipe = {
    "model": {"path": model_dir}, "data": {"source": str(data), "phase2_size": 48, "eval_size": 0},
    "lora": {"rank": 8, "num_layers": -1}, "sampling": {"max_tokens": 64, "batch_size": 8},
    "distill": {"steps": steps + 1, "questions_per_step": 8, "micro_batch_size": 4, "max_teacher_tokens": 256},
    "run": {"output_dir": str(work / "run")},
}
(work / "r.yaml").write_text(yaml.safe_dump(recipe))
times = []
run_distill(load_recipe(work / "r.yaml"), work / "run", on_step=times.append)
timed = times[1:]
print(json.dumps({"blas": blas_in_use(), "step_s": sum(t.step_s for t in timed) / len(timed),
                  "trained_tok_s": sum(t.trained_tokens_per_s for t in timed) / len(timed),
                  "sampled_tok_s": sum(t.sampled_tokens_per_s for t in timed) / len(timed)}))
"""


def model_dir(kind: str, work: Path) -> str:
    if kind == "smollm":
        sys.path.insert(0, str(ROOT / "tests"))
        from smollm import smollm_model_dir

        return str(smollm_model_dir())
    from sdzero_mlx.demo.tinymodel import make_model_dir

    return str(make_model_dir(work / "tiny", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=768, seed=0))


def run_child(work: Path, model: str, steps: int, preload: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SDZERO_BLAS_REEXEC")}
    if preload:
        env["LD_PRELOAD"] = preload
    sub = work / ("fast" if preload else "ref")
    sub.mkdir()
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(sub), model, str(steps)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["tiny", "smollm"], default="tiny")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    from sdzero_mlx.platform.blas import find_openblas

    fast = find_openblas()
    if fast is None:
        sys.exit("No OpenBLAS found (Debian/Ubuntu: apt-get install libopenblas0-pthread); nothing to compare.")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = model_dir(args.model, work)
        ref = run_child(work, model, args.steps, None)
        opt = run_child(work, model, args.steps, str(fast))
    print(f"distill step, model={args.model}, {args.steps} timed steps (8 questions, 64 new tokens max)")
    print(f"{'BLAS':45s} {'s/step':>8s} {'trained tok/s':>14s} {'sampled tok/s':>14s}")
    for r in (ref, opt):
        print(f"{r['blas']:45s} {r['step_s']:8.2f} {r['trained_tok_s']:14.0f} {r['sampled_tok_s']:14.0f}")
    print(f"speed-up with OpenBLAS: {ref['step_s'] / opt['step_s']:.1f}x")


if __name__ == "__main__":
    main()
