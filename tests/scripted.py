"""A scripted tiny model for phase-1 tests: a real mlx-lm model whose greedy answers we know.

The tiny llama of `sdzero_mlx.demo.tinymodel` is trained (full weights, a few hundred Adam steps on a
fixed batch) so that, whatever the question:
  after the generator prompt chat(x)              it answers  \\boxed{7}  then <|im_end|>
  after chat(x) + \\boxed{7} + sep(wrong)          it answers  \\boxed{8}  then <|im_end|>
  after chat(x) + \\boxed{7} + sep(right)          it answers  \\boxed{7}  then <|im_end|>
With greedy sampling the collection's outcome is then known by hand from the answers alone:
answer 7 -> initial right, rephrase right; answer 8 -> initial wrong, restart right; any other
answer -> initial wrong, restart wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import mlx_lm
from mlx.utils import tree_flatten

from sdzero_mlx.config import PromptConfig
from sdzero_mlx.prompts import prompt_ids, separators
from sdzero_mlx.demo.tinymodel import make_model_dir

FIRST, RESTART, REPHRASE = "\\boxed{7}", "\\boxed{8}", "\\boxed{7}"


def rows(n: int) -> list[dict]:
    """Distinct questions whose answers cycle 7, 8, other, other: a known mix for the scripted model.
    (The question number keeps them distinct: make_splits drops repeated problems.)"""
    out = []
    for i in range(n):
        answer = (7, 8, 10 + i % 9, 20 + i % 7)[i % 4]
        a = 1 + i % max(answer - 1, 1)
        out.append({"id": f"s{i}", "problem": f"Question {i}: what is {a} + {answer - a}?", "answer": str(answer)})
    return out


def write_data(path: Path, n: int = 48, solutions: bool = False) -> Path:
    """n scripted rows as JSONL; with `solutions`, each row also has a gold solution "\\boxed{answer}"
    (data.fields.solution, for SFT / SDFT)."""
    out = [{**r, "solution": f"\\boxed{{{r['answer']}}}"} if solutions else r for r in rows(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def _training_batch(tokenizer, problems: list[str]):
    prompts = PromptConfig()
    seps = separators(tokenizer, prompts)
    enc = lambda s: tuple(tokenizer.encode(s, add_special_tokens=False))  # noqa: E731  (hand-written text)
    eos = tokenizer.eos_token_id
    seqs, starts = [], []
    for problem in problems:
        p = prompt_ids(tokenizer, problem, prompts)
        first = p + enc(FIRST)
        seqs += [first + (eos,), first + seps.wrong + enc(RESTART) + (eos,), first + seps.right + enc(REPHRASE) + (eos,)]
        starts += [len(p), len(first + seps.wrong), len(first + seps.right)]
    width = max(len(s) for s in seqs)
    ids = mx.array([list(s) + [0] * (width - len(s)) for s in seqs])
    mask = mx.array([[1.0 if start <= t < len(s) else 0.0 for t in range(1, width)] for s, start in zip(seqs, starts)])
    return ids, mask


def make_scripted_model(out_dir: Path, steps: int = 80, seed: int = 0) -> Path:
    """Train the tiny model on the script above and save it as an mlx-lm folder."""
    base = make_model_dir(out_dir.with_name(out_dir.name + "-base"), hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, seed=seed)
    model, tokenizer = mlx_lm.load(str(base))
    problems = [r["problem"] for r in rows(8)]
    ids, mask = _training_batch(tokenizer, problems)

    def loss_fn(model):
        logits = model(ids[:, :-1]).astype(mx.float32)
        nll = nn.losses.cross_entropy(logits, ids[:, 1:], reduction="none")
        return (nll * mask).sum() / mask.sum()

    opt = optim.Adam(learning_rate=1e-2)
    step = nn.value_and_grad(model, loss_fn)
    for _ in range(steps):
        loss, grads = step(model)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state, loss)
    return make_model_dir(out_dir, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          weights=dict(tree_flatten(model.parameters())))


def scripted_model_dir(tmp_path_factory) -> Path:
    """One scripted model per test session, shared by the test files that need it."""
    out = tmp_path_factory.getbasetemp() / "scripted-model"
    if not (out / "model.safetensors").is_file():
        make_scripted_model(out)
    return out
