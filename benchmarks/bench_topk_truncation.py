"""What truncating phase 2's KL to a top-k loses against the full vocabulary, and what each loss
option costs to run (docs/configuration.md, "Phase 2's loss").

Real SD-Zero sequences: --answers problems (the demo's inverse task for its tiny model; arithmetic
questions for SmolLM2-135M-Instruct), one answer each sampled by the model at temperature 0.7 and
graded, each made into the student sequence prompt + y and the teacher sequence prompt + y + sep(r)
+ y (stages.distill.distill_item, i.e. kd.item_with_context). Student and teacher are the same model
with fresh LoRA adapters (B = 0, rank 8): phase 2's first step, where only the Reviser's context
differs. All answers form one micro-batch.

1. Truncation: the step's loss (token mean) and its gradient with respect to the LoRA parameters,
   reverse KL on the teacher's or the student's top-k and forward KL on the teacher's (TRL's pairing),
   k = 8, 20, 64, 256, renormalised or with the tail bucket, against the full vocabulary: relative error of the loss |L_k - L| / L and
   the cosine between the two gradients (flattened over every LoRA parameter).
2. Cost: one distill step (kd.distill_step: the student's support pass when it chooses, the teacher
   pass, the student's forward and backward, an SGD update at learning rate 0 so that every option
   sees the same model) per option: the median seconds of --repeats rounds in which the options take
   turns (after one warm-up each), and the peak
   memory above what was resident before the step, each also as a ratio to the default (reverse KL
   on the teacher's top-64) measured in the same run.
3. Footprint: the V-sized arrays per scored token that the student's loss keeps for its backward
   pass, per option, measured on a random 1-layer model with a --footprint-vocab vocabulary, where the
   logits dominate (student_footprints), beside the doctor's model of them (doctor.cost.loss_footprint).

    python benchmarks/bench_topk_truncation.py --model demo|smollm [--answers 8] [--max-tokens 128] [--repeats 5] [--footprint-vocab 32768]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from sdzero_mlx.config import KlSettings, LoraConfig, ModelConfig, PromptConfig, SamplingConfig  # noqa: E402
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.kd import compute_teacher_targets, distill_step, student_batch, student_support_ids, teacher_batch  # noqa: E402
from sdzero_mlx.loss import DistillMicroBatch, distill_loss, distill_targets, student_support  # noqa: E402
from sdzero_mlx.modeling import load_model, make_trainable, padding_id, trainable  # noqa: E402
from sdzero_mlx.prompts import separators  # noqa: E402
from sdzero_mlx.rollout import sample_rollouts  # noqa: E402
from sdzero_mlx.forward import logits_at  # noqa: E402
from sdzero_mlx.contexts import distill_item  # noqa: E402
from sdzero_mlx.teacher import lora_values  # noqa: E402
from sdzero_mlx.types import Example, Graded  # noqa: E402
from sdzero_mlx.verifier import VerifierConfig, verify_batch  # noqa: E402

TOP_KS = (8, 20, 64, 256)
DEFAULT = KlSettings("reverse", 0.5, 64)
# the options whose cost is measured, each against DEFAULT
COSTED = {
    "reverse, teacher top-64 (default)": DEFAULT,
    "reverse, full vocabulary (paper)": KlSettings("reverse", 0.5, 0),
    "reverse, teacher top-64 + tail": KlSettings("reverse", 0.5, 64, tail=True),
    "reverse, student top-64": KlSettings("reverse", 0.5, 64, top_k_from="student"),
    "jsd 0.5, teacher top-64": KlSettings("jsd", 0.5, 64, beta=0.5),
    "jsd 0.5, full vocabulary": KlSettings("jsd", 0.5, 0, beta=0.5),
    "k1 (sampled token)": KlSettings("k1", 0.5, 64),
    "k3 (sampled token)": KlSettings("k3", 0.5, 64),
}
# the options whose student-side memory per token is measured (doctor.cost.STUDENT_ARRAYS models it)
FOOTPRINT = {
    "reverse, full vocabulary": KlSettings("reverse", 0.5, 0),
    "forward, full vocabulary": KlSettings("forward", 0.5, 0),
    "mixed, full vocabulary": KlSettings("mixed", 0.5, 0),
    "jsd, full vocabulary": KlSettings("jsd", 0.5, 0),
    "reverse, top-64 + tail": KlSettings("reverse", 0.5, 64, tail=True),
    "k1": KlSettings("k1", 0.5, 64),
    "k3": KlSettings("k3", 0.5, 64),
}


def setup(kind: str, n: int, max_tokens: int):
    """(model, tokenizer, examples, prompts, sampling, verifier, max_teacher_tokens) of one benchmark model."""
    if kind == "demo":
        from sdzero_mlx.data import make_splits
        from sdzero_mlx.demo.app import base_model_dir

        recipe = load_recipe(ROOT / "sdzero_mlx" / "demo" / "recipe_inverse.yaml", [f"model.path={base_model_dir('inverse')}"])
        model, tok = load_model(recipe.model)
        sampling = SamplingConfig(temperature=0.7, max_tokens=max_tokens, batch_size=n)
        return (model, tok, make_splits(recipe.data).phase2[:n], recipe.prompts, sampling, recipe.verifier,
                recipe.distill.max_teacher_tokens)
    from conftest import arithmetic_rows
    from smollm import smollm_model_dir

    model, tok = load_model(ModelConfig(path=str(smollm_model_dir()), dtype="float32"))
    examples = [Example(r["id"], r["problem"], r["answer"]) for r in arithmetic_rows(n)]
    return model, tok, examples, PromptConfig(), SamplingConfig(temperature=0.7, max_tokens=max_tokens, batch_size=n), \
        VerifierConfig(), 2048


def truncation_rows(model, items, pad, vocab: int) -> list[dict]:
    """The loss and LoRA gradient of every truncation against the full vocabulary's, per KL direction.

    The teacher's logits (the student's values: phase 2's first step) and the student's support come
    from one pass each, shared by every option; each option then takes its targets from them as
    kd.compute_teacher_targets does (loss.distill_targets) and runs the student's forward and backward.
    """
    batch, t_batch = student_batch(items, pad), teacher_batch(items, pad)
    tokens = int(batch.mask.sum().item())
    with lora_values(model, trainable(model)):
        t_logits = mx.stop_gradient(logits_at(model, t_batch))  # (B, L, V)
    s_logits = mx.stop_gradient(logits_at(model, batch))
    mx.eval(t_logits, s_logits)

    def loss_and_gradient(kl: KlSettings) -> tuple[float, np.ndarray]:
        targets = distill_targets(t_logits, t_batch.targets, kl, student_support(s_logits, kl))
        (loss, _), grads = nn.value_and_grad(model, distill_loss)(model, DistillMicroBatch(batch, targets), kl, tokens)
        mx.eval(loss, grads)
        return loss.item(), np.concatenate([np.array(v, dtype=np.float64).ravel() for _, v in sorted(tree_flatten(grads))])

    rows = []
    for kind, supports in (("reverse", ("teacher", "student")), ("forward", ("teacher",))):
        full_loss, full_grad = loss_and_gradient(KlSettings(kind, 0.5, 0))
        for support in supports:
            for k in TOP_KS:
                row = {"kind": kind, "support": support, "top_k": k, "full_loss": full_loss, "vocab": vocab}
                for tail in (False, True):
                    if k >= vocab and tail:
                        row["tail"] = None  # the top-k is the whole vocabulary: nothing left for a tail
                        continue
                    loss, grad = loss_and_gradient(KlSettings(kind, 0.5, k, top_k_from=support, tail=tail))
                    cosine = float(grad @ full_grad / (np.linalg.norm(grad) * np.linalg.norm(full_grad)))
                    row["tail" if tail else "renormalised"] = {"loss": loss, "rel_err": abs(loss - full_loss) / full_loss,
                                                               "cosine": cosine}
                rows.append(row)
    return rows


def step_costs(model, items, pad, options: dict[str, KlSettings], repeats: int) -> dict[str, dict]:
    """Median seconds and peak memory (GB above the resident memory) of one distill step per option.

    Every option is warmed up first, then the options take turns, --repeats rounds, so that a change
    of load on a shared machine falls on all of them alike."""
    opt, teacher = optim.SGD(learning_rate=0.0), trainable(model)

    def step(kl):
        return distill_step(model, opt, teacher, items, kl, len(items), pad, 1.0)

    for kl in options.values():
        step(kl)
    seconds, peaks = {name: [] for name in options}, {name: [] for name in options}
    for _ in range(repeats):
        for name, kl in options.items():
            mx.synchronize()
            mx.clear_cache()
            resident = mx.get_active_memory()
            mx.reset_peak_memory()
            tic = time.perf_counter()
            step(kl)  # returns floats: everything is evaluated
            seconds[name].append(time.perf_counter() - tic)
            peaks[name].append((mx.get_peak_memory() - resident) / 1e9)
    return {name: {"seconds": statistics.median(seconds[name]), "peak_gb": max(peaks[name])} for name in options}


def student_footprints(vocab: int) -> dict[str, float]:
    """V-sized float32 arrays per scored token that the student's loss keeps for its backward, per option.

    Measured where the logits dominate: a random 1-layer llama (width 64) with a `vocab`-token vocabulary,
    2 sequences, blocks of 4 positions; the peak of distill_loss's value and gradient grows with the
    answer length, and its growth per token beyond that of the renormalised top-64 (the model's own
    activations) is the loss's, divided by 4 V bytes."""
    from bench_kd_memory import logits_dominated_model

    from sdzero_mlx.prompts import teacher_sequence
    from sdzero_mlx.types import DistillItem

    model = logits_dominated_model(vocab)
    teacher, block = trainable(model), 8 * vocab  # max_elements: 2 sequences x 4 positions x V

    def items(length):
        rng = np.random.default_rng(0)
        out = []
        for _ in range(2):
            prompt, y, sep = (tuple(int(t) for t in rng.integers(0, vocab, n)) for n in (16, length, 8))
            out.append(DistillItem(prompt + y, (16, 16 + length), teacher_sequence(prompt, y, sep, y), 0.0))
        return out

    def growth(kl):
        peaks = []
        for length in (64, 128):
            its = items(length)
            b = student_batch(its, 0)
            t = compute_teacher_targets(model, teacher, its, 0, kl, block, student_support_ids(model, b, kl, block))
            mx.synchronize()
            mx.clear_cache()
            start = mx.get_active_memory()
            mx.reset_peak_memory()
            mx.eval(nn.value_and_grad(model, distill_loss)(model, DistillMicroBatch(b, t), kl, 2 * length, block))
            peaks.append(mx.get_peak_memory() - start)
        return (peaks[1] - peaks[0]) / (2 * 64)  # bytes per scored token

    base = growth(DEFAULT)
    return {name: (growth(kl) - base) / (4 * vocab) for name, kl in FOOTPRINT.items()}


def table_truncation(rows: list[dict]) -> str:
    out = ["| KL | support | top-k | loss rel. error | gradient cosine | with tail: loss rel. error | with tail: cosine |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        plain, tail = r["renormalised"], r["tail"]
        tail_cells = "- | -" if tail is None else f"{tail['rel_err']:.2g} | {tail['cosine']:.4f}"
        out.append(f"| {r['kind']} | {r['support']} | {r['top_k']} | {plain['rel_err']:.2g} | {plain['cosine']:.4f} | {tail_cells} |")
    return "\n".join(out)


def table_cost(costs: dict) -> str:
    base = costs["reverse, teacher top-64 (default)"]
    out = ["| loss option | step (s) | x default | step peak (GB) | x default |", "|---|---|---|---|---|"]
    for name, c in costs.items():
        out.append(f"| {name} | {c['seconds']:.3f} | {c['seconds'] / base['seconds']:.2f} | {c['peak_gb']:.3f} | "
                   f"{c['peak_gb'] / base['peak_gb']:.2f} |")
    return "\n".join(out)


def table_footprint(measured: dict[str, float]) -> str:
    from sdzero_mlx.doctor.cost import loss_footprint

    out = ["| loss option | V-sized arrays per student token, measured | doctor's model |", "|---|---|---|"]
    for name, arrays in measured.items():
        model = loss_footprint(FOOTPRINT[name], 1000).student / 4000
        out.append(f"| {name} | {arrays:.1f} | {model:.0f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("demo", "smollm"), default="demo")
    parser.add_argument("--answers", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--footprint-vocab", type=int, default=32768)
    parser.add_argument("--out", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args()
    tic = time.perf_counter()
    model, tok, examples, prompts, sampling, verifier, max_teacher = setup(args.model, args.answers, args.max_tokens)
    make_trainable(model, LoraConfig(rank=8, scale=20.0), seed=0)
    rollouts = sample_rollouts(model, tok, examples, prompts, sampling, seed=0)
    rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], verifier)
    seps, pad = separators(tok, prompts), padding_id(tok)
    items = [distill_item(Graded(r, w), seps, max_teacher) for r, w in zip(rollouts, rewards)]
    vocab = model(mx.array([[items[0].student_ids[0]]])).shape[-1]
    tokens = sum(end - start for start, end in (it.student_span for it in items))
    print(f"{args.model}: vocabulary {vocab}, {len(items)} answers ({sum(w >= 0.5 for w in rewards)} right), "
          f"{tokens} scored tokens, teacher sequences up to {max(len(it.teacher.ids) for it in items)} tokens")
    rows = truncation_rows(model, items, pad, vocab)
    print(table_truncation(rows))
    costs = step_costs(model, items, pad, COSTED, args.repeats)
    print(table_cost(costs))
    footprints = student_footprints(args.footprint_vocab)
    print(f"the student's loss at a {args.footprint_vocab}-token vocabulary, random 1-layer model:")
    print(table_footprint(footprints))
    print(f"total {time.perf_counter() - tic:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "vocab": vocab, "answers": len(items), "tokens": tokens,
                                        "truncation": rows, "cost": costs,
                                        "student_arrays": footprints}, indent=1))


if __name__ == "__main__":
    main()
