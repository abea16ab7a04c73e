"""Typed loading of nested frozen dataclasses from YAML-like dicts, with `--set` overrides.

Kept apart from the recipe's fields so that every stage (distill, srt, eval) can reuse it.
Unknown keys are rejected with the list of valid ones; values are coerced to the field's type
(PyYAML reads `1e-5` as a string, so floats must be coerced, not trusted), and a float must be finite
(`.nan` or `.inf` would train to NaN adapters without a word). YAML aliases (`*name`) are refused: a
1 KB "billion laughs" file of nested aliases expands to gigabytes once copied, and a recipe has no
need of them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml


def _is_optional(tp) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a parsed YAML value to the annotated type, or raise naming the key."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: null is not allowed here (expected {_type_name(tp)}).")
    tp = inner
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}.")
        return from_dict(tp, value, where)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"{where}: {value!r} is not one of {list(choices)}.")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}.")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        return tuple(coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}.")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"{where}: expected true or false, got {value!r}.")
    if tp is int or tp is float:
        expected = f"{where}: expected {'an integer' if tp is int else 'a number'}, got {value!r}."
        if isinstance(value, bool):
            raise ValueError(expected)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(expected) from None
        if tp is int:
            if not number.is_integer():
                raise ValueError(expected)
            return int(number)
        if not math.isfinite(number):
            raise ValueError(f"{where}: {value!r} is not a finite number; give a real value.")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}: expected a string, got {value!r}.")
        return str(value)
    return value


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def from_dict(cls, data: dict, where: str = "recipe"):
    """Build dataclass `cls` from `data`, rejecting unknown keys and coercing types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}. Valid keys: {sorted(fields)}."
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = coerce(value, hints[name], f"{where}.{name}")
    missing = [
        n for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}.")
    return cls(**kwargs)


def to_dict(obj) -> dict:
    """Dataclass -> plain dict of YAML-safe values (tuples become lists); a recipe by its sections (config.Recipe)."""
    def plain(v):
        if callable(getattr(v, "sections", None)):  # a recipe: its sections in order, the stages' among them
            return {name: plain(section) for name, section in v.sections().items()}
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(obj)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings to a nested dict; values are parsed as YAML scalars.

    Example: apply_overrides({"optim": {"learning_rate": 1e-4}}, ["optim.learning_rate=3e-4"])
    """
    data = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"Override {item!r} must look like section.key=value.")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ValueError(f"Override {item!r}: {key!r} is not a section.")
            node = child
        try:
            node[keys[-1]] = load_yaml_text(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            raise ValueError(
                f"--set {item!r}: the value {raw!r} is not valid YAML ({problem}). "
                f"Close the bracket or quote, or quote the whole value, e.g. --set '{dotted.strip()}=\"...\"'."
            ) from None
    return data


def _deepcopy(d):
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (see the module docstring)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"the alias *{event.anchor} is not allowed in a recipe (write the value out)", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml_text(text: str):
    """yaml.safe_load without aliases."""
    return yaml.load(text, Loader=NoAliasLoader)


def check_input_file(path: str | Path, what: str, fix: str = "") -> Path:
    """An input that must be a file: a missing one and a folder each get their own message (then `fix`)."""
    path = Path(path).expanduser()
    tail = f" {fix}" if fix else ""
    if path.is_dir():
        raise FileNotFoundError(f"{what} {path} is a folder, not a file; give the file inside it.{tail}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.{tail}")
    return path


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, naming the file in every error."""
    path = check_input_file(path, "Recipe")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"Recipe {path} is not a UTF-8 text file (line {line}, byte {err.start + 1}); "
            "pass a YAML recipe such as recipes/qwen2.5-0.5b-gsm8k.yaml."
        ) from None
    try:
        data = load_yaml_text(text) or {}
    except yaml.YAMLError as err:
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
        if mark is None or problem is None:
            raise ValueError(f"Recipe {path} is not valid YAML: {err}") from None
        raise ValueError(f"Recipe {path} is not valid YAML (line {mark.line + 1}, column {mark.column + 1}): "
                         f"{problem}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"Recipe {path} must be a mapping of sections, got {type(data).__name__}.")
    return data


def write_yaml(obj, path: str | Path) -> None:
    from .atomic import write_text

    write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))
