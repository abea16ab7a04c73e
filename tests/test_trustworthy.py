"""Numbers a reviewer can trust: splits without repeats or overlap (counted by hand), intervals checked
against hand computations, and nothing that chooses (the probe, a search) ever reads the test split."""

import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.config import DataConfig, FieldMap
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.data import make_splits
from sdzero_mlx.probe import probe_examples
from sdzero_mlx.stats import bootstrap_ci, seed_t_ci
from sdzero_mlx.sweep import difference_record, interval_record

from scripted import scripted_model_dir, write_data


def _rows(path, problems):
    path.write_text("".join(json.dumps({"id": f"r{i}", "problem": p, "answer": "1"}) + "\n" for i, p in enumerate(problems)))
    return str(path)


def test_repeats_and_overlap_are_dropped_and_counted(tmp_path):
    # source: 12 rows, of which "p1" is repeated twice (once in other case and spacing) and "p2" once: 3 repeats.
    # "p5" and "p6" are also in the test file, "p7" in the validation file: dropped from training.
    source = [f"p{i}" for i in range(1, 10)] + ["P1", "  p1 ", "p2"]
    test = ["p5", "p6", "t1", "t1", "t2"]  # one repeat inside the test file
    validation = ["p7", "v1", "t2"]  # t2 is also a test problem: dropped from validation
    config = DataConfig(source=_rows(tmp_path / "s.jsonl", source), eval_source=_rows(tmp_path / "t.jsonl", test),
                        validation_source=_rows(tmp_path / "v.jsonl", validation), fields=FieldMap(id="id"),
                        phase1_size=2, phase2_size=4, eval_size=4, validation_size=2)
    splits = make_splits(config, with_test=True)
    assert splits.report()["dropped"] == {
        "duplicates in eval_source": 1, "duplicates in validation_source": 0,
        "validation problems also in the test split": 1, "duplicates in source": 3,
        "source problems also in the test split": 2, "source problems also in the validation split": 1,
    }
    assert [e.problem for e in splits.test] == ["p5", "p6", "t1", "t2"]
    assert [e.problem for e in splits.validation] == ["p7", "v1"]
    training = {e.problem for e in splits.training}
    assert len(splits.training) == 6 and training <= {"p1", "p2", "p3", "p4", "p8", "p9"}
    with pytest.raises(ValueError, match="has 6 distinct examples but the splits ask for 7"):
        make_splits(DataConfig(source=config.source, eval_source=config.eval_source, validation_source=config.validation_source,
                               phase1_size=3, phase2_size=4, eval_size=4, validation_size=2))


def test_generated_source_gives_each_seed_its_own_unseen_problems():
    from sdzero_mlx.sources.demo import pretrained_problems

    config = DataConfig(source="demo://inverse", phase1_size=20, phase2_size=20, eval_size=30, validation_size=10)
    a, b = make_splits(config, with_test=True), make_splits(DataConfig(**{**config.__dict__, "seed": 1}), with_test=True)
    assert {e.problem for e in a.test}.isdisjoint({e.problem for e in b.test})  # 30 of ~19,500: no overlap drawn
    seen = pretrained_problems("inverse")
    assert all(e.problem not in seen for s in (a, b) for e in s.training + s.validation + s.test)
    assert make_splits(config, with_test=True) == a


def test_shipped_pretraining_sets_are_the_regenerated_ones(tmp_path):
    """Each base model ships the problem texts it was pretrained on; they must be what its build_info.json
    regenerates, else demo:// would leave out the wrong problems."""
    import gzip

    from sdzero_mlx.demo.app import TASKS, base_model_dir
    from sdzero_mlx.sources.demo import (
        PRETRAINED_FILE, pretrained_problems, regenerate_pretrained_problems, write_pretrained_problems,
    )

    for name in TASKS:
        regenerated = regenerate_pretrained_problems(name)
        assert len(regenerated) == 20_000
        assert pretrained_problems(name) == regenerated
        # the writer gives the shipped bytes (sorted, no timestamp): a rebuild leaves the file unchanged
        build = json.loads((base_model_dir(name) / "build_info.json").read_text())["config"]
        written = write_pretrained_problems(regenerated, tmp_path, build)
        assert written.read_bytes() == (base_model_dir(name) / PRETRAINED_FILE).read_bytes()
    lines = gzip.decompress(written.read_bytes()).decode().split("\n")
    assert lines[0].startswith("# build ") and len(lines[0]) == len("# build ") + 64
    assert lines[1:3] == sorted(regenerated)[:2] and len(lines) == 20_001


def test_interval_code_matches_hand_computation():
    low, high = seed_t_ci([0.2, 0.3, 0.4])  # mean 0.3, sd 0.1, t(0.975, 2) = 4.303
    assert (low, high) == pytest.approx((0.3 - 4.303 * 0.1 / math.sqrt(3), 0.3 + 4.303 * 0.1 / math.sqrt(3)))
    assert math.isnan(seed_t_ci([0.5])[0])
    # one seed, values 0 and 1: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles are 0 and 1; a second seed of all-ones halves the spread
    assert bootstrap_ci([[0.0, 1.0]]) == (0.0, 1.0)
    assert bootstrap_ci([[0.0, 1.0], [1.0, 1.0]]) == (0.5, 1.0)
    assert bootstrap_ci([[0.25, 0.25, 0.25]]) == (0.25, 0.25)
    # a difference is taken on the problems both were evaluated on: a 1 - 0 and b 0 - 0
    assert difference_record([{"a": 1.0, "b": 0.0, "c": 1.0}], [{"a": 0.0, "b": 0.0, "z": 1.0}])["per_seed"] == [0.5]
    rec = interval_record([{"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 1.0}])
    assert rec["per_seed"] == [0.5, 1.0] and rec["mean"] == 0.75 and (rec["ci_low"], rec["ci_high"]) == (0.5, 1.0)
    diff = difference_record([{"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.0}], [{"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 0.0}])
    assert diff["per_seed"] == [0.5, 0.0] and diff["diff_mean"] == 0.25
    assert diff["seed_diff_ci_low"] == pytest.approx(0.25 - 12.706 * math.sqrt(0.125) / math.sqrt(2))


def _recipe(root, model, **extra):
    write_data(root / "d.jsonl", 60)
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id"}, "phase1_size": 8, "phase2_size": 8,
                 "eval_size": 6, "validation_size": 5},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.7, "max_tokens": 10, "batch_size": 16},
        "collect": {"questions_per_batch": 8, "revisions": 1},
        "srt": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4},
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 4, "top_k": 8, "max_teacher_tokens": 128},
        "rft": {"questions_per_step": 2, "samples_per_question": 2},
        "eval": {"k": 2, "max_tokens": 10, "greedy": True, "revise": True},
        "optim": {"learning_rate": 1e-3},
        "compare": {"methods": ["base", "srt", "sd-zero", "rft"]},
        "run": {"output_dir": str(root / "run"), "seed": 0, "probe_every": 1, "probe_size": 4},
    } | extra
    (root / "r.yaml").write_text(yaml.safe_dump(raw))
    return root / "r.yaml"


def test_probe_reads_validation_never_test(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    recipe = load_recipe(_recipe(root, scripted_model_dir(tmp_path_factory)))
    splits = make_splits(recipe.data, with_test=True)
    probed = probe_examples(recipe)
    assert [e.id for e in probed] == [e.id for e in splits.validation[:4]]
    assert not {e.id for e in probed} & {e.id for e in splits.test}
    with pytest.raises(ValueError, match="run.probe_every > 0 reads the validation split"):
        load_recipe(root / "r.yaml", ["data.validation_size=0"])


def test_search_scores_on_validation_and_never_reads_the_test_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    path = _recipe(root, scripted_model_dir(tmp_path_factory))
    result = CliRunner().invoke(app, ["search", str(path), "--method", "rft", "--grid", "rft.optim.learning_rate=1e-3,1e-2",
                                      "--out", str(root / "s"), "--set", "compare.budget_generations=8"])
    assert result.exit_code == 0, result.output
    data = json.loads((root / "s" / "search.json").read_text())
    assert [p["overrides"] for p in data["points"]] == [["rft.optim.learning_rate=1e-3"], ["rft.optim.learning_rate=1e-2"]]
    recipe = load_recipe(path)
    splits = make_splits(recipe.data, with_test=True)
    for point in ("point-00", "point-01"):
        files = sorted(p.name for p in (root / "s" / point / "eval").iterdir())
        assert files == ["rft.validation.json", "rft.validation.sample.rows.jsonl"], files
        ids = [json.loads(line)["id"] for line in (root / "s" / point / "eval" / files[1]).read_text().splitlines()]
        assert ids == [e.id for e in splits.validation]
    best = max(data["points"], key=lambda p: p["validation_avg_at_k"])
    assert data["best"] == best


def test_sweep_writes_intervals_per_seed_with_their_own_test_problems(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    path = _recipe(root, scripted_model_dir(tmp_path_factory))
    result = CliRunner().invoke(app, ["sweep", str(path), "--seeds", "0,1", "--out", str(root / "w")])
    assert result.exit_code == 0, result.output
    data = json.loads((root / "w" / "sweep.json").read_text())
    assert data["seeds"] == [0, 1] and "own 6 test problems" in data["test_problems"]
    for label in ("base", "SRT", "SD-Zero", "RFT"):
        rec = data["methods"][label]["avg_at_k"]
        assert set(rec) == {"mean", "ci_low", "ci_high", "seed_ci_low", "seed_ci_high", "per_seed",
                            "seeds_problems_ci_low", "seeds_problems_ci_high"}
        assert len(rec["per_seed"]) == 2 and rec["ci_low"] <= rec["mean"] <= rec["ci_high"]
        assert rec["seeds_problems_ci_low"] <= rec["mean"] <= rec["seeds_problems_ci_high"]
        # the per-seed value is that seed's compare.json avg@k
        for i, seed in enumerate((0, 1)):
            compare = json.loads((root / "w" / f"seed-{seed}" / "compare.json").read_text())
            sample = next(r for r in compare["models"][label] if r["kind"] == "sample")
            assert rec["per_seed"][i] == pytest.approx(sample["avg_at_k"])
    pair = data["pairs"]["SD-Zero - base"]["avg_at_k"]
    assert pair["diff_mean"] == pytest.approx(data["methods"]["SD-Zero"]["avg_at_k"]["mean"] - data["methods"]["base"]["avg_at_k"]["mean"])
    tests = [{json.loads(line)["id"] for line in (root / "w" / f"seed-{s}" / "eval" / "base.sample.rows.jsonl").read_text().splitlines()}
             for s in (0, 1)]
    assert tests[0] != tests[1]  # data.seed follows the seed: each seed has its own test problems
    assert data["headline"] == "seeds_problems_ci" and set(data["intervals"]) == {"seeds_problems_ci", "seed_ci", "ci"}
    table = (root / "w" / "sweep.md").read_text()
    differences = table.split("Paired differences")[1].split("Second figures")[0]
    assert differences.count("| SD-Zero - ") == 3
    assert (root / "w" / "sweep.png").stat().st_size > 0
