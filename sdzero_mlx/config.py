"""The recipe's shared sections and the Recipe: one typed, frozen configuration per runnable job.

`Recipe` holds the shared sections below (model, data, lora, prompts, sampling, optim; compare, eval,
verifier, run) as fields, and one section per stage, the dataclass the stage's module declares beside
its StageSpec (stages/distill.py: DistillConfig, ...). `build_recipe` makes one from a YAML mapping
given the stage sections; `recipe.load_recipe` gives it the registry's. This module imports no stage:
a new stage's section appears in the recipe, and gets its `optim` filled from the top-level one,
without a line here.

Every departure from the paper is a field, with the paper's value in its help text (here for the
shared sections, in each stage's module for its own; docs/configuration.md lists them all):
- `optim.learning_rate` 1e-4 (paper: 5e-6 with full fine-tuning; LoRA wants larger steps). `optim` is
  the shared default; each training stage (srt, distill, rft, grpo, sft, sdft) has its own `optim`.
- `lora.fine_tune_type` lora (paper: full fine-tuning; `full` and `dora` are available).
- `sampling.temperature` 0.7 (paper; reference code 1.0). `sampling.max_tokens` 512 (paper: 16K).
- `lora.*`: the paper fine-tunes all weights; this project trains LoRA adapters.
- `prompts.phrase_wrong` is the paper's phrase; the reference code uses per-family phrases.
KlSettings, the distill section's loss as one record (what kd.py, explain and parity read), lives here
too: it is built by phase 2's section and read below the stages.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

from .configio import coerce, read_yaml
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


def optim_field(what: str, paper: str = ""):
    """A training stage's `optim` section: its own optimizer, filled from the top-level one."""
    note = f" (paper: {paper})" if paper else ""
    return field(default=OptimConfig(), metadata={"help": f"{what}'s optimizer{note} (defaults: top-level optim)."})


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
                  "them (recipe.load_recipe checks and resolves the names against the stages)."},
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
        if self.budget_generations < 0:
            raise ValueError("compare.budget_generations must be >= 0 (0 = match SD-Zero).")

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


# The recipe's sections in order: the shared ones, then one per stage (the registry's, in its order), then these.
SHARED_SECTIONS = {"model": ModelConfig, "data": DataConfig, "lora": LoraConfig, "prompts": PromptConfig,
                   "sampling": SamplingConfig, "optim": OptimConfig}  # optim: every stage's optim's shared default
CLOSING_SECTIONS = {"compare": CompareConfig, "eval": EvalConfig, "verifier": VerifierConfig, "run": RunConfig}


@dataclass(frozen=True, init=False)
class Recipe:
    """Every section of a run. The shared sections are fields here; each stage's own section (`recipe.distill`,
    `recipe.rft`, ...) is the dataclass its module declares beside its StageSpec, held in `stage_sections` in the
    registry's order and read as an attribute. `recipe.load_recipe` builds one with the registry's stages, so
    this module imports none.

    `dataclasses.replace(recipe, distill=...)` replaces a stage's section as it does a shared one."""

    model: ModelConfig
    data: DataConfig
    lora: LoraConfig
    prompts: PromptConfig
    sampling: SamplingConfig
    optim: OptimConfig
    compare: CompareConfig
    eval: EvalConfig
    verifier: VerifierConfig
    run: RunConfig
    stage_sections: tuple[tuple[str, Any], ...]  # (stage name, its section), in the registry's order

    def __init__(self, model: ModelConfig, data: DataConfig, lora: LoraConfig = LoraConfig(),
                 prompts: PromptConfig = PromptConfig(), sampling: SamplingConfig = SamplingConfig(),
                 optim: OptimConfig = OptimConfig(), compare: CompareConfig = CompareConfig(),
                 eval: EvalConfig = EvalConfig(), verifier: VerifierConfig = VerifierConfig(), run: RunConfig = RunConfig(),
                 stage_sections: tuple[tuple[str, Any], ...] = (), **stages):
        shared = dict(model=model, data=data, lora=lora, prompts=prompts, sampling=sampling, optim=optim,
                      compare=compare, eval=eval, verifier=verifier, run=run)
        for name, section in shared.items():
            object.__setattr__(self, name, section)
        object.__setattr__(self, "stage_sections", tuple({**dict(stage_sections), **stages}.items()))

    def __getattr__(self, name: str):  # only for names that are not fields: a stage's section
        for stage, section in self.__dict__.get("stage_sections", ()):
            if stage == name:
                return section
        raise AttributeError(f"the recipe has no section {name!r}; its sections are {list(self.sections())}.")

    def sections(self) -> dict[str, Any]:
        """Every section by name, in the recipe's order (the resolved recipe.yaml's)."""
        stage = dict(self.stage_sections)
        return {**{n: getattr(self, n) for n in SHARED_SECTIONS}, **stage,
                **{n: getattr(self, n) for n in CLOSING_SECTIONS}}


def trains(section_type: type) -> bool:
    """Whether a stage's section belongs to a training stage: it has its own `optim`."""
    return any(f.name == "optim" for f in fields(section_type))


def build_recipe(data: dict, stage_sections: Mapping[str, type], where: str = "recipe") -> Recipe:
    """A Recipe from a YAML-like mapping: each section typed and checked (unknown keys refused, types coerced),
    `stage_sections` (stage name -> its dataclass) after the shared ones, then the checks across shared sections.
    The checks that need the stages (their own across sections, compare's names) are recipe.load_recipe's."""
    types = {**SHARED_SECTIONS, **stage_sections, **CLOSING_SECTIONS}
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}. Valid keys: {sorted(types)}.")
    built = {name: coerce(value, types[name], f"{where}.{name}") for name, value in data.items()}
    missing = [n for n in ("model", "data") if n not in data]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}.")
    stages = tuple((name, built.get(name, tp())) for name, tp in stage_sections.items())
    recipe = Recipe(**{k: v for k, v in built.items() if k not in stage_sections}, stage_sections=stages)
    _check_shared(recipe)
    return recipe


def _check_shared(recipe: Recipe) -> None:
    """Checks across the shared sections (each stage's own: its StageSpec.check)."""
    if recipe.verifier.kind != "code" and (recipe.data.fields.tests or recipe.data.fields.entry_point):
        raise ValueError("data.fields.tests / entry_point name code tests, but verifier.kind is "
                         f"{recipe.verifier.kind!r}; set verifier.kind: code.")
    if recipe.run.probe_every and not (recipe.data.validation_size or recipe.data.validation_source):
        raise ValueError(
            "run.probe_every > 0 reads the validation split, and this recipe has none: set data.validation_size "
            "(problems cut from data.source) or data.validation_source, or run.probe_every: 0."
        )


def with_stage_optim(data: dict, training: Sequence[str]) -> dict:
    """Fill the `optim` of each training stage (named in `training`) from the top-level one, field by field
    under its own."""
    shared = data.get("optim") or {}
    if not isinstance(shared, dict):
        return data  # build_recipe reports the malformed section
    out = dict(data)
    for stage in training:
        section = out.get(stage) or {}
        if not isinstance(section, dict):
            continue
        own = section.get("optim") or {}
        if isinstance(own, dict):
            out[stage] = {**section, "optim": {**shared, **own}}
    return out


def shared_optim_overrides(overrides: Sequence[str], training: Sequence[str]) -> list[str]:
    """`optim.X=v` given on the command line also sets `S.optim.X` of every training stage S (named in
    `training`) that the same command does not set itself: a resolved recipe (every run's recipe.yaml) spells
    out each stage's optim, so the shared default alone would change nothing.

    Example: ["optim.learning_rate=3e-4", "rft.optim.learning_rate=1e-5"] adds srt/distill/grpo/sft/sdft's
    learning_rate=3e-4 and leaves rft's at 1e-5.
    """
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    out = list(overrides)
    for item, key in zip(overrides, keys):
        if key.startswith("optim.") and "=" in item:
            value = item.split("=", 1)[1]
            out += [f"{stage}.{key}={value}" for stage in training if f"{stage}.{key}" not in keys]
    return out


def read_like(path: str | Path, like: Recipe) -> Recipe:
    """A resolved recipe file (a run's recipe.yaml) read with the stage sections of `like`: its fields as they
    are, without the checks across sections (rundir reads an older run's record with it)."""
    data = read_yaml(path)
    stages = {name: type(section) for name, section in like.stage_sections}
    return build_recipe(with_stage_optim(data, [n for n, t in stages.items() if trains(t)]), stages, where=str(path))
