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
