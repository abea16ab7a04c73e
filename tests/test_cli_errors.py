"""Every CLI error path of issue 14: exit code 2, one line that names the field, file or line, no
traceback, and nothing expensive done (or left behind) first."""

import errno
import json
import time

import pytest
from typer.testing import CliRunner

from sdzero_mlx import writable
from sdzero_mlx.cli import app

runner = CliRunner()


def fails_cleanly(result, *needles):
    """Exit code 2, an `error:` line holding every needle, and no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    error = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert error, result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)
    return result.output


def read_only(monkeypatch):
    """As root, chmod cannot make a folder read-only: simulate the file system's answer (EROFS)."""
    def probe(folder):
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(writable, "_write_probe", probe)


# -- output locations: checked before any work ------------------------------------------------


def test_collect_into_a_read_only_run_directory(tiny_recipe, tmp_path, monkeypatch):
    read_only(monkeypatch)
    run = tmp_path / "ro"
    out = fails_cleanly(runner.invoke(app, ["collect", str(tiny_recipe), "--set", f"run.output_dir={run}"]),
                        "read-only", str(run / "collect"), "run.output_dir")
    assert "batch" not in out  # failed before the first batch


def test_distill_and_srt_and_run_into_a_read_only_run_directory(tiny_recipe, tmp_path, monkeypatch):
    read_only(monkeypatch)
    run = tmp_path / "ro"
    fails_cleanly(runner.invoke(app, ["distill", str(tiny_recipe), "--set", f"run.output_dir={run}"]), "read-only", str(run))
    fails_cleanly(runner.invoke(app, ["run", str(tiny_recipe), "--set", f"run.output_dir={run}"]), "read-only", str(run))
    tuples = tmp_path / "t.jsonl"
    tuples.write_text("")
    fails_cleanly(runner.invoke(app, ["srt", str(tiny_recipe), "--set", f"srt.tuples={tuples}", "--set", f"run.output_dir={run}"]),
                  "read-only", str(run / "srt"))


def test_output_dir_that_is_a_file(tiny_recipe, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fails_cleanly(runner.invoke(app, ["collect", str(tiny_recipe), "--set", f"run.output_dir={blocker}"]),
                  f"{blocker} is a file", "run.output_dir")
    fails_cleanly(runner.invoke(app, ["demo", "--quick", "--out", str(blocker)]), f"{blocker} is a file", "--out")
    assert blocker.read_text() == "not a folder"


def test_eval_out_is_checked_before_generating(tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    blocker = tmp_path / "results"
    blocker.write_text("")
    args = ["eval", str(tiny_model_dir), "--data", str(tiny_data), "--k", "1", "--max-tokens", "4", "--limit", "2"]
    tic = time.perf_counter()
    out = fails_cleanly(runner.invoke(app, args + ["--out", str(blocker)]), f"{blocker} is a file", "--out")
    assert "generations" not in out and time.perf_counter() - tic < 5
    read_only(monkeypatch)
    out = fails_cleanly(runner.invoke(app, args + ["--out", str(tmp_path / "ro")]), "read-only", "--out")
    assert "generations" not in out


# -- recipes and overrides ---------------------------------------------------------------------


def test_negative_seed_is_refused_and_leaves_nothing(tiny_recipe, tmp_path):
    run = tmp_path / "seed"
    fails_cleanly(runner.invoke(app, ["collect", str(tiny_recipe), "--set", f"run.output_dir={run}", "--set", "run.seed=-1"]),
                  "run.seed", "-1")
    assert not run.exists()  # no empty tuples.jsonl behind


def test_unparsable_override_names_it(tiny_recipe):
    fails_cleanly(runner.invoke(app, ["distill", str(tiny_recipe), "--set", "distill.steps=[1,2"]),
                  "distill.steps=[1,2", "not valid YAML")


def test_binary_recipe_names_the_file(tmp_path):
    recipe = tmp_path / "model.yaml"
    recipe.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    fails_cleanly(runner.invoke(app, ["collect", str(recipe)]), str(recipe), "UTF-8")


def test_non_utf8_data_names_file_and_line(tiny_model_dir, tmp_path):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(b'{"problem": "1+1", "answer": "2"}\n{"problem": "caf\xe9", "answer": "3"}\n')
    out = fails_cleanly(runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(data)]), f"Line 2 of {data}", "UTF-8")
    assert "codec" not in out


# -- data rows -------------------------------------------------------------------------------


@pytest.mark.parametrize("gold", [None, "", "   "])
def test_empty_gold_answer_is_rejected_by_line(tiny_model_dir, tmp_path, gold):
    data = tmp_path / "d.jsonl"
    rows = [{"problem": "1+1", "answer": "2"}, {"problem": "2+2", "answer": gold}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = fails_cleanly(runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(data)]),
                        f"Line 2 of {data}", "empty answer field 'answer'", "rejected")
    assert "no field" not in out


def test_eval_missing_answer_field_points_at_the_option(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"problem": "1+1", "solution": "2"}) + "\n")
    out = fails_cleanly(runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(data)]), "--field-answer", "Line 1")
    assert "data.fields" not in out


def test_eval_missing_local_model_is_a_folder_message(tiny_data, tmp_path):
    missing = tmp_path / "no-such-model"
    out = fails_cleanly(runner.invoke(app, ["eval", str(missing), "--data", str(tiny_data)]), f"Model folder {missing} does not exist")
    assert "Repo id" not in out
    out = fails_cleanly(runner.invoke(app, ["eval", "./models/nope", "--data", str(tiny_data)]), "./models/nope does not exist")


# -- verify ------------------------------------------------------------------------------------


def test_verify_accepts_a_negative_gold_as_is_and_after_double_dash():
    for args in (["verify", "so \\boxed{-5}", "-5"], ["verify", "--", "so \\boxed{-5}", "-5"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "verdict:   correct" in result.output


def test_verify_file_prints_a_reason_per_item(tmp_path):
    path = tmp_path / "preds.jsonl"
    rows = [{"response": "\\boxed{4}", "answer": "5"}, {"response": "no answer here", "answer": "1"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["verify", "--file", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("1: wrong") and "different numbers" in lines[0]
    assert lines[1].startswith("2: wrong") and "no final answer found" in lines[1]
    assert lines[2] == "0/2 correct, accuracy 0.0000"
