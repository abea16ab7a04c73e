"""The verifier's worker pool keeps its promise: a worker that cannot start raises RuntimeError with the
worker's own reason (its "error" line, or the last line it wrote to stderr), every time it is asked,
instead of grading answers 0."""

from __future__ import annotations

import pytest

from sdzero_mlx.verifier.pool import WorkerPool


def test_a_worker_that_dies_at_start_raises_its_reason_every_time():
    pool = WorkerPool(1, (), "sdzero_mlx.verifier.no_such_worker")
    try:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="did not start: .*No module named sdzero_mlx.verifier.no_such_worker"):
                pool.ask({}, 5.0)
    finally:
        pool.close()


def test_a_worker_that_says_why_it_cannot_start_raises_that(tmp_path, monkeypatch):
    (tmp_path / "refusing_worker.py").write_text("print('error the sandbox is missing: install it', flush=True)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    pool = WorkerPool(1, (), "refusing_worker")
    try:
        with pytest.raises(RuntimeError, match="^refusing_worker did not start: the sandbox is missing: install it$"):
            pool.ask({}, 5.0)
    finally:
        pool.close()
