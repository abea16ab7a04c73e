"""Worker processes that run the sympy comparison under a hard time budget, and a verdict cache.

Workers are fresh interpreters (`python -m sdzero_mlx.verifier.worker`) rather than forks: the
parent holds MLX state and threads, and multiprocessing's spawn/forkserver would re-import the
parent's __main__ (and MLX with it). They import only sympy. A worker that overruns its budget is
killed (SIGKILL, not signal.alarm, so any thread may call this) and replaced. One pool is kept per
process and reused across training steps.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from .config import VerifierConfig

_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded machine; not part of any budget


class _Worker:
    """One `verifier.worker` process with a line-buffered JSON pipe."""

    def __init__(self, memory_mb: int, module: str = "sdzero_mlx.verifier.worker"):
        self.module = module
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            bufsize=0, env=env, close_fds=True,
        )
        self.buf = b""
        self.ready = False

    def _readline(self, deadline: float) -> bytes | None:
        """The next line, or None at the deadline; EOFError if the process died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("verifier worker exited")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def wait_ready(self) -> None:
        if not self.ready:
            try:
                line = self._readline(time.monotonic() + _STARTUP_TIMEOUT_S)
            except EOFError:
                line = b"<exited>"
            if line is None or not (line == b"ready" or line.startswith(b"ready ")):
                raise RuntimeError(
                    f"verifier worker did not start (got {line!r}); run `{sys.executable} -m {self.module}` to see why "
                    "(for the math verifier usually sympy is missing from this environment)."
                )
            self.ready = True

    def receive(self, timeout_s: float) -> dict | None:
        """The worker's reply to the job just sent, or None if it did not answer within timeout_s."""
        line = self._readline(time.monotonic() + timeout_s)
        return None if line is None else json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


class WorkerPool:
    """Fixed-size set of worker processes shared by all threads; an overrunning worker is replaced."""

    def __init__(self, size: int, memory_mb: int, module: str = "sdzero_mlx.verifier.worker"):
        self.size, self.memory_mb, self.module = size, memory_mb, module
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(size):
            self._idle.put(_Worker(memory_mb, module))  # all start importing now, in parallel

    def ask(self, job: dict, timeout_s: float) -> tuple[dict | None, str]:
        """(reply, "") or (None, why) where why is 'timeout' or 'crash'.

        A worker that cannot start raises RuntimeError: a broken environment must stop training
        loudly, not hand out silent all-zero rewards.
        """
        worker = self._idle.get()
        try:
            for attempt in range(2):
                worker.wait_ready()
                try:
                    worker.proc.stdin.write((json.dumps(job) + "\n").encode())
                    break
                except (BrokenPipeError, OSError):
                    # died while idle (killed from outside): the job was never delivered, so retry once
                    worker.kill()
                    worker = _Worker(self.memory_mb, self.module)
                    if attempt == 1:
                        return None, "crash"
            reply = worker.receive(timeout_s)
            if reply is None:
                worker.kill()
                worker = _Worker(self.memory_mb, self.module)
                return None, "timeout"
            return reply, ""
        except (EOFError, OSError, ValueError):
            # died mid-job (e.g. hit the memory cap) or sent garbage: replace it, grade as 0
            worker.kill()
            worker = _Worker(self.memory_mb, self.module)
            return None, "crash"
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def get_pool(config: VerifierConfig) -> WorkerPool:
    """The process-wide pool, (re)built if the configured size changed."""
    global _pool
    with _pool_lock:
        if _pool is None or (_pool.size, _pool.memory_mb) != (config.n_workers(), config.worker_memory_mb):
            if _pool is not None:
                _pool.close()
            _pool = WorkerPool(config.n_workers(), config.worker_memory_mb)
        return _pool


def shutdown() -> None:
    """Stop the worker processes (also done at exit)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
            _pool = None


atexit.register(shutdown)


# -- cache -----------------------------------------------------------------------------------

_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def cache_get(key):
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    return None


def cache_put(key, value, size: int) -> None:
    if size <= 0:
        return
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > size:
            _cache.popitem(last=False)

