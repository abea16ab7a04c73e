"""Every file a run writes goes through here: a temporary file in the same folder, fsync, rename.

A reader, or a resume after kill -9, a power cut or a full disk, finds the old file or the new one,
never half of one (rename is atomic within a file system; fsync makes the bytes durable before the
name points at them). A failed write raises WriteError, which names the file and the fix, and
leaves no temporary file behind. Reading back a damaged file names it too (`read_json`,
`load_safetensors`).

Example: write_json(run_dir / "summary.json", {"kept": 3})
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file is larger than this system allows (a file-size limit or quota)",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class WriteError(OSError):
    """A file that could not be written; str() is the whole one-line message."""

    def __init__(self, path: Path, reason: str, code: int = errno.EIO):
        super().__init__(code, reason, str(path))
        self.message = (f"Could not write {path}: {reason}. Free some space or choose another folder "
                        "(run.output_dir / --out), then run the command again: finished work is kept.")

    def __str__(self) -> str:
        return self.message


def write_error(path: Path, err: BaseException) -> WriteError:
    """The WriteError for an OSError, or for MLX's RuntimeError ("[write] Unable to write 1696 bytes to file.")."""
    if isinstance(err, OSError) and err.errno is not None:
        return WriteError(path, REASONS.get(err.errno, err.strerror or str(err)), err.errno)
    return WriteError(path, f"{err} (a full disk is the usual cause)")


def temporary_path(path: Path) -> Path:
    """A hidden sibling with the same suffix (mx.save_safetensors and savefig go by the suffix)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') bytes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to `path`.

    Example: with replacing(out / "model.safetensors") as tmp: mx.save_safetensors(str(tmp), weights)
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise err if isinstance(err, WriteError) else write_error(path, err) from None
    except BaseException:  # Ctrl-C mid-write: leave the old file, and no temporary one
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """A text file of lines (e.g. JSONL rows), each followed by a newline."""
    write_text(path, "".join(line + "\n" for line in lines))


def save_safetensors(path: str | Path, arrays: dict, metadata: dict | None = None) -> None:
    import mlx.core as mx

    with replacing(path) as tmp:
        mx.save_safetensors(str(tmp), arrays, metadata=metadata)


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder `tmp` in for `final`: fsync its files, then rename (old one aside first).

    An interruption leaves `final` or `final.old` complete (rundir.RunDir.resume_from reads either)."""
    try:
        for f in tmp.rglob("*"):
            if f.is_file():
                fsync_path(f)
        fsync_path(tmp)
        old = final.with_name(final.name + ".old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_path(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise write_error(final, err) from None


class DamagedFile(ValueError):
    """A file of a run that exists but cannot be read back (truncated, overwritten, wrong types)."""


def read_json(path: str | Path, fix: str = "delete it or restore it from a backup"):
    """json.loads of a file, naming the file when it is truncated or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFile(f"{path} is damaged ({err}); {fix}.") from None


def load_safetensors(path: str | Path, fix: str = "delete it or restore it from a backup") -> dict:
    """mx.load of a .safetensors file, naming the file when it is truncated or not safetensors."""
    import mlx.core as mx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {fix}.")
    try:
        return mx.load(str(path))
    except (RuntimeError, ValueError, OSError) as err:
        raise DamagedFile(f"{path} is damaged or not a safetensors file ({err}); {fix}.") from None
