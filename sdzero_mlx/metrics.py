"""Per-step training records and the one place they are written to and read from metrics.jsonl.

Every training stage (SRT, distill and the baselines) logs one `StepRecord` per optimizer step.
Fields a stage has no value for stay None (an offline stage such as SRT samples nothing, so it has
no reward). Stage-specific numbers (e.g. GRPO's clipped fraction) go in `details`.
The file format is one flat JSON object per line: the record's fields, None ones left out, and the
details merged in.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .atomic import write_lines, write_text
from .types import TrainingState

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class StepRecord:
    step: int  # optimizer steps completed
    total_steps: int  # the stage's planned steps
    stage: str  # distill, srt, rft, grpo, sft, sdft
    loss: float  # the step's token-mean loss (distill: the KL)
    grad_norm: float  # before clipping
    learning_rate: float  # the rate this step used
    weight_change: float  # ||theta_after - theta_before|| / ||theta_before|| over the trained parameters
    step_s: float
    trained_tokens_per_s: float
    peak_memory_gb: float
    # cumulative budget (the paper's accounting): sequences sampled, tokens sampled and trained
    generations: int
    sampled_tokens: int
    trained_tokens: int
    elapsed_s: float
    entropy: Optional[float] = None  # mean entropy of the policy over the loss's support, trained tokens
    part: Optional[str] = None  # a sub-stage (SRT staged mode: generation / revision)
    # on-policy stages: this step's samples
    reward: Optional[float] = None  # mean verifier reward
    response_tokens: Optional[float] = None  # mean sampled tokens per answer
    truncated: Optional[float] = None  # share of answers cut by max_tokens (no end-of-turn token)
    sampled_tokens_per_s: Optional[float] = None
    # a fixed probe set, scored every run.probe_every steps (greedy accuracy)
    probe_accuracy: Optional[float] = None
    device: Optional[str] = None  # where the step ran: cpu, gpu (cuda), gpu (metal)
    world_size: Optional[int] = None  # processes training together (mx.distributed)
    details: tuple[tuple[str, float], ...] = ()

    @property
    def kl(self) -> float:
        """Distill's loss is the KL: a name for readers of distill runs."""
        return self.loss

    def detail(self, name: str) -> Optional[float]:
        return dict(self.details).get(name)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details"}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(dict(self.details))
        return out

    @classmethod
    def from_json(cls, row: dict) -> "StepRecord":
        names = {f.name for f in dataclasses.fields(cls)} - {"details"}
        known = {k: v for k, v in row.items() if k in names}
        if "stage" not in known:  # files from before records named their stage
            known["stage"] = "distill" if "kl" in row else "srt"
        if "loss" not in known and "kl" in row:
            known["loss"] = row["kl"]
        for name in ("loss", "grad_norm", "learning_rate", "weight_change", "step_s", "trained_tokens_per_s",
                     "peak_memory_gb", "elapsed_s"):
            known.setdefault(name, 0.0)
        for name in ("generations", "sampled_tokens", "trained_tokens"):
            known.setdefault(name, 0)
        known.setdefault("total_steps", known.get("step", 0))
        extra = tuple((k, v) for k, v in row.items() if k not in names and k != "kl" and isinstance(v, (int, float)))
        return cls(**known, details=extra)


def format_record(r: StepRecord) -> str:
    """The one-line progress report of a step, for every stage."""
    parts = [f"{r.stage}{'/' + r.part if r.part else ''}: step {r.step}/{r.total_steps}", f"loss {r.loss:.4f}"]
    if r.reward is not None:
        parts += [f"reward {r.reward:.3f}", f"len {r.response_tokens:.0f}"]
    if r.truncated:
        # an answer cut at max_tokens has no box to verify: a real model's first run most often fails here
        parts.append(f"cut {100 * r.truncated:.0f}%" + (" (over half: raise sampling.max_tokens)" if r.truncated > 0.5 else ""))
    if r.detail("skipped_long_prompts"):
        parts.append(f"skipped {r.detail('skipped_long_prompts'):.0f} long prompts")
    if r.probe_accuracy is not None:
        parts.append(f"probe {100 * r.probe_accuracy:.1f}%")
    if r.entropy is not None:
        parts.append(f"entropy {r.entropy:.3f}")
    parts += [f"dW {r.weight_change:.2e}", f"{r.step_s:.1f}s/step", f"{r.trained_tokens_per_s:.0f} trained tok/s",
              f"peak {r.peak_memory_gb:.2f} GB"]
    return "  ".join(parts)


def kept_lines(path: Path, resume_step: int) -> list[str]:
    """The lines of a metrics file up to the checkpoint's step. A line cut short (the process died while
    appending it) can only be the last one and belongs to a step the resume redoes: it is dropped with a
    warning. A damaged line before the last is an error naming it."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            if i == len(lines):
                print(f"warning: dropped the unfinished last line of {path} (its step is trained again).", file=sys.stderr)
                continue
            raise ValueError(f"Line {i} of {path} is damaged ({line[:60]!r}); delete that line to resume.") from None
        if step <= resume_step:
            kept.append(line)
    return kept


class MetricsLog:
    """RUN/metrics.jsonl, one record per optimizer step; on resume, lines past the checkpoint are dropped."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.path = Path(run_dir) / METRICS_FILE
        if resume_step and self.path.exists():
            write_lines(self.path, kept_lines(self.path, resume_step))
        elif not resume_step:
            write_text(self.path, "")

    def log(self, record: StepRecord) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record.to_json()) + "\n")


def read_metrics(run_dir: str | Path) -> list[StepRecord]:
    """The records of RUN/metrics.jsonl in step order; errors name the file and line."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass run directories written by a training stage (e.g. `sdzero distill`).")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(StepRecord.from_json(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"Line {i} of {path} is not a metrics record ({err}).") from None
    if not rows:
        raise ValueError(f"{path} is empty: the run has not finished a step yet.")
    return sorted(rows, key=lambda r: r.step)


def last_budget(run_dir: str | Path) -> Optional[TrainingState]:
    """Where a training run stands by its last record (steps and budget), or None when it has none."""
    try:
        last = read_metrics(run_dir)[-1]
    except (FileNotFoundError, ValueError):
        return None
    return TrainingState(last.step, last.generations, last.sampled_tokens, last.trained_tokens, last.elapsed_s)
