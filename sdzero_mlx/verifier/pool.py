"""Worker processes that run the sympy comparison under a hard time budget, and a verdict cache.

Workers are fresh interpreters (`python -m sdzero_mlx.verifier.worker`) rather than forks: the
parent holds MLX state and threads, and multiprocessing's spawn/forkserver would re-import the
parent's __main__ (and MLX with it). They import only sympy. A worker that overruns its budget is
killed (SIGKILL, not signal.alarm, so any thread may call this) and replaced. One pool is kept per
process and reused across training steps. A worker that cannot start (it prints "error <why>" or dies
first) raises RuntimeError with its reason: a broken environment stops training, it does not score 0.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

from .config import VerifierConfig

_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded machine; not part of any budget
_MATH = "sdzero_mlx.verifier.worker"


class _Worker:
    """One worker process (`python -m MODULE ARGS...`) with a line-buffered JSON pipe."""

    def __init__(self, args: tuple[str, ...], module: str = _MATH):
        self.module, self.args = module, args
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to drain it; read if it dies at start
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
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

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:500] if lines else ""

    def wait_ready(self) -> None:
        """Return once the worker said "ready"; RuntimeError with its reason if it cannot start."""
        if not self.ready:
            try:
                line = self._readline(time.monotonic() + _STARTUP_TIMEOUT_S)
            except EOFError:
                line = b""
            if line is None or not (line == b"ready" or line.startswith(b"ready ")):
                said = self._stderr_tail()
                self.kill()
                if line and line.startswith(b"error "):  # it said why
                    raise RuntimeError(f"{self.module} did not start: {line[6:].decode('utf-8', 'replace')}")
                why = said or ("no answer in %g s" % _STARTUP_TIMEOUT_S if line is None else "it exited")
                hint = " (for the math verifier usually sympy is missing from this environment)" if self.module == _MATH else ""
                raise RuntimeError(f"{self.module} did not start: {why}; `{sys.executable} -m {self.module} "
                                   f"{' '.join(self.args)}` shows it{hint}.")
            self.ready = True

    def receive(self, timeout_s: float) -> dict | None:
        """The worker's reply to the job just sent, or None if it did not answer within timeout_s."""
        line = self._readline(time.monotonic() + timeout_s)
        return None if line is None else json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.stderr):
            pipe.close()


class WorkerPool:
    """Fixed-size set of worker processes shared by all threads; an overrunning worker is replaced."""

    def __init__(self, size: int, args: tuple[str, ...], module: str = _MATH):
        self.size, self.args, self.module = size, args, module
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(size):
            self._idle.put(_Worker(args, module))  # all start importing now, in parallel

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
                    worker = _Worker(self.args, self.module)
                    if attempt == 1:
                        return None, "crash"
            reply = worker.receive(timeout_s)
            if reply is None:
                worker.kill()
                worker = _Worker(self.args, self.module)
                return None, "timeout"
            return reply, ""
        except RuntimeError:
            worker = _Worker(self.args, self.module)  # could not start: the next ask tries afresh, and says why again
            raise
        except (EOFError, OSError, ValueError):
            # died mid-job (e.g. hit the memory cap) or sent garbage: replace it, grade as 0
            worker.kill()
            worker = _Worker(self.args, self.module)
            return None, "crash"
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return


class SharedPool:
    """The process-wide WorkerPool of one worker module: started on first use, rebuilt when its size or
    arguments change, stopped at exit (the math verifier's here, the code verifier's in code.py)."""

    def __init__(self, module: str):
        self.module = module
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()
        atexit.register(self.shutdown)

    def get(self, size: int, args: tuple[str, ...]) -> WorkerPool:
        with self._lock:
            if self._pool is None or (self._pool.size, self._pool.args) != (size, args):
                if self._pool is not None:
                    self._pool.close()
                self._pool = WorkerPool(size, args, self.module)
            return self._pool

    def shutdown(self) -> None:
        """Stop its worker processes; the next `get` starts new ones."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


_math_pool = SharedPool(_MATH)


def get_pool(config: VerifierConfig) -> WorkerPool:
    """The process-wide pool of math workers, (re)built if the configured size or memory cap changed."""
    return _math_pool.get(config.n_workers(), (str(config.worker_memory_mb),))


def shutdown() -> None:
    """Stop the math worker processes (also done at exit)."""
    _math_pool.shutdown()


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

