"""The tiny llama + local tokenizer open through mlx_lm.load and behave like a real model folder."""

import hashlib
import random

import mlx.core as mx
import mlx_lm
import pytest

from sdzero_mlx.demo.tinymodel import IM_END, make_model_dir, vocabulary, write_tokenizer

TRICKY = [
    "{}",
    "\\",
    "$",
    "\\boxed{12}",
    "a  b\n\nc\n",
    " leading and trailing ",
    "0123456789",
    "x^{2} + \\frac{1}{2} = $3.50$, {[(<>)]} ~`!@#%&*_-=|;:'\",./?",
    "Let me rephrase the above solution.",
    "Wait, this response is not correct, let me start over.",
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = make_model_dir(tmp_path_factory.mktemp("tiny"), seed=0)
    return path, *mlx_lm.load(str(path))


def _sha(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_round_trip_tricky_strings(loaded):
    _, _, tok = loaded
    for s in TRICKY:
        ids = tok.encode(s, add_special_tokens=False)
        assert tok.decode(ids) == s
        assert tok.unk_token_id not in ids


def test_round_trip_random_printable_ascii(loaded):
    _, _, tok = loaded
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(32, 127)] + ["\n"]
    for _ in range(200):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        assert tok.decode(tok.encode(s, add_special_tokens=False)) == s


def test_digits_are_single_tokens_and_words_are_whole(loaded):
    _, _, tok = loaded
    ids = tok.encode("123 Let me", add_special_tokens=False)
    assert [tok.decode([i]) for i in ids] == ["1", "2", "3", " Let", " me"]
    assert len(vocabulary()) < 400


def test_chat_template_and_eos(loaded):
    _, _, tok = loaded
    text = tok.apply_chat_template(
        [{"role": "user", "content": "2+3?"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n"
    no_gen = tok.apply_chat_template([{"role": "user", "content": "2+3?"}], tokenize=False)
    assert no_gen == "<|im_start|>user\n2+3?<|im_end|>\n"
    assert tok.convert_tokens_to_ids(IM_END) in tok.eos_token_ids
    # The special tokens encode as single ids, not as their characters.
    ids = tok.encode(text, add_special_tokens=False)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.decode(ids) == text


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = make_model_dir(tmp_path / "a", seed=7)
    b = make_model_dir(tmp_path / "b", seed=7)
    c = make_model_dir(tmp_path / "c", seed=8)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)


def test_forward_shape_and_generation(loaded):
    path, model, tok = loaded
    ids = tok.encode("Compute 12+3.", add_special_tokens=False)
    logits = model(mx.array([ids]))
    assert logits.shape == (1, len(ids), len(vocabulary()))
    assert logits.dtype == mx.float32
    # A random model still generates: 1..5 tokens (fewer than 5 only if it samples <|im_end|>).
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    steps = list(mlx_lm.stream_generate(model, tok, prompt, max_tokens=5))
    assert 1 <= steps[-1].generation_tokens <= 5


def test_write_tokenizer_files(tmp_path):
    write_tokenizer(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
