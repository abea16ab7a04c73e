"""Examples (id, problem, answer) from local files or the Hugging Face Hub, and seeded splits.

Sources: `.jsonl`, `.json` (a list of rows) and `.parquet` (via pyarrow) files, or
`hf://owner/name/path/in/repo` which downloads one file of a dataset repo into the normal
Hugging Face cache. Splits are cut from one seeded shuffle, so phase 1, phase 2 and evaluation
never share a question.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from .config import DataConfig, FieldMap
from .types import Example

HF_PREFIX = "hf://"


@dataclass(frozen=True)
class Splits:
    phase1: tuple[Example, ...]
    phase2: tuple[Example, ...]
    eval: tuple[Example, ...]

    @property
    def training(self) -> tuple[Example, ...]:
        """Every question SD-Zero trains on (phase 1 then phase 2): the baselines' pool, for a fair comparison."""
        return self.phase1 + self.phase2


def resolve_source(source: str) -> Path:
    """Local path as is; hf://owner/name/file downloads that file (cached) and returns its path."""
    if not source.startswith(HF_PREFIX):
        path = Path(source).expanduser()
        if path.is_dir():
            raise FileNotFoundError(f"Data file {path} is a folder, not a file. Set data.source to a .jsonl/.json/.parquet file.")
        if not path.is_file():
            raise FileNotFoundError(f"Data file {path} does not exist. Set data.source to a .jsonl/.json/.parquet file.")
        return path
    parts = source[len(HF_PREFIX):].split("/", 2)
    if len(parts) < 3:
        raise ValueError(
            f"{source!r} should look like hf://owner/name/path/in/repo.parquet "
            "(e.g. hf://openai/gsm8k/main/train-00000-of-00001.parquet)."
        )
    repo_id, filename = f"{parts[0]}/{parts[1]}", parts[2]
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset"))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise RuntimeError(
            f"Could not get {filename} from the dataset repo {repo_id} ({type(err).__name__}: {err}). "
            f"Offline? On a machine with internet run `hf download {repo_id} {filename} --repo-type dataset` "
            "(it fills the same cache), or point data.source at a local JSONL file."
        ) from None


def read_rows(path: Path) -> list[dict]:
    """Rows of a .jsonl, .json or .parquet file as dicts."""
    return read_numbered_rows(path)[0]


def _utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{where} is not UTF-8 text (byte {err.start + 1} is {raw[err.start:err.start + 1]!r}). "
            "Re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None


def read_numbered_rows(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a .jsonl, .json or .parquet file, and where each sits: "Line 7" (JSONL) or "Row 7".

    Positions count from 1 in both, so an error and an editor name the same place.
    """
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, where = [], []
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                line = _utf8(raw, f"Line {lineno} of {path}")
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"Line {lineno} of {path} is not valid JSON: {err}") from None
                where.append(f"Line {lineno}")
        return rows, where
    if suffix == ".json":
        try:
            rows = json.loads(_utf8(path.read_bytes(), str(path)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(rows, list):
            raise ValueError(f"{path} must hold a JSON list of rows.")
        return rows, [f"Row {i}" for i in range(1, len(rows) + 1)]
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(f"Reading {path} needs pyarrow: pip install pyarrow") from None
        rows = pq.read_table(path).to_pylist()
        return rows, [f"Row {i}" for i in range(1, len(rows) + 1)]
    raise ValueError(f"Unsupported data file {path}: use .jsonl, .json or .parquet.")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def rows_to_examples(
    rows: list[dict], fields: FieldMap, origin: str, where: list[str] | None = None, fix: dict[str, str] | None = None
) -> list[Example]:
    """Map raw rows to Examples through the field map; name the row and field on error.

    `where[i]` names row i ("Line 7"; default "Row i+1"); `fix[role]` is the setting that picks the
    field (default `data.fields.<role>`; `sdzero eval` passes its --field-* options).
    A null or blank problem or answer is rejected, not skipped: such a question can never score.
    """
    fix = {role: f"data.fields.{role}" for role in ("problem", "answer", "id")} | (fix or {})
    examples = []
    for i, row in enumerate(rows):
        at = where[i] if where is not None else f"Row {i + 1}"
        if not isinstance(row, dict):
            raise ValueError(f"{at} of {origin} is not an object: {row!r:.80}.")
        for role, name in (("problem", fields.problem), ("answer", fields.answer)):
            if name not in row:
                raise ValueError(f"{at} of {origin} has no field {name!r} (found: {sorted(row)}). Set {fix[role]}.")
            if _blank(row[name]):
                raise ValueError(
                    f"{at} of {origin} has an empty {role} field {name!r} ({row[name]!r}); such a row could never "
                    f"score. Fill it in or remove the row (rows with empty fields are rejected, not skipped)."
                )
        if fields.id is not None and fields.id not in row:
            raise ValueError(f"{at} of {origin} has no field {fields.id!r} (found: {sorted(row)}). Set {fix['id']}.")
        ex_id = str(row[fields.id]) if fields.id is not None else f"{Path(origin).stem}-{i}"
        solution = row.get(fields.solution) if fields.solution is not None else None
        examples.append(Example(id=ex_id, problem=str(row[fields.problem]), answer=str(row[fields.answer]),
                                solution=None if solution in (None, "") else str(solution)))
    return examples


def load_examples(source: str, fields: FieldMap, fix: dict[str, str] | None = None) -> list[Example]:
    """Examples of a data source; `fix` names the settings that pick fields (see rows_to_examples)."""
    path = resolve_source(source)
    rows, where = read_numbered_rows(path)
    return rows_to_examples(rows, fields, str(path), where, fix)


def make_splits(config: DataConfig) -> Splits:
    """Seeded shuffle, then phase 1, phase 2 and (unless eval_source is set) eval, in that order."""
    examples = load_examples(config.source, config.fields)
    order = list(range(len(examples)))
    random.Random(config.seed).shuffle(order)
    shuffled = [examples[i] for i in order]
    n1, n2 = config.phase1_size, config.phase2_size
    n_eval = 0 if config.eval_source else config.eval_size
    needed = n1 + n2 + n_eval
    if needed > len(shuffled):
        raise ValueError(
            f"{config.source} has {len(shuffled)} examples but the splits ask for {needed} "
            f"(phase1 {n1} + phase2 {n2} + eval {n_eval}). Lower data.*_size."
        )
    phase1, phase2 = shuffled[:n1], shuffled[n1:n1 + n2]
    if config.eval_source:
        evaluation = load_examples(config.eval_source, config.fields)[: config.eval_size]
    else:
        evaluation = shuffled[n1 + n2:needed]
    return Splits(tuple(phase1), tuple(phase2), tuple(evaluation))


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    """Seeded permutation for one pass; a run resumes by recomputing it, not by storing it."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def questions_for_step(pool: tuple[Example, ...], step: int, per_step: int, seed: int) -> list[Example]:
    """The examples step `step` trains on: a position in a seeded, epoch-wise stream."""
    picked = []
    for k in range(step * per_step, (step + 1) * per_step):
        epoch, pos = divmod(k, len(pool))
        picked.append(pool[epoch_order(len(pool), seed, epoch)[pos]])
    return picked
