"""Sampling with mlx-lm's BatchGenerator: stop handling, seeding, shared prefills."""

import mlx_lm

from sdzero_mlx.config import SamplingConfig
from sdzero_mlx.rollout import generate_completions


def test_shared_prefix_copies_match_full_prompts_greedy(tiny_model_dir):
    model, tok = mlx_lm.load(str(tiny_model_dir))
    prompts = [tuple(tok.encode("<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n7\n\nWait")),
               tuple(tok.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"))]
    greedy = SamplingConfig(temperature=0.0, max_tokens=10, batch_size=8)
    full = generate_completions(model, tok, [p for p in prompts for _ in range(3)], greedy, seed=0)
    shared = generate_completions(model, tok, prompts, greedy, seed=0, copies=3)
    assert [c.ids for c in shared] == [c.ids for c in full]
    assert shared[0].ids == shared[2].ids and shared[3].ids == shared[5].ids  # prompt-major order
    for c in full:  # a completion either stopped on an end-of-turn id or ran to max_tokens
        assert (c.finish_reason, c.stop_id is None) in (("stop", False), ("length", True))
        assert c.finish_reason == "stop" or len(c.ids) == 10


def test_sampling_is_seeded(tiny_model_dir):
    model, tok = mlx_lm.load(str(tiny_model_dir))
    prompts = [tuple(tok.encode("<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"))] * 4
    hot = SamplingConfig(temperature=1.0, max_tokens=12, batch_size=4)
    a = generate_completions(model, tok, prompts, hot, seed=5)
    b = generate_completions(model, tok, prompts, hot, seed=5)
    c = generate_completions(model, tok, prompts, hot, seed=6)
    assert [x.ids for x in a] == [x.ids for x in b]
    assert [x.ids for x in a] != [x.ids for x in c]


def test_fused_lora_sampling_matches_lora_layers_and_restores_them():
    """rollout.fused_lora: the demo model with trained-like LoRA samples the same ids through fused
    weights as through its LoRA layers (T = 0.7 and greedy), and gets its own LoRA modules back."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.lora import LoRALinear

    from sdzero_mlx.config import LoraConfig, ModelConfig, PromptConfig
    from sdzero_mlx.demo.app import base_model_dir
    from sdzero_mlx.sources.demo import examples
    from sdzero_mlx.modeling import load_model, make_trainable
    from sdzero_mlx.prompts import prompt_ids

    model, tok = load_model(ModelConfig(str(base_model_dir())))
    make_trainable(model, LoraConfig(rank=16, scale=20.0, num_layers=-1), seed=0)
    model.train()  # as during training; sampling must leave it so
    mx.random.seed(1)
    for _, m in model.named_modules():
        if isinstance(m, LoRALinear):  # B = 0 would make fusing trivially exact
            m.lora_b = 0.01 * mx.random.normal(m.lora_b.shape)
    modules = [m for _, m in model.named_modules() if isinstance(m, LoRALinear)]
    params = tree_flatten(model.trainable_parameters())
    prompts = [prompt_ids(tok, ex.problem, PromptConfig(template="{problem}")) for ex in examples("inverse", 1, 16)]
    for temperature in (0.7, 0.0):
        hot = SamplingConfig(temperature=temperature, max_tokens=80, batch_size=16)
        seen = []  # LoRA layers in the model while it samples (on_finish runs mid-sampling)
        count = lambda _: seen.append(sum(isinstance(m, LoRALinear) for _, m in model.named_modules()))  # noqa: E731
        plain = generate_completions(model, tok, prompts, hot, seed=3, copies=2, fuse=False, on_finish=count)
        assert min(seen) == len(modules) > 0
        after_plain = mx.random.uniform(shape=(4,))  # the random stream after sampling, too
        seen.clear()
        fused = generate_completions(model, tok, prompts, hot, seed=3, copies=2, on_finish=count)
        assert max(seen) == 0  # fused: plain linears while sampling
        assert [c.ids for c in fused] == [c.ids for c in plain]
        assert mx.array_equal(mx.random.uniform(shape=(4,)), after_plain)
    assert [m for _, m in model.named_modules() if isinstance(m, LoRALinear)] == modules
    assert all(a is b for (_, a), (_, b) in zip(tree_flatten(model.trainable_parameters()), params))
    assert model.training
    seen.clear()  # the recipe field turns it off
    off = SamplingConfig(temperature=0.7, max_tokens=8, batch_size=16, fuse_lora=False)
    generate_completions(model, tok, prompts[:2], off, seed=3, on_finish=count)
    assert min(seen) == len(modules)
