"""The import graph stays one-way: the layers of docs/architecture.md, held by reading every import.

Imports are read from the source with `ast`: at module level, inside functions and under TYPE_CHECKING
alike (a circle hidden in a local import is still a circle), and a string handed to importlib that names
a module of the package counts as an import too. A module's place is its first path component (a
top-level module, or a folder such as stages/ or doctor/ as one room); every room has a layer, and a
room imports only rooms of its own layer or of a layer below. No circle is allowed between modules, nor
between rooms (a folder counts as one room, as a reader of the tree sees it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sdzero_mlx"
MODULE_STRING = re.compile(r"sdzero_mlx(\.\w+)+(:\w+)?")

# Top first: a room imports its own layer and the layers below it, never one above.
LAYERS = (
    ("the command", ("cli",)),
    ("jobs: what a command runs around the stages", (
        "demo", "doctor", "sweep", "search", "passk", "parity", "compare", "pipeline", "schedule", "tasks", "recipe")),
    ("the stages and their registry", ("stages",)),
    ("the shared machinery", (
        "evaluate", "explain", "hindsight", "probe", "kd", "contexts", "teacher", "loss", "forward",
        "rollout", "waves", "lengths", "prompts", "data", "modeling", "update", "checkpoint", "grad_checkpoint",
        "rundir", "metrics", "sinks", "plots", "config", "configio")),
    ("the base: records, files, platform, rewards, sources", (
        "types", "seeds", "atomic", "fingerprint", "stats", "writable", "platform", "verifier", "sources")),
)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """sdzero_mlx/stages/loop.py -> 'stages.loop'; a package's __init__.py -> the package ('stages')."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py")) if module_name(p, root)}


def resolve(name: str, known: set[str]) -> str | None:
    """The package module a dotted name lands in: 'stages.loop.StepOutcome' -> 'stages.loop'."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return None


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `module` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name.removeprefix("sdzero_mlx.") for a in node.names if a.name.startswith("sdzero_mlx.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "sdzero_mlx" or node.module.startswith("sdzero_mlx.")):
                stem = node.module.removeprefix("sdzero_mlx").lstrip(".")
            else:
                continue
            names = [f"{stem}.{a.name}" if stem else a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.fullmatch(node.value):
            # "sdzero_mlx.x.y" or "sdzero_mlx.x:function": a module loaded by name (importlib, python -m)
            names = [node.value.removeprefix("sdzero_mlx.").replace(":", ".")]
        found |= {m for m in (resolve(n, known) for n in names) if m and m != module}
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(root)
    return {m: imports_of(m, p, set(found)) for m, p in found.items()}


def room(module: str) -> str:
    return module.split(".")[0]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                out.append(sorted(members))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for m, targets in graph.items():
        rooms.setdefault(room(m), set()).update(room(t) for t in targets if room(t) != room(m))
    return rooms


def layer_of() -> dict[str, int]:
    return {r: i for i, (_, rooms) in enumerate(LAYERS) for r in rooms}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    layer = layer_of()
    return sorted(f"{m} -> {t} ({LAYERS[layer[room(m)]][0]} imports {LAYERS[layer[room(t)]][0]})"
                  for m, targets in graph.items() for t in targets
                  if room(m) in layer and room(t) in layer and layer[room(t)] < layer[room(m)])


# -- the reader itself, on a package written here ------------------------------------------------------


def test_the_reader_finds_local_relative_and_string_imports(tmp_path):
    pkg = tmp_path / "sdzero_mlx"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("X = 1\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("import importlib\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .sub import X\nimportlib.import_module('sdzero_mlx.a')\nLOADERS = {'x': 'sdzero_mlx.sub.b:f'}\n")
    graph = import_graph(pkg)
    assert graph == {"a": {"sub.b"}, "sub": set(), "sub.b": {"c"}, "c": {"sub", "a", "sub.b"}}
    assert circles(graph) == [["a", "c", "sub.b"]]
    assert room_graph(graph) == {"a": {"sub"}, "sub": {"c"}, "c": {"sub", "a"}}
    assert circles(room_graph(graph)) == [["a", "c", "sub"]]


# -- the package ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_room_has_a_layer(graph):
    placed = layer_of()
    assert sorted({room(m) for m in graph} - set(placed)) == [], "a new module: give it a layer in LAYERS"
    assert sorted(set(placed) - {room(m) for m in graph}) == [], "LAYERS names a room that does not exist"


def test_no_module_imports_a_layer_above_its_own(graph):
    assert upward_imports(graph) == []


def test_no_circle_between_modules(graph):
    assert circles(graph) == []


def test_no_circle_between_rooms(graph):
    assert circles(room_graph(graph)) == []
