"""Run plots are real PNGs with one line per run (two on the throughput panel), read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mpimg
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.plots import plot_runs


def write_run(path, steps, reward_slope, sampled=True):
    path.mkdir(parents=True)
    rows = []
    for s in range(1, steps + 1):
        row = {"step": s, "loss": 1.0 / s, "trained_tokens_per_s": 200.0, "weight_change": 1e-3 / s}
        if sampled:  # an SRT-like run samples nothing: no reward, length or sampling speed
            row |= {"reward": reward_slope * s, "response_tokens": 100 - s, "sampled_tokens_per_s": 50.0 + s}
        if s % 2 == 0:
            row["probe_accuracy"] = 0.1 * s
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_runs_overlays_runs(tmp_path):
    a = write_run(tmp_path / "a", 5, 0.1)
    b = write_run(tmp_path / "b", 3, 0.2)
    c = write_run(tmp_path / "srt", 4, 0.05, sampled=False)
    fig = plot_runs([a, b, c], tmp_path / "runs.png")
    pixels = mpimg.imread(tmp_path / "runs.png")
    assert pixels.shape[:2] == (1000, 1100)  # 11 x 10 in at 100 dpi
    assert pixels[..., :3].std() > 0.05  # something was drawn
    reward, loss, length, entropy, change, speed = fig.axes
    assert len(loss.lines) == 3 and len(change.lines) == 3
    assert len(length.lines) == 2  # the SRT-like run samples nothing
    assert len(reward.lines) == 2 + 3  # reward for the sampling runs, probe accuracy for all three
    assert len(entropy.lines) == 0  # no run logged entropy
    assert len(speed.lines) == 2 * 2 + 1  # sampled and trained per sampling run, trained for SRT
    np.testing.assert_allclose(reward.lines[2].get_ydata(), [0.2, 0.4, 0.6])  # run b's reward
    np.testing.assert_allclose(reward.lines[1].get_ydata(), [0.2, 0.4])  # run a's probe: steps 2 and 4
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3, 4, 5]
    assert change.get_yscale() == "log"
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["a", "b", "srt"]


def test_plot_command(tmp_path):
    a = write_run(tmp_path / "a", 2, 0.5)
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["plot", str(a), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mpimg.imread(out).shape[:2] == (1000, 1100)
    missing = CliRunner().invoke(app, ["plot", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code == 2 and "metrics.jsonl does not exist" in missing.output


def test_empty_run_names_the_problem(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="has not finished a step"):
        plot_runs([tmp_path / "e"], tmp_path / "x.png")
