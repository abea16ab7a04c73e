"""A tiny llama-family model and a small local tokenizer, built in code, saved as an mlx-lm model folder.

Why: tests, benchmarks and the demo need a model that exists with no download and opens through the same
code path as a real one (`mlx_lm.load(path)`). This module writes such a folder:

- `tokenizer.json` (HF `tokenizers`): a WordPiece model used as a greedy longest-match word lexicon with
  character fallback. The continuation prefix is empty and the decoder is `Fuse`, so decoding is plain
  concatenation of token strings and `decode(encode(s)) == s` for any printable-ASCII text with newlines.
  Pre-tokenisation splits text into pieces ` ?[A-Za-z]+` (a word with its leading space), single digits,
  single whitespace characters and single other characters. Digits are therefore always one token each
  (small transformers learn arithmetic far better that way), and no merge can swallow a digit.
  The vocabulary is: special tokens, the 95 printable ASCII characters plus "\\n", then a fixed list of
  whole words (with and without a leading space) from the chat roles, the control phrases of SD-Zero and
  the demo task, to keep sequences short. A few hundred entries in all.
- `tokenizer_config.json`: ChatML chat template (`<|im_start|>role\\n...<|im_end|>\\n`, with
  `add_generation_prompt`), `eos_token = <|im_end|>`, pad `<|pad|>`, and `clean_up_tokenization_spaces`
  false (transformers' clean-up would otherwise rewrite " ." to "." and break round-trips).
- `config.json` + `model.safetensors`: mlx-lm's `llama` architecture, float32, tied embeddings, random
  init from `mx.random.seed(seed)` (MLX's counter-based generator: same seed -> same bytes), or the
  given `weights`.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

PAD, UNK, IM_START, IM_END = "<|pad|>", "<|unk|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, UNK, IM_START, IM_END]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Whole-word tokens: chat roles, the two SD-Zero control phrases, and the demo task's wording.
# Adding words only shortens sequences; round-trips stay exact because every character is in the vocabulary.
WORDS = """
user assistant system
Let me rephrase the above solution Wait this response is not correct let start over
boxed answer Answer So Step step Compute compute Solve Find What value result
plus minus times add subtract multiply carry borrow digit digits write sum total
and then is of to a an we get gives now left has have had more less each
""".split()

_PRETOKENIZE = r" ?[A-Za-z]+|[0-9]|\s|[^A-Za-z0-9\s]"


def vocabulary() -> list[str]:
    """Token strings in id order: specials, printable ASCII + newline, then whole words."""
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    words: list[str] = []
    for w in WORDS:
        for form in (w, " " + w):
            if len(form) > 1 and form not in words and form not in chars:
                words.append(form)
    return SPECIAL_TOKENS + chars + words


def build_tokenizer():
    """The `tokenizers.Tokenizer` object (not saved)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(vocabulary())}
    tok = Tokenizer(
        models.WordPiece(
            vocab, unk_token=UNK, continuing_subword_prefix="", max_input_chars_per_word=1_000_000
        )
    )
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated")
    tok.decoder = decoders.Fuse()
    # Specials are already in the vocabulary; registering them makes the encoder match them as units.
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def write_tokenizer(out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    tok.save(str(out_dir / "tokenizer.json"))
    specials = {"eos_token": IM_END, "pad_token": PAD, "unk_token": UNK}
    vocab = tok.get_vocab()
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
        "bos_token": None,
        **specials,
        "additional_special_tokens": [IM_START, IM_END],
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "added_tokens_decoder": {
            str(vocab[t]): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t in SPECIAL_TOKENS
        },
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    specials_map = {**specials, "additional_special_tokens": [IM_START, IM_END]}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials_map, indent=2) + "\n")


def model_config(
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int | None = None,
    intermediate_size: int = 128,
) -> dict:
    """The `config.json` contents of a tiny llama with this module's tokenizer."""
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads or num_attention_heads,
        "intermediate_size": intermediate_size,
        "rms_norm_eps": 1e-5,
        "vocab_size": len(vocabulary()),
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "eos_token_id": vocabulary().index(IM_END),
        "pad_token_id": vocabulary().index(PAD),
    }


def init_weights(config: dict, seed: int) -> dict[str, mx.array]:
    """Random float32 weights of mlx-lm's llama for `config`, deterministic in `seed`."""
    from mlx_lm.models import llama

    fields = llama.ModelArgs.__dataclass_fields__
    args = llama.ModelArgs(**{k: v for k, v in config.items() if k in fields})
    mx.random.seed(seed)
    model = llama.Model(args)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    return weights


def make_model_dir(
    out_dir: Path,
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int | None = None,
    intermediate_size: int = 128,
    seed: int = 0,
    weights: dict[str, mx.array] | None = None,
) -> Path:
    """Write config.json, model.safetensors and the tokenizer into out_dir; return out_dir.

    Example: `model, tok = mlx_lm.load(str(make_model_dir(tmp_path / "m", seed=1)))`
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model_config(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
    )
    if weights is None:
        weights = init_weights(config, seed)
    weights = {k: v.astype(mx.float32) for k, v in sorted(weights.items())}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    mx.save_safetensors(str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    write_tokenizer(out_dir)
    return out_dir
