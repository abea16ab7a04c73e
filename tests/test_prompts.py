"""The two roles are built from token ids; model text with LaTeX survives untouched."""

import mlx_lm

from sdzero_mlx.config import PromptConfig
from sdzero_mlx.prompts import prompt_ids, separators, teacher_sequence, user_message


def test_teacher_ids_are_prompt_y_sep_y():
    seq = teacher_sequence((1, 2), (7, 8), (5, 6), (7, 8, 3))
    assert seq.ids == (1, 2, 7, 8, 5, 6, 7, 8, 3)
    assert seq.first == (2, 4) and seq.second == (6, 9)
    assert seq.ids[seq.first[0]:seq.first[1]] == seq.ids[seq.second[0]:seq.second[1] - 1]


def test_spans_hold_identical_ids_with_real_tokenizer(tiny_model_dir):
    _, tok = mlx_lm.load(str(tiny_model_dir))
    config = PromptConfig()
    text = "We have $x = \\frac{1}{2}$, so {a} \\boxed{\\$3}."
    y = tuple(tok.encode(text, add_special_tokens=False))
    prompt = prompt_ids(tok, "What is {x}?", config)
    seps = separators(tok, config)
    seq = teacher_sequence(prompt, y, seps.wrong, y + (tok.eos_token_id,))
    first = seq.ids[seq.first[0]:seq.first[1]]
    second = seq.ids[seq.second[0]:seq.second[1]]
    assert first == y and second == y + (tok.eos_token_id,)
    assert tok.decode(list(first)) == text  # {}, \ and $ survive
    sep_text = tok.decode(list(seq.ids[seq.first[1]:seq.second[0]]))
    assert sep_text == "\n\nWait, this response is not correct, let me start over.\n\n"
    assert seps.for_reward(1.0) == seps.right and seps.for_reward(0.0) == seps.wrong


def test_prompt_uses_chat_template_and_keeps_braces(tiny_model_dir):
    _, tok = mlx_lm.load(str(tiny_model_dir))
    config = PromptConfig(system="Be brief.")
    ids = prompt_ids(tok, "Is {1, 2} a set?", config)
    text = tok.decode(list(ids))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nIs {1, 2} a set?")
    assert text.endswith("\\boxed{}.<|im_end|>\n<|im_start|>assistant\n")
    assert user_message("{problem}", PromptConfig(template="Q: {problem}")) == "Q: {problem}"


# Qwen3's switch, as its chat template writes it: a non-thinking turn starts with an empty think block.
QWEN3_LIKE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def test_enable_thinking_reaches_the_chat_template(tiny_model_dir, tmp_path):
    import json
    import shutil

    import pytest

    model_dir = tmp_path / "thinking"
    shutil.copytree(tiny_model_dir, model_dir)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = QWEN3_LIKE
    config_path.write_text(json.dumps(config))
    _, tok = mlx_lm.load(str(model_dir))
    off = tok.decode(list(prompt_ids(tok, "1 + 1?", PromptConfig(enable_thinking=False))))
    on = tok.decode(list(prompt_ids(tok, "1 + 1?", PromptConfig(enable_thinking=True))))
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
    # a template without the switch: the recipe field is refused, naming the fix
    _, plain = mlx_lm.load(str(tiny_model_dir))
    with pytest.raises(ValueError, match="Remove prompts.enable_thinking"):
        prompt_ids(plain, "1 + 1?", PromptConfig(enable_thinking=False))
    assert prompt_ids(plain, "1 + 1?", PromptConfig()) == prompt_ids(plain, "1 + 1?", PromptConfig(enable_thinking=None))


def test_the_qwen3_recipe_turns_thinking_off():
    from pathlib import Path

    from sdzero_mlx.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "qwen3-0.6b-gsm8k.yaml")
    assert recipe.prompts.enable_thinking is False
