"""OpenBLAS threads under `sdzero`: OpenBLAS's default (one per core) vs sdzero's default, same run.

Runs, in fresh processes, (1) `sdzero demo --quick` (the tiny 0.68M model) and (2) `sdzero distill`
for 2 steps on SmolLM2-135M-Instruct (8 questions, 64-token answers), once with
OPENBLAS_NUM_THREADS = cores (what OpenBLAS does by itself) and once with sdzero's choice
(sdzero_mlx/platform/threads.py). Prints wall, user and kernel (sys) seconds and the ratios. Linux CPU only.

    python benchmarks/bench_threads.py [--skip-smollm]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def timed(cmd: list[str], env: dict) -> dict:
    """Wall, user and sys seconds of one child process (and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"real": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime}


def smollm_recipe(work: Path) -> Path:
    import yaml
    from conftest import arithmetic_rows
    from smollm import smollm_model_dir

    data = work / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in arithmetic_rows(32)))
    recipe = work / "smol.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"path": str(smollm_model_dir())},
        "data": {"source": str(data), "phase2_size": 16, "eval_size": 0},
        "lora": {"rank": 8, "num_layers": -1},
        "sampling": {"max_tokens": 64, "batch_size": 8},
        "distill": {"steps": 2, "questions_per_step": 8, "micro_batch_size": 4, "max_teacher_tokens": 256},
        "run": {"output_dir": str(work / "run")},
    }))
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-smollm", action="store_true")
    args = parser.parse_args()
    from sdzero_mlx.platform.blas import find_openblas
    from sdzero_mlx.platform.threads import ENV_VAR, chosen_threads

    if find_openblas() is None:
        sys.exit("No OpenBLAS found (Debian/Ubuntu: apt-get install libopenblas0-pthread); nothing to compare.")
    cores = len(os.sched_getaffinity(0))
    base = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", ENV_VAR, "SDZERO_BLAS_REEXEC")}
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    settings = {f"OpenBLAS default ({cores} threads)": {"OPENBLAS_NUM_THREADS": str(cores)},
                f"sdzero default ({chosen_threads(base)} thread)": {}}
    cli = [sys.executable, "-m", "sdzero_mlx.cli"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = [("demo --quick (0.68M)", lambda out: cli + ["demo", "--quick", "--out", str(out)])]
        if not args.skip_smollm:
            recipe = smollm_recipe(work)
            jobs.append(("distill 2 steps (SmolLM2-135M)",
                         lambda out: cli + ["distill", str(recipe), "--set", f"run.output_dir={out}"]))
        for job, command in jobs:
            for i, (label, extra) in enumerate(settings.items()):
                rows.append((job, label, timed(command(work / f"{job[:5]}{i}"), {**base, **extra})))
    print(f"OpenBLAS threads, {cores} cores; seconds (wall / user / sys)")
    for job, label, t in rows:
        print(f"{job:32s} {label:30s} {t['real']:7.1f} {t['user']:7.1f} {t['sys']:7.1f}")
    for j in range(0, len(rows), 2):
        (job, _, old), (_, _, new) = rows[j], rows[j + 1]
        print(f"{job}: wall {old['real'] / new['real']:.2f}x faster, sys {old['sys'] / max(new['sys'], 1e-9):.1f}x less")


if __name__ == "__main__":
    main()
