"""Backend parity: the same seeded training work on two MLX backends and against a float64 numpy reference.

One run (`backend_run`) computes, on one device and in one dtype, with the project's own code:
  teacher   the Reviser's logits on the second copy of y and its top-k targets (kd.compute_teacher_targets)
  student   the student's logits, the per-token reverse KL, the distill loss and its LoRA gradients
  adamw     one full optimizer step (update.optimizer_step: clip + AdamW): the updated LoRA values
  srt       the SRT loss (both terms) and its LoRA gradients
  greedy    greedy decoding (rollout.generate_completions, T = 0) for N tokens, and the logits at each
The numpy reference (`reference`) redoes it in float64 from the same weights (as rounded to the dtype):
a llama forward pass written out, top-k, KL and NLL by formula, AdamW by formula on the run's own
gradient, greedy decoding by recomputing the whole sequence. Gradients are checked by central finite
differences in float64 along one seeded direction per LoRA tensor, which needs forward passes only.

Each comparison is a frozen `Comparison`: the normalised error max|a - b| / max|b| against a per-dtype
tolerance. Top-k sets may differ only at near ties (the reference's gap to the k-th logit within
tolerance); greedy tokens must be equal, or the first divergence is reported with both logits.

What can differ between backends, and is reported: TF32 (`MLX_ENABLE_TF32`, on by default, lets float32
matmul-family operations run in reduced precision on CUDA and on Apple M5-class GPUs); float32 on a
GPU is therefore also run in a child process with it off. bfloat16 kernels accumulate differently per
backend, hence its wider tolerance. CPU vs numpy runs everywhere (CI); GPU vs CPU where MLX has a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .config import KlSettings

# normalised error allowed (max|a - b| / max|b|). Measured on CPU vs float64 (tiny llama): float32 <= 3.5e-6,
# bfloat16 <= 1.3e-2. TF32 keeps 10 mantissa bits (bfloat16 7, float32 23): float32 with TF32 on gets its own.
TOLERANCE = {"float32": 1e-4, "bfloat16": 4e-2, "tf32": 1e-2}
KL = KlSettings(kind="reverse", forward_weight=0.5, top_k=8)  # the KL the float64 reference writes out
GREEDY_TOKENS = 16
LORA_SCALE = 10.0
TF32_ENV = "MLX_ENABLE_TF32"


@dataclass(frozen=True)
class Comparison:
    check: str  # e.g. "distill.grad", "greedy.tokens"
    dtype: str
    a: str  # the backend under test: cpu, gpu, gpu-tf32-off
    b: str  # what it is compared with: numpy (float64) or another backend
    error: float  # max|a - b| / max|b| (greedy: tokens that differ)
    tolerance: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance


@dataclass(frozen=True)
class ParityReport:
    comparisons: tuple[Comparison, ...]
    features: tuple[str, ...]  # backend features that differ, and what they change
    gpu: str  # GPU detection result, errors included

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def failed(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.ok]


# ---------------------------------------------------------------------------------------------
# Inputs: seeded token sequences, the same on every backend
# ---------------------------------------------------------------------------------------------


def _work(vocab: int, seed: int = 0):
    """Distill items (4 sequences of different lengths), SRT items (3) and a greedy prompt, from ids only."""
    from .contexts import distill_item
    from .prompts import Separators
    from .stages.srt import SrtItem
    from .types import Example, Graded, Rollout

    rng = np.random.default_rng(seed)
    ids = lambda n: tuple(int(t) for t in rng.integers(4, vocab, n))  # noqa: E731  (no special tokens)
    seps = Separators(right=ids(3), wrong=ids(4))
    graded = []
    for i, (p, y) in enumerate([(5, 6), (3, 9), (7, 2), (4, 5)]):
        r = Rollout(Example(f"q{i}", "p", "1"), ids(p), ids(y), "", "stop" if i != 3 else "length", 3 if i != 3 else None)
        graded.append(Graded(r, float(i % 2)))
    distill = [distill_item(g, seps, 256) for g in graded]
    srt = []
    for p, y0, s, y1 in [(4, 5, 3, 6), (3, 8, 4, 4), (6, 3, 3, 7)]:
        seq = ids(p) + ids(y0) + ids(s) + ids(y1) + (3,)
        srt.append(SrtItem(seq, p, p + y0 + s, 0.0))
    return distill, srt, ids(6)


def _set_lora(model, seed: int = 1) -> None:
    """Non-zero A and B (float32), so that every factor gets a gradient and the student is not the base."""
    import mlx.core as mx

    from .modeling import trainable

    rng = np.random.default_rng(seed)
    model.load_weights([(k, mx.array(rng.normal(0, 0.05, v.shape).astype(np.float32)))
                        for k, v in sorted(trainable(model).items())], strict=False)


# ---------------------------------------------------------------------------------------------
# One backend
# ---------------------------------------------------------------------------------------------


def backend_run(model_dir: str | Path, device: str, dtype: str, greedy_tokens: int = GREEDY_TOKENS) -> dict[str, np.ndarray]:
    """Everything of the module docstring on `device` (cpu | gpu) in `dtype`, as float64 numpy arrays.

    Also returns the weights it used ("param/NAME"), so the reference needs nothing else.
    """
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from .config import LoraConfig, ModelConfig, OptimConfig, SamplingConfig
    from .kd import compute_teacher_targets, student_batch
    from .loss import DistillMicroBatch, distill_loss
    from .loss import distill_token_kl
    from .modeling import load_model, make_trainable, trainable
    from .rollout import generate_completions
    from .forward import chunks, logits_at
    from .stages.srt import GENERATION, REVISION, srt_batches, srt_loss
    from .update import make_optimizer, optimizer_step

    dev = mx.gpu if device == "gpu" else mx.cpu
    previous = mx.default_device()
    mx.set_default_device(dev)
    try:
        model, tok = load_model(ModelConfig(path=str(model_dir), dtype=dtype))
        make_trainable(model, LoraConfig(rank=4, scale=LORA_SCALE), seed=0)
        _set_lora(model)
        distill, srt, prompt = _work(model.args.vocab_size)
        out: dict[str, np.ndarray] = {}
        f64 = lambda a: np.array(a.astype(mx.float32), dtype=np.float64)  # noqa: E731
        for k, v in tree_flatten(model.parameters()):
            out[f"param/{k}"] = f64(v)
        student = trainable(model)
        teacher = {k: mx.zeros_like(v) if k.endswith("lora_b") else v for k, v in student.items()}  # B = 0: the base

        # teacher targets, student logits, per-token KL, distill loss and gradients (one micro-batch of all 4)
        from .kd import teacher_batch
        from .teacher import lora_values

        with lora_values(model, teacher):
            out["teacher.logits"] = f64(logits_at(model, teacher_batch(distill, 0)))
        targets = compute_teacher_targets(model, teacher, distill, 0, KL)
        order = mx.argsort(targets.indices, axis=-1)  # indices sorted, so that backends compare entry by entry
        out["teacher.topk_idx"] = np.array(mx.take_along_axis(targets.indices, order, axis=-1))
        out["teacher.topk_logp"] = f64(mx.take_along_axis(targets.logp, order, axis=-1))
        mb = DistillMicroBatch(student_batch(distill, 0), targets)
        out["student.logits"] = f64(logits_at(model, mb.student))
        kl = distill_token_kl(logits_at(model, mb.student), targets, KL) * mb.student.mask
        out["distill.kl"] = f64(kl)
        tokens = sum(it.student_span[1] - it.student_span[0] for it in distill)

        (loss, _), grads = nn.value_and_grad(model, distill_loss)(model, mb, KL, tokens)
        out["distill.loss"] = f64(loss)
        for k, g in tree_flatten(grads):
            out[f"distill.grad/{k}"] = f64(g)

        # SRT: both terms, one micro-batch
        [smb] = srt_batches(srt, (REVISION, GENERATION), len(srt), 0)
        (sloss, _), sgrads = nn.value_and_grad(model, srt_loss)(model, smb)
        out["srt.loss"] = f64(sloss)
        for k, g in tree_flatten(sgrads):
            out[f"srt.grad/{k}"] = f64(g)

        # greedy decoding from the student, then the logits at every generated position (teacher-forced)
        [c] = generate_completions(model, tok, [prompt], SamplingConfig(temperature=0.0, max_tokens=greedy_tokens), 0)
        seq = list(prompt) + list(c.ids) + ([c.stop_id] if c.stop_id is not None else [])
        out["greedy.tokens"] = np.array(seq[len(prompt):], dtype=np.int64)
        model.eval()
        out["greedy.logits"] = f64(model(mx.array([seq[:-1]]))[0, len(prompt) - 1:])

        # one full optimizer step (2 micro-batches of 2, clip 1.0, AdamW with weight decay): updated LoRA values
        groups = chunks(distill, 2)
        batches = [DistillMicroBatch(student_batch(g, 0), compute_teacher_targets(model, teacher, g, 0, KL)) for g in groups]
        from functools import partial

        optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, weight_decay=0.1), 1)
        model.train()
        result = optimizer_step(model, optimizer, partial(distill_loss, kl_settings=KL, step_tokens=tokens),
                                batches, grad_clip=1.0)
        out["adamw.grad_norm"] = np.array(result.grad_norm, dtype=np.float64)
        for k, v in trainable(model).items():
            out[f"adamw.updated/{k}"] = f64(v)
        return out
    finally:
        mx.set_default_device(previous)


# ---------------------------------------------------------------------------------------------
# The float64 numpy reference
# ---------------------------------------------------------------------------------------------


def _config(model_dir) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def _linear(p: dict, name: str, x: np.ndarray) -> np.ndarray:
    if f"{name}.linear.weight" in p:  # a LoRA layer: base + scale * (x A) B
        return x @ p[f"{name}.linear.weight"].T + LORA_SCALE * ((x @ p[f"{name}.lora_a"]) @ p[f"{name}.lora_b"])
    return x @ p[f"{name}.weight"].T


def _rms(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope(x: np.ndarray, base: float) -> np.ndarray:
    """Non-traditional RoPE (mlx-lm llama's default): rotate the two halves of each head. x: (H, T, D)."""
    _, t, d = x.shape
    half = d // 2
    freqs = base ** (-np.arange(half, dtype=np.float64) * 2 / d)
    angles = np.arange(t, dtype=np.float64)[:, None] * freqs[None]  # (T, D/2)
    cos, sin = np.cos(angles), np.sin(angles)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def llama_logits(p: dict[str, np.ndarray], config: dict, ids: Sequence[int]) -> np.ndarray:
    """Logits (T, V) of mlx-lm's llama (LoRA layers included) for one unpadded sequence, in float64."""
    if config.get("model_type") != "llama" or config.get("rope_scaling") or config.get("rope_traditional"):
        raise ValueError(f"the numpy reference covers plain llama models; this one is {config.get('model_type')!r}")
    n_heads = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_heads
    eps, base = config["rms_norm_eps"], config.get("rope_theta", 10000.0)
    h = p["model.embed_tokens.weight"][list(ids)]
    t = h.shape[0]
    d = config.get("head_dim") or config["hidden_size"] // n_heads
    causal = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(config["num_hidden_layers"]):
        pre = f"model.layers.{i}"
        x = _rms(h, p[f"{pre}.input_layernorm.weight"], eps)
        q = _linear(p, f"{pre}.self_attn.q_proj", x).reshape(t, n_heads, d).transpose(1, 0, 2)
        k = _linear(p, f"{pre}.self_attn.k_proj", x).reshape(t, n_kv, d).transpose(1, 0, 2)
        v = _linear(p, f"{pre}.self_attn.v_proj", x).reshape(t, n_kv, d).transpose(1, 0, 2)
        q, k = _rope(q, base), _rope(k, base)
        k, v = np.repeat(k, n_heads // n_kv, axis=0), np.repeat(v, n_heads // n_kv, axis=0)
        scores = q @ k.transpose(0, 2, 1) * d**-0.5 + causal
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = (att @ v).transpose(1, 0, 2).reshape(t, n_heads * d)
        h = h + _linear(p, f"{pre}.self_attn.o_proj", o)
        x = _rms(h, p[f"{pre}.post_attention_layernorm.weight"], eps)
        gate, up = _linear(p, f"{pre}.mlp.gate_proj", x), _linear(p, f"{pre}.mlp.up_proj", x)
        h = h + _linear(p, f"{pre}.mlp.down_proj", gate / (1 + np.exp(-gate)) * up)
    h = _rms(h, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if config.get("tie_word_embeddings", True) else p["lm_head.weight"]
    return h @ head.T


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _scored(p, config, seqs_spans) -> list[np.ndarray]:
    """Logits predicting each scored token: [(ids, (start, end))] -> [(end - start, V)]."""
    return [llama_logits(p, config, ids)[s - 1 : e - 1] for ids, (s, e) in seqs_spans]


def _distill_loss(p, config, distill, idx, t_logp, tokens) -> tuple[float, list[np.ndarray]]:
    total, kls = 0.0, []
    for j, logits in enumerate(_scored(p, config, [(it.student_ids, it.student_span) for it in distill])):
        n = logits.shape[0]
        s = _log_softmax(np.take_along_axis(logits, idx[j, :n], axis=-1))
        kl = (np.exp(s) * (s - t_logp[j, :n])).sum(-1)
        kls.append(kl)
        total += kl.sum()
    return total / tokens, kls


def _srt_loss(p, config, srt) -> float:
    from .stages.srt import GENERATION, REVISION

    counts = {term: sum(it.span(term)[1] - it.span(term)[0] for it in srt) for term in (REVISION, GENERATION)}
    total = 0.0
    for it, logits in zip(srt, _scored(p, config, [(it.ids, it.span(GENERATION)) for it in srt])):
        logp = _log_softmax(logits)
        for j, pos in enumerate(range(it.gen_start, len(it.ids))):
            w = 1 / counts[GENERATION] + (1 / counts[REVISION] if pos >= it.rev_start else 0.0)
            total -= w * logp[j, it.ids[pos]]
    return total


def _directional(loss_fn, p: dict, names: Sequence[str], seed: int, eps: float = 1e-6) -> dict[str, tuple[np.ndarray, float]]:
    """Central differences of loss_fn(params) along one seeded unit direction per tensor: name -> (v, dL/dv)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        v = rng.normal(size=p[name].shape)
        v /= np.linalg.norm(v)
        plus, minus = dict(p), dict(p)
        plus[name], minus[name] = p[name] + eps * v, p[name] - eps * v
        out[name] = (v, (loss_fn(plus) - loss_fn(minus)) / (2 * eps))
    return out


def _error(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def reference(model_dir, run: dict[str, np.ndarray], dtype: str, name: str, tolerance: Optional[float] = None) -> list[Comparison]:
    """Compare one backend run with the float64 numpy reference built from the run's own weights."""
    config = _config(model_dir)
    p = {k[len("param/"):]: v for k, v in run.items() if k.startswith("param/")}
    lora = sorted(k for k in p if k.endswith(("lora_a", "lora_b")))
    distill, srt, prompt = _work(config["vocab_size"])
    tol = TOLERANCE[dtype] if tolerance is None else tolerance
    cmp = lambda check, err, note="": Comparison(check, dtype, name, "numpy", err, tol, note)  # noqa: E731
    out = []

    # teacher: the base (B = 0); its logits, top-k sets (ties allowed) and renormalised log-probabilities
    teacher_p = {k: (np.zeros_like(v) if k.endswith("lora_b") else v) for k, v in p.items()}
    t_logits = _scored(teacher_p, config, [(it.teacher.ids, it.teacher.second) for it in distill])
    got_t = run["teacher.logits"]
    out.append(cmp("teacher.logits", max(_error(got_t[j, : len(l)], l) for j, l in enumerate(t_logits))))
    idx, worst_gap, differing = run["teacher.topk_idx"], 0.0, 0
    t_logp = np.zeros(idx.shape)
    for j, l in enumerate(t_logits):
        for pos in range(len(l)):
            ref_top = np.sort(np.argpartition(-l[pos], KL.top_k - 1)[:KL.top_k])
            if not np.array_equal(ref_top, idx[j, pos]):
                differing += 1  # allowed only at a near tie with the k-th logit
                kth = np.sort(l[pos])[-KL.top_k]
                diff = np.setxor1d(ref_top, idx[j, pos])
                worst_gap = max(worst_gap, float(np.abs(l[pos][diff] - kth).max() / np.abs(l).max()))
            t_logp[j, pos] = _log_softmax(l[pos][idx[j, pos]])
    out.append(cmp("teacher.topk_set", worst_gap, f"{differing} positions differ (near ties)" if differing else "all equal"))
    n = [len(l) for l in t_logits]
    out.append(cmp("teacher.topk_logp", max(_error(run["teacher.topk_logp"][j, : n[j]], t_logp[j, : n[j]]) for j in range(len(n)))))

    # student logits, per-token KL, loss, and the gradient along one direction per LoRA tensor
    s_logits = _scored(p, config, [(it.student_ids, it.student_span) for it in distill])
    out.append(cmp("student.logits", max(_error(run["student.logits"][j, : len(l)], l) for j, l in enumerate(s_logits))))
    tokens = sum(it.student_span[1] - it.student_span[0] for it in distill)
    loss, kls = _distill_loss(p, config, distill, idx, t_logp, tokens)
    out.append(cmp("distill.kl", max(_error(run["distill.kl"][j, : len(k)], k) for j, k in enumerate(kls))))
    out.append(cmp("distill.loss", _error(run["distill.loss"], loss)))
    dirs = _directional(lambda q: _distill_loss(q, config, distill, idx, t_logp, tokens)[0], p, lora, seed=2)
    got = np.array([(run[f"distill.grad/{k}"] * v).sum() for k, (v, _) in dirs.items()])
    out.append(cmp("distill.grad", _error(got, np.array([d for _, d in dirs.values()])), f"{len(lora)} tensors, one direction each"))

    # SRT loss and gradient
    out.append(cmp("srt.loss", _error(run["srt.loss"], _srt_loss(p, config, srt))))
    dirs = _directional(lambda q: _srt_loss(q, config, srt), p, lora, seed=3)
    got = np.array([(run[f"srt.grad/{k}"] * v).sum() for k, (v, _) in dirs.items()])
    out.append(cmp("srt.grad", _error(got, np.array([d for _, d in dirs.values()])), f"{len(lora)} tensors, one direction each"))

    # AdamW (clip 1.0, weight decay 0.1, lr 1e-2, first step) applied by formula to the run's own gradient
    g = {k: run[f"distill.grad/{k}"] for k in lora}
    norm = np.sqrt(sum((x**2).sum() for x in g.values()))
    out.append(cmp("adamw.grad_norm", _error(run["adamw.grad_norm"], norm)))
    scale = min(1.0 / (norm + 1e-6), 1.0)
    err = 0.0
    for k in lora:
        gk = g[k] * scale
        m, v = 0.1 * gk, 0.001 * gk**2
        want = p[k] * (1 - 1e-2 * 0.1) - 1e-2 * m / (np.sqrt(v) + 1e-8)
        err = max(err, _error(run[f"adamw.updated/{k}"], want))
    out.append(cmp("adamw.updated", err, "AdamW by formula on the run's gradient"))

    # greedy decoding: same tokens, or the first divergence with both logits
    eos = set(_eos_ids(model_dir))
    seq, want = list(prompt), []
    for _ in range(len(run["greedy.tokens"])):
        logits = llama_logits(p, config, seq)[-1]
        want.append(int(logits.argmax()))
        seq.append(want[-1])
        if want[-1] in eos:
            break
    ref_logits = llama_logits(p, config, seq[:-1])[len(prompt) - 1 :]
    out.append(greedy_comparison(run["greedy.tokens"], np.array(want), run["greedy.logits"], ref_logits, dtype, name, "numpy"))
    return out


def _eos_ids(model_dir) -> list[int]:
    from mlx_lm.utils import load_tokenizer

    return sorted(load_tokenizer(Path(model_dir)).eos_token_ids)


def greedy_comparison(a_tokens, b_tokens, a_logits, b_logits, dtype: str, a: str, b: str) -> Comparison:
    """Tokens that differ (0 = identical); at the first divergence, both backends' logits of both tokens."""
    n = min(len(a_tokens), len(b_tokens))
    diverged = [i for i in range(n) if a_tokens[i] != b_tokens[i]] or ([n] if len(a_tokens) != len(b_tokens) else [])
    if not diverged:
        return Comparison("greedy.tokens", dtype, a, b, 0.0, 0.0, f"{n} tokens identical")
    i = diverged[0]
    if i >= n:
        return Comparison("greedy.tokens", dtype, a, b, 1.0, 0.0, f"lengths differ: {len(a_tokens)} vs {len(b_tokens)}")
    ta, tb = int(a_tokens[i]), int(b_tokens[i])
    note = (f"first divergence at token {i}: {a} chose {ta}, {b} chose {tb}; {a} logits {a_logits[i][ta]:.6f} / "
            f"{a_logits[i][tb]:.6f}, {b} logits {b_logits[i][ta]:.6f} / {b_logits[i][tb]:.6f}")
    return Comparison("greedy.tokens", dtype, a, b, float(n - i), 0.0, note)


def compare_runs(a: dict, b: dict, dtype: str, name_a: str, name_b: str, tolerance: Optional[float] = None) -> list[Comparison]:
    """Two backend runs on the same work, array by array (top-k log-probabilities where the sets agree)."""
    tol = TOLERANCE[dtype] if tolerance is None else tolerance
    out = []
    for check in ("teacher.logits", "student.logits", "distill.kl", "distill.loss", "srt.loss", "adamw.grad_norm"):
        out.append(Comparison(check, dtype, name_a, name_b, _error(a[check], b[check]), tol))
    same = (a["teacher.topk_idx"] == b["teacher.topk_idx"]).all(-1)
    out.append(Comparison("teacher.topk_logp", dtype, name_a, name_b,
                          _error(a["teacher.topk_logp"][same], b["teacher.topk_logp"][same]), tol,
                          f"{int((~same).sum())} positions with another top-k set"))
    for prefix in ("distill.grad/", "srt.grad/", "adamw.updated/"):
        keys = sorted(k for k in b if k.startswith(prefix))
        err = _error(np.concatenate([a[k].ravel() for k in keys]), np.concatenate([b[k].ravel() for k in keys]))
        out.append(Comparison(prefix.rstrip("/"), dtype, name_a, name_b, err, tol, f"{len(keys)} tensors"))
    out.append(greedy_comparison(a["greedy.tokens"], b["greedy.tokens"], a["greedy.logits"], b["greedy.logits"],
                                 dtype, name_a, name_b))
    return out


# ---------------------------------------------------------------------------------------------
# The harness: every backend here, every dtype; GPU float32 also with TF32 off (child process)
# ---------------------------------------------------------------------------------------------


def run_in_child(model_dir, device: str, dtype: str, env: dict[str, str], timeout: int = 600) -> dict[str, np.ndarray]:
    """backend_run in a fresh process with extra environment (MLX reads MLX_ENABLE_TF32 at start-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.npz"
        cmd = [sys.executable, "-m", "sdzero_mlx.parity", str(model_dir), device, dtype, str(out)]
        done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
        with np.load(out) as data:
            return dict(data)


def run_parity(model_dir, dtypes: Sequence[str] = ("float32", "bfloat16"), gpu: Optional[bool] = None,
               tf32_check: bool = True, log=lambda line: None) -> ParityReport:
    """CPU vs numpy for every dtype; where a GPU works, GPU vs CPU and GPU vs numpy too, and TF32 off vs on."""
    from .platform.device import gpu_status

    status = gpu_status()
    use_gpu = status.available if gpu is None else gpu
    if use_gpu and not status.available:
        raise RuntimeError(f"parity on the GPU was asked for, but there is none: {status.detail}")
    tf32_on = os.environ.get(TF32_ENV, "1") != "0"
    features = [f"{TF32_ENV} = {os.environ.get(TF32_ENV, '1 (MLX default)')} here: with 1, float32 matmul-family operations "
                "may run as TF32 on CUDA and Apple M5-class GPUs, so GPU float32 is named gpu-tf32 and held to the tf32 "
                f"tolerance ({TOLERANCE['tf32']:.0e}); the strict float32 check is gpu-tf32-off"]
    comparisons: list[Comparison] = []
    for dtype in dtypes:
        log(f"{dtype}: cpu")
        cpu = backend_run(model_dir, "cpu", dtype)
        comparisons += reference(model_dir, cpu, dtype, "cpu")
        if not use_gpu:
            continue
        log(f"{dtype}: gpu ({status.backend})")
        gpu_run = backend_run(model_dir, "gpu", dtype)
        name, tol = ("gpu-tf32", TOLERANCE["tf32"]) if dtype == "float32" and tf32_on else ("gpu", None)
        comparisons += reference(model_dir, gpu_run, dtype, name, tol) + compare_runs(gpu_run, cpu, dtype, name, "cpu", tol)
        if dtype == "float32" and tf32_check and tf32_on:
            log("float32: gpu with TF32 off")
            off = run_in_child(model_dir, "gpu", dtype, {TF32_ENV: "0"})
            comparisons += reference(model_dir, off, dtype, "gpu-tf32-off") + compare_runs(off, cpu, dtype, "gpu-tf32-off", "cpu")
            effect = max(_error(gpu_run[k], off[k]) for k in ("teacher.logits", "student.logits", "distill.loss"))
            features.append(f"TF32 on vs off on the {status.backend} GPU: logits/loss differ by {effect:.2e} (normalised)")
    if not use_gpu:
        features.append(f"GPU comparisons skipped: {status.detail}")
    return ParityReport(tuple(comparisons), tuple(features), status.detail)


def format_report(report: ParityReport) -> str:
    """A markdown table of every comparison, then the backend features and the verdict."""
    lines = ["| check | dtype | backend | against | error | tolerance | ok | note |", "|---|---|---|---|---|---|---|---|"]
    for c in report.comparisons:
        lines.append(f"| {c.check} | {c.dtype} | {c.a} | {c.b} | {c.error:.2e} | {c.tolerance:.0e} | "
                     f"{'yes' if c.ok else 'NO'} | {c.note} |")
    lines += ["", "GPU: " + report.gpu] + [f"- {f}" for f in report.features]
    failed = report.failed()
    lines.append("")
    lines.append("parity: ok" if not failed else f"parity: {len(failed)} of {len(report.comparisons)} comparisons out of tolerance")
    return "\n".join(lines)


def report_json(report: ParityReport) -> dict:
    return {"ok": report.ok, "gpu": report.gpu, "features": list(report.features),
            "comparisons": [{**asdict(c), "ok": c.ok} for c in report.comparisons]}


if __name__ == "__main__":  # the child of run_in_child: MODEL_DIR DEVICE DTYPE OUT.npz
    model_dir, device, dtype, out_path = sys.argv[1:5]
    np.savez(out_path, **backend_run(model_dir, device, dtype))
