"""A run directory and its contract, one object (`RunDir`): who may write it, what made it, where it stands.

RUN/.lock          one writer at a time (`RunDir.writing()`, a context manager its caller holds): the
                   writing process holds fcntl.flock on it (Linux and macOS), which the kernel drops when
                   that process ends in any way, kill -9 included, so a crash never leaves it stuck. It
                   holds the writer's pid and command line, which a second process names in its one-line
                   refusal. Only EWOULDBLOCK means another writer; on a filesystem without flock (some SMB,
                   NFS or exFAT mounts: ENOLCK, EOPNOTSUPP, EINVAL) the command goes on without the check
                   and warns once per folder.
RUN/run.json       the stage that made RUN (distill, rft, ..., collect, pipeline), the command line and
                   its --set overrides, the sdzero version, when it was created (and each resume), and
                   `made_by`: what the stage's output is made from (`MadeBy`: the recipe fields that shape
                   it, and the sha256 of its inputs: the model it starts from, the data, SRT's tuples).
                   A finished stage is reused only under the same record; a resume only under the same
                   record but its number of steps; anything else is refused naming the fields that
                   changed, or retrained (run.retrain) with what depends on it (`reuse_or_clear`).
RUN/outputs.json   size and sha256 of the final outputs (adapters) as written; a resume checks them
                   before it says "done" and rewrites what is missing or damaged (`damaged_outputs`).
RUN/done           written last, once the outputs are complete (`mark_done`). `finished` = this marker over
                   outputs that outputs.json vouches for.
RUN/checkpoint/    the last saved step (checkpoint.py writes it; checkpoint.old while a new one is swapped
                   in): `resume_from`. collect's resume point is RUN/progress.json instead.
RUN/adapters/      adapters.safetensors + adapter_config.json, mlx-lm's format (`ADAPTER_FILES`).
RUN/model/         the model with the adapters fused, an mlx-lm folder, of a stage that writes one (SRT).

A lock is counted per process: the pipeline holds its top folder while its stages hold their own, and
nested takes of one folder (compare -> pipeline) are free. It is released when the block that took it
ends, or when the process ends.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from .atomic import DamagedFile, read_json, write_json, write_text
from .fingerprint import file_sha256, model_fingerprint

LOCK, RECORD, OUTPUTS, DONE = ".lock", "run.json", "outputs.json", "done"
CHECKPOINT = "checkpoint"  # the last saved step; CHECKPOINT.old while a new one is swapped in (atomic.replace_dir)
PROGRESS = "progress.json"  # collect's counters after its last finished batch: its resume point
ADAPTERS, ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapters", "adapters.safetensors", "adapter_config.json"
ADAPTER_FILES = (f"{ADAPTERS}/{ADAPTER_WEIGHTS}", f"{ADAPTERS}/{ADAPTER_CONFIG}")  # a training stage's outputs
MODEL = "model"  # a stage that fuses its adapters writes the whole model here, an mlx-lm folder (SRT)


class RunDirBusy(RuntimeError):
    """Another live process is writing this run directory."""


# -- the command that is running (the CLI sets it; library callers get sys.argv) ---------------

_invocation: dict = {"argv": None, "overrides": ()}


def set_invocation(argv: Sequence[str], overrides: Sequence[str] = ()) -> None:
    """Record the command line being run (as the user typed it) and its --set overrides."""
    _invocation.update(argv=list(argv), overrides=tuple(overrides))


def invocation() -> dict:
    """The command being run, as set_invocation takes it (compare's workers record their parent's)."""
    return {"argv": _invocation["argv"] or [Path(sys.argv[0]).name, *sys.argv[1:]],
            "overrides": list(_invocation["overrides"])}


def command_line() -> str:
    return shlex.join(invocation()["argv"])


# -- one writer per folder -----------------------------------------------------------------------

_held: dict[Path, list[int]] = {}  # resolved folder -> [fd, times taken, 1 if flock holds it else 0]
_BUSY = {errno.EWOULDBLOCK, errno.EAGAIN}  # another process holds the lock
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}  # the filesystem cannot lock
_warned: set[Path] = set()  # folders already warned about (a pipeline locks one folder per stage)


def lock_run_dir(run_dir: str | Path) -> None:
    """Take RUN/.lock for this process (again, if it already holds it), or raise RunDirBusy naming the holder.

    Where the filesystem has no flock, warn (once per folder) and go on unlocked; any other error is raised."""
    key = Path(run_dir).resolve()
    if key in _held:
        _held[key][1] += 1
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = os.open(key / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    locked = 1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in _NO_FLOCK:
            locked = 0
            if key not in _warned:
                _warned.add(key)
                print(f"warning: cannot lock {run_dir}: its filesystem does not support file locks "
                      f"({errno.errorcode.get(err.errno, err.errno)}: {err.strerror}; an SMB, NFS or exFAT mount?). "
                      "Going on without the one-writer check: run one command at a time on this folder, or choose "
                      "a run.output_dir on a local disk.", file=sys.stderr)
        else:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            if err.errno not in _BUSY:
                raise OSError(err.errno, err.strerror, str(key / LOCK)) from None
            try:
                who = json.loads(holder)
                who = f"pid {who['pid']}: {who['command']}"
            except (ValueError, KeyError, TypeError):
                who = "pid unknown"
            raise RunDirBusy(f"{run_dir} is being written by another process ({who}). Wait for it to finish "
                             "(or stop it), or choose another run.output_dir.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command_line()}).encode(), 0)
    _held[key] = [fd, 1, locked]


def unlock_run_dir(run_dir: str | Path) -> None:
    """Give back one take of the lock; the last one releases it (the file stays: deleting it would race)."""
    key = Path(run_dir).resolve()
    if key not in _held:
        return
    _held[key][1] -= 1
    if _held[key][1] == 0:
        fd, _, locked = _held.pop(key)
        os.ftruncate(fd, 0)
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- made_by: what a stage's output is made from ----------------------------------------------------


@dataclass(frozen=True)
class MadeBy:
    """What a stage's output is made from: the recipe fields that shape it and the bytes of its inputs."""

    settings: Mapping[str, object]  # dotted field -> value, e.g. {"distill.optim.learning_rate": 0.0001, "run.seed": 0}
    inputs: Optional[Mapping[str, str]]  # role -> sha256 ("model", "data.source", "tuples"); None: never recorded
    recipe: Any = field(default=None, compare=False)  # the recipe it was taken from (reads an older run's recipe.yaml)

    def to_json(self) -> dict:
        return {"settings": dict(self.settings), "inputs": None if self.inputs is None else dict(self.inputs)}


def _flatten(d, prefix: str) -> dict:
    """{"a": {"b": 1}} -> {"prefix.a.b": 1}: nested sections compared (and named) field by field."""
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}"))
    return out


def flatten(d: Mapping) -> dict:
    """{"eval": {"k": 4}, "seed": 0} -> {"eval.k": 4, "seed": 0}."""
    return {k2: v2 for k, v in d.items() for k2, v2 in _flatten(v, k).items()}


def _settings(recipe, sections: Sequence[str], extra: Sequence[str]) -> dict[str, object]:
    """The dotted fields of `sections` and the `extra` fields; model.path left out: its bytes are the "model" input."""
    from .configio import to_dict

    data = to_dict(recipe)
    flat = {k: v for s in sections for k, v in _flatten(data[s], s).items() if k != "model.path"}
    for dotted in extra:
        section, key = dotted.split(".")
        flat[dotted] = data[section][key]
    return flat


def local_data_files(recipe) -> dict[str, Path]:
    """The local files a stage reads problems from, by recipe field (hf:// and generated sources are not files)."""
    fields = {"data.source": recipe.data.source, "data.eval_source": recipe.data.eval_source,
              "data.validation_source": recipe.data.validation_source}
    return {f: Path(s).expanduser() for f, s in fields.items() if s and "://" not in s}


def made_by(recipe, sections: Sequence[str], files: Mapping[str, Path] = (), extra: Sequence[str] = ("run.seed",)) -> MadeBy:
    """The record of a stage run with `recipe`: `sections` (and `extra` fields) as they are, the starting model's
    bytes (recipe.model.path), the data files' and `files`' (e.g. {"tuples": ...}) sha256."""
    inputs = {"model": model_fingerprint(recipe.model.path)}
    for role, path in {**local_data_files(recipe), **dict(files)}.items():
        inputs[role] = file_sha256(path) if Path(path).is_file() else "missing"
    return MadeBy(_settings(recipe, sections, extra), inputs, recipe)


def _lookup(data: dict, dotted: str):
    node = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return "(no such field)"
        node = node[key]
    return node


def differences(saved: MadeBy, want: MadeBy, ignore: Sequence[str] = (), settings_only: bool = False) -> list[str]:
    """What differs between two records, one `field: old -> new` each; `ignore`: fields that may differ.
    `settings_only`: a record without inputs (an older sdzero's) is compared on its settings alone."""
    diffs = [f"{k}: {saved.settings.get(k, '(unset)')!r} -> {want.settings.get(k, '(unset)')!r}"
             for k in sorted(set(saved.settings) | set(want.settings))
             if k not in ignore and saved.settings.get(k, "(unset)") != want.settings.get(k, "(unset)")]
    if saved.inputs is None:
        return diffs if settings_only else diffs + ["its inputs: never recorded (made by an older sdzero)"]
    for role in sorted(set(saved.inputs) | set(want.inputs or {})):
        old, new = saved.inputs.get(role), (want.inputs or {}).get(role)
        if old != new:
            diffs.append(f"{role}: other bytes (sha256 {str(old)[:12]} -> {str(new)[:12]})")
    return diffs


class StaleStage(ValueError):
    """A finished (or started) stage was made from other settings or inputs, and run.retrain is off."""




# -- the run directory ---------------------------------------------------------------------------------

Continuing = Callable[[str, Path], str]  # (stage, RUN) -> the command that continues a run of that stage in RUN


class RunDir:
    """One run directory: its lock, its record of what made it, whether it is finished or can be resumed, its done
    marker and its file names. Every stage and every job asks it; none re-derives it.

    `outputs`: the files (relative to RUN) that a finished run vouches for in outputs.json: a training stage's
    adapters by default, SRT's also its state and summary, none for collect."""

    def __init__(self, path: str | Path, outputs: Sequence[str] = ADAPTER_FILES):
        self.path = Path(path)
        self.outputs = tuple(outputs)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def adapters(self) -> Path:
        """RUN/adapters: what `mlx_lm.generate --adapter-path` reads."""
        return self.path / ADAPTERS

    # -- one writer --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator["RunDir"]:
        """Hold RUN/.lock while the block runs (taken again by this process for free)."""
        lock_run_dir(self.path)
        try:
            yield self
        finally:
            unlock_run_dir(self.path)

    # -- where it stands -----------------------------------------------------------------------------------

    def resume_from(self) -> Optional[Path]:
        """The complete checkpoint a resume reads, if any (an interrupted swap leaves checkpoint.old)."""
        for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
            path = self.path / name
            if (path / "state.json").is_file():
                return path
        return None

    def started(self) -> bool:
        """Whether it holds work to resume: a training checkpoint, or collect's progress."""
        return self.resume_from() is not None or (self.path / PROGRESS).is_file()

    def marked_done(self) -> bool:
        """The done marker alone (`finished` also checks the outputs it vouches for)."""
        return (self.path / DONE).is_file()

    def finished(self) -> bool:
        """Done, over outputs that outputs.json vouches for (else its stage resumes, and repairs them)."""
        return self.marked_done() and not self.damaged_outputs()

    def mark_done(self) -> None:
        """Written last, once the outputs are complete."""
        write_text(self.path / DONE, "")

    def unmark_done(self) -> None:
        """Before more steps or a repair change what the marker vouched for."""
        (self.path / DONE).unlink(missing_ok=True)

    # -- run.json: the stage, the command, what made it ----------------------------------------------------

    def record(self) -> Optional[dict]:
        """RUN/run.json, or for a run made before it existed the stage its metrics name, else None."""
        path = self.path / RECORD
        if path.is_file():
            record = read_json(path, "delete it to adopt the run as it is")
            if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
                raise DamagedFile(f"{path} is damaged (no stage); delete it to adopt the run as it is.")
            return record
        metrics = self.path / "metrics.jsonl"
        if metrics.is_file():
            first = metrics.read_text().split("\n", 1)[0]
            with contextlib.suppress(ValueError):
                stage = json.loads(first).get("stage")
                if isinstance(stage, str):
                    return {"stage": stage}
        return None

    def check_stage(self, stage: str, resume: bool, continuing: Continuing) -> Optional[dict]:
        """Refuse to continue (or to start over) a run directory that another stage made; returns its record.
        `continuing` names the command that continues a run of a stage (stages.continue_command)."""
        record = self.record()
        if record is None or record["stage"] == stage:
            return record
        made, run_dir = record["stage"], self.path
        if resume:
            refused = continuing(stage, run_dir).replace(f" RECIPE --resume {run_dir}", " --resume").replace(" RECIPE", "")
            raise ValueError(f"{run_dir} is a {made} run; `{refused}` cannot continue it. "
                             f"Continue it with `{continuing(made, run_dir)}`, or give {stage} its own run.output_dir.")
        raise FileExistsError(f"{run_dir} already holds a {made} run; choose another run.output_dir for {stage}.")

    def begin(self, stage: str, resume: bool, continuing: Continuing, made: Optional[MadeBy] = None,
              write: bool = True) -> None:
        """The stage check (check_stage), then (`write`) RUN/run.json, created or with a resume added, holding `made`
        as made_by (a resume may have changed the steps)."""
        from . import __version__

        saved = self.check_stage(stage, resume, continuing)
        if not write:
            return
        now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        entry = {"command": command_line(), "overrides": list(_invocation["overrides"]), "time": now}
        if resume and saved is not None and "created" in saved:
            saved = {**saved, "resumed": [*saved.get("resumed", []), entry]}
        else:
            saved = {"stage": stage, **entry, "sdzero_version": __version__, "created": now}
            saved.pop("time")
        saved.pop("inputs", None)  # an older sdzero's input hashes: made_by holds them now
        if made is not None:
            saved["made_by"] = made.to_json()
        write_json(self.path / RECORD, saved)

    def made_by(self, like: MadeBy) -> Optional[MadeBy]:
        """The record run.json keeps, else (a run of an older sdzero) the fields of `like` read from its recipe.yaml
        with like's recipe sections, its inputs unknown; None when nothing was started there."""
        record = self.record() if (self.path / RECORD).is_file() else None
        if record and isinstance(record.get("made_by"), dict):
            return MadeBy(record["made_by"].get("settings") or {}, record["made_by"].get("inputs"))
        recipe_file = self.path / "recipe.yaml"
        if not recipe_file.is_file():
            return None
        from .config import read_like
        from .configio import to_dict

        try:
            if like.recipe is None:
                raise ValueError("no recipe to read it with")
            saved = to_dict(read_like(recipe_file, like.recipe))
        except (ValueError, OSError) as err:
            return MadeBy({"recipe.yaml": f"unreadable by this sdzero ({err})"}, None)
        return MadeBy({k: _lookup(saved, k) for k in like.settings}, None)

    def check_made_by(self, want: MadeBy, ignore: Sequence[str] = ()) -> None:
        """Refuse to continue a stage here that was started from other settings or inputs (all but `ignore`)."""
        saved = self.made_by(want)
        diffs = [] if saved is None else differences(saved, want, ignore, settings_only=True)
        if diffs:
            raise ValueError(f"{self.path} was started with another recipe or inputs ({'; '.join(diffs)}). "
                             "Continue with the same recipe, or choose another run.output_dir.")

    def reuse_or_clear(self, want: MadeBy, retrain: bool, resume_ignore: Sequence[str] = (), log=print) -> bool:
        """The one reuse rule of every stage a run, compare or sweep continues. True: finished and made by `want`:
        reuse it. False: train it, resuming what was started here when that was made by `want` (but
        `resume_ignore`), else, with `retrain`, after emptying the folder. A mismatch without `retrain` raises
        StaleStage naming the fields; what depends on the stage is stale in turn, as its inputs include this
        stage's bytes."""
        finished = self.finished()
        saved = self.made_by(want) if finished or self.started() else None
        if saved is None:
            return False  # nothing there to keep
        diffs = differences(saved, want, () if finished else resume_ignore)
        if not diffs:
            return finished
        stage_dir = self.path
        what = "was trained" if finished else "was started"
        if not retrain:
            raise StaleStage(f"{stage_dir} {what} from other settings or inputs than this recipe's ({'; '.join(diffs)}). "
                             "Rerun with --retrain (run.retrain=true) to train it again with what depends on it, or choose "
                             "another run.output_dir.")
        if stage_dir.is_symlink():  # a search's points share one chain: retraining it here would change the others'
            raise StaleStage(f"{stage_dir} {what} from other settings or inputs ({'; '.join(diffs)}) and is shared (a link "
                             f"to {stage_dir.resolve()}); it is not retrained here. Use another output folder.")
        log(f"{stage_dir.name}: {what} from other settings or inputs ({'; '.join(diffs)}); training it again")
        self.clear()
        return False

    def clear(self) -> None:
        """Empty the folder for a new run, under its lock (which stays)."""
        with self.writing():
            for entry in self.path.iterdir():
                if entry.name == LOCK:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    # -- outputs.json: the final outputs as written ------------------------------------------------------

    def record_outputs(self, files: Sequence[Path]) -> None:
        """Write RUN/outputs.json: size and sha256 of each file (paths relative to RUN)."""
        write_json(self.path / OUTPUTS, {str(Path(f).relative_to(self.path)): {"bytes": Path(f).stat().st_size,
                                                                              "sha256": file_sha256(f)} for f in files})

    def damaged_outputs(self, expected: Optional[Sequence[str]] = None) -> list[str]:
        """Outputs that are missing, or differ from outputs.json (a truncated or overwritten file); [] when sound.

        `expected`: paths (relative to RUN) that must be there even when outputs.json does not list them
        (default: this run's `outputs`).
        """
        expected = self.outputs if expected is None else expected
        path = self.path / OUTPUTS
        try:
            recorded: Mapping[str, dict] = read_json(path) if path.is_file() else {}
        except DamagedFile:
            recorded = {}
        names = list(dict.fromkeys([*expected, *recorded]))
        if not path.is_file():
            return names  # nothing vouches for them: rewrite
        bad = []
        for name in names:
            f, want = self.path / name, recorded.get(name)
            if not f.is_file() or want is None or f.stat().st_size != want.get("bytes") or file_sha256(f) != want.get("sha256"):
                bad.append(name)
        return bad
