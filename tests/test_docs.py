"""The README and docs/ stay true: the README's size and links, its layout tree against the package's
modules, and the departures table against the recipe's own dataclasses."""

from __future__ import annotations

import dataclasses
import re
import typing
from fnmatch import fnmatchcase
from pathlib import Path

from sdzero_mlx.config import CLOSING_SECTIONS, SHARED_SECTIONS
from sdzero_mlx.recipe import stage_sections

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PACKAGE = ROOT / "sdzero_mlx"
CONFIGURATION = ROOT / "docs" / "configuration.md"
README_MAX_BYTES = 13_000  # "about 12 KB" (issue 22), plus the real model's table and doctor's three verdicts (issues 20, 21)

# A help text that names another source's value marks a field the departures table must list.
NAMES_A_SOURCE = re.compile(r"paper|reference code|\(reference|reference:|\bDAPO\b|\bPPO\b", re.IGNORECASE)

# Departures with no field of their own (issue 22, defect 5): (text in the first cell, texts in the row).
NAMED_DEPARTURES = (
    ("loss normalisation", ("token mean", "sums")),
    ("`grpo.scale_advantages`", ("population std", "unbiased")),
    ("sdft's kl", ("reverse kl", "top-64")),
    ("`rft.samples_per_question`", ("duplicates",)),
    ("`collect.clean`", ("sycophantic", "duplicates")),
)


def section(text: str, heading: str) -> str:
    """The body under `heading` (a whole heading line), up to the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = text.find(f"\n{level} ", start)
    return text[start:] if end < 0 else text[start:end]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def layout_paths(readme: str) -> set[str]:
    """Paths under sdzero_mlx/ that the README's Layout tree names: 'cli.py', 'stages/', 'stages/loop.py'.

    A line is `indent names  description`, names separated by ', '; a name ending in '/' is a folder
    holding the deeper-indented lines below it.
    """
    block = section(readme, "## Layout").split("```")[1]
    lines = [line for line in block.splitlines() if line.strip()]
    assert lines[0] == "sdzero_mlx/", f"the Layout tree should start at sdzero_mlx/, not {lines[0]!r}"
    named, folders = set(), []  # folders: (indent, name) of the open folders
    for line in lines[1:]:
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            break  # the next top-level entry: recipes/, tests/, ...
        while folders and folders[-1][0] >= indent:
            folders.pop()
        prefix = "".join(name for _, name in folders)
        for name in re.split(r"\s{2,}", line.strip())[0].split(", "):
            if name.endswith("/"):
                named.add(prefix + name)
                folders.append((indent, name))
            elif name.endswith(".py"):
                named.add(prefix + name)
    return named


def package_paths() -> set[str]:
    """Every module of sdzero_mlx/ ('__init__.py' stands for its folder, which is listed instead)."""
    paths = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts:
            continue
        if rel.name == "__init__.py":
            if rel.parent != Path("."):
                paths.add(rel.parent.as_posix() + "/")
        else:
            paths.add(rel.as_posix())
    return paths


def recipe_fields(cls: type = None, prefix: str = ""):
    """(dotted path, help text) of every field of the recipe (its shared sections and every stage's), nested
    sections included."""
    if cls is None:
        for name, section in {**SHARED_SECTIONS, **stage_sections(), **CLOSING_SECTIONS}.items():
            yield name, ""
            yield from recipe_fields(section, name + ".")
        return
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        yield path, f.metadata.get("help", "")
        nested = [t for t in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(t)]
        if nested:
            yield from recipe_fields(nested[0], path + ".")


def departure_rows(text: str) -> list[tuple[str, str]]:
    """(first cell, whole row) of each row of the departures table, header and rule left out."""
    body = section(text, "## Departures from the paper")
    rows = [line for line in body.splitlines() if line.startswith("|")][2:]
    assert rows, "no table under '## Departures from the paper' in docs/configuration.md"
    return [(row.split("|")[1], row) for row in rows]


def field_names(cell: str) -> list[str]:
    """Backticked field paths or patterns in a table cell: `distill.kl`, `*.optim.learning_rate`."""
    return [n for n in re.findall(r"`([^`]+)`", cell) if re.fullmatch(r"[\w*]+(\.[\w*]+)+", n)]


def test_readme_stays_a_front_door():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes (limit {README_MAX_BYTES}): move the detail into docs/."


def test_links_from_readme_and_docs_point_at_existing_files_and_headings():
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    into_docs = [t for t in re.findall(r"\]\(([^)\s]+)\)", README.read_text()) if t.startswith("docs/")]
    assert len(into_docs) >= 5, f"README.md links into docs/ only {into_docs}"
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https://..., mailto:
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.MULTILINE)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == [], f"broken links: {broken}"


def test_layout_parser_reads_folders_and_lists():
    readme = "# x\n## Layout\n\n```\nsdzero_mlx/\n  a.py, b.py   two\n  sub/   a folder\n    c.py   deep\n  d.py\nrecipes/\n```\n"
    assert layout_paths(readme) == {"a.py", "b.py", "sub/", "sub/c.py", "d.py"}


def test_readme_layout_names_every_module_and_nothing_else():
    named, actual = layout_paths(README.read_text()), package_paths()
    assert {"cli.py", "stages/", "stages/loop.py", "verifier/grade.py"} <= actual  # the walk finds the package
    assert sorted(actual - named) == [], f"modules missing from the README's Layout tree: {sorted(actual - named)}"
    assert sorted(named - actual) == [], f"the README's Layout tree names what does not exist: {sorted(named - actual)}"


def test_every_field_that_names_the_paper_is_in_the_departures_table():
    fields = dict(recipe_fields())
    assert "distill.kl" in fields and "srt.optim.learning_rate" in fields  # nested sections are walked
    marked = sorted(path for path, help_text in fields.items() if NAMES_A_SOURCE.search(help_text))
    assert len(marked) >= 30, marked  # the help texts still say the paper's values
    patterns = [n for cell, _ in departure_rows(CONFIGURATION.read_text()) for n in field_names(cell)]
    concrete = [p for p in patterns if not p.endswith("*")]  # `grpo.*` would hide a new field
    missing = [path for path in marked if not any(fnmatchcase(path, p) for p in concrete)]
    assert missing == [], f"fields whose help names the paper or reference code, not in the departures table: {missing}"
    stale = [p for p in patterns if not any(fnmatchcase(path, p) for path in fields)]
    assert stale == [], f"the departures table names fields the recipe does not have: {stale}"


def test_departures_without_a_field_are_in_the_table():
    rows = [(cell.lower(), row.lower()) for cell, row in departure_rows(CONFIGURATION.read_text())]
    missing = [
        first for first, texts in NAMED_DEPARTURES
        if not any(first in cell and all(t in row for t in texts) for cell, row in rows)
    ]
    assert missing == [], f"departures missing from docs/configuration.md: {missing}"


def test_the_architecture_picture_names_modules_that_exist():
    """docs/architecture.md shows the picture scripts/draw_architecture.py draws: every module and folder the
    script names is one of the package's (a module that moves fails here until the picture is drawn again)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("draw_architecture", ROOT / "scripts" / "draw_architecture.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    words = " ".join(f"{title} {detail}" for key, (*_, title, detail) in script.BOXES.items() if key != "run")
    named = set(re.findall(r"[\w/]+\.py|\b\w+/(?=[\s,]|$)", words))
    assert {"cli.py", "recipe.py", "stages/loop.py", "rundir.py", "verifier/"} <= named, named
    missing = sorted(n for n in named if not (PACKAGE / n).exists())
    assert missing == [], f"the architecture picture names what does not exist: {missing}"
    assert "](img/architecture.svg)" in (ROOT / "docs" / "architecture.md").read_text()
    assert (ROOT / "docs" / "img" / "architecture.svg").is_file()
