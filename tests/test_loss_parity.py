"""Phase 2's loss options against the peers' formulas, written out in float64 NumPy as each peer writes
them, on small hand-made logits (3 positions, a 6-token vocabulary):

- TRL's generalized JSD (GKDTrainer / DistillationTrainer.generalized_jsd_loss): beta 0 -> F.kl_div with
  the teacher as target (forward KL), beta 1 -> the student as target (reverse KL), otherwise the
  mixture log m = logsumexp(log p_s + log(1 - beta), log p_t + log beta) and
  beta kl_div(m, t) + (1 - beta) kl_div(m, s);
- SDPO's top-k loss with its tail bucket (compute_self_distillation_loss: the student's top-k ids for
  both models, full-vocabulary log-probabilities there, add_tail = log(-expm1(min(logsumexp, -1e-7)))),
  and TRL's top-k with add_tail (the teacher's ids at beta 0, the student's at beta 1);
- verl's sampled-token estimators (kl_penalty): k1 = logprob - ref_logprob, k3 ("low_var_kl") =
  exp(ref - logprob) - (ref - logprob) - 1, the student as logprob and the teacher as ref.

Ours runs in float32 (loss.py computes in float32), so values agree to rtol 1e-5 and gradients (MLX's
against a central finite difference of the float64 reference, step 1e-6) to 2e-5 absolute.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from sdzero_mlx.config import KlSettings
from sdzero_mlx.loss import (
    distill_targets, distill_token_kl, forward_kl, generalized_jsd, log_softmax, reverse_kl, student_support,
    token_divergence, with_tail,
)

# (positions, vocabulary): distinct values, so every top-k is unambiguous and stays so under a 1e-6 step
STUDENT = np.array([[2.0, 1.0, 0.5, -1.0, 0.0, -2.0],
                    [0.3, -0.2, 1.7, 0.9, -1.1, 0.4],
                    [-0.5, 2.5, 0.0, 0.1, -0.3, 1.2]])
TEACHER = np.array([[0.5, 2.0, 0.1, -0.5, 1.0, -1.5],
                    [1.2, 0.4, -0.3, 2.2, 0.0, -0.8],
                    [0.9, 0.2, -1.0, 1.5, 0.3, -0.2]])
TOKENS = np.array([0, 3, 1])  # a "sampled" token per position
VALUE_RTOL, GRAD_ATOL, FD_STEP = 1e-5, 2e-5, 1e-6


# -- the peers' formulas, float64 ------------------------------------------------------------------


def np_logsumexp(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_log_softmax(x):
    return x - np_logsumexp(x)


def kl_div(input_lp, target_lp):
    """torch's F.kl_div(input, target, reduction='none', log_target=True) summed over the last axis:
    KL(target || input)."""
    return (np.exp(target_lp) * (target_lp - input_lp)).sum(axis=-1)


def trl_jsd(s_lp, t_lp, beta):
    if beta == 0:
        return kl_div(s_lp, t_lp)
    if beta == 1:
        return kl_div(t_lp, s_lp)
    m = np_logsumexp(np.stack([s_lp + math.log(1 - beta), t_lp + math.log(beta)]), axis=0)[0]
    return beta * kl_div(m, t_lp) + (1 - beta) * kl_div(m, s_lp)


def add_tail(lp):
    """SDPO's (and TRL's _add_tail_bucket): log(1 - sum exp(lp)), the log-sum clamped to -1e-7."""
    log_s = np.minimum(np_logsumexp(lp), -1e-7)
    return np.concatenate([lp, np.log(-np.expm1(log_s))], axis=-1)


def topk_tail_loss(s_logits, t_logits, k, beta, ids_from):
    """Top-k on one model's ids, full-vocabulary log-probabilities there plus the tail, TRL's JSD."""
    chooser = s_logits if ids_from == "student" else t_logits
    ids = np.argsort(-chooser, axis=-1)[:, :k]
    s_lp = np.take_along_axis(np_log_softmax(s_logits), ids, -1)
    t_lp = np.take_along_axis(np_log_softmax(t_logits), ids, -1)
    return trl_jsd(add_tail(s_lp), add_tail(t_lp), beta)


def verl_k1(logprob, ref_logprob):
    return logprob - ref_logprob


def verl_k3(logprob, ref_logprob):
    kl = ref_logprob - logprob
    return np.exp(kl) - kl - 1


def finite_difference(f, x):
    """d sum(f(x)) / dx by central differences, float64."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += FD_STEP
        down[i] -= FD_STEP
        grad[i] = (f(up).sum() - f(down).sum()) / (2 * FD_STEP)
    return grad


# -- ours ------------------------------------------------------------------------------------------


def ours(student: np.ndarray, kl: KlSettings, teacher: np.ndarray = TEACHER) -> mx.array:
    """Per-position loss (3,) as distill computes it: targets from the teacher's logits, then the student's side."""
    s = mx.array(student[None], dtype=mx.float32)
    targets = distill_targets(mx.array(teacher[None], dtype=mx.float32), mx.array(TOKENS[None]), kl,
                              student_support(s, kl))
    return distill_token_kl(s, targets, kl)[0]


def our_gradient(kl: KlSettings) -> np.ndarray:
    return np.array(mx.grad(lambda s: ours_from(s, kl).sum())(mx.array(STUDENT, dtype=mx.float32)))


def ours_from(s: mx.array, kl: KlSettings) -> mx.array:
    targets = distill_targets(mx.array(TEACHER[None], dtype=mx.float32), mx.array(TOKENS[None]), kl,
                              student_support(mx.stop_gradient(s[None]), kl))
    return distill_token_kl(s[None], targets, kl)[0]


# -- generalized JSD -------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 1.0])
def test_generalized_jsd_equals_trls_over_the_full_vocabulary(beta):
    want = trl_jsd(np_log_softmax(STUDENT), np_log_softmax(TEACHER), beta)
    got = np.array(ours(STUDENT, KlSettings("jsd", 0.5, 0, beta=beta)))
    np.testing.assert_allclose(got, want, rtol=VALUE_RTOL)
    if beta != 0.5:  # beta and 1 - beta differ on these asymmetric distributions: a swapped beta cannot pass
        assert np.abs(trl_jsd(np_log_softmax(STUDENT), np_log_softmax(TEACHER), 1 - beta) - want).max() > 1e-2


def test_jsd_ends_are_forward_and_reverse_kl_and_its_middle_is_by_hand():
    s, t = mx.log(mx.array([0.5, 0.5])), mx.log(mx.array([0.9, 0.1]))
    assert generalized_jsd(s, t, 0.0).item() == pytest.approx(forward_kl(s, t).item(), rel=1e-6)  # 0.3681
    assert generalized_jsd(s, t, 1.0).item() == pytest.approx(reverse_kl(s, t).item(), rel=1e-6)  # 0.5108
    # beta 0.5: m = (0.7, 0.3); 0.5 KL(t || m) + 0.5 KL(s || m)
    kl_t = 0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    kl_s = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    assert generalized_jsd(s, t, 0.5).item() == pytest.approx(0.5 * kl_t + 0.5 * kl_s, rel=1e-5)
    assert 0.5 * kl_t + 0.5 * kl_s == pytest.approx(0.10175, abs=1e-5)
    # beta 0.25 weighs KL(s || m) by 0.75, m = 0.25 p_t + 0.75 p_s = (0.6, 0.4)
    kl_t = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)
    kl_s = 0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4)
    assert generalized_jsd(s, t, 0.25).item() == pytest.approx(0.25 * kl_t + 0.75 * kl_s, rel=1e-5)


@pytest.mark.parametrize("beta", [0.25, 0.5])
def test_generalized_jsd_gradient_equals_trls_finite_difference(beta):
    want = finite_difference(lambda s: trl_jsd(np_log_softmax(s), np_log_softmax(TEACHER), beta), STUDENT)
    np.testing.assert_allclose(our_gradient(KlSettings("jsd", 0.5, 0, beta=beta)), want, atol=GRAD_ATOL)


# -- the tail bucket -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,beta,ids_from", [("reverse", 1.0, "student"), ("jsd", 0.5, "student"),
                                                ("forward", 0.0, "teacher"), ("jsd", 0.3, "teacher")])
def test_top_k_with_tail_equals_sdpo_and_trl(kind, beta, ids_from):
    # SDPO: the student's ids, alpha (= TRL's beta) 0.5 by default; TRL: the teacher's ids at beta 0, the student's at 1
    kl = KlSettings(kind, 0.5, 3, beta=beta, top_k_from=ids_from, tail=True)
    want = topk_tail_loss(STUDENT, TEACHER, 3, beta, ids_from)
    np.testing.assert_allclose(np.array(ours(STUDENT, kl)), want, rtol=VALUE_RTOL)
    # the tail carries real mass here: renormalising over the 3 ids instead gives another loss
    renormalised = KlSettings(kind, 0.5, 3, beta=beta, top_k_from=ids_from, tail=False)
    assert np.abs(np.array(ours(STUDENT, renormalised)) - want).max() > 1e-2


@pytest.mark.parametrize("kind,beta,ids_from", [("reverse", 1.0, "student"), ("forward", 0.0, "teacher"),
                                                ("jsd", 0.5, "student")])
def test_tail_gradient_equals_the_references_finite_difference(kind, beta, ids_from):
    want = finite_difference(lambda s: topk_tail_loss(s, TEACHER, 3, beta, ids_from), STUDENT)
    got = our_gradient(KlSettings(kind, 0.5, 3, beta=beta, top_k_from=ids_from, tail=True))
    np.testing.assert_allclose(got, want, atol=GRAD_ATOL)
    assert np.abs(want).max() > 1e-2  # a gradient to compare, on every position
    # the gradient reaches logits outside the top-3 too, through the tail's share of the mass
    ids = np.argsort(-(STUDENT if ids_from == "student" else TEACHER), axis=-1)[:, 3:]
    assert np.abs(np.take_along_axis(got, ids, -1)).min() > 1e-4


def test_tail_by_hand_and_its_clamp():
    got = with_tail(mx.log(mx.array([0.6, 0.3])))
    np.testing.assert_allclose(np.exp(np.array(got)), [0.6, 0.3, 0.1], rtol=1e-5)
    # all the mass inside the support: the clamp keeps the tail's log finite, log(1 - exp(-1e-7)) ~ log(1e-7)
    full = mx.log(mx.array([0.6, 0.4]))
    tail = with_tail(full)[-1].item()
    assert tail == pytest.approx(float(add_tail(np.log(np.array([0.6, 0.4])))[-1]), abs=0.05)
    assert tail == pytest.approx(math.log(1e-7), abs=0.05)  # -16.1, float32's rounding of 1 - 1e-7 aside
    grad = mx.grad(lambda x: with_tail(x)[-1])(full)
    assert np.isfinite(np.array(grad)).all()  # no gradient through the clamp, and no NaN


# -- sampled-token estimators ----------------------------------------------------------------------


def test_k1_and_k3_are_verls_on_the_sampled_token():
    s_lp = np.take_along_axis(np_log_softmax(STUDENT), TOKENS[:, None], -1)[:, 0]
    t_lp = np.take_along_axis(np_log_softmax(TEACHER), TOKENS[:, None], -1)[:, 0]
    np.testing.assert_allclose(np.array(ours(STUDENT, KlSettings("k1", 0.5, 64))), verl_k1(s_lp, t_lp), rtol=VALUE_RTOL)
    np.testing.assert_allclose(np.array(ours(STUDENT, KlSettings("k3", 0.5, 64))), verl_k3(s_lp, t_lp), rtol=VALUE_RTOL)


N_SAMPLES = 200_000
SE_TOLERANCE = 5.0  # |sample mean - exact| <= 5 standard errors of the sample mean: fails by chance ~1 in 1.7 million


def sampled(kind: str, position: int = 0):
    """N tokens drawn from the student's distribution at one position, and our loss's per-sample values
    and per-sample gradients w.r.t. the student's logits there. The gradient of each sample is the
    gradient of `kind`'s loss at that token (k1: its score-function form; k3: itself)."""
    rng = np.random.default_rng(0)
    p_s = np.exp(np_log_softmax(STUDENT[position]))
    y = rng.choice(len(p_s), size=N_SAMPLES, p=p_s)
    s_logits, t_logits = mx.array(STUDENT[position], dtype=mx.float32), mx.array(TEACHER[position], dtype=mx.float32)
    kl = KlSettings(kind, 0.5, 64)

    def per_sample(logits, token):
        s = log_softmax(logits)[token][None]
        return token_divergence(s, log_softmax(t_logits)[token][None], kl)

    values = np.array(mx.vmap(per_sample, in_axes=(None, 0))(s_logits, mx.array(y)))
    grads = np.array(mx.vmap(mx.grad(per_sample), in_axes=(None, 0))(s_logits, mx.array(y)))
    return y, values, grads


def exact_kls(position: int = 0):
    s, t = np_log_softmax(STUDENT[position]), np_log_softmax(TEACHER[position])
    reverse, forward = kl_div(t, s), kl_div(s, t)  # KL(s || t), KL(t || s)
    reverse_grad = finite_difference(lambda z: kl_div(t, np_log_softmax(z)), STUDENT[position])
    forward_grad = finite_difference(lambda z: kl_div(np_log_softmax(z), t), STUDENT[position])
    return reverse, forward, reverse_grad, forward_grad


def within_standard_errors(samples: np.ndarray, exact) -> None:
    mean, se = samples.mean(axis=0), samples.std(axis=0) / math.sqrt(len(samples))
    assert np.all(np.abs(mean - exact) <= SE_TOLERANCE * se + 1e-6), (mean, exact, se)


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_estimators_average_to_the_reverse_kl(kind):
    reverse, _, _, _ = exact_kls()
    _, values, _ = sampled(kind)
    within_standard_errors(values, reverse)  # KL(s || t) = 0.618 at position 0
    assert values.std() / math.sqrt(N_SAMPLES) < 0.01 * reverse  # the tolerance is tight: under 1% of the KL


def test_k1_trains_toward_the_reverse_kl_and_k3_toward_the_forward_kl():
    reverse, forward, reverse_grad, forward_grad = exact_kls()
    _, _, k1_grads = sampled("k1")
    within_standard_errors(k1_grads, reverse_grad)  # k1 x grad log p_s: the reverse KL's gradient
    _, _, k3_grads = sampled("k3")
    within_standard_errors(k3_grads, forward_grad)  # (1 - p_t / p_s) grad log p_s: the forward KL's (loss.k3_kl)
    # the two gradients differ by far more than the tolerance, so neither check passes the other's way
    assert np.abs(reverse_grad - forward_grad).max() > 20 * max(k1_grads.std(0).max(), k3_grads.std(0).max()) / math.sqrt(N_SAMPLES)
