"""SmolLM2-135M-Instruct, converted from its GGUF by tests/smollm.py, loads and behaves in mlx-lm.

The logits check is independent of the conversion: a numpy llama forward reads the GGUF tensors by
their llama.cpp names, in llama.cpp's layout (Q/K rows permuted, RoPE on adjacent pairs), so a
wrong un-permutation, name mapping, tied head or config value would show up as a mismatch.
"""

import numpy as np
import pytest

from smollm import gguf_path, smollm_dir  # noqa: F401  (smollm_dir is a fixture)

pytestmark = pytest.mark.slow

CHATML = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def loaded(smollm_dir):  # noqa: F811
    from mlx_lm import load

    return load(str(smollm_dir))


def test_config_matches_smollm2_135m(smollm_dir):  # noqa: F811
    import json

    config = json.loads((smollm_dir / "config.json").read_text())
    # The published SmolLM2-135M shape: 30 layers, width 576, 9 query / 3 kv heads, tied embeddings.
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (30, 576, 1536)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]) == (9, 3, 49152)
    assert config["tie_word_embeddings"] is True
    assert config["rms_norm_eps"] == 1e-5 and config["rope_theta"] == 100000.0


def test_chat_template_is_chatml(loaded):
    _, tokenizer = loaded
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == CHATML
    # The markers are single special tokens, and <|im_end|> ends generation.
    assert tokenizer.encode("<|im_start|>user") == [1, tokenizer.convert_tokens_to_ids("user")]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
    assert 2 in tokenizer.eos_token_ids


@pytest.mark.parametrize(
    "text",
    ["Hello, world!", "{}", "a \\ b \\\\ c", "cost: $5 and ${x}", "  two  spaces\n\ttab", "café naïve 日本", "x = 12345"],
)
def test_tokenizer_round_trips(loaded, text):
    _, tokenizer = loaded
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text


def test_digits_are_split_one_per_token(loaded):
    # llama.cpp's "smollm" pre-tokenizer isolates every digit before BPE.
    _, tokenizer = loaded
    ids = tokenizer.encode("12345")
    assert [tokenizer.decode([i]) for i in ids] == ["1", "2", "3", "4", "5"]


def test_greedy_answer_names_paris(loaded):
    from mlx_lm import generate

    model, tokenizer = loaded
    answer = generate(model, tokenizer, CHATML, max_tokens=24)
    assert "Paris" in answer, answer


def _numpy_llama_logits(path, ids):
    """Reference forward pass on the raw GGUF tensors, in llama.cpp's layout. Returns (T, V) float32."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml")}
    w = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in reader.tensors}
    n_layer, n_head = meta["llama.block_count"], meta["llama.attention.head_count"]
    n_kv, eps, base = meta["llama.attention.head_count_kv"], meta["llama.attention.layer_norm_rms_epsilon"], meta["llama.rope.freq_base"]
    T, D = len(ids), meta["llama.embedding_length"]
    hd = D // n_head

    def rms_norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope_adjacent_pairs(x):  # x: (T, H, hd); llama.cpp rotates (x[2i], x[2i+1])
        angles = np.arange(T)[:, None] * base ** (-np.arange(0, hd, 2) / hd)  # (T, hd/2)
        cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = even * cos - odd * sin, even * sin + odd * cos
        return out

    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    h = w["token_embd.weight"][ids]  # (T, D)
    for i in range(n_layer):
        b = lambda name: w[f"blk.{i}.{name}.weight"]  # noqa: E731
        x = rms_norm(h, b("attn_norm"))
        q = rope_adjacent_pairs((x @ b("attn_q").T).reshape(T, n_head, hd))
        k = rope_adjacent_pairs((x @ b("attn_k").T).reshape(T, n_kv, hd))
        v = (x @ b("attn_v").T).reshape(T, n_kv, hd)
        k, v = np.repeat(k, n_head // n_kv, axis=1), np.repeat(v, n_head // n_kv, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask  # (H, T, T)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        h = h + np.einsum("hts,shd->thd", p, v).reshape(T, D) @ b("attn_output").T
        x = rms_norm(h, b("ffn_norm"))
        gate = x @ b("ffn_gate").T
        h = h + (gate / (1 + np.exp(-gate)) * (x @ b("ffn_up").T)) @ b("ffn_down").T
    head = w.get("output.weight", w["token_embd.weight"])
    return rms_norm(h, w["output_norm.weight"]) @ head.T


def test_logits_match_numpy_reference_on_gguf_weights(loaded):
    import mlx.core as mx

    model, tokenizer = loaded
    ids = tokenizer.encode(CHATML)[-12:]
    got = np.array(model(mx.array([ids])).astype(mx.float32))[0]  # (T, V)
    want = _numpy_llama_logits(gguf_path(), ids)
    assert got.shape == want.shape == (12, 49152)
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()  # measured: 2e-6 relative
    assert (got.argmax(-1) == want.argmax(-1)).all()
