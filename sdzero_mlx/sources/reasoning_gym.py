"""reasoning-gym's procedural tasks as a generated data source: `data.source: rg://TASK?option=value&...`.

Example: `rg://basic_arithmetic?min_terms=2&max_terms=3&max_digits=1` draws reasoning-gym's
`basic_arithmetic` problems with those config options (any field of the task's config dataclass
except `seed` and `size`, which this module sets). Each data.seed draws its own problems: the task
is created with reasoning-gym seed `data.seed * SEED_STRIDE` and items 0, 1, 2, ... are taken
in order, skipping repeats of an earlier problem text. reasoning-gym seeds item i with
`Random(seed + i)`, so consecutive seeds would give the same stream shifted by one item; the
stride keeps the streams of different data seeds apart (for fewer than SEED_STRIDE items).

The gold answer is the task's `answer` string, graded by the math verifier: use tasks whose answers
are numbers or expressions (the arithmetic ones, `leg_counting`, `gsm_symbolic`, ...), not tasks
graded by reasoning-gym's own `score_answer` (word lists, grids, free text).
Needs `pip install 'sdzero-mlx[tasks]'` (reasoning-gym, pinned there).
"""

from __future__ import annotations

import dataclasses
import difflib
from importlib.metadata import version
from urllib.parse import unquote

from ..types import Example

SCHEME = "rg://"
SEED_STRIDE = 1_000_000
_SET_HERE = ("seed", "size")  # options this module owns


def _reasoning_gym():
    try:
        import reasoning_gym
    except ImportError:
        raise ImportError("rg:// data sources need reasoning-gym: pip install 'sdzero-mlx[tasks]'") from None
    return reasoning_gym


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Task name and raw option strings of `TASK?key=value&key=value`.

    Example: parse_spec("chain_sum?min_terms=2&max_digits=1") == ("chain_sum", {"min_terms": "2", "max_digits": "1"})
    """
    name, _, query = spec.partition("?")
    options = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"{SCHEME}{spec}: option {part!r} should look like key=value.")
        options[unquote(key)] = unquote(value)  # no unquote_plus: "+" is an operator here
    return name, options


def _coerce(value: str, default, where: str):
    """The option string as the type of the config field's default (int, float, bool, list of those, str)."""
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            item = default[0] if default else ""
            return type(default)(_coerce(v.strip(), item, where) for v in value.split(","))
    except ValueError:
        raise ValueError(f"{where} is {value!r}; expected {type(default).__name__} like {default!r}.") from None
    if default is None:  # Optional field without a typed default: a number if it reads as one
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
    return value


def task_config(spec: str, seed: int, size: int):
    """(task name, its reasoning-gym config dataclass instance) for `TASK?options`, checked."""
    _reasoning_gym()
    from reasoning_gym.factory import DATASETS

    name, raw = parse_spec(spec)
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=5) or sorted(DATASETS)[:10]
        raise ValueError(f"{SCHEME}{spec}: reasoning-gym {version('reasoning-gym')} has no task {name!r}; "
                         f"did you mean one of {close}? (all: reasoning_gym.factory.DATASETS)")
    config_cls = DATASETS[name][1]
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.name not in _SET_HERE}
    options = {}
    for key, value in raw.items():
        if key in _SET_HERE:
            raise ValueError(f"{SCHEME}{spec}: {key} is set by sdzero (data.seed picks the problems, the splits their "
                             "number); remove it from the source.")
        if key not in fields:
            raise ValueError(f"{SCHEME}{spec}: {name} has no option {key!r}; its options: {sorted(fields)}.")
        f = fields[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        options[key] = _coerce(value, None if default is dataclasses.MISSING else default, f"{SCHEME}{name} option {key}")
    config = config_cls(**options, seed=seed, size=size)
    try:
        config.validate()
    except AssertionError as err:  # reasoning-gym checks its configs with assert
        raise ValueError(f"{SCHEME}{spec}: reasoning-gym rejects these options: {err}.") from None
    return name, config


def examples(spec: str, seed: int, n: int) -> list[Example]:
    """The first `n` distinct problems of data seed `seed`'s stream of the task `spec` (TASK?options)."""
    _reasoning_gym()
    from reasoning_gym.factory import DATASETS

    seen: set[str] = set()
    out: list[Example] = []
    drawn = 0
    budget = 20 * n + 100  # a task too small for n distinct problems stops here instead of looping
    name, config = task_config(spec, seed * SEED_STRIDE, budget)
    dataset = DATASETS[name][0](config=config)
    while len(out) < n and drawn < budget:
        item = dataset[drawn]
        drawn += 1
        if item["question"] in seen:
            continue
        seen.add(item["question"])
        out.append(Example(id=f"{name}-{seed}-{drawn - 1}", problem=item["question"], answer=str(item["answer"])))
    if len(out) < n:
        raise ValueError(f"{SCHEME}{spec} gave only {len(out)} distinct problems in {budget} draws, fewer than the "
                         f"{n} asked for: widen the task's options (more terms or digits) or lower data.*_size.")
    return out
