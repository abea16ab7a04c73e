"""Output locations are checked before any work starts, so a bad --out or run.output_dir costs
nothing: a command that generated for an hour must not then fail to write its results.

`check_output_dir(path, what)` makes the folder (and its parents) if needed and writes and removes
a probe file in it; any problem becomes an OutputError naming the path and the fix.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class OutputError(ValueError):
    """An output location that cannot hold the command's results."""


def _write_probe(folder: Path) -> None:
    """Create and remove a file in folder (the only reliable test: root ignores permission bits)."""
    probe = folder / f".sdzero-write-test-{os.getpid()}"
    with probe.open("w") as f:
        f.write("ok")
    probe.unlink()


def check_output_dir(path: str | Path, what: str = "run.output_dir") -> Path:
    """Make sure `path` is (or can become) a writable folder; returns it.

    `what` names the setting the user should change, e.g. "run.output_dir" or "--out".
    Example: check_output_dir("runs/x", "--out") creates runs/x and returns Path("runs/x").
    """
    path = Path(path).expanduser()
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(
                f"{parent} is a file, not a folder, so {path} cannot hold the results. "
                f"Set {what} to a folder path (or move the file)."
            )
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        _write_probe(path)
    except OSError as err:
        reason = {errno.EROFS: "it is on a read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted", errno.ENOSPC: "the disk is full"}.get(
            err.errno, err.strerror or type(err).__name__)
        raise OutputError(f"Cannot write into {path}: {reason}. Set {what} to a writable folder.") from None
    return path


def check_output_file(path: str | Path, what: str) -> Path:
    """Make sure a file can be written at `path` (its folder is checked; an existing folder is refused)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{path} is a folder; set {what} to a file path.")
    check_output_dir(path.parent if str(path.parent) else Path("."), what)
    return path
