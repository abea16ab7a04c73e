"""The training stages, one module each, on the loop they share (loop.py), and the registry of them.

Each stage module declares its spec once, `SPEC = StageSpec(...)`: name (its command, recipe
section and folder), label in tables, recipe section (a frozen dataclass), run function, generations
per step and the sections a resume must agree on. The registry finds every module of this package
that has a SPEC, as mlx-lm finds a model family by its module; the recipe (config.recipe_type), the
CLI's per-stage commands, `compare` and the pipeline read it. Adding a stage is its module and its
recipe section, nothing else. `register` adds a stage defined elsewhere (a plugin, a test).

Reading the registry imports every stage module (and with them mlx-lm): callers that must start
fast (`sdzero verify`) do not touch it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol

if TYPE_CHECKING:
    from ..checkpoint import TrainingState
    from ..metrics import StepRecord


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
    sections: tuple[str, ...]  # the recipe sections a resume must agree on
    order: int  # position in tables, help and the recipe
    run: Optional[RunFn] = None  # None: not a training stage (collect: its own command)
    generations_per_step: Optional[Callable[[object], int]] = None  # None: samples nothing (SFT, SRT)
    baseline: bool = True  # compare trains it from model.path; False: a stage of the SD-Zero chain (pipeline.py)
    folder: str = ""  # the CLI runs it in RUN/<folder> and continues what is there (the chain's layout); "": RUN
    check: Optional[Callable[[object], None]] = None  # checks across sections of a whole recipe (raises ValueError)

    @property
    def matched(self) -> bool:
        """Whether compare trains it from model.path at the matched generation budget: a sampling baseline."""
        return self.baseline and self.generations_per_step is not None


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
