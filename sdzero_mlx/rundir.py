"""What a run directory knows about itself, and who may write it.

RUN/.lock          one writer at a time: the writing process holds fcntl.flock on it (Linux and macOS),
                   which the kernel drops when that process ends in any way, kill -9 included, so a
                   crash never leaves it stuck. It holds the writer's pid and command line, which a
                   second process names in its one-line refusal. Only EWOULDBLOCK means another
                   writer; on a filesystem without flock (some SMB, NFS or exFAT mounts: ENOLCK,
                   EOPNOTSUPP, EINVAL) the command goes on without the check and warns once per folder.
RUN/run.json       the stage that made RUN (distill, rft, ..., collect, pipeline), the command line and
                   its --set overrides, the sdzero version, when it was created (and each resume), and a
                   sha256 of every input file (data.source, SRT's tuples): a resume with another stage or
                   with changed data is refused, naming both.
RUN/outputs.json   size and sha256 of the final outputs (adapters) as written; a resume checks them
                   before it says "done" and rewrites what is missing or damaged (`damaged_outputs`).

A lock is counted per process: the pipeline holds its top folder while its stages hold their own, and
nested takes of one folder (compare -> pipeline) are free. It is released when the stage (or command)
that took it returns, or when the process ends.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from .atomic import DamagedFile, read_json, write_json

LOCK, RECORD, OUTPUTS = ".lock", "run.json", "outputs.json"


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


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold RUN/.lock while the block runs."""
    lock_run_dir(run_dir)
    try:
        yield
    finally:
        unlock_run_dir(run_dir)


# -- run.json: the stage, the command, the inputs --------------------------------------------------


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_record(run_dir: Path) -> Optional[dict]:
    """RUN/run.json, or for a run made before it existed the stage its metrics name, else None."""
    path = run_dir / RECORD
    if path.is_file():
        record = read_json(path, "delete it to adopt the run as it is")
        if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
            raise DamagedFile(f"{path} is damaged (no stage); delete it to adopt the run as it is.")
        return record
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        first = metrics.read_text().split("\n", 1)[0]
        with contextlib.suppress(ValueError):
            stage = json.loads(first).get("stage")
            if isinstance(stage, str):
                return {"stage": stage}
    return None


def check_stage(run_dir: Path, stage: str, resume: bool) -> Optional[dict]:
    """Refuse to continue (or to start over) a run directory that another stage made; returns its record."""
    record = read_record(run_dir)
    if record is None or record["stage"] == stage:
        return record
    made = record["stage"]
    if resume:
        refused = continuing(stage, run_dir).replace(f" RECIPE --resume {run_dir}", " --resume").replace(" RECIPE", "")
        raise ValueError(f"{run_dir} is a {made} run; `{refused}` cannot continue it. "
                         f"Continue it with `{continuing(made, run_dir)}`, or give {stage} its own run.output_dir.")
    raise FileExistsError(f"{run_dir} already holds a {made} run; choose another run.output_dir for {stage}.")


def continuing(stage: str, run_dir: Path) -> str:
    """The command that continues a `stage` run: training stages take --resume, the others rerun."""
    if stage == "pipeline":
        return "sdzero run RECIPE"  # (or sdzero compare RECIPE: the same layout)
    if stage in ("collect", "srt"):
        return f"sdzero {stage} RECIPE"
    return f"sdzero {stage} RECIPE --resume {run_dir}"


def input_files(recipe, extra: Sequence[Path] = ()) -> list[Path]:
    """The local files a stage reads its questions from (hf:// sources are fixed by the Hub's cache)."""
    sources = [recipe.data.source, recipe.data.eval_source]
    return [Path(s).expanduser() for s in sources if s and not s.startswith("hf://")] + [Path(p) for p in extra]


def check_inputs(run_dir: Path, record: Optional[dict], files: Sequence[Path]) -> dict[str, str]:
    """sha256 of each input file; refuse a resume whose inputs changed since the run was made."""
    hashes = {str(p): file_sha256(p) for p in files if p.is_file()}
    saved = (record or {}).get("inputs") or {}
    for name, digest in hashes.items():
        if name in saved and saved[name] != digest:
            raise ValueError(f"{name} changed since {run_dir} was started (sha256 {saved[name][:12]}... -> "
                             f"{digest[:12]}...): resuming would mix two data sets. Restore the file, or start a "
                             "new run (another run.output_dir).")
    return hashes


def begin(run_dir: Path, stage: str, resume: bool, inputs: Sequence[Path] = (), write: bool = True) -> None:
    """The stage and input checks of a run directory, then (`write`) RUN/run.json, created or with a resume added."""
    from . import __version__

    record = check_stage(run_dir, stage, resume)
    hashes = check_inputs(run_dir, record, inputs)
    if not write:
        return
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    entry = {"command": command_line(), "overrides": list(_invocation["overrides"]), "time": now}
    if resume and record is not None and "created" in record:
        record = {**record, "inputs": {**record.get("inputs", {}), **hashes},
                  "resumed": [*record.get("resumed", []), entry]}
    else:
        record = {"stage": stage, **entry, "sdzero_version": __version__, "created": now, "inputs": hashes}
        record.pop("time")
    write_json(run_dir / RECORD, record)


# -- outputs.json: the final outputs as written ----------------------------------------------------


def record_outputs(run_dir: Path, files: Sequence[Path]) -> None:
    """Write RUN/outputs.json: size and sha256 of each file (paths relative to RUN)."""
    write_json(run_dir / OUTPUTS, {str(Path(f).relative_to(run_dir)): {"bytes": Path(f).stat().st_size,
                                                                       "sha256": file_sha256(f)} for f in files})


def damaged_outputs(run_dir: Path, expected: Sequence[str] = ()) -> list[str]:
    """Outputs that are missing, or differ from outputs.json (a truncated or overwritten file); [] when sound.

    `expected`: paths (relative to RUN) that must be there even when outputs.json does not list them.
    """
    path = run_dir / OUTPUTS
    try:
        recorded: Mapping[str, dict] = read_json(path) if path.is_file() else {}
    except DamagedFile:
        recorded = {}
    names = list(dict.fromkeys([*expected, *recorded]))
    if not path.is_file():
        return names  # nothing vouches for them: rewrite
    bad = []
    for name in names:
        f, want = run_dir / name, recorded.get(name)
        if not f.is_file() or want is None or f.stat().st_size != want.get("bytes") or file_sha256(f) != want.get("sha256"):
            bad.append(name)
    return bad
