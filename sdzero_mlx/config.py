"""The recipe: one typed, frozen configuration per runnable job, read from YAML.

`Recipe` is generated (recipe_type): the shared sections below, then one section per stage of the
registry (stages/__init__.py), the dataclass its StageSpec names. A new stage's section appears in
the recipe, and gets its `optim` filled from the top-level one, without a line here.

Every departure from the paper is a field here, with the paper's value in its help text:
- `optim.learning_rate` 1e-4 (paper: 5e-6 with full fine-tuning; LoRA wants larger steps). `optim` is
  the shared default; each training stage (srt, distill, rft, grpo, sft, sdft) has its own `optim`.
- `lora.fine_tune_type` lora (paper: full fine-tuning; `full` and `dora` are available).
- `sampling.temperature` 0.7 (paper; reference code 1.0). `sampling.max_tokens` 512 (paper: 16K).
- `lora.*`: the paper fine-tunes all weights; this project trains LoRA adapters.
- `distill.kl` "reverse" (paper; reference code "mixed" with forward weight 0.5).
- `distill.top_k` 64 renormalised (reference code); 0 means the full vocabulary (paper).
  `distill.top_k_from` teacher, `distill.tail` false (reference code); `distill.kl` also offers jsd
  (`distill.beta`, TRL's) and the sampled-token estimators k1 / k3 (verl's): not in the paper.
- `distill.teacher_context` "cue" (paper: y and sep(r)); sibling / gold / self / answer are other contexts
  (contexts.py), `distill.group_size` 1 (paper: one answer per question), `distill.advantage_weight` 0
  (paper: no policy-gradient term).
- `distill.teacher_sync` "none" (paper's main results); "hard" / "ema" are the paper's
  "iterative self-evolution" (hard sync after ~400 steps in the paper).
- `prompts.phrase_wrong` is the paper's phrase; the reference code uses per-family phrases.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Literal, Optional

from .configio import apply_overrides, from_dict, read_yaml
from .verifier.config import VerifierConfig


@dataclass(frozen=True)
class ModelConfig:
    path: str = field(metadata={"help": "Local model folder or Hugging Face repo id (mlx-lm format)."})
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = field(
        default="auto",
        metadata={"help": "auto: float32 on CPU (bf16 matmuls are slow there), as stored elsewhere."},
    )


@dataclass(frozen=True)
class LoraConfig:
    """What a training stage updates (mlx-lm's three choices) and the adapter shape."""

    fine_tune_type: Literal["lora", "dora", "full"] = field(
        default="lora",
        metadata={"help": "lora / dora: low-rank adapters on the linear layers; full: every weight of the last "
                  "num_layers blocks (mlx-lm's full fine-tuning; the paper fine-tunes all weights). With full, "
                  "the frozen distill teacher keeps its own copy of those weights (2x their memory: cheap for "
                  "small models, not for billions of parameters)."},
    )
    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    num_layers: int = field(default=-1, metadata={"help": "Last N blocks get LoRA; -1 means all."})
    keys: Optional[tuple[str, ...]] = field(
        default=None, metadata={"help": "Module paths inside a block, e.g. self_attn.q_proj; all linears if unset."}
    )
    grad_checkpoint: bool = field(
        default=False,
        metadata={"help": "Recompute each block in the backward pass instead of keeping its activations (mlx-lm's "
                  "--grad-checkpoint): much less memory for long answers, about one more forward of time. "
                  "Same gradients. Not in the paper."},
    )

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"lora.rank must be >= 1, got {self.rank}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}.")

    def mlx_lm_parameters(self) -> dict:
        """The `lora_parameters` dict that mlx-lm's adapter_config.json uses."""
        params = {"rank": self.rank, "scale": self.scale, "dropout": self.dropout}
        if self.fine_tune_type == "full":
            return params  # mlx-lm writes them for full fine-tuning too; unused there
        if self.keys:
            params["keys"] = list(self.keys)
        return params


@dataclass(frozen=True)
class FieldMap:
    problem: str = "problem"
    answer: str = "answer"
    id: Optional[str] = field(default=None, metadata={"help": "Row field holding an id; row number if unset."})
    solution: Optional[str] = field(
        default=None, metadata={"help": "Row field holding a worked gold solution (SFT's targets, SDFT's demonstration)."}
    )
    tests: Optional[str] = field(
        default=None,
        metadata={"help": "Code rows (verifier.kind: code): field holding the tests, {inputs, outputs} or HumanEval test code; "
                  "unset: rows with inputs/outputs or test/entry_point fields are read as code rows."},
    )
    entry_point: Optional[str] = field(
        default=None, metadata={"help": "Code rows: field naming the function HumanEval-style tests call (default entry_point)."}
    )


@dataclass(frozen=True)
class DataConfig:
    source: str = field(
        metadata={"help": "Local .jsonl/.json/.parquet file, hf://owner/name/path/in/repo.parquet, or a generated "
                  "source (demo://inverse, demo://chain, rg://TASK?option=value: reasoning-gym's tasks, extra `tasks`; fresh "
                  "problems per data.seed)."}
    )
    fields: FieldMap = FieldMap()
    eval_source: Optional[str] = field(
        default=None, metadata={"help": "Separate test file (a fixed, shared test set); else the test split is cut "
                                "from source. Source problems also in it are dropped from training and counted."}
    )
    phase1_size: int = 0
    phase2_size: int = 64
    eval_size: int = field(default=64, metadata={"help": "Test problems: read once per reported model, never to choose."})
    validation_size: int = field(
        default=0,
        metadata={"help": "Validation problems, disjoint from training and test: everything that chooses reads them "
                  "(the training probe, `sdzero search`). Needed when run.probe_every > 0."},
    )
    validation_source: Optional[str] = field(
        default=None, metadata={"help": "Separate validation file; else the validation split is cut from source."}
    )
    seed: int = field(
        default=0, metadata={"help": "Shuffles a file's splits, or picks a generated source's problems (sdzero sweep "
                             "sets it with run.seed, so each seed gets its own problems)."}
    )
    max_prompt_tokens: int = field(
        default=4096,
        metadata={"help": "Questions whose prompt is longer are skipped and counted, in every stage, probe and evaluation; "
                  "the model's own context length (less the answer's max_tokens) bounds it too (not in the paper)."},
    )

    def __post_init__(self):
        if self.max_prompt_tokens < 1:
            raise ValueError(f"data.max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}.")
        for name in ("phase1_size", "phase2_size", "eval_size", "validation_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.{name} must be >= 0, got {getattr(self, name)}.")


@dataclass(frozen=True)
class PromptConfig:
    system: Optional[str] = None
    template: str = field(
        default="{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
        metadata={"help": "User turn; {problem} is replaced by the dataset's problem text."},
    )
    phrase_right: str = field(
        default="Let me rephrase the above solution.", metadata={"help": "P_r for r = 1 (paper)."}
    )
    phrase_wrong: str = field(
        default="Wait, this response is not correct, let me start over.",
        metadata={"help": "P_r for r = 0 (paper; reference code: per model family)."},
    )
    enable_thinking: Optional[bool] = field(
        default=None,
        metadata={"help": "Passed to the chat template as enable_thinking (Qwen3 and templates that read it): false "
                  "keeps thinking models from spending max_tokens in <think> blocks (the paper uses non-thinking "
                  "models). Unset: the template's default. Refused for a template that does not read it."},
    )

    def __post_init__(self):
        if "{problem}" not in self.template:
            raise ValueError("prompts.template must contain {problem}.")


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = field(default=0.7, metadata={"help": "Paper 0.7; reference code 1.0."})
    top_p: float = 1.0
    max_tokens: int = field(default=512, metadata={"help": "Paper: 16K training tokens."})
    batch_size: int = 16
    fuse_lora: bool = field(default=True, metadata={
        "help": "Sample through LoRA-fused weights (1.1-1.2x faster sampling on small models, the same samples up to "
                "float rounding); costs one more copy of the adapted weights while sampling: false where memory is tight."})

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be >= 0, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}.")
        if self.max_tokens < 1 or self.batch_size < 1:
            raise ValueError("sampling.max_tokens and sampling.batch_size must be >= 1.")


@dataclass(frozen=True)
class OptimConfig:
    """One training stage's optimizer (AdamW). The recipe's top-level `optim:` is the shared default;
    a stage's own `optim:` overrides it field by field, and the resolved recipe shows each in full."""

    learning_rate: float = field(default=1e-4, metadata={"help": "Paper: 5e-6 (full fine-tuning)."})
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = 0.0
    grad_clip: float = field(default=1.0, metadata={"help": "Global gradient-norm clip; 0 disables."})
    kl_to_initial: float = field(
        default=0.0,
        metadata={"help": "Weight of a per-token k3 penalty exp(d) - d - 1, d = log pi_initial - log pi (both at temperature "
                  "1), on the trained tokens; pi_initial = the stage's starting model. On sampled tokens its value "
                  "estimates KL(pi || pi_initial) and its expected gradient is that of KL(pi_initial || pi); on RFT / "
                  "SFT / SRT tokens it is a per-token penalty, not a KL estimate (loss.k3_kl). Costs a copy of the "
                  "trained parameters (with lora.fine_tune_type full: of those weights) and a reference pass per "
                  "micro-batch; 0 = off, and neither (SD-Zero, SRT: none in the paper; DAPO: 0)."},
    )

    def __post_init__(self):
        # `not x >= 0` rather than `x < 0`: NaN fails every comparison (from_dict refuses it; Python callers may not)
        if not self.learning_rate > 0 or math.isinf(self.learning_rate):
            raise ValueError(f"optim.learning_rate must be a finite number > 0, got {self.learning_rate}.")
        for name in ("warmup_steps", "grad_clip", "kl_to_initial", "weight_decay"):
            value = getattr(self, name)
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"optim.{name} must be a finite number >= 0, got {value}.")


DIVERGENCES = ("reverse", "forward", "mixed", "jsd")  # over a support: the full vocabulary or top-k ids
ESTIMATORS = ("k1", "k3")  # on the sampled token alone


@dataclass(frozen=True)
class KlSettings:
    """How the student's loss to the teacher is taken, as one value: built once from the distill section
    (`DistillConfig.kl_settings`) and read by kd.py, the distill and SDFT stages, explain and parity.

    Its defaults are DistillConfig's, the one place they are written; the last three have the same
    defaults here so that a record written as (kind, forward_weight, top_k) means what it meant."""

    kind: Literal["reverse", "forward", "mixed", "jsd", "k1", "k3"]  # a divergence or a sampled-token estimator
    forward_weight: float  # weight of the forward KL when kind = mixed
    top_k: int  # the support: top-k ids (renormalised unless tail); 0 = the full vocabulary; not read by k1 / k3
    beta: float = 0.5  # jsd: TRL's beta, 0 = forward KL, 1 = reverse KL
    top_k_from: Literal["teacher", "student"] = "teacher"  # whose top-k ids make the support
    tail: bool = False  # the rest of the mass as one more category instead of renormalising

    def __post_init__(self):
        if self.kind not in DIVERGENCES + ESTIMATORS:
            raise ValueError(f"KL kind {self.kind!r} is not one of {', '.join(DIVERGENCES + ESTIMATORS)} (distill.kl).")
        if self.top_k < 0:
            raise ValueError(f"distill.top_k must be >= 0 (0 = full vocabulary), got {self.top_k}.")
        if not 0.0 <= self.forward_weight <= 1.0:
            raise ValueError(f"distill.forward_weight must be in [0, 1], got {self.forward_weight}.")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"distill.beta must be in [0, 1] (0 = forward KL, 1 = reverse KL), got {self.beta}.")
        if self.top_k_from not in ("teacher", "student"):
            raise ValueError(f"distill.top_k_from must be teacher or student, got {self.top_k_from!r}.")
        if self.kind in ESTIMATORS:
            # k1 / k3 read log p(y_t) of the sampled token alone: there is no support to choose or bucket
            if self.tail or self.top_k_from != "teacher":
                raise ValueError(f"distill.kl = {self.kind} reads only the sampled token's log-probabilities, so "
                                 "distill.tail and distill.top_k_from have nothing to act on. Set distill.tail: false "
                                 "and distill.top_k_from: teacher, or a divergence (distill.kl: reverse, forward, mixed, jsd).")
            return
        if self.top_k == 0 and self.tail:
            raise ValueError("distill.tail needs a top-k support: the full vocabulary (distill.top_k: 0) leaves no mass "
                             "outside it. Set distill.top_k > 0 or distill.tail: false.")
        if self.top_k == 0 and self.top_k_from == "student":
            raise ValueError("distill.top_k_from: student needs distill.top_k > 0 (0 = the full vocabulary, which no "
                             "model chooses). Set distill.top_k > 0 or distill.top_k_from: teacher.")

    @property
    def estimator(self) -> bool:
        """A sampled-token estimator (k1, k3) rather than a divergence over a support."""
        return self.kind in ESTIMATORS


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 10
    questions_per_step: int = field(default=8, metadata={"help": "Questions per optimizer step, group_size answers each."})
    micro_batch_size: int = field(default=8, metadata={"help": "Sequences per forward/backward; accumulation."})
    teacher_context: Literal["cue", "sibling", "gold", "self", "answer"] = field(
        default="cue",
        metadata={"help": "What the teacher reads before the student's answer y (contexts.py; docs/configuration.md#the-"
                  "teachers-context): cue (paper): y and sep(r); sibling: another answer of the same question that "
                  "verified (groups of group_size), then sep(1); gold: the row's solution, then sep(1) (SDFT's gold); "
                  "self: y itself, then sep(1), when it verifies (SDFT's own); answer: y, then sep(r) stating the gold "
                  "final answer (answer_phrase)."},
    )
    group_size: int = field(
        default=1,
        metadata={"help": "Answers sampled per question, each trained (paper: 1); generations per step = questions_per_step "
                  "x group_size. teacher_context sibling and advantage_weight need >= 2 (GRPO's: 4)."},
    )
    no_sibling: Literal["cue", "skip"] = field(
        default="cue",
        metadata={"help": "teacher_context sibling, a group in which no answer verifies: cue (its answers are taught by the "
                  "paper's context) or skip (left out of the step; their generations still count). Not in the paper."},
    )
    answer_phrase: str = field(
        default="The correct final answer is {answer}.",
        metadata={"help": "teacher_context answer: the sentence after P_r in the cue; {answer} is the row's gold answer. "
                  "Not in the paper (its cue states only right or wrong)."},
    )
    advantage_weight: float = field(
        default=0.0,
        metadata={"help": "Adds GRPO's policy-gradient term on the same samples to the distillation: weight x "
                  "-A x log p(y_t) on each token (A: the group-normalised reward, one update, temperature 1), over "
                  "the step's tokens like the KL. Paper: 0 (distillation alone); needs group_size >= 2."},
    )
    kl: Literal["reverse", "forward", "mixed", "jsd", "k1", "k3"] = field(
        default="reverse",
        metadata={"help": "reverse KL(s || t), forward KL(t || s), mixed (forward_weight), jsd (TRL's generalized JSD, "
                  "beta), or a sampled-token estimator of KL(s || t) that reads only log p(y_t): k1 (trained by its "
                  "score-function gradient, as verl's policy-gradient distillation) or k3 (loss.k3_kl, as the "
                  "kl_to_initial penalty: its expected gradient is the forward KL's). Paper: reverse; reference code: mixed."},
    )
    forward_weight: float = field(default=0.5, metadata={"help": "Weight of forward KL when kl = mixed."})
    beta: float = field(
        default=0.5,
        metadata={"help": "kl = jsd: beta KL(t || m) + (1 - beta) KL(s || m), m = beta p_t + (1 - beta) p_s (TRL's GKD "
                  "beta: 0 = forward KL, 1 = reverse KL exactly). Not in the paper (reverse KL)."},
    )
    top_k: int = field(
        default=64,
        metadata={"help": "Support of the divergence: top-k ids, renormalised over them unless tail (reference code: the "
                  "teacher's 64); 0 = the full vocabulary (paper). Not read by k1 / k3."},
    )
    top_k_from: Literal["teacher", "student"] = field(
        default="teacher",
        metadata={"help": "Whose top-k ids make the support: the teacher's (reference code) or the student's (SDPO's; "
                  "one more student forward per micro-batch). Paper: the full vocabulary."},
    )
    tail: bool = field(
        default=False,
        metadata={"help": "Keep the mass outside the top-k as one more category, log(1 - sum p) clamped below 1 (SDPO), "
                  "instead of renormalising over the top-k (reference code). Paper: the full vocabulary, no tail."},
    )
    max_teacher_tokens: int = field(
        default=2048, metadata={"help": "Cap on prompt + y + sep + y; y is truncated identically in both."}
    )
    teacher_sync: Literal["none", "hard", "ema"] = field(default="none", metadata={"help": "Paper main results: none."})
    sync_every: int = field(default=0, metadata={"help": "Steps between hard syncs."})
    ema_decay: float = field(default=0.99, metadata={"help": "Teacher <- decay * teacher + (1 - decay) * student."})
    optim: OptimConfig = field(default=OptimConfig(), metadata={"help": "This stage's optimizer (defaults: top-level optim)."})

    def __post_init__(self):
        if self.steps < 1 or self.questions_per_step < 1 or self.micro_batch_size < 1 or self.group_size < 1:
            raise ValueError("distill.steps, questions_per_step, micro_batch_size and group_size must be >= 1.")
        self.kl_settings  # checks kl, forward_weight, beta, top_k, top_k_from and tail
        if self.teacher_context == "sibling" and self.group_size < 2:
            raise ValueError("distill.teacher_context: sibling reads another answer to the same question, and "
                             f"distill.group_size is {self.group_size}: set distill.group_size >= 2 (GRPO's 4).")
        if self.no_sibling != "cue" and self.teacher_context != "sibling":
            raise ValueError(f"distill.no_sibling is read only with teacher_context: sibling (it is "
                             f"{self.teacher_context}); remove it or set teacher_context: sibling.")
        if "{answer}" not in self.answer_phrase:
            raise ValueError(f"distill.answer_phrase must contain {{answer}} (the row's gold answer), got {self.answer_phrase!r}.")
        if self.advantage_weight < 0:
            raise ValueError(f"distill.advantage_weight must be >= 0, got {self.advantage_weight}.")
        if self.advantage_weight > 0 and self.group_size < 2:
            raise ValueError("distill.advantage_weight compares the answers of a group (GRPO's advantage), and "
                             f"distill.group_size is {self.group_size}: set distill.group_size >= 2 (GRPO's 4).")
        if self.teacher_sync == "hard" and self.sync_every < 1:
            raise ValueError("distill.teacher_sync = hard needs distill.sync_every >= 1 (steps between syncs).")
        if self.teacher_sync != "hard" and self.sync_every:
            raise ValueError("distill.sync_every is only used with distill.teacher_sync = hard; remove it or set hard.")
        if self.teacher_sync == "ema" and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"distill.ema_decay must be in (0, 1), got {self.ema_decay}.")

    @property
    def kl_settings(self) -> KlSettings:
        """The KL of this section as one record (distill and SDFT train with it, explain shows it)."""
        return KlSettings(kind=self.kl, forward_weight=self.forward_weight, top_k=self.top_k, beta=self.beta,
                          top_k_from=self.top_k_from, tail=self.tail)


@dataclass(frozen=True)
class CollectConfig:
    """Phase 1 collection: initial answers, then revisions continued after sep(r)."""

    initial_samples: int = field(default=1, metadata={"help": "n initial answers per question (paper: 1)."})
    revisions: int = field(default=3, metadata={"help": "k revisions per initial answer (paper: 3)."})
    rephrase_correct: bool = field(default=True, metadata={"help": "Also revise correct answers (rephrase cue)."})
    target_tuples: int = field(default=0, metadata={"help": "Stop after this many kept tuples; 0 = whole split."})
    questions_per_batch: int = field(
        default=16, metadata={"help": "Questions sampled and revised together; also the resume unit (not in the paper)."}
    )
    clean: bool = field(default=True, metadata={"help": "Trim repeating tails, cut sycophantic openers (reference code)."})
    tail_min_repeats: int = field(default=3, metadata={"help": "Copies of a block that make a tail degenerate (reference: 3)."})
    tail_min_tokens: int = field(
        default=16, metadata={"help": "Shortest degenerate tail in tokens (reference: 3 x >= 10 characters)."}
    )

    def __post_init__(self):
        if self.initial_samples < 1 or self.revisions < 1 or self.target_tuples < 0:
            raise ValueError("collect.initial_samples and collect.revisions must be >= 1, target_tuples >= 0.")
        if self.questions_per_batch < 1 or self.tail_min_repeats < 2 or self.tail_min_tokens < 1:
            raise ValueError("collect.questions_per_batch >= 1, tail_min_repeats >= 2 and tail_min_tokens >= 1 are needed.")


@dataclass(frozen=True)
class SrtConfig:
    """Phase 1 training on kept tuples: revision loss + generation loss."""

    mode: Literal["summed", "staged", "revision", "generation"] = field(
        default="summed",
        metadata={"help": "Paper: both NLL terms summed; reference code: two consecutive stages; "
                          "revision / generation: one term only (the paper's ablation: 52.2 / 56.4 vs 57.6)."},
    )
    epochs: int = 1
    batch_size: int = field(default=8, metadata={"help": "Tuples per optimizer step."})
    micro_batch_size: int = 4
    max_tokens: int = field(default=2048, metadata={"help": "Longest training sequence; longer tuples are dropped."})
    generation_tuples: Literal["all", "wrong"] = field(
        default="all",
        metadata={"help": "Tuples the generation term trains on: all (paper) or wrong-initial only (reference code's "
                  "generation stage), so right first answers do not teach the Generator to write two attempts."},
    )
    drop_truncated: bool = field(
        default=False, metadata={"help": "Drop tuples whose revision max_tokens cut (no end-of-turn token); kept in the paper."}
    )
    stage2_size: int = field(
        default=1000,
        metadata={"help": "staged mode: tuples of the revision stage, correct-initial first (reference code: 1000); "
                  "the other wrong-initial tuples train the generation stage, which runs first."},
    )
    tuples: str = field(
        default="", metadata={"help": "Tuples JSONL to train on; empty: RUN/collect/tuples.jsonl beside the SRT run."}
    )
    optim: OptimConfig = field(default=OptimConfig(), metadata={"help": "SRT's optimizer (paper: lr 5e-6, full fine-tuning) (defaults: top-level optim)."})

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("srt.epochs, batch_size and micro_batch_size must be >= 1.")
        if self.stage2_size < 1:
            raise ValueError(f"srt.stage2_size must be >= 1, got {self.stage2_size}.")


@dataclass(frozen=True)
class EvalConfig:
    """The paper's protocol: avg@k and pass@k at temperature 0.7, k = 8."""

    k: int = 8
    temperature: float = 0.7
    max_tokens: int = 512
    greedy: bool = field(default=True, metadata={"help": "Also report greedy (temperature 0) accuracy."})
    revise: bool = field(default=False, metadata={"help": "Also run generate-then-revise."})

    def __post_init__(self):
        if self.k < 1 or self.max_tokens < 1 or self.temperature < 0:
            raise ValueError("eval.k and eval.max_tokens must be >= 1, eval.temperature >= 0.")


# ---------------------------------------------------------------------------------------------
# Baselines (the paper's Table 1 controls), each a stage of its own with its own optimizer
# ---------------------------------------------------------------------------------------------


def _optim_field(what: str):
    return field(default=OptimConfig(), metadata={"help": f"{what}'s optimizer (defaults: top-level optim)."})


@dataclass(frozen=True)
class RftConfig:
    """Rejection-sampling fine-tuning, iterated on-policy: sample k answers per question from the
    current model, keep the verified ones, one NLL step on them (end-of-turn token included)."""

    steps: int = 10
    questions_per_step: int = 8
    samples_per_question: int = field(default=4, metadata={"help": "k answers sampled per question (the paper's RFT keeps every verified one)."})
    micro_batch_size: int = 8
    optim: OptimConfig = _optim_field("RFT")

    def __post_init__(self):
        if min(self.steps, self.questions_per_step, self.samples_per_question, self.micro_batch_size) < 1:
            raise ValueError("rft.steps, questions_per_step, samples_per_question and micro_batch_size must be >= 1.")


@dataclass(frozen=True)
class GrpoConfig:
    """GRPO with DAPO's choices: group-normalised advantages from the binary reward, token-level
    loss normalisation, clip-higher, optional dynamic sampling, no KL term by default (grpo.optim.kl_to_initial)."""

    steps: int = 10
    questions_per_step: int = 8
    group_size: int = field(default=4, metadata={"help": "G samples per question (DAPO: 16)."})
    micro_batch_size: int = 8
    scale_advantages: bool = field(
        default=True, metadata={"help": "Divide by the group's reward std (GRPO, DAPO); false = Dr. GRPO (mean only)."}
    )
    clip_low: float = field(default=0.2, metadata={"help": "Ratio clip below: 1 - clip_low (PPO / DAPO: 0.2)."})
    clip_high: float = field(default=0.28, metadata={"help": "Ratio clip above: 1 + clip_high (DAPO clip-higher: 0.28)."})
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Drop groups whose rewards are all equal (they carry no advantage). DAPO also resamples to "
                  "refill the batch; here the step trains on fewer groups (and skips the update if none is left)."},
    )
    updates_per_batch: int = field(
        default=1, metadata={"help": "Optimizer steps on each sampled batch (>1: the ratio and clipping take effect)."}
    )
    optim: OptimConfig = _optim_field("GRPO")

    def __post_init__(self):
        if min(self.steps, self.questions_per_step, self.micro_batch_size, self.updates_per_batch) < 1:
            raise ValueError("grpo.steps, questions_per_step, micro_batch_size and updates_per_batch must be >= 1.")
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2 (advantages compare samples of a group), got {self.group_size}.")
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0):
            raise ValueError(f"grpo.clip_low must be in [0, 1) and clip_high >= 0, got {self.clip_low}, {self.clip_high}.")


@dataclass(frozen=True)
class SftConfig:
    """Supervised fine-tuning on the dataset's gold solutions (data.fields.solution), NLL with the
    end-of-turn token, over the same training questions the other methods use."""

    epochs: int = 1
    batch_size: int = field(default=8, metadata={"help": "Solutions per optimizer step."})
    micro_batch_size: int = 8
    steps: int = field(default=0, metadata={"help": "Optimizer steps; 0 = epochs x (questions / batch_size)."})
    optim: OptimConfig = _optim_field("SFT")

    def __post_init__(self):
        if min(self.epochs, self.batch_size, self.micro_batch_size) < 1 or self.steps < 0:
            raise ValueError("sft.epochs, batch_size and micro_batch_size must be >= 1, steps >= 0.")


@dataclass(frozen=True)
class SdftConfig:
    """Self-distillation from demonstrations: phase 2's code, whose teacher reads a demonstration
    instead of the student's own attempt and cue. KL direction, top-k, teacher cap and micro-batch
    size come from the distill section, so the two differ only in the teacher's context."""

    steps: int = 10
    questions_per_step: int = 8
    demonstration: Literal["gold", "own"] = field(
        default="gold",
        metadata={"help": "gold: the dataset's solution where it has one, else a verified own sample from this step "
                  "(a question with neither is taught by the plain model); own: always a verified own sample."},
    )
    context: Literal["user", "rephrase"] = field(
        default="user",
        metadata={"help": "user (SDFT's form): the demonstration is shown in the user turn with demo_template; rephrase: "
                  "it stands as a first attempt followed by sep(r=1), SD-Zero's layout with a correct answer."},
    )
    demo_template: str = field(
        default="{problem}\n\nThis is an example of a correct solution:\n{demonstration}\n\nNow answer with a solution of your own.",
        metadata={"help": "Teacher's user turn for context=user; {problem} and {demonstration} are replaced."},
    )
    optim: OptimConfig = _optim_field("SDFT")

    def __post_init__(self):
        if self.steps < 1 or self.questions_per_step < 1:
            raise ValueError("sdft.steps and questions_per_step must be >= 1.")
        if "{demonstration}" not in self.demo_template:
            raise ValueError("sdft.demo_template must contain {demonstration}.")


# the name users typed for SD-Zero's model before the method took its stage's name (distill); still accepted
METHOD_ALIASES = {"sd-zero": "distill"}

# what a variant's overrides may not change: every row is compared from the same model on the same problems
COMPARED_ON = ("model", "data")


def slug(name: str) -> str:
    """A variant's id and folder name: its name in lower case, every run of other characters one hyphen.

    Example: slug("SD-Zero (paper loss)") == "sd-zero-paper-loss"
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class VariantConfig:
    """A row of `compare` that is a training stage with other settings: trained in RUN/<slug of its name> from
    what its stage starts from (distill: the chain's SRT model; a baseline: model.path), with its own budget line,
    evaluated like every other row."""

    name: str = field(metadata={"help": "Its label in every table and JSON, e.g. 'SD-Zero (no penalty)'; its id and "
                                "folder are the name's slug (sd-zero-no-penalty); --methods takes either."})
    stage: str = field(metadata={"help": "The stage it trains: distill, or a baseline (rft, grpo, sft, sdft)."})
    set: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Overrides, section.key=value, of the sections its stage reads but model and data (the "
                  "starting model and the problems every row shares), e.g. distill.optim.kl_to_initial=0. A sampling "
                  "baseline's steps come from the matched budget, so they cannot be set here."},
    )

    @property
    def id(self) -> str:
        return slug(self.name)


@dataclass(frozen=True)
class CompareConfig:
    """`sdzero compare`: every method on the same splits, evaluated the same way, one table."""

    methods: tuple[str, ...] = field(
        default=(),
        metadata={"help": "base, any training stage (stages.methods()) and any variant (by name or id); empty: all of "
                  "them."},
    )
    budget_generations: int = field(
        default=0,
        metadata={"help": "Generations each sampling baseline may spend; 0 = what SD-Zero spent (collect + distill), "
                  "the paper's matched budget. A baseline's steps = budget / generations per step."},
    )
    variants: tuple[VariantConfig, ...] = field(
        default=(),
        metadata={"help": "More rows: a stage with overrides under a name of its own, e.g. {name: SD-Zero (no penalty), "
                  "stage: distill, set: [distill.optim.kl_to_initial=0]} (docs/baselines.md#variants)."},
    )

    def __post_init__(self):
        from .stages import methods

        self._check_variants()
        known = methods() + tuple(v.id for v in self.variants)
        by_name = {v.name: v.id for v in self.variants}
        chosen = tuple(by_name.get(m, METHOD_ALIASES.get(m, m)) for m in self.methods) or known
        object.__setattr__(self, "methods", chosen)
        unknown = [m for m in chosen if m not in known]
        if unknown:
            raise ValueError(f"compare.methods {list(self.methods)}: unknown {unknown}; use some of {list(known)}"
                             + (f" (variants also by name: {list(by_name)})" if by_name else "") + ".")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"compare.methods {list(self.methods)} names a method twice.")
        if self.budget_generations < 0:
            raise ValueError("compare.budget_generations must be >= 0 (0 = match SD-Zero).")

    def _check_variants(self) -> None:
        """Names, stages and the fields each variant's overrides may set (their values: variant_recipe)."""
        from .stages import baselines, labels, stage_specs

        specs = {s.name: s for s in stage_specs()}
        reserved = set(specs) | {"base", "eval", "explain"}  # folders and files of a run directory
        stages = ["distill"] + [s.name for s in baselines()]
        seen: dict[str, str] = {}
        for v in self.variants:
            where = f"compare.variants {v.name!r}"
            if not v.id or "," in v.name:
                raise ValueError(f"{where}: a variant's name needs a letter or digit and no comma (--methods splits at "
                                 "commas), e.g. 'SD-Zero (paper loss)'.")
            if v.name in labels().values() or v.id in reserved:
                raise ValueError(f"{where}: its name (or id {v.id!r}) is taken by a stage or a run folder; name the "
                                 "variant for what it changes, e.g. 'SD-Zero (paper loss)'.")
            if v.id in seen:
                raise ValueError(f"{where}: its id {v.id!r} is also that of {seen[v.id]!r}; give the variants distinct "
                                 "names.")
            seen[v.id] = v.name
            stage = METHOD_ALIASES.get(v.stage, v.stage)
            if stage not in stages:
                raise ValueError(f"{where}: stage {v.stage!r} is not one a variant can train; use one of {stages} (srt's "
                                 "model is the chain's own, which distill starts from).")
            object.__setattr__(v, "stage", stage)
            if not v.set:
                raise ValueError(f"{where}: no overrides (set: [...]), so it would train {stage}'s model again; give "
                                 f"it at least one, e.g. {stage}.optim.learning_rate=3e-5.")
            spec = specs[stage]
            allowed = [s for s in spec.sections if s not in COMPARED_ON]
            for item in v.set:
                key = item.split("=", 1)[0].strip()
                section = key.split(".", 1)[0]
                if "=" not in item or "." not in key:
                    raise ValueError(f"{where}: override {item!r} must look like section.key=value, e.g. "
                                     f"{stage}.optim.learning_rate=3e-5.")
                if section not in allowed:
                    fix = (f"write {stage}.{key}" if section == "optim" else
                           "every row starts from the same model on the same problems" if section in COMPARED_ON else
                           f"{stage} does not read it")
                    raise ValueError(f"{where}: override {item!r} is outside the sections a variant of {stage} may set "
                                     f"({', '.join(allowed)}): {fix}.")
                if key == f"{stage}.steps" and spec.generations_per_step is not None and spec.baseline:
                    raise ValueError(f"{where}: {key} is set by the matched budget (compare.budget_generations); "
                                     "remove it.")

    def labels(self) -> dict[str, str]:
        """Method id -> its label in tables: the stages' and the variants'."""
        from .stages import labels

        return labels() | {v.id: v.name for v in self.variants}

    def variant(self, method: str) -> Optional[VariantConfig]:
        """The variant whose id is `method`, else None."""
        return next((v for v in self.variants if v.id == method), None)


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = "runs/distill"
    seed: int = 0
    save_every: int = field(default=1, metadata={"help": "Checkpoint every N optimizer steps (LoRA state is small)."})
    probe_every: int = field(
        default=0, metadata={"help": "Greedy accuracy on a fixed probe set every N steps of each training stage; 0 = off."}
    )
    probe_size: int = field(default=32, metadata={"help": "Probe problems: the first N of the validation split (never the test split)."})
    device: Literal["auto", "cpu", "gpu"] = field(
        default="auto", metadata={"help": "auto: MLX's default (the GPU when there is one); gpu: fail without one."}
    )
    workers: int = field(
        default=1,
        metadata={"help": "compare / sweep / demo: processes that run independent stages at once (the baselines beside "
                  "the SD-Zero chain, and the evaluations); each loads its own model. 2 suits a CPU with 2+ cores "
                  "(sdzero's BLAS uses one thread per process); the numbers are the same for any value "
                  "(docs/configuration.md#stages-side-by-side)."},
    )
    retrain: bool = field(
        default=False,
        metadata={"help": "run / compare / sweep into a folder whose finished (or started) stage was made from other "
                  "settings or inputs: false refuses, naming the fields that changed; true trains that stage again, "
                  "and with it what depends on it (--retrain on the command line). Unchanged stages are reused."},
    )
    metrics: tuple[str, ...] = field(
        default=("jsonl",),
        metadata={"help": "Where step records go: jsonl (RUN/metrics.jsonl, always needed), wandb, tensorboard "
                  "(optional extras, imported only when named; see sinks.py)."},
    )

    def __post_init__(self):
        from .sinks import SINKS

        if "jsonl" not in self.metrics or any(m not in SINKS for m in self.metrics):
            raise ValueError(f"run.metrics {list(self.metrics)}: use some of {list(SINKS)}, always with jsonl "
                             "(plots, compare and resume read metrics.jsonl), e.g. [jsonl, wandb].")
        if self.workers < 1:
            raise ValueError(f"run.workers must be >= 1 (1: every stage in this process), got {self.workers}.")
        if self.save_every < 1:
            raise ValueError(f"run.save_every must be >= 1, got {self.save_every}.")
        if self.probe_every < 0 or self.probe_size < 1:
            raise ValueError(f"run.probe_every must be >= 0 and run.probe_size >= 1, got {self.probe_every}, {self.probe_size}.")
        if not 0 <= self.seed < 2**31:  # mx.random.seed takes a non-negative integer
            raise ValueError(f"run.seed must be in [0, 2^31), got {self.seed}.")


# The recipe: these shared sections, then one section per stage of the registry (stages/__init__.py),
# in its order. The Recipe dataclass is generated from them (recipe_type): a stage's section is
# declared once, in its StageSpec, and appears here without a line of its own.
SHARED_SECTIONS = (
    ("model", ModelConfig, None),
    ("data", DataConfig, None),
    ("lora", LoraConfig, LoraConfig()),
    ("prompts", PromptConfig, PromptConfig()),
    ("sampling", SamplingConfig, SamplingConfig()),
    ("optim", OptimConfig, OptimConfig()),  # the shared default of every stage's optim section
)
CLOSING_SECTIONS = (
    ("compare", CompareConfig, None),  # built when the recipe is: its default lists the registered methods
    ("eval", EvalConfig, EvalConfig()),
    ("verifier", VerifierConfig, VerifierConfig()),
    ("run", RunConfig, RunConfig()),
)


def _check_recipe(recipe) -> None:
    """Checks across sections: the shared ones here, each stage's own in its StageSpec.check."""
    from .stages import stage_specs

    if recipe.verifier.kind != "code" and (recipe.data.fields.tests or recipe.data.fields.entry_point):
        raise ValueError("data.fields.tests / entry_point name code tests, but verifier.kind is "
                         f"{recipe.verifier.kind!r}; set verifier.kind: code.")
    if recipe.run.probe_every and not (recipe.data.validation_size or recipe.data.validation_source):
        raise ValueError(
            "run.probe_every > 0 reads the validation split, and this recipe has none: set data.validation_size "
            "(problems cut from data.source) or data.validation_source, or run.probe_every: 0."
        )
    for spec in stage_specs():
        if spec.check is not None:
            spec.check(recipe)
    for variant in recipe.compare.variants:
        variant_recipe(recipe, variant)  # its overrides' values, checked as the recipe's own are


def variant_recipe(recipe, variant: VariantConfig):
    """The recipe a compare variant trains with: `recipe` with the variant's overrides, and a compare section of
    its own (no variants: a variant's recipe is not compared)."""
    from .configio import to_dict

    data = to_dict(recipe)
    data["compare"] = {"budget_generations": recipe.compare.budget_generations}
    try:
        return from_dict(type(recipe), apply_overrides(data, list(variant.set)), where="recipe")
    except (ValueError, TypeError) as err:
        raise ValueError(f"compare.variants {variant.name!r}: {err}") from None


@functools.lru_cache(maxsize=None)
def _recipe_type(stage_sections: tuple[tuple[str, type], ...]) -> type:
    fields = []
    for name, tp, default in SHARED_SECTIONS + tuple((n, t, t()) for n, t in stage_sections) + CLOSING_SECTIONS:
        if default is None and name == "compare":
            fields.append((name, tp, field(default_factory=CompareConfig)))
        elif default is None:
            fields.append((name, tp))
        else:
            fields.append((name, tp, field(default=default)))
    cls = make_dataclass(
        "Recipe", fields, frozen=True,
        namespace={"__doc__": "Every section of a run: the shared ones and one per stage (each stage reads only "
                              "its StageSpec.sections).", "__post_init__": _check_recipe},
    )
    cls.__module__ = __name__
    return cls


def recipe_type() -> type:
    """The Recipe dataclass for the stages registered now (the built-in ones: `config.Recipe`)."""
    from .stages import stage_specs

    return _recipe_type(tuple((s.name, s.section) for s in stage_specs()))


def training_sections() -> tuple[str, ...]:
    """Sections that train, each with its own complete `optim` (top-level `optim` is their shared default)."""
    from .stages import training_stages

    return tuple(s.name for s in training_stages())


def __getattr__(name: str):
    if name == "Recipe":  # generated on first use: the registry imports the stage modules, which import this one
        return recipe_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def with_stage_optim(data: dict) -> dict:
    """Fill each training stage's `optim` from the top-level one, field by field under its own."""
    shared = data.get("optim") or {}
    if not isinstance(shared, dict):
        return data  # from_dict reports the malformed section
    out = dict(data)
    for stage in training_sections():
        section = out.get(stage) or {}
        if not isinstance(section, dict):
            continue
        own = section.get("optim") or {}
        if isinstance(own, dict):
            out[stage] = {**section, "optim": {**shared, **own}}
    return out


def shared_optim_overrides(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """`optim.X=v` given on the command line also sets `S.optim.X` of every training stage S that the same
    command does not set itself: a resolved recipe (every run's recipe.yaml) spells out each stage's optim,
    so the shared default alone would change nothing.

    Example: ["optim.learning_rate=3e-4", "rft.optim.learning_rate=1e-5"] adds srt/distill/grpo/sft/sdft's
    learning_rate=3e-4 and leaves rft's at 1e-5.
    """
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    out = list(overrides)
    for item, key in zip(overrides, keys):
        if key.startswith("optim.") and "=" in item:
            value = item.split("=", 1)[1]
            out += [f"{stage}.{key}={value}" for stage in training_sections() if f"{stage}.{key}" not in keys]
    return out


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """Read a recipe YAML, apply `section.key=value` overrides, validate, return it.

    Relative file paths inside the recipe (model.path, data.source) stay relative to the
    current directory, as a user typing them would expect. `--set optim.X=v` reaches every stage
    (shared_optim_overrides).
    """
    data = with_stage_optim(apply_overrides(read_yaml(path), shared_optim_overrides(list(overrides))))
    try:
        return from_dict(recipe_type(), data, where="recipe")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None
