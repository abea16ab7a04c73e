"""The recipe a command runs: config.py's shared sections and each registered stage's own, read from YAML.

`load_recipe` is what the CLI (and every job that reads a recipe file) calls: the YAML, the `--set`
overrides (`optim.X` reaching every stage's optim), then `config.build_recipe` with the registry's
stage sections, and the checks that need the stages: each StageSpec.check across sections, and
compare's methods and variants against the stages (the names resolved: an empty list is every method,
an old spelling today's, a variant's name its id).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from .config import COMPARED_ON, METHOD_ALIASES, CompareConfig, Recipe, VariantConfig, build_recipe, \
    shared_optim_overrides, trains, with_stage_optim
from .configio import apply_overrides, read_yaml, to_dict
from .stages import StageSpec, baselines, labels, methods, stage_specs

RESERVED = ("base", "eval", "explain")  # folders and files of a run directory besides the stages'


def stage_sections() -> dict[str, type]:
    """Stage name -> its recipe section, in the registry's order."""
    return {s.name: s.section for s in stage_specs()}


def training_sections() -> tuple[str, ...]:
    """The stage sections that train, each with its own complete `optim` (top-level `optim`: their default)."""
    return tuple(name for name, section in stage_sections().items() if trains(section))


def recipe_from_dict(data: dict, where: str = "recipe") -> Recipe:
    """A checked recipe from a YAML-like mapping whose stage sections' optim are filled (with_stage_optim)."""
    recipe = build_recipe(data, stage_sections(), where)
    recipe = replace(recipe, compare=resolved_compare(recipe.compare))
    for spec in stage_specs():
        if spec.check is not None:
            spec.check(recipe)
    for variant in recipe.compare.variants:
        variant_recipe(recipe, variant)  # its overrides' values, checked as the recipe's own are
    return recipe


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe YAML, apply `section.key=value` overrides, validate, return it.

    Relative file paths inside the recipe (model.path, data.source) stay relative to the
    current directory, as a user typing them would expect. `--set optim.X=v` reaches every stage
    (config.shared_optim_overrides).
    """
    training = training_sections()
    data = with_stage_optim(apply_overrides(read_yaml(path), shared_optim_overrides(list(overrides), training)),
                            training)
    try:
        return recipe_from_dict(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None


def variant_recipe(recipe: Recipe, variant: VariantConfig) -> Recipe:
    """The recipe a compare variant trains with: `recipe` with the variant's overrides, and a compare section of
    its own (no variants: a variant's recipe is not compared)."""
    data = to_dict(recipe)
    data["compare"] = {"budget_generations": recipe.compare.budget_generations}
    try:
        return recipe_from_dict(apply_overrides(data, list(variant.set)))
    except (ValueError, TypeError) as err:
        raise ValueError(f"compare.variants {variant.name!r}: {err}") from None


def method_labels(recipe: Recipe) -> dict[str, str]:
    """Method id -> its label in tables: the stages' and the variants'."""
    return labels() | {v.id: v.name for v in recipe.compare.variants}


def chosen_methods(recipe: Recipe, asked: Sequence[str]) -> tuple[str, ...]:
    """`asked` (--methods) checked and resolved as compare.methods is: names, ids and old spellings."""
    return resolved_compare(replace(recipe.compare, methods=tuple(asked))).methods


def resolved_compare(compare: CompareConfig) -> CompareConfig:
    """compare with its variants checked (stage resolved) and its methods checked and resolved."""
    variants = tuple(_checked_variant(v, compare.variants[:i]) for i, v in enumerate(compare.variants))
    known = methods() + tuple(v.id for v in variants)
    by_name = {v.name: v.id for v in variants}
    chosen = tuple(by_name.get(m, METHOD_ALIASES.get(m, m)) for m in compare.methods) or known
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise ValueError(f"compare.methods {list(compare.methods)}: unknown {unknown}; use some of {list(known)}"
                         + (f" (variants also by name: {list(by_name)})" if by_name else "") + ".")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"compare.methods {list(compare.methods)} names a method twice.")
    return replace(compare, methods=chosen, variants=variants)


def _checked_variant(v: VariantConfig, before: Sequence[VariantConfig]) -> VariantConfig:
    """A variant's name, stage and the fields its overrides may set (their values: variant_recipe); its stage
    resolved (an old spelling to today's)."""
    specs: dict[str, StageSpec] = {s.name: s for s in stage_specs()}
    stages = ["distill"] + [s.name for s in baselines()]
    where = f"compare.variants {v.name!r}"
    if not v.id or "," in v.name:
        raise ValueError(f"{where}: a variant's name needs a letter or digit and no comma (--methods splits at "
                         "commas), e.g. 'SD-Zero (paper loss)'.")
    if v.name in labels().values() or v.id in set(specs) | set(RESERVED):
        raise ValueError(f"{where}: its name (or id {v.id!r}) is taken by a stage or a run folder; name the "
                         "variant for what it changes, e.g. 'SD-Zero (paper loss)'.")
    other = next((b for b in before if b.id == v.id), None)
    if other is not None:
        raise ValueError(f"{where}: its id {v.id!r} is also that of {other.name!r}; give the variants distinct "
                         "names.")
    stage = METHOD_ALIASES.get(v.stage, v.stage)
    if stage not in stages:
        raise ValueError(f"{where}: stage {v.stage!r} is not one a variant can train; use one of {stages} (srt's "
                         "model is the chain's own, which distill starts from).")
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
        if section not in allowed and key not in spec.reads:
            fix = (f"write {stage}.{key}" if section == "optim" else
                   "every row starts from the same model on the same problems" if section in COMPARED_ON else
                   f"{stage} does not read it")
            raise ValueError(f"{where}: override {item!r} is outside the sections a variant of {stage} may set "
                             f"({', '.join(allowed + list(spec.reads))}): {fix}.")
        if key == f"{stage}.steps" and spec.matched:
            raise ValueError(f"{where}: {key} is set by the matched budget (compare.budget_generations); "
                             "remove it.")
    return replace(v, stage=stage)
