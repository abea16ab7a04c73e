"""Where step records go: metrics.jsonl always, Weights & Biases and TensorBoard when a recipe asks.

One protocol, `Sink.log(record)` (+ `close(failed)`), so the training loop never knows which sinks exist.
`run.metrics` names them; "jsonl" (RUN/metrics.jsonl, metrics.MetricsLog) must stay in the list
because plots, `compare`, budgets and resume read that file. The others are optional extras,
imported only when named:
    wandb        pip install wandb        (WANDB_MODE=offline logs without the network)
    tensorboard  pip install tensorboardX (event files in RUN/tensorboard/)
Every numeric field of a record is logged under "<stage>/<field>" at the record's step.

A resumed stage logs from the checkpoint's step + 1, as metrics.jsonl keeps it: TensorBoard hides
what an interrupted attempt logged past the checkpoint (purge_step); W&B, whose steps must only grow
within a run, gets a new run "<name>-from-<step>" in the same group, and the interrupted run keeps
what it logged, marked failed (or crashed, when the process died).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Protocol, Sequence

from .metrics import MetricsLog, StepRecord

SINKS = ("jsonl", "wandb", "tensorboard")
EXTRAS = {"wandb": "wandb", "tensorboard": "tensorboardX"}


class Sink(Protocol):
    def log(self, record: StepRecord) -> None: ...

    def close(self, failed: bool = False) -> None:
        """End the sink; `failed`: the stage stopped on an error."""


def scalars(record: StepRecord) -> dict[str, float]:
    """The record's numbers as "<stage>/<field>" -> value (text fields and the step left out)."""
    return {f"{record.stage}/{k}": float(v) for k, v in record.to_json().items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class JsonlSink:
    """RUN/metrics.jsonl (metrics.MetricsLog): the record every reader of a run uses."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.file = MetricsLog(run_dir, resume_step)

    def log(self, record: StepRecord) -> None:
        self.file.log(record)

    def close(self, failed: bool = False) -> None:
        pass


def experiment_name(run_dir: Path, stage: str) -> str:
    """What a stage's run directory belongs to: RUN for RUN/<stage> (`sdzero run` and `compare`:
    RUN/srt, RUN/distill, RUN/grpo, ...), else the directory itself (`sdzero distill` into run.output_dir X)."""
    run_dir = Path(run_dir).resolve()
    return run_dir.parent.name if run_dir.name == stage and run_dir.parent.name else run_dir.name


class WandbSink:
    """One W&B run per stage, and per resumption: "<experiment>-<stage>[-from-<step>]", grouped by
    experiment, job_type = the stage. Project: $WANDB_PROJECT, else sdzero-mlx."""

    def __init__(self, run_dir: Path, recipe, stage: str, resume_step: int):
        import wandb

        from .configio import to_dict

        experiment = experiment_name(run_dir, stage)
        name = f"{experiment}-{stage}" + (f"-from-{resume_step}" if resume_step else "")
        # create_new: never finish, or log into, another run that is open in this process
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "sdzero-mlx", name=name, group=experiment,
                              job_type=stage, dir=str(run_dir), config=to_dict(recipe), reinit="create_new")

    def log(self, record: StepRecord) -> None:
        self.run.log(scalars(record), step=record.step)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class TensorBoardSink:
    """RUN/tensorboard, one event file per opening. TensorBoard reads a folder's files in name order
    and, at a file's purge_step, drops what earlier files logged from that step on."""

    def __init__(self, run_dir: Path, resume_step: int):
        from tensorboardX import SummaryWriter

        logdir = Path(run_dir) / "tensorboard"
        # tensorboardX names files by the second (and would overwrite): a count keeps openings apart, in order
        earlier = len(list(logdir.glob("events.out.tfevents.*")))
        self.writer = SummaryWriter(logdir=str(logdir), purge_step=resume_step + 1, filename_suffix=f".{earlier:04d}")

    def log(self, record: StepRecord) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, record.step)
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class Sinks:
    """Every sink of a run, behind the one Sink interface."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def log(self, record: StepRecord) -> None:
        for sink in self.sinks:
            sink.log(record)

    def close(self, failed: bool = False) -> None:
        for sink in self.sinks:
            sink.close(failed)

    def __enter__(self) -> "Sinks":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)  # a stage that raised still ends its W&B run, as failed


def open_sinks(recipe, run_dir: Path, stage: str, resume_step: int) -> Sinks:
    """The sinks `run.metrics` names, opened for this stage's run directory from `resume_step` on (0: fresh).
    Every named package is imported before any sink opens: a missing one leaves no W&B run behind."""
    for name in recipe.run.metrics:
        if name != "jsonl":
            try:
                importlib.import_module(EXTRAS[name])
            except ImportError:
                raise RuntimeError(f"run.metrics names {name}, which is not installed: pip install {EXTRAS[name]} "
                                   f"(or remove {name} from run.metrics).") from None
    opened: list[Sink] = []
    try:
        for name in recipe.run.metrics:
            if name == "jsonl":
                opened.append(JsonlSink(run_dir, resume_step))
            elif name == "wandb":
                opened.append(WandbSink(run_dir, recipe, stage, resume_step))
            else:
                opened.append(TensorBoardSink(run_dir, resume_step))
    except BaseException:
        Sinks(opened).close(failed=True)  # those already open (the loop's `with` has not started)
        raise
    return Sinks(opened)
