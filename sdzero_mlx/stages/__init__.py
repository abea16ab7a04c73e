"""The training stages, one module each, on the loop they share (loop.py), and the registry of them.

Each stage module declares its recipe section (a frozen dataclass) and its spec once, `SPEC =
StageSpec(...)`: name (its command, recipe section and folder), label in tables, run function,
generations per step, the sections its output is made from, the sequence caps the model's context
bounds, what lowers its memory, the outputs a finished run vouches for, and how a run continues.
The registry finds every module of this package that has a SPEC, as mlx-lm finds a model family by
its module; the recipe (recipe.load_recipe), the CLI's per-stage commands, `compare`, the pipeline
and the doctor read it. Adding a stage is its module, nothing else. `register` adds a stage defined
elsewhere (a plugin, a test).

Reading the registry imports every stage module (and with them mlx-lm): callers that must start
fast (`sdzero verify`) do not touch it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Protocol

from ..rundir import ADAPTER_FILES, MadeBy, RunDir, made_by

if TYPE_CHECKING:
    from ..metrics import StepRecord
    from ..types import TrainingState


class RunFn(Protocol):
    """What every training stage's run function looks like."""

    def __call__(self, recipe, run_dir: Path, resume: bool = False,
                 on_step: Optional[Callable[["StepRecord"], None]] = None,
                 stop_after: Optional[int] = None) -> "TrainingState": ...


@dataclass(frozen=True)
class StageSpec:
    """One stage, declared once in its module."""

    name: str  # its command, recipe section and folder name
    label: str  # the name of the model it trains, in tables
    help: str  # one line: the CLI command's help
    section: type  # the recipe section, a frozen dataclass (a training stage's has `steps` and `optim`)
    sections: tuple[str, ...]  # the recipe sections its output is made from (run.json's made_by; a resume agrees)
    order: int  # position in tables, help and the recipe
    run: Optional[RunFn] = None  # None: not a training stage (collect: its own command)
    generations_per_step: Optional[Callable[[object], int]] = None  # None: samples nothing (SFT, SRT)
    baseline: bool = True  # compare trains it from model.path; False: a stage of the SD-Zero chain (pipeline.py)
    folder: str = ""  # the CLI runs it in RUN/<folder> and continues what is there (the chain's layout); "": RUN
    check: Optional[Callable[[object], None]] = None  # checks across sections of a whole recipe (raises ValueError)
    caps: tuple[str, ...] = ()  # recipe fields that cap its sequences: each must fit the model's context
    memory: str = ""  # what lowers its peak memory, as recipe fields (doctor's advice); "": its micro_batch_size
    outputs: tuple[str, ...] = ADAPTER_FILES  # what a finished run vouches for in outputs.json (RunDir.finished)
    inputs: Optional[Callable[[object, Path], Mapping[str, Path]]] = None  # (recipe, RUN) -> files it is made from
    # besides the starting model and the data, by role (SRT: {"tuples": ...}); their bytes are in its record
    starts_from: Optional[str] = None  # the stage whose fused model it trains from (distill: srt); None: model.path
    fuses: bool = False  # also writes RUN/model, its adapters fused: its model in tables, a later stage's start
    reads: tuple[str, ...] = ()  # fields of another stage's section it reads (SDFT: distill's loss), section.key:
    # in its record beside its sections, and what its variants may set of that section

    @property
    def matched(self) -> bool:
        """Whether compare trains it from model.path at the matched generation budget: a sampling baseline."""
        return self.baseline and self.generations_per_step is not None

    @property
    def memory_fields(self) -> str:
        return self.memory or f"{self.name}.micro_batch_size"

    @property
    def resume_ignore(self) -> tuple[str, ...]:
        """The fields a resume may change: its number of steps, and what only bounds memory (its micro-batch size,
        lora.grad_checkpoint: the same gradient up to float rounding), so that the remedy the memory advice names
        for an out-of-memory stop continues the run. A finished stage is reused only under all of them."""
        own = {f.name for f in fields(self.section)}
        return (*(f"{self.name}.{k}" for k in ("steps", "micro_batch_size") if k in own), "lora.grad_checkpoint")

    def made_by(self, recipe, run_dir: Path) -> MadeBy:
        """What its output in run_dir is made from: its sections and the fields it reads of others, the starting
        model's, the data's and its inputs' bytes (rundir.MadeBy). The one record of a stage: the loop writes it, a
        resume and a reuse compare with it."""
        return made_by(recipe, self.sections, self.inputs(recipe, run_dir) if self.inputs else {},
                       extra=("run.seed", *self.reads))

    def run_dir(self, path: str | Path) -> RunDir:
        """Its run directory at `path`, finished when its outputs are sound."""
        return RunDir(path, self.outputs)

    def continue_command(self, run_dir: Path) -> str:
        """The command that continues its run in run_dir: a stage of the chain's layout reruns (it continues
        what is there), another takes --resume."""
        if self.folder:
            return f"sdzero {self.name} RECIPE"
        return f"sdzero {self.name} RECIPE --resume {run_dir}"


_REGISTRY: dict[str, StageSpec] = {}
_found = False


def register(spec: StageSpec) -> StageSpec:
    """Add a stage (or replace the one of that name)."""
    _REGISTRY[spec.name] = spec
    return spec


def stage_specs() -> tuple[StageSpec, ...]:
    """Every stage, in `order`: the stage modules of this package, then registered ones."""
    global _found
    if not _found:
        for module in pkgutil.iter_modules(__path__):
            spec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
            if isinstance(spec, StageSpec):
                _REGISTRY.setdefault(spec.name, spec)
        _found = True
    return tuple(sorted(_REGISTRY.values(), key=lambda s: s.order))


def stage_spec(name: str) -> StageSpec:
    specs = {s.name: s for s in stage_specs()}
    if name not in specs:
        raise ValueError(f"No stage {name!r}; the stages are {list(specs)}.")
    return specs[name]


def training_stages() -> tuple[StageSpec, ...]:
    """The stages that train a model (those with a run function)."""
    return tuple(s for s in stage_specs() if s.run is not None)


def baselines() -> tuple[StageSpec, ...]:
    """The training stages `compare` runs from model.path on its own (not the SD-Zero chain)."""
    return tuple(s for s in training_stages() if s.baseline)


def methods() -> tuple[str, ...]:
    """What `compare` can compare: the base model and the model of every training stage."""
    return ("base",) + tuple(s.name for s in training_stages())


def labels() -> dict[str, str]:
    """Method name -> its label in tables."""
    return {"base": "base", **{s.name: s.label for s in training_stages()}}


def continue_command(stage: str, run_dir: Path) -> str:
    """The command that continues a run of `stage` in run_dir (rundir.RunDir.check_stage names it); "pipeline":
    run's and compare's top folder."""
    if stage == "pipeline":
        return "sdzero run RECIPE"  # (or sdzero compare RECIPE: the same layout)
    specs = {s.name: s for s in stage_specs()}
    return specs[stage].continue_command(run_dir) if stage in specs else f"sdzero {stage} RECIPE --resume {run_dir}"


def chain() -> tuple[StageSpec, ...]:
    """The SD-Zero chain's stages, in order, each starting from the one before (collect -> srt -> distill)."""
    return tuple(s for s in stage_specs() if not s.baseline)
