"""compare.variants: a stage with overrides under its own name, as its own row, folder and budget line, sharing the
chain's collect and SRT (real compares on the scripted model), and refused with the fix named when malformed."""

import json

import pytest
import yaml
from matplotlib import image as mpimg
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.compare import run_compare
from sdzero_mlx.recipe import load_recipe, method_labels
from sdzero_mlx.fingerprint import model_fingerprint

from scripted import scripted_model_dir, write_data

runner = CliRunner()
PAPER = {"name": "SD-Zero (paper loss)", "stage": "distill", "set": ["distill.optim.kl_to_initial=0"]}
FAST_RFT = {"name": "RFT (lr 3e-3)", "stage": "rft", "set": ["rft.optim.learning_rate=3e-3"]}
METHODS = ["base", "srt", "distill", "rft", "SD-Zero (paper loss)", "RFT (lr 3e-3)"]


def _recipe(root, model, out, workers=1):
    write_data(root / "d.jsonl", 40)
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id"},
                 "phase1_size": 8, "phase2_size": 8, "eval_size": 4, "validation_size": 4},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.7, "max_tokens": 10, "batch_size": 16},
        "collect": {"questions_per_batch": 8, "revisions": 1},
        "srt": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4},
        # SD-Zero with a penalty to its starting model; its variant has the paper's loss (none)
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 4, "top_k": 8, "max_teacher_tokens": 128,
                    "optim": {"kl_to_initial": 1.0}},
        "rft": {"questions_per_step": 2, "samples_per_question": 2},
        "eval": {"k": 2, "max_tokens": 10, "greedy": False, "revise": False},
        "optim": {"learning_rate": 1e-3},
        "compare": {"methods": METHODS, "variants": [PAPER, FAST_RFT]},
        "run": {"output_dir": str(out), "seed": 0, "workers": workers, "probe_every": 1, "probe_size": 4},
    }
    path = root / f"r{workers}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One compare with both variants, in one process, into ROOT/seed-0 (so the sweep's tables can read it)."""
    root = tmp_path_factory.mktemp("variants")
    path = _recipe(root, scripted_model_dir(tmp_path_factory), root / "seed-0")
    result = runner.invoke(app, ["compare", str(path)])
    assert result.exit_code == 0, result.output
    return root, path, root / "seed-0", result.output, json.loads((root / "seed-0" / "compare.json").read_text())


def test_a_variant_is_its_own_row_folder_and_budget_sharing_collect_and_srt(compared):
    root, _, run, output, data = compared
    assert data["methods"] == ["base", "srt", "distill", "rft", "sd-zero-paper-loss", "rft-lr-3e-3"]
    assert list(data["models"]) == ["base", "SRT", "SD-Zero", "RFT", "SD-Zero (paper loss)", "RFT (lr 3e-3)"]
    # collect and SRT ran once, in the chain's folders; each variant trained once, in its own folder
    assert output.count("collect: batch 1/1") == 1 and output.count("sd-zero-paper-loss: its own steps") == 1
    assert "rft-lr-3e-3: budget 24 generations" in output
    for m in ("distill", "sd-zero-paper-loss", "rft", "rft-lr-3e-3"):
        assert (run / m / "done").is_file() and (run / "eval" / f"{m}.json").is_file(), m
        assert len((run / m / "metrics.jsonl").read_text().splitlines()) >= 2, m
    assert not (run / "sd-zero-paper-loss" / "collect").exists()
    # the variant of distill starts from the chain's SRT model, as distill does; its record holds its override
    made = {m: json.loads((run / m / "run.json").read_text())["made_by"] for m in ("distill", "sd-zero-paper-loss")}
    assert made["distill"]["inputs"]["model"] == made["sd-zero-paper-loss"]["inputs"]["model"] \
        == model_fingerprint(run / "srt" / "model")
    assert made["distill"]["settings"]["distill.optim.kl_to_initial"] == 1.0
    assert made["sd-zero-paper-loss"]["settings"]["distill.optim.kl_to_initial"] == 0.0
    assert {k: v for k, v in made["distill"]["settings"].items() if k != "distill.optim.kl_to_initial"} == \
        {k: v for k, v in made["sd-zero-paper-loss"]["settings"].items() if k != "distill.optim.kl_to_initial"}
    # the penalty (0 at step 1, where the student is its starting model) changes step 2: other adapters
    adapters = lambda m: (run / m / "adapters" / "adapters.safetensors").read_bytes()  # noqa: E731
    assert adapters("distill") != adapters("sd-zero-paper-loss") and adapters("rft") != adapters("rft-lr-3e-3")
    # budgets: collect's 16 generations + 2 distill steps x 4 for both SD-Zero rows; the RFT rows at the match
    b = data["budgets"]
    assert b["SD-Zero"]["generations"] == b["SD-Zero (paper loss)"]["generations"] == 16 + 2 * 4 == data["budget_generations"]
    assert b["RFT"]["generations"] == b["RFT (lr 3e-3)"]["generations"] == (24 // 4) * 4
    assert b["SD-Zero (paper loss)"]["trained_tokens"] > b["SRT"]["trained_tokens"]  # SRT's, then its own
    table = (run / "compare.md").read_text()
    assert "| SD-Zero (paper loss) | 4 |" in table and "| RFT (lr 3e-3) | 4 |" in table
    assert mpimg.imread(run / "compare.png").ndim == 3


def test_a_rerun_reuses_a_variant_and_a_changed_override_is_refused(compared):
    root, path, run, _, _ = compared
    again = runner.invoke(app, ["compare", str(path)])
    assert again.exit_code == 0, again.output
    assert "sd-zero-paper-loss: done; reusing it" in again.output and "rft-lr-3e-3: done; reusing it" in again.output
    assert "step 1/" not in again.output
    # selected alone by name: the chain's SD-Zero is neither trained nor evaluated
    alone = runner.invoke(app, ["compare", str(path), "--methods", "SD-Zero (paper loss)"])
    assert alone.exit_code == 0, alone.output
    assert "eval sd-zero-paper-loss: done, skipped" in alone.output and "eval distill" not in alone.output
    # the record holds the override: another value is another model
    other = [{**PAPER, "set": ["distill.optim.kl_to_initial=0.5"]}, FAST_RFT]
    refused = runner.invoke(app, ["compare", str(path), "--set", f"compare.variants={json.dumps(other)}"])
    assert refused.exit_code == 2, refused.output
    assert f"{run / 'sd-zero-paper-loss'} was trained from other settings" in refused.output
    assert "distill.optim.kl_to_initial: 0.0 -> 0.5" in refused.output


def test_the_sweep_tables_give_a_variant_its_row_and_its_difference(compared):
    root, path, _, _, _ = compared
    from sdzero_mlx.sweep import aggregate, plot_sweep, sweep_table

    recipe = load_recipe(path)
    data = aggregate(recipe, root, [0], list(recipe.compare.methods), method_labels(recipe))
    assert "SD-Zero (paper loss)" in data["methods"] and "SD-Zero - SD-Zero (paper loss)" in data["pairs"]
    pair = data["pairs"]["SD-Zero - SD-Zero (paper loss)"]["avg_at_k"]
    rows = data["methods"]
    assert pair["diff_mean"] == pytest.approx(rows["SD-Zero"]["avg_at_k"]["mean"] - rows["SD-Zero (paper loss)"]["avg_at_k"]["mean"])
    assert pair["seeds_problems_diff_ci_low"] is None  # one seed: no interval over seeds
    assert "| SD-Zero - SD-Zero (paper loss) | " in sweep_table(data, 2)
    plot_sweep(data, root / "sweep.png")
    assert mpimg.imread(root / "sweep.png").ndim == 3


def test_two_workers_train_the_variants_as_one_process_does(compared, tmp_path_factory):
    root, _, run, _, one = compared
    path = _recipe(root, scripted_model_dir(tmp_path_factory), root / "two", workers=2)
    lines = []
    two = run_compare(load_recipe(path), log=lines.append)
    assert two["budgets"] == one["budgets"] and two["models"] == one["models"]
    for m in ("distill", "sd-zero-paper-loss", "rft", "rft-lr-3e-3"):
        assert (root / "two" / m / "adapters" / "adapters.safetensors").read_bytes() == \
            (run / m / "adapters" / "adapters.safetensors").read_bytes(), m
        assert (root / "two" / "eval" / f"{m}.sample.rows.jsonl").read_text() == \
            (run / "eval" / f"{m}.sample.rows.jsonl").read_text(), m
    # the variant of distill started after srt, the RFT variant with its matched budget
    srt_steps = [i for i, line in enumerate(lines) if line.startswith("srt") and ": step " in line]
    assert srt_steps and lines.index("sd-zero-paper-loss: its own steps") > max(srt_steps)
    assert "rft-lr-3e-3: budget 24 generations" in lines


def test_a_search_tunes_a_variant_of_distill_on_the_shared_chain(compared):
    root, path, _, _, _ = compared
    result = runner.invoke(app, ["search", str(path), "--method", "SD-Zero (paper loss)", "--grid",
                                 "distill.optim.learning_rate=1e-3,3e-3", "--out", str(root / "s")])
    assert result.exit_code == 0, result.output
    data = json.loads((root / "s" / "search.json").read_text())
    assert data["method"] == "sd-zero-paper-loss" and data["label"] == "SD-Zero (paper loss)"
    for point in ("point-00", "point-01"):
        assert (root / "s" / point / "sd-zero-paper-loss" / "done").is_file()
        assert not (root / "s" / point / "distill").exists()  # the chain's own SD-Zero is not trained at a point
    srt_first_steps = [line for line in result.output.splitlines() if line.startswith("srt") and ": step 1/" in line]
    assert len(srt_first_steps) == 1  # SRT once, in chain/
    refused = runner.invoke(app, ["search", str(path), "--method", "sd-zero-paper-loss", "--grid",
                                  "distill.optim.kl_to_initial=0,1", "--out", str(root / "s2")])
    assert refused.exit_code == 2 and "sets these itself" in refused.output


def test_a_variant_of_sdft_may_set_the_distill_fields_sdft_reads(tmp_path):
    write_data(tmp_path / "d.jsonl", 8)
    forward = {"name": "SDFT (forward KL)", "stage": "sdft", "set": ["distill.kl=forward", "distill.top_k=0"]}
    raw = {"model": {"path": "m"}, "data": {"source": str(tmp_path / "d.jsonl")}, "compare": {"variants": [forward]}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "r.yaml")
    from sdzero_mlx.recipe import variant_recipe

    own = variant_recipe(recipe, recipe.compare.variants[0])
    assert (own.distill.kl, own.distill.top_k, own.sdft) == ("forward", 0, recipe.sdft)


@pytest.mark.parametrize("variants, message", [
    ([{"name": "x", "stage": "srt", "set": ["srt.epochs=2"]}], "stage 'srt' is not one a variant can train"),
    ([PAPER, {**FAST_RFT, "name": "sd zero paper loss"}], "its id 'sd-zero-paper-loss' is also that of"),
    ([{**PAPER, "name": "RFT"}], "taken by a stage or a run folder"),
    ([{**PAPER, "set": ["data.seed=3"]}], "every row starts from the same model on the same problems"),
    ([{**PAPER, "set": ["optim.kl_to_initial=0"]}], "write distill.optim.kl_to_initial"),
    ([{**FAST_RFT, "set": ["eval.k=8"]}], "rft does not read it"),
    ([{**FAST_RFT, "set": ["rft.steps=3"]}], "set by the matched budget"),
    # SDFT reads distill's loss, not its steps: a variant setting them would train SDFT's model again
    ([{"name": "SDFT (x)", "stage": "sdft", "set": ["distill.steps=3"]}], "sdft does not read it"),
    ([{**PAPER, "set": ["distill.optim.kl_to_initial=-1"]}], "'SD-Zero (paper loss)': optim.kl_to_initial must be"),
    ([{**PAPER, "set": []}], "no overrides"),
])
def test_a_malformed_variant_is_refused_with_the_fix(tmp_path, variants, message):
    write_data(tmp_path / "d.jsonl", 8)
    raw = {"model": {"path": "m"}, "data": {"source": str(tmp_path / "d.jsonl")}, "compare": {"variants": variants}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(tmp_path / "r.yaml")
    # --methods takes a variant's name or id, and nothing unknown
    ok = dict(raw, compare={"variants": [PAPER], "methods": ["base", "SD-Zero (paper loss)"]})
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(ok))
    assert load_recipe(tmp_path / "ok.yaml").compare.methods == ("base", "sd-zero-paper-loss")
    with pytest.raises(ValueError, match=r"unknown \['paper'\]"):
        load_recipe(tmp_path / "ok.yaml", ["compare.methods=[base, paper]"])
