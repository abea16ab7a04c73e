"""The doctor's estimate knows phase 2's loss option: its memory per scored token (doctor.cost.loss_footprint)
and what it adds to distill's peak at answers longer than the doctor measured, by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sdzero_mlx.config import KlSettings
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.doctor.cost import (
    LossFootprint, RunRates, StageEstimate, StepCost, estimate_run, loss_footprint, memory_warning,
)
from sdzero_mlx.platform.device import MemoryLimit

V = 50_000


def test_footprint_per_option_by_hand():
    assert loss_footprint(KlSettings("reverse", 0.5, 64), V) == LossFootprint(held=8 * 64, student=0)
    assert loss_footprint(KlSettings("reverse", 0.5, 64, top_k_from="student"), V) == LossFootprint(8 * 64, 0)
    assert loss_footprint(KlSettings("jsd", 0.5, 64), V) == LossFootprint(8 * 64, 0)  # k-sized arrays only
    assert loss_footprint(KlSettings("reverse", 0.5, 64, tail=True), V) == LossFootprint(8 * 64 + 4, 4 * V)
    assert loss_footprint(KlSettings("k1", 0.5, 64), V) == LossFootprint(8, 4 * V)
    assert loss_footprint(KlSettings("k3", 0.5, 0), V) == LossFootprint(8, 4 * V)  # k1 / k3 read no support
    assert loss_footprint(KlSettings("forward", 0.5, 0), V) == LossFootprint(4 * V, 2 * 4 * V)
    assert loss_footprint(KlSettings("reverse", 0.5, 0), V) == LossFootprint(4 * V, 3 * 4 * V)
    assert loss_footprint(KlSettings("jsd", 0.5, 0), V) == LossFootprint(4 * V, 6 * 4 * V)
    assert loss_footprint(KlSettings("reverse", 0.5, 64), 50) == LossFootprint(4 * 50, 3 * 4 * 50)  # top-k >= V: all of it


def distill_peak(recipe, kl_overrides: dict, vocab: int = V, answer_tokens: float = 256) -> float:
    recipe = replace(recipe, distill=replace(recipe.distill, **kl_overrides))
    rates = RunRates(seconds_per_sampled_token=0.01, answer_tokens=answer_tokens, revision_tokens=20, accuracy=0.5,
                     correction_rate=0.2, rephrase_rate=0.8, distinct_share=1.0, sampling_peak_gb=0.5, load_seconds=1.0,
                     vocab_size=vocab)
    steps = {"srt": StepCost("srt", 2.0, 1.0), "distill": StepCost("distill", 3.0, 0.7)}
    return {s.name: s for s in estimate_run(recipe, rates, steps, n_solutions=0)}["distill"].peak_memory_gb


def test_distill_peak_moves_with_the_loss_option(tiny_recipe):
    # 8 questions a step in micro-batches of 4; the doctor's answers were 256 tokens, the recipe allows 512:
    # the loss's memory for 256 more tokens per answer is added to the measured 0.7 GB
    recipe = load_recipe(tiny_recipe, ["distill.questions_per_step=8", "distill.micro_batch_size=4",
                                       "sampling.max_tokens=512", "distill.max_teacher_tokens=1200", "compare.methods=[base,srt,distill]", "run.probe_every=0"])
    got = {name: distill_peak(recipe, kl) for name, kl in {
        "top-64": {"kl": "reverse", "top_k": 64},
        "k1": {"kl": "k1"},
        "top-64 tail": {"kl": "reverse", "top_k": 64, "tail": True},
        "full": {"kl": "reverse", "top_k": 0},
        "jsd full": {"kl": "jsd", "top_k": 0},
    }.items()}
    # top-64: 8 questions x 256 tokens x 512 bytes of targets = 1.05 MB, no V-sized student arrays
    assert got["top-64"] == pytest.approx(0.7 + 8 * 256 * 512 / 1e9)
    # k1: 8 bytes of targets per token, but the logits of 4 x 256 student tokens: 4 x 256 x 200 kB = 0.205 GB
    assert got["k1"] == pytest.approx(0.7 + (8 * 256 * 8 + 4 * 256 * 4 * V) / 1e9)
    assert got["top-64 tail"] == pytest.approx(0.7 + (8 * 256 * 516 + 4 * 256 * 4 * V) / 1e9)
    # full vocabulary: 8 x 256 x 200 kB of targets (0.41 GB) + 3 arrays of 4 x 256 student tokens (0.61 GB)
    assert got["full"] == pytest.approx(0.7 + (8 * 256 * 4 * V + 3 * 4 * 256 * 4 * V) / 1e9)
    assert got["full"] == pytest.approx(0.7 + 1.024)
    assert got["jsd full"] == pytest.approx(0.7 + 0.4096 + 1.2288)
    assert got["top-64"] < got["k1"] < got["top-64 tail"] < got["full"] < got["jsd full"]
    # a group of 2 answers per question: 16 answers' targets a step, the same micro-batch of 4
    grouped = distill_peak(recipe, {"kl": "reverse", "top_k": 0, "teacher_context": "sibling", "group_size": 2})
    assert grouped == pytest.approx(0.7 + (16 * 256 * 4 * V + 3 * 4 * 256 * 4 * V) / 1e9)


def test_no_loss_growth_without_a_vocabulary_or_longer_answers(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["sampling.max_tokens=512", "distill.max_teacher_tokens=1200", "compare.methods=[base,srt,distill]", "run.probe_every=0"])
    assert distill_peak(recipe, {"top_k": 0}, vocab=0) == pytest.approx(0.7)  # an older report: no vocabulary
    assert distill_peak(recipe, {"top_k": 0}, answer_tokens=512) == pytest.approx(0.7)  # already at max_tokens


def test_memory_advice_names_the_loss_fields():
    stages = [StageEstimate("distill", "2 steps", 1.0, 7.0)]
    text = memory_warning(stages, MemoryLimit(6.0, "this test's limit"))
    assert "distill.top_k > 0" in text and "distill.tail: false" in text and "jsd" in text
