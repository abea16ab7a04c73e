"""KL maths on vocabularies small enough to check by hand."""

import math

import mlx.core as mx
import pytest

from sdzero_mlx.config import KlSettings
from sdzero_mlx.loss import (
    distill_token_kl, forward_kl, log_softmax, masked_sum, mixed_kl, reverse_kl, teacher_targets,
)


def logp(probs):
    return mx.log(mx.array(probs, dtype=mx.float32))


def test_two_token_kl_by_hand():
    s, t = logp([0.5, 0.5]), logp([0.9, 0.1])
    # KL(t || s) = 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5)
    fwd = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    # KL(s || t) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1)
    rev = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert forward_kl(s, t).item() == pytest.approx(fwd, rel=1e-5)  # 0.3681
    assert reverse_kl(s, t).item() == pytest.approx(rev, rel=1e-5)  # 0.5108
    assert mixed_kl(s, t, 0.25).item() == pytest.approx(0.25 * fwd + 0.75 * rev, rel=1e-5)
    assert fwd == pytest.approx(0.36806, abs=1e-5) and rev == pytest.approx(0.51083, abs=1e-5)


def test_three_token_topk_renormalises():
    # teacher logits give probs (0.6, 0.3, 0.1); top-2 renormalised -> (2/3, 1/3)
    teacher = mx.log(mx.array([[[0.6, 0.3, 0.1]]]))
    student = mx.log(mx.array([[[0.2, 0.2, 0.6]]]))
    targets = teacher_targets(teacher, top_k=2)
    got = sorted(mx.exp(targets.logp).reshape(-1).tolist(), reverse=True)
    assert got == pytest.approx([2 / 3, 1 / 3], rel=1e-5)
    assert sorted(targets.indices.reshape(-1).tolist()) == [0, 1]
    # student on {0, 1} renormalised: (0.5, 0.5); reverse KL = 0.5 ln(0.5/(2/3)) + 0.5 ln(0.5/(1/3))
    expected = 0.5 * math.log(0.75) + 0.5 * math.log(1.5)
    assert distill_token_kl(student, targets, KlSettings("reverse", 0.5, 2)).item() == pytest.approx(expected, rel=1e-5)
    full = teacher_targets(teacher, top_k=0)
    assert full.indices is None
    # full vocabulary reverse KL: 0.2 ln(0.2/0.6) + 0.2 ln(0.2/0.3) + 0.6 ln(0.6/0.1)
    expected_full = 0.2 * math.log(1 / 3) + 0.2 * math.log(2 / 3) + 0.6 * math.log(6)
    assert distill_token_kl(student, full, KlSettings("reverse", 0.5, 0)).item() == pytest.approx(expected_full, rel=1e-5)


def test_kl_zero_when_distributions_match():
    logits = mx.array([[[1.0, -2.0, 0.5, 3.0]]])
    for kind in ("forward", "reverse", "mixed"):
        assert distill_token_kl(logits, teacher_targets(logits, 2), KlSettings(kind, 0.5, 2)).item() == pytest.approx(0.0, abs=1e-7)


def test_padding_contributes_nothing():
    values = mx.array([[1.0, 2.0, float("nan")], [4.0, float("inf"), 0.0]])
    mask = mx.array([[1, 1, 0], [1, 0, 0]])
    assert masked_sum(values, mask).item() == 7.0


def test_gradient_reaches_student_only():
    student = mx.array([[[0.1, 0.2, 0.3]]])
    teacher = mx.array([[[1.0, 0.0, -1.0]]])

    def loss(s, t):
        return distill_token_kl(s, teacher_targets(t, 0), KlSettings("reverse", 0.5, 0)).sum()

    g_student, g_teacher = mx.grad(loss, argnums=(0, 1))(student, teacher)
    assert mx.abs(g_student).sum().item() > 1e-3
    assert mx.abs(g_teacher).sum().item() == 0.0


def test_log_softmax_is_float32():
    assert log_softmax(mx.array([1.0, 2.0], dtype=mx.bfloat16)).dtype == mx.float32
