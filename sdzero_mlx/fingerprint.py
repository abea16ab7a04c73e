"""Content hashes of what a stage reads and writes: files, model folders (local or from the Hub), adapters.

A stage is reused only when the bytes it started from are the ones it was trained on (rundir.py,
`MadeBy`), and an evaluation is cached under the evaluated model's bytes (tasks.py). Paths are
not enough: a fused SRT model is rewritten in place when SRT is retrained, and a run folder may move.

Hashing a 2.5 GB float32 model takes seconds, so a folder's digest is remembered for the life of the
process under its files' sizes and modification times (a rewrite changes them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

_BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    """The files that make a folder's content: every regular file below it, hidden ones (.lock, .DS_Store) aside."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


_memo: dict[tuple, str] = {}


def folder_sha256(folder: str | Path) -> str:
    """One digest of every file's name and bytes below `folder` (hidden files aside).

    Example: two folders holding the same files (names and bytes) have the same digest, wherever they are."""
    folder = Path(folder).resolve()
    files = _files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no files to fingerprint.")
    stats = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder), stats)
    if key not in _memo:
        h = hashlib.sha256()
        for p in files:
            h.update(f"{p.relative_to(folder).as_posix()}\0{file_sha256(p)}\n".encode())
        _memo[key] = h.hexdigest()
    return _memo[key]


def model_folder(path: str) -> Path:
    """The local folder of a model path as mlx-lm resolves it: the folder itself, or the Hub snapshot
    (downloaded if missing, as `mlx_lm.load` would; mlx-lm's own resolver)."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    from mlx_lm.utils import _download  # the resolution mlx_lm.load uses, so both see the same snapshot

    return Path(_download(path))


def model_fingerprint(path: str) -> str:
    """sha256 of a model's files (a folder or a Hub id's snapshot): what a model 'is' for reuse and caches."""
    return folder_sha256(model_folder(path))


def adapters_fingerprint(adapter_dir: Optional[str | Path]) -> Optional[str]:
    """sha256 of an adapter folder's files (weights and config), or None without adapters."""
    return None if adapter_dir is None else folder_sha256(Path(adapter_dir).expanduser())
