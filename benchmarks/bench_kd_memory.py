"""Peak memory of the distill step's teacher pass and student step at Qwen's 152k vocabulary,
whole logits vs blocks of positions (forward.LOGITS_CHUNK_ELEMENTS), same run, and an SFT step
(the project's weighted NLL, as SRT/RFT/SFT use) and a GRPO step (pi_old and pi_ref passes, then the
clipped surrogate with optim.kl_to_initial, loss.policy_loss) on the same student tokens.

A random 1-layer llama (width 64, tied 151936-token embedding): the model is small on purpose, so
the logits dominate as they do for a 0.5B model. 2 sequences, 32-token prompt, y of `--answer`
tokens read twice by the teacher.

    python benchmarks/bench_kd_memory.py [--answer 512]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx_lm.models.llama import Model, ModelArgs  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402

from sdzero_mlx.kd import compute_teacher_targets, student_batch  # noqa: E402
from sdzero_mlx.config import KlSettings  # noqa: E402
from sdzero_mlx.loss import DistillMicroBatch, PolicyBatch, constant_logprobs, distill_loss, initial_logprobs, policy_loss  # noqa: E402
from sdzero_mlx.modeling import trainable  # noqa: E402
from sdzero_mlx.prompts import teacher_sequence  # noqa: E402
from sdzero_mlx.loss import nll_batches, weighted_nll  # noqa: E402
from sdzero_mlx.forward import LOGITS_CHUNK_ELEMENTS  # noqa: E402
from sdzero_mlx.types import DistillItem  # noqa: E402

VOCAB = 151936


def peak_gb(fn) -> float:
    mx.synchronize()
    start = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(fn())
    return (mx.get_peak_memory() - start) / 1e9


def logits_dominated_model(vocab: int) -> Model:
    """A random 1-layer llama (width 64, tied embedding) with LoRA on its block: small on purpose, so that
    the logits dominate its memory as they do for a 0.5B model."""
    mx.random.seed(0)
    model = Model(ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=1, intermediate_size=128,
                            num_attention_heads=2, rms_norm_eps=1e-5, vocab_size=vocab, num_key_value_heads=2,
                            tie_word_embeddings=True))
    model.freeze()
    linear_to_lora_layers(model, 1, {"rank": 8, "scale": 10.0, "dropout": 0.0})
    mx.eval(model.parameters())
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answer", type=int, default=512)
    args = parser.parse_args()
    model = logits_dominated_model(VOCAB)
    rng = np.random.default_rng(0)
    items = []
    for _ in range(2):
        prompt, y, sep = (tuple(int(t) for t in rng.integers(0, VOCAB, n)) for n in (32, args.answer, 16))
        items.append(DistillItem(prompt + y, (32, 32 + args.answer), teacher_sequence(prompt, y[:-1], sep, y), 0.0))
    teacher = trainable(model)
    whole_t = 2 * len(items[0].teacher.ids) * VOCAB * 4 / 1e9
    print(f"vocab {VOCAB}, 2 sequences, answer {args.answer} tokens; one float32 (B, T, V) teacher logits array: {whole_t:.2f} GB")
    grad = nn.value_and_grad(model, distill_loss)
    rows = {}
    for label, me in (("whole logits", 1 << 62), (f"blocks of 2^{LOGITS_CHUNK_ELEMENTS.bit_length() - 1}", LOGITS_CHUNK_ELEMENTS)):
        t = peak_gb(lambda: compute_teacher_targets(model, teacher, items, 0, KlSettings("reverse", 0.5, 64), me).logp)
        targets = compute_teacher_targets(model, teacher, items, 0, KlSettings("reverse", 0.5, 64), me)
        s = peak_gb(lambda: grad(model, DistillMicroBatch(student_batch(items, 0), targets), KlSettings("reverse", 0.5, 64), 1000, me))
        sft = nll_batches([it.student_ids for it in items], [it.student_span for it in items], 2, 0)[0]
        n = peak_gb(lambda: nn.value_and_grad(model, weighted_nll)(model, sft, me))

        def grpo_step(me=me, batch=sft.batch):
            old = constant_logprobs(model, batch, 0.7, me)
            mb = PolicyBatch(batch, mx.array([1.0, -1.0]), old, initial_logprobs(model, teacher, batch, 1.0, me))
            return nn.value_and_grad(model, policy_loss)(model, mb, 0.2, 0.28, 0.7, 1000, 0.3, me)

        g = peak_gb(grpo_step)
        rows[label] = (t, s, n, g)
        print(f"{label:16s} teacher pass {t:5.2f} GB   student forward+backward {s:5.2f} GB   "
              f"SFT (NLL) step on the same student tokens {n:5.2f} GB   GRPO step {g:5.2f} GB")
    (t0, s0, n0, g0), (t1, s1, n1, g1) = rows.values()
    print(f"blocks vs whole: teacher {t0 / t1:.1f}x less, student {s0 / s1:.1f}x less, SFT {n0 / n1:.1f}x less, "
          f"GRPO {g0 / g1:.1f}x less; distill student vs SFT step: {s1 / n1:.2f}x")


if __name__ == "__main__":
    main()
