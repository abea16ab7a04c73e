"""A compare's task graph (tasks.plan) run run.workers at a time: in this process with one worker, in worker
processes with more.

A compare is a small graph of tasks: the SD-Zero chain (collect -> srt -> distill), each baseline's
and each variant's training (a sampling baseline, or its variant, waits for collect, whose
generations set its budget, unless compare.budget_generations does; a variant of distill waits for
srt, its starting model), and one evaluation per model (which needs that model). Whatever the number
of workers, a free worker takes the first ready task in the plan's order. With one worker each task
runs in this process (tasks.run_task); with run.workers = N the parent process starts each ready task
as `python -m sdzero_mlx.schedule RUN TASK BUDGET` (at most N at once), which reads the recipe the
parent wrote (RUN/compare-recipe.yaml), relays their output lines to the log, and keeps the run
directory's lock; each worker takes only its own stage folder's lock. sdzero's BLAS uses one thread
per process (platform/threads.py), so on a CPU a second worker puts the idle core to work
(docs/performance.md, "The demo on two cores").

A failed task stops new ones from starting; the running ones finish, so their work is kept, and
then the error is raised. Ctrl-C (or SIGTERM) stops every worker as it would stop `sdzero`: each
unwinds, and its stage resumes from its last checkpoint on a rerun.

The results are the same as in one process: every stage seeds itself from run.seed and its own
index (seeds.py), never from what ran before it. One number may be decided earlier: when the
baselines start before distill has finished, their matched budget is collect's generations plus
distill's planned ones (distill.steps x its generations per step); distill spends exactly that
unless it skips prompts too long for the model, and compare logs it when it did.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

if TYPE_CHECKING:  # the worker's `python -m` start stays light until it has chosen its BLAS (main)
    from .config import Recipe
    from .tasks import Task

RECIPE_FILE = "compare-recipe.yaml"  # what the workers read: the parent writes it before starting any


def _ready(waiting: Sequence["Task"], done: set[str], free: int) -> list["Task"]:
    """The tasks a free worker takes next: the first `free` waiting ones, in plan order, whose needs are done."""
    return [t for t in waiting if all(n in done for n in t.needs)][:free]


def makespan(tasks: Sequence["Task"], seconds: dict[str, float], workers: int) -> float:
    """The wall time of `tasks` run as run_tasks runs them (the first ready task in order takes a free worker),
    each taking seconds[name] (0 when absent): doctor's estimate of a run with run.workers > 1.

    Example: collect 10, srt 5, eval base 8 on 2 workers: collect and eval base start at 0, srt at 10 -> 15."""
    clock, finished, running, waiting = 0.0, set(), [], list(tasks)
    while waiting or running:
        for task in _ready(waiting, finished, workers - len(running)):
            waiting.remove(task)
            running.append((clock + seconds.get(task.name, 0.0), task.name))
        if not running:
            break  # needs that never come: run_tasks refuses them
        running.sort()
        clock, name = running.pop(0)
        finished.add(name)
    return clock


def run_tasks(
    tasks: Sequence["Task"], run_dir: Path, workers: int, budget: Callable[[], int], log: Callable[[str], None],
    recipe: Optional["Recipe"] = None,
) -> None:
    """Run `tasks`: with one worker each in turn in this process (with `recipe`, else the one in RUN/RECIPE_FILE, as
    a worker reads it), with more in at most `workers` processes; `budget()` gives the baselines' generations
    when the first needs it. Output lines are relayed to `log` as they come. A failed task stops new ones from
    starting, the running ones finish, then it raises; Ctrl-C stops them all (each resumes from its checkpoint
    on a rerun)."""
    if workers == 1:
        _run_here(tasks, run_dir, budget, log, recipe)
    else:
        _run_in_workers(tasks, run_dir, workers, budget, log)


def _run_here(tasks: Sequence["Task"], run_dir: Path, budget: Callable[[], int], log: Callable[[str], None],
              recipe: Optional["Recipe"]) -> None:
    """One worker: this process takes the first ready task in plan order until none is left."""
    from .tasks import run_task

    recipe = recipe or _worker_recipe(run_dir)
    done: set[str] = set()
    waiting = list(tasks)
    while waiting:
        ready = _ready(waiting, done, 1)
        if not ready:
            stuck = ", ".join(f"{t.name} (needs {', '.join(t.needs)})" for t in waiting)
            raise RuntimeError(f"compare's tasks cannot start: {stuck}.")
        task = ready[0]
        waiting.remove(task)
        run_task(recipe, run_dir, task.name, budget() if task.budget else 0, log)
        done.add(task.name)


def _run_in_workers(
    tasks: Sequence["Task"], run_dir: Path, workers: int, budget: Callable[[], int], log: Callable[[str], None],
) -> None:
    lines: queue.Queue = queue.Queue()
    running: dict[str, tuple[subprocess.Popen, threading.Thread]] = {}
    tails: dict[str, list[str]] = {}
    done: set[str] = set()
    failures: list[str] = []
    waiting = list(tasks)

    def show(name: str, line: str) -> None:  # only this thread calls log: lines stay whole, in order
        tails[name] = (tails[name] + [line])[-20:]
        log(line)

    def show_queued() -> None:
        while not lines.empty():
            show(*lines.get())

    try:
        while running or (waiting and not failures):
            if not failures:
                for task in _ready(waiting, done, workers - len(running)):
                    waiting.remove(task)
                    tails[task.name] = []
                    running[task.name] = _start(task, run_dir, budget() if task.budget else 0, lines)
                if not running:
                    stuck = ", ".join(f"{t.name} (needs {', '.join(t.needs)})" for t in waiting)
                    raise RuntimeError(f"compare's tasks cannot start: {stuck}.")
            try:
                show(*lines.get(timeout=0.2))  # wait for output (at most 0.2 s) instead of spinning
            except queue.Empty:
                pass
            show_queued()
            for name, (proc, reader) in list(running.items()):
                if proc.poll() is None:
                    continue
                reader.join(timeout=5)  # it ends at the worker's end of output: every line is queued
                show_queued()
                del running[name]
                if proc.returncode == 0:
                    done.add(name)
                    continue
                failures.append(f"compare's task `{name}` failed (exit {proc.returncode}); its last lines:\n"
                                + "\n".join(tails[name][-8:]))
                if running:
                    log(f"`{name}` failed: no new tasks start; waiting for {', '.join(running)} to finish (their "
                        "work is kept) ...")
        if failures:
            raise RuntimeError("\n".join(failures))
    finally:
        _stop([proc for proc, _ in running.values()])  # only after Ctrl-C or an error of this loop
        for _, reader in running.values():
            reader.join(timeout=5)
        show_queued()


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """End workers as Ctrl-C ends `sdzero`: a terminal's Ctrl-C has reached them already, so first give them
    time to unwind; then SIGINT; kill only what is still running after that."""
    for signal_to_send, grace in ((None, 3.0), (signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            if signal_to_send is not None:
                p.send_signal(signal_to_send)
        for p in alive:
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass


def _start(task: "Task", run_dir: Path, budget: int, lines: queue.Queue) -> tuple[subprocess.Popen, threading.Thread]:
    from .rundir import invocation

    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", SDZERO_INVOCATION=json.dumps(invocation()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdzero_mlx.schedule", str(run_dir), task.name, str(budget)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        text=True, encoding="utf-8", errors="replace",  # a stray byte must not kill the reader (the pipe would fill)
    )

    def relay() -> None:  # one thread per worker: its lines onto the shared queue, whole lines at a time
        with proc.stdout:
            for line in proc.stdout:
                lines.put((task.name, line.rstrip("\n")))

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    return proc, reader


def _worker_recipe(run_dir: Path) -> "Recipe":
    """The recipe the parent wrote into RUN for its tasks, its device selected."""
    from .platform.device import use_device
    from .recipe import load_recipe

    recipe = load_recipe(run_dir / RECIPE_FILE)
    use_device(recipe.run.device)
    return recipe


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .platform.blas import reexec_with_fast_blas

    signal.signal(signal.SIGTERM, _interrupt)  # as `sdzero` does: a kill unwinds like Ctrl-C (locks, sinks closed)
    reexec_with_fast_blas(sys.argv)  # as `sdzero` does (a no-op under an sdzero parent, whose preload we inherit)
    from .platform.threads import apply_blas_threads
    from .rundir import set_invocation

    run_dir, name, budget = argv or sys.argv[1:]
    apply_blas_threads()
    parent = json.loads(os.environ.get("SDZERO_INVOCATION", "null"))
    if parent:  # run.json names the command the user typed, not this worker's
        set_invocation(parent["argv"], parent["overrides"])
    from .tasks import run_task

    try:
        run_task(_worker_recipe(Path(run_dir)), Path(run_dir), name, int(budget))
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, OSError) as err:  # one line, which the parent's error repeats
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
