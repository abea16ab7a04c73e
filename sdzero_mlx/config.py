"""The recipe: one typed, frozen configuration per runnable job, read from YAML.

Every departure from the paper is a field here, with the paper's value in its help text:
- `optim.learning_rate` 1e-4 (paper: 5e-6 with full fine-tuning; LoRA wants larger steps).
- `sampling.temperature` 0.7 (paper; reference code 1.0). `sampling.max_tokens` 512 (paper: 16K).
- `lora.*`: the paper fine-tunes all weights; this project trains LoRA adapters.
- `distill.kl` "reverse" (paper; reference code "mixed" with forward weight 0.5).
- `distill.top_k` 64 renormalised (reference code); 0 means the full vocabulary.
- `distill.teacher_sync` "none" (paper's main results); "hard" / "ema" are the paper's
  "iterative self-evolution" (hard sync after ~400 steps in the paper).
- `prompts.phrase_wrong` is the paper's phrase; the reference code uses per-family phrases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    num_layers: int = field(default=-1, metadata={"help": "Last N blocks get LoRA; -1 means all."})
    keys: Optional[tuple[str, ...]] = field(
        default=None, metadata={"help": "Module paths inside a block, e.g. self_attn.q_proj; all linears if unset."}
    )

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"lora.rank must be >= 1, got {self.rank}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}.")

    def mlx_lm_parameters(self) -> dict:
        """The `lora_parameters` dict that mlx-lm's adapter_config.json uses."""
        params = {"rank": self.rank, "scale": self.scale, "dropout": self.dropout}
        if self.keys:
            params["keys"] = list(self.keys)
        return params


@dataclass(frozen=True)
class FieldMap:
    problem: str = "problem"
    answer: str = "answer"
    id: Optional[str] = field(default=None, metadata={"help": "Row field holding an id; row number if unset."})


@dataclass(frozen=True)
class DataConfig:
    source: str = field(
        metadata={"help": "Local .jsonl/.json/.parquet file, or hf://owner/name/path/in/repo.parquet."}
    )
    fields: FieldMap = FieldMap()
    eval_source: Optional[str] = field(
        default=None, metadata={"help": "Separate evaluation file; else the eval split is cut from source."}
    )
    phase1_size: int = 0
    phase2_size: int = 64
    eval_size: int = 64
    seed: int = 0
    max_prompt_tokens: int = field(
        default=4096, metadata={"help": "Phase-1 questions whose prompt is longer are skipped and counted (not in the paper)."}
    )

    def __post_init__(self):
        if self.max_prompt_tokens < 1:
            raise ValueError(f"data.max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}.")
        for name in ("phase1_size", "phase2_size", "eval_size"):
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

    def __post_init__(self):
        if "{problem}" not in self.template:
            raise ValueError("prompts.template must contain {problem}.")


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = field(default=0.7, metadata={"help": "Paper 0.7; reference code 1.0."})
    top_p: float = 1.0
    max_tokens: int = field(default=512, metadata={"help": "Paper: 16K training tokens."})
    batch_size: int = 16

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be >= 0, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}.")
        if self.max_tokens < 1 or self.batch_size < 1:
            raise ValueError("sampling.max_tokens and sampling.batch_size must be >= 1.")


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 10
    questions_per_step: int = field(default=8, metadata={"help": "Rollouts per optimizer step (1 per question)."})
    micro_batch_size: int = field(default=8, metadata={"help": "Sequences per forward/backward; accumulation."})
    kl: Literal["reverse", "forward", "mixed"] = field(
        default="reverse", metadata={"help": "Paper: reverse; reference code: mixed."}
    )
    forward_weight: float = field(default=0.5, metadata={"help": "Weight of forward KL when kl = mixed."})
    top_k: int = field(default=64, metadata={"help": "Teacher top-k, renormalised (reference code: 64); 0 = full vocab."})
    max_teacher_tokens: int = field(
        default=2048, metadata={"help": "Cap on prompt + y + sep + y; y is truncated identically in both."}
    )
    teacher_sync: Literal["none", "hard", "ema"] = field(default="none", metadata={"help": "Paper main results: none."})
    sync_every: int = field(default=0, metadata={"help": "Steps between hard syncs."})
    ema_decay: float = field(default=0.99, metadata={"help": "Teacher <- decay * teacher + (1 - decay) * student."})

    def __post_init__(self):
        if self.steps < 1 or self.questions_per_step < 1 or self.micro_batch_size < 1:
            raise ValueError("distill.steps, questions_per_step and micro_batch_size must be >= 1.")
        if self.top_k < 0:
            raise ValueError(f"distill.top_k must be >= 0 (0 = full vocabulary), got {self.top_k}.")
        if not 0.0 <= self.forward_weight <= 1.0:
            raise ValueError(f"distill.forward_weight must be in [0, 1], got {self.forward_weight}.")
        if self.teacher_sync == "hard" and self.sync_every < 1:
            raise ValueError("distill.teacher_sync = hard needs distill.sync_every >= 1 (steps between syncs).")
        if self.teacher_sync != "hard" and self.sync_every:
            raise ValueError("distill.sync_every is only used with distill.teacher_sync = hard; remove it or set hard.")
        if self.teacher_sync == "ema" and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"distill.ema_decay must be in (0, 1), got {self.ema_decay}.")


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
    learning_rate: float = field(default=1e-4, metadata={"help": "Paper: 5e-6 (full fine-tuning)."})
    max_tokens: int = field(default=2048, metadata={"help": "Longest training sequence; longer tuples are dropped."})
    stage2_size: int = field(
        default=1000,
        metadata={"help": "staged mode: tuples of the revision stage, correct-initial first (reference code: 1000); "
                  "the other wrong-initial tuples train the generation stage, which runs first."},
    )

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.micro_batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("srt.epochs, batch_size, micro_batch_size must be >= 1 and learning_rate > 0.")
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


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = field(default=1e-4, metadata={"help": "Paper: 5e-6 (full fine-tuning)."})
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = 0.0
    grad_clip: float = field(default=1.0, metadata={"help": "Global gradient-norm clip; 0 disables."})

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ValueError(f"optim.learning_rate must be > 0, got {self.learning_rate}.")
        if self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError("optim.warmup_steps and optim.grad_clip must be >= 0.")


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = "runs/distill"
    seed: int = 0
    save_every: int = field(default=1, metadata={"help": "Checkpoint every N optimizer steps (LoRA state is small)."})

    def __post_init__(self):
        if self.save_every < 1:
            raise ValueError(f"run.save_every must be >= 1, got {self.save_every}.")
        if not 0 <= self.seed < 2**31:  # mx.random.seed takes a non-negative integer
            raise ValueError(f"run.seed must be in [0, 2^31), got {self.seed}.")


@dataclass(frozen=True)
class Recipe:
    model: ModelConfig
    data: DataConfig
    lora: LoraConfig = LoraConfig()
    prompts: PromptConfig = PromptConfig()
    sampling: SamplingConfig = SamplingConfig()
    distill: DistillConfig = DistillConfig()
    optim: OptimConfig = OptimConfig()
    collect: CollectConfig = CollectConfig()
    srt: SrtConfig = SrtConfig()
    eval: EvalConfig = EvalConfig()
    verifier: VerifierConfig = VerifierConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        if self.distill.questions_per_step > self.data.phase2_size:
            raise ValueError(
                f"distill.questions_per_step ({self.distill.questions_per_step}) exceeds data.phase2_size "
                f"({self.data.phase2_size}); lower it or enlarge the phase-2 split."
            )
        if self.distill.max_teacher_tokens <= self.sampling.max_tokens:
            raise ValueError(
                "distill.max_teacher_tokens must exceed sampling.max_tokens (the teacher sees y twice); "
                f"got {self.distill.max_teacher_tokens} <= {self.sampling.max_tokens}."
            )


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML, apply `section.key=value` overrides, validate, return it.

    Relative file paths inside the recipe (model.path, data.source) stay relative to the
    current directory, as a user typing them would expect.
    """
    data = apply_overrides(read_yaml(path), list(overrides))
    try:
        return from_dict(Recipe, data, where="recipe")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None
