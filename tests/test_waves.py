"""waves.py: sampling in waves gives each sequence what decoding it alone gives, whatever the batching."""

import mlx.core as mx
import mlx_lm
import pytest
from mlx_lm.models.cache import RotatingKVCache, make_prompt_cache

from sdzero_mlx import rollout, waves
from sdzero_mlx.config import ModelConfig, PromptConfig, SamplingConfig
from sdzero_mlx.demo.app import base_model_dir
from sdzero_mlx.sources.demo import examples
from sdzero_mlx.modeling import load_model
from sdzero_mlx.prompts import prompt_ids


def test_prefill_chunks_keep_each_chunk_within_the_padded_budget():
    assert waves.prefill_chunks([60, 60, 60, 5000, 10], 8192) == [range(0, 3), range(3, 4), range(4, 5)]
    assert waves.prefill_chunks([10] * 5, 30) == [range(0, 3), range(3, 5)]  # 3 x 10 fits, a 4th would not
    assert waves.prefill_chunks([40, 10], 30) == [range(0, 1), range(1, 2)]  # too long alone: alone
    assert waves.prefill_chunks([], 30) == []


def one_by_one(model, prompt, max_tokens, stop_ids):
    """Greedy decoding of one prompt with mlx-lm's plain KV cache, a token at a time: the reference."""
    cache = make_prompt_cache(model)
    logits = model(mx.array([list(prompt)]), cache=cache)[:, -1, :]
    ids = []
    while True:
        t = int(mx.argmax(logits, axis=-1).item())
        if t in stop_ids:
            return tuple(ids), "stop", t
        ids.append(t)
        if len(ids) >= max_tokens:
            return tuple(ids), "length", None
        logits = model(mx.array([[t]]), cache=cache)[:, -1, :]


def stop_ids(tok) -> list[int]:
    """The end-of-turn ids and the digit 7: the demo's answers all stop at the same length on their own, a
    7 ends them at 12 to 40 tokens, so rows end at different steps and the batch compacts and refills."""
    return sorted(set(tok.eos_token_ids) | {tok.encode("7", add_special_tokens=False)[-1]})


@pytest.fixture(scope="module")
def demo():
    """The demo's base model and 12 of its prompts, made 22-25 tokens long by repeating their first tokens, so
    that batching them left-pads the shorter ones."""
    model, tok = load_model(ModelConfig(str(base_model_dir())))
    prompts = [prompt_ids(tok, ex.problem, PromptConfig(template="{problem}")) for ex in examples("inverse", 3, 12)]
    return model, tok, [p[:i % 4] + p for i, p in enumerate(prompts)]


@pytest.mark.parametrize("capacity", [1, 5, 12, 64])
def test_greedy_in_waves_equals_decoding_each_prompt_alone(demo, capacity):
    # capacity 1: a prompt at a time; 5: refills (compaction at half, the refilled rows' first tokens recorded);
    # 12 and 64: everything in one batch, compacted as rows end
    model, tok, prompts = demo
    stops = stop_ids(tok)
    ended = waves.decode(model, prompts, 1, capacity, 40, stops, temperature=0.0, top_p=1.0)
    want = [one_by_one(model, p, 40, set(stops)) for p in prompts]
    assert [(e.ids, e.finish_reason, e.stop_id) for e in ended] == want
    assert len({len(p) for p in prompts}) > 1 and len({len(e.ids) for e in ended}) > 3  # padding; rows end apart


def test_copies_share_a_prefill_and_the_greedy_copy_is_the_greedy_answer(demo):
    model, tok, prompts = demo
    stops = stop_ids(tok)
    calls = []

    class Counting:  # the model, counting the prefills (forward passes over more than one position)
        layers = model.layers

        def __call__(self, ids, cache=None):
            calls.append(ids.shape)
            return model(ids, cache=cache)

    mx.random.seed(3)
    ended = waves.decode(Counting(), prompts, 3, 64, 40, stops, temperature=1.0, top_p=1.0, greedy_copy=True)
    assert len(ended) == 12 * 4
    prefills = [s for s in calls if s[1] > 1]
    assert len(prefills) == 1 and prefills[0][0] == 12  # one prefill of the 12 prompts, not of 48 rows
    greedy = [one_by_one(model, p, 40, set(stops)) for p in prompts]
    assert [(e.ids, e.finish_reason, e.stop_id) for e in ended[3::4]] == greedy  # row 3 of each prompt
    sampled = [e.ids for i, e in enumerate(ended) if i % 4 < 3]
    assert len(set(sampled)) > 12  # T = 1: the copies of a prompt differ


def test_sampling_in_waves_is_seeded_and_ends_every_sequence_properly(demo):
    model, tok, prompts = demo
    hot = SamplingConfig(temperature=1.0, max_tokens=25, batch_size=8)
    a = rollout.generate_completions(model, tok, prompts, hot, seed=5, copies=2)
    b = rollout.generate_completions(model, tok, prompts, hot, seed=5, copies=2)
    c = rollout.generate_completions(model, tok, prompts, hot, seed=6, copies=2)
    assert [x.ids for x in a] == [x.ids for x in b] and [x.ids for x in a] != [x.ids for x in c]
    stops = set(tok.eos_token_ids)
    for x in a:  # a stop id ends a sequence and is not part of it; max_tokens ends it without one
        assert not stops & set(x.ids)
        assert (x.finish_reason == "stop" and x.stop_id in stops) or (len(x.ids) == 25 and x.stop_id is None)
    done = []
    rollout.generate_completions(model, tok, prompts, hot, seed=5, copies=2, on_finish=done.append)
    assert sum(done) == 24  # one call per ended sequence


def test_a_model_whose_cache_is_not_a_plain_kv_cache_samples_through_mlx_lm(tiny_model_dir, monkeypatch):
    model, tok = mlx_lm.load(str(tiny_model_dir))
    model.make_cache = lambda: [RotatingKVCache(max_size=64) for _ in model.layers]
    assert not waves.plain_kv_cache(model)
    used = []
    monkeypatch.setattr(rollout, "decode", lambda *a, **k: used.append("waves"))
    greedy = SamplingConfig(temperature=0.0, max_tokens=6, batch_size=4)
    prompt = tuple(tok.encode("<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"))
    out = rollout.generate_completions(model, tok, [prompt], greedy, seed=0, copies=2, greedy_copy=True)
    assert used == [] and len(out) == 3 and out[0].ids == out[1].ids == out[2].ids  # greedy: all three alike
