"""Run plots are real PNGs with one line per run (two on the throughput panel), read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mpimg
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.plots import plot_runs


def write_run(path, steps, reward_slope, with_kl=True):
    path.mkdir(parents=True)
    rows = []
    for s in range(1, steps + 1):
        row = {"step": s, "reward": reward_slope * s, "response_tokens": 100 - s,
               "sampled_tokens_per_s": 50.0 + s, "trained_tokens_per_s": 200.0}
        if with_kl:
            row["kl"] = 1.0 / s
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_runs_overlays_runs(tmp_path):
    a = write_run(tmp_path / "a", 5, 0.1)
    b = write_run(tmp_path / "b", 3, 0.2)
    c = write_run(tmp_path / "srt", 4, 0.05, with_kl=False)
    fig = plot_runs([a, b, c], tmp_path / "runs.png")
    pixels = mpimg.imread(tmp_path / "runs.png")
    assert pixels.shape[:2] == (700, 1100)  # 11 x 7 in at 100 dpi
    assert pixels[..., :3].std() > 0.05  # something was drawn
    reward, kl, length, speed = fig.axes
    assert len(reward.lines) == 3 and len(length.lines) == 3
    assert len(kl.lines) == 2  # the SRT-like run has no KL
    assert len(speed.lines) == 6  # sampled and trained per run
    np.testing.assert_allclose(reward.lines[1].get_ydata(), [0.2, 0.4, 0.6])
    assert list(kl.lines[0].get_xdata()) == [1, 2, 3, 4, 5]
    assert [t.get_text() for t in reward.get_legend().get_texts()] == ["a", "b", "srt"]


def test_plot_command(tmp_path):
    a = write_run(tmp_path / "a", 2, 0.5)
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["plot", str(a), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mpimg.imread(out).shape[:2] == (700, 1100)
    missing = CliRunner().invoke(app, ["plot", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code == 2 and "metrics.jsonl does not exist" in missing.output


def test_empty_run_names_the_problem(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="has not finished a step"):
        plot_runs([tmp_path / "e"], tmp_path / "x.png")
