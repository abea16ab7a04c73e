"""Data parallelism (distributed.py): 2 processes over mlx.launch's ring backend on loopback train exactly
what 1 process trains with the same global batch, rank 0 alone writes, and a run resumes at another world size.

The 2-rank runs are real: `mlx.launch --backend ring -n 2` starts tests/dist_worker.py twice as a subprocess
(with a timeout), on free loopback ports. Sampling is greedy (sampling.temperature = 0): with T > 0 each
rank draws its own random stream (distributed.rank_seed), so samples, and then adapters, would depend on
the world size; greedy answers depend only on the model and the question.
"""

from __future__ import annotations

import re
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
import yaml

from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.platform.device import device_name
from sdzero_mlx.platform.distributed import all_sum_values, rank_seed, shard, step_tokens, sum_across_ranks, world
from sdzero_mlx.stages.srt import run_srt

from conftest import tiny_recipe_dict
from test_srt import with_tuples, write_tuples

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = shutil.which("mlx.launch") or str(Path(sys.executable).with_name("mlx.launch"))


def test_one_process_helpers_are_the_identity():
    assert world() == 1
    assert shard([1, 2, 3]) == [1, 2, 3]
    assert step_tokens([(2, 5), (1, 2)]) == 4 and step_tokens([]) == 1
    assert all_sum_values(2, 0.5) == [2.0, 0.5]
    tree = {"a": mx.array([1.0])}
    assert sum_across_ranks(tree) is tree
    assert rank_seed(7) == 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run `python args...` as n ranks with mlx.launch's ring backend on loopback."""
    if not Path(LAUNCH).exists():
        pytest.skip(f"mlx.launch is not installed next to {sys.executable} (it comes with mlx)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    port = free_port()  # the ring uses port .. port + n - 1; other jobs on this machine may hold the default
    cmd = [LAUNCH, "--backend", "ring", "-n", str(n), "--starting-port", str(port), "--python", sys.executable, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def adapters(run: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(run / "adapters" / "adapters.safetensors")).items()}


def assert_same_adapters(a: Path, b: Path):
    x, y = adapters(a), adapters(b)
    assert x.keys() == y.keys() and x
    for k in x:
        np.testing.assert_allclose(x[k], y[k], rtol=1e-5, atol=1e-7, err_msg=k)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def setup(tiny_model_dir, tiny_data, tmp_path):
    raw = tiny_recipe_dict(tiny_model_dir, tiny_data, tmp_path / "unused")
    raw["sampling"]["temperature"] = 0.0  # greedy: see the module docstring
    raw["distill"].update(steps=2, questions_per_step=4, micro_batch_size=2)
    raw["srt"] = {"batch_size": 4, "micro_batch_size": 2, "epochs": 1, "optim": {"learning_rate": 1e-2}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    _, tok = mlx_lm.load(str(tiny_model_dir))
    tuples = write_tuples(tmp_path / "tuples.jsonl", tok, [f"What is {i} + 3?" for i in range(8)])
    return path, tuples


def test_two_ranks_train_what_one_rank_trains_and_resume_at_another_world_size(setup, tmp_path):
    recipe_path, tuples = setup
    two = tmp_path / "two"
    done = launch(2, str(ROOT / "tests" / "dist_worker.py"), str(recipe_path), str(tuples), str(two))
    # mlx.launch exits 0 even when a rank fails; it reports that rank's code in a warning
    assert done.returncode == 0 and "exited with code" not in done.stderr, done.stdout[-3000:] + done.stderr[-3000:]

    # the same global batches in one process: distill stopped after 2 of 3 steps, SRT whole (2 steps)
    one = load_recipe(recipe_path, [f"run.output_dir={tmp_path / 'one'}", "distill.steps=3"])
    run_distill(one, tmp_path / "one", stop_after=2)
    run_srt(with_tuples(one, tuples), tmp_path / "one_srt")
    assert_same_adapters(two / "distill", tmp_path / "one")
    assert_same_adapters(two / "srt", tmp_path / "one_srt")

    # rank 0 alone wrote: one metrics line per step, with the global figures of the 1-rank run
    for run2, run1 in ((two / "distill", tmp_path / "one"), (two / "srt", tmp_path / "one_srt")):
        m2, m1 = metrics(run2), metrics(run1)
        assert [m["step"] for m in m2] == [1, 2] and [m["world_size"] for m in m2] == [2, 2]
        # run.device auto: both runs on the device MLX chose (cpu on a Linux CPU, "gpu (metal)" on a Mac)
        assert [m["world_size"] for m in m1] == [1, 1] and m2[0]["device"] == m1[0]["device"] == device_name()
        for a, b in zip(m2, m1[:2]):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
            for key in ("trained_tokens", "sampled_tokens", "generations", "reward", "response_tokens", "tuples"):
                assert a.get(key) == b.get(key), key
    assert metrics(two / "distill")[1]["generations"] == 8  # 2 steps x 4 questions, summed over both ranks

    # a 2-rank checkpoint continues in 1 process: same adapters as the uninterrupted 1-rank run
    resumed = load_recipe(recipe_path, [f"run.output_dir={two / 'distill'}", "distill.steps=3"])
    assert run_distill(resumed, two / "distill", resume=True).step == 3
    assert run_distill(one, tmp_path / "one", resume=True).step == 3
    assert_same_adapters(two / "distill", tmp_path / "one")


def test_commands_that_do_not_train_refuse_to_run_under_mlx_launch(setup, tmp_path):
    recipe_path, _ = setup
    script = tmp_path / "cli.py"
    script.write_text("import sys\nfrom sdzero_mlx.cli import main\nsys.argv[0] = 'sdzero'\nmain()\n")
    done = launch(2, str(script), "collect", str(recipe_path), timeout=120)
    assert "sdzero collect runs as one process" in done.stderr
    # mlx.launch itself exits 0; whichever rank stops first reports code 2 (the other may be killed)
    assert re.search(r"rank \d exited with code 2", done.stderr), done.stderr
