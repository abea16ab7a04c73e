"""optim.kl_to_initial: the k3 penalty to the starting model, by hand, in the NLL and distill losses."""

import math

import mlx.core as mx
import numpy as np
import pytest

from sdzero_mlx.config import KlSettings, LoraConfig, ModelConfig
from sdzero_mlx.kd import compute_teacher_targets, student_batch
from sdzero_mlx.loss import DistillMicroBatch, distill_loss
from sdzero_mlx.loss import initial_logprobs, k3_kl, log_softmax
from sdzero_mlx.modeling import load_model, make_trainable, trainable
from sdzero_mlx.loss import Penalty, nll_batches, weighted_nll, with_reference
from sdzero_mlx.forward import logits_at

from test_distill import items_for_test


def test_k3_by_hand():
    assert k3_kl(mx.array(math.log(0.5)), mx.array(math.log(0.25))).item() == pytest.approx(0.5 + math.log(2) - 1)
    assert k3_kl(mx.array(-1.3), mx.array(-1.3)).item() == 0.0
    g = mx.grad(lambda lp: k3_kl(lp, mx.array(-1.3)))(mx.array(-1.3))
    assert g.item() == 0.0  # no push at the starting point: the penalty acts once the model has moved


def moved_student(tiny_model_dir):
    model, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
    make_trainable(model, LoraConfig(rank=4), 0)
    initial = trainable(model)  # B = 0: the base model
    rng = np.random.default_rng(1)
    model.load_weights([(k, mx.array(rng.normal(0, 0.05, v.shape).astype(np.float32))) for k, v in initial.items()],
                       strict=False)
    return model, initial


def test_nll_penalty_equals_weighted_k3(tiny_model_dir):
    model, initial = moved_student(tiny_model_dir)
    [mb] = with_reference(model, Penalty(0.5, initial), nll_batches([(2, 10, 11, 12), (2, 13, 14)], [(1, 4), (1, 3)], 4, 0))
    plain, _ = weighted_nll(model, mb)
    penalised, _ = weighted_nll(model, mb, kl_to_initial=0.5)
    logp = np.array(log_softmax(logits_at(model, mb.batch)))
    targets, weights = np.array(mb.targets), np.array(mb.weights)
    token = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    d = np.array(mb.ref_logp) - token
    expected = 0.5 * (weights * (np.exp(d) - d - 1)).sum()
    assert expected > 1e-6  # the moved student differs from the base
    assert penalised.item() - plain.item() == pytest.approx(expected, rel=1e-4)


def test_distill_penalty_equals_k3_on_the_sampled_tokens(tiny_model_dir):

    model, initial = moved_student(tiny_model_dir)
    items = items_for_test()
    batch = student_batch(items, 0)
    ref = initial_logprobs(model, initial, batch)
    mb = DistillMicroBatch(batch, compute_teacher_targets(model, initial, items, 0, KlSettings("reverse", 0.5, 16)), ref)
    plain, _ = distill_loss(model, mb, KlSettings("reverse", 0.5, 16), step_tokens=10)
    penalised, _ = distill_loss(model, mb, KlSettings("reverse", 0.5, 16), step_tokens=10, kl_to_initial=2.0)
    logp = np.array(log_softmax(logits_at(model, batch)))
    token = np.take_along_axis(logp, np.array(batch.targets)[..., None], axis=-1)[..., 0]
    d = np.array(ref) - token
    expected = 2.0 * ((np.exp(d) - d - 1) * np.array(batch.mask)).sum() / 10
    assert penalised.item() - plain.item() == pytest.approx(expected, rel=1e-4) and expected > 0


def test_k3_expected_gradient_is_that_of_kl_from_the_reference():
    """On tokens drawn from pi, E[grad k3] = grad KL(pi_ref || pi) (not KL(pi || pi_ref)), exactly, by enumeration."""
    ref = mx.log(mx.array([0.1, 0.2, 0.3, 0.4]))
    theta = mx.array([0.5, -0.3, 0.2, 0.0])
    pi = mx.softmax(theta)

    def expected_k3(t):  # sum_y pi(y) k3(y), pi(y) held constant: the loss a sampler's tokens average to
        logp = log_softmax(t)
        return (mx.stop_gradient(pi) * k3_kl(logp, ref)).sum()

    def kl(p_logp, q_logp):
        return (mx.exp(p_logp) * (p_logp - q_logp)).sum()

    g = np.array(mx.grad(expected_k3)(theta))
    backward = np.array(mx.grad(lambda t: kl(ref, log_softmax(t)))(theta))  # KL(pi_ref || pi)
    forward = np.array(mx.grad(lambda t: kl(log_softmax(t), ref))(theta))  # KL(pi || pi_ref)
    np.testing.assert_allclose(g, backward, atol=1e-6)
    assert np.abs(g - forward).max() > 1e-2


def test_grpo_penalty_is_at_temperature_one_like_every_stage(tiny_model_dir):
    from sdzero_mlx.loss import PolicyBatch, constant_logprobs, policy_loss
    from sdzero_mlx.forward import scored_batch

    model, initial = moved_student(tiny_model_dir)
    batch = scored_batch([(2, 10, 11, 12), (2, 13, 14)], [(1, 4), (1, 3)], 0)
    ref = initial_logprobs(model, initial, batch)  # T = 1
    mb = PolicyBatch(batch, mx.array([1.0, -1.0]), constant_logprobs(model, batch, 0.7), ref)
    plain, _ = policy_loss(model, mb, 0.2, 0.28, temperature=0.7, step_tokens=5)
    penalised, _ = policy_loss(model, mb, 0.2, 0.28, temperature=0.7, step_tokens=5, kl_to_initial=0.5)
    token = np.take_along_axis(np.array(log_softmax(logits_at(model, batch))), np.array(batch.targets)[..., None], axis=-1)[..., 0]
    d = np.array(ref) - token
    expected = 0.5 * ((np.exp(d) - d - 1) * np.array(batch.mask)).sum() / 5
    assert expected > 1e-6 and penalised.item() - plain.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_full_fine_tuning_keeps_the_initial_weights_only_for_the_penalty(stage, tmp_path):
    """lora.fine_tune_type full: after each step a stage holds the model and AdamW's two moments of the
    trained weights; optim.kl_to_initial > 0 adds one copy of them (the penalty's reference), 0 adds none."""
    import yaml
    from mlx.utils import tree_flatten

    from sdzero_mlx.recipe import load_recipe
    from sdzero_mlx.demo.tinymodel import make_model_dir
    from sdzero_mlx.stages import stage_spec
    from scripted import write_data

    # hidden 64: the trained weights (329 KB) dwarf what else a step leaves alive (~15 KB)
    model_dir = make_model_dir(tmp_path / "model", hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=128, seed=0)
    model, _ = load_model(ModelConfig(path=str(model_dir)))
    make_trainable(model, LoraConfig(fine_tune_type="full"), 0)
    weights = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    trained = sum(v.nbytes for v in trainable(model).values())
    del model
    assert trained > 0.8 * weights  # every block trains; the embeddings do not

    held = {}
    for kl in (0.0, 0.5):
        raw = {"model": {"path": str(model_dir)},
               "data": {"source": str(write_data(tmp_path / "d.jsonl", 24, solutions=True)),
                        "fields": {"id": "id", "solution": "solution"}, "phase1_size": 8, "phase2_size": 8, "eval_size": 4},
               "lora": {"fine_tune_type": "full"},
               "sampling": {"temperature": 1.0, "max_tokens": 4},
               "sft": {"steps": 2, "batch_size": 4, "micro_batch_size": 4},
               "grpo": {"steps": 2, "questions_per_step": 2, "group_size": 2, "micro_batch_size": 4, "dynamic_sampling": False},
               "optim": {"learning_rate": 1e-3, "kl_to_initial": kl},
               "run": {"output_dir": str(tmp_path / f"run-{kl}"), "seed": 0, "probe_every": 0, "save_every": 100}}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
        mx.synchronize()
        start = mx.get_active_memory()
        after_step = []
        stage_spec(stage).run(load_recipe(tmp_path / "r.yaml"), tmp_path / f"run-{kl}",
                              on_step=lambda _: after_step.append(mx.get_active_memory() - start))
        held[kl] = after_step
    model_and_moments = weights + 2 * trained
    assert len(held[0.0]) == len(held[0.5]) == 2
    for without, with_penalty in zip(held[0.0], held[0.5]):
        assert abs(without - model_and_moments) < trained / 4, (without, model_and_moments, trained)
        assert abs(with_penalty - (model_and_moments + trained)) < trained / 4, (with_penalty, model_and_moments, trained)
