"""Our verifier against math-verify's own regression suite: agreement by class, and every disagreement.

    python benchmarks/bench_verifier_peer.py [--sdist PATH] [--cache-dir DIR] [--all]

math-verify (Hugging Face, MIT) keeps parametrized (gold, prediction, expected) cases gathered from
real model output in the `tests/` of its source distribution. This script reads them from there at
run time, never from a copy in this repository: it finds `math_verify-0.9.0.tar.gz` in the cache
folder (default ~/.cache/sdzero/) or fetches it once with
`pip download --no-binary :all: --no-deps math-verify==0.9.0`, opens the tarball, and reads each
test file's `@pytest.mark.parametrize` lists with `ast` (a case that is not a Python literal, such as
an f-string, is counted as skipped). Cases with extra math-verify options (precision, strict,
allow_set_relation_comp) are kept with their expectation; our verifier has no such options.

Each case is graded by `check(text, gold)` with the default config (last-number fallback off): the
prediction is placed where our extractor looks, "The answer is PRED", unless it already holds a
\\boxed{}. A disagreement is printed with the rule that decides it (JUDGED below, keyed by the
case's id: file::test[index] in math-verify 0.9.0): "debatable" (math-verify's expectation is one
reasonable reading and ours is another), "free text" (an answer standing loose in a sentence,
which our extractor does not look for by design), or "error" (ours is wrong). A disagreement
missing from JUDGED is printed as "unjudged".
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.9.0"
SDIST = f"math_verify-{VERSION}.tar.gz"
DEFAULT_CACHE = Path.home() / ".cache" / "sdzero"
# argument names a parametrize list uses for the three fields (test_yujianll.py says "result")
GOLD, PRED, EXPECTED = ("gold",), ("pred",), ("expected", "result")


@dataclass(frozen=True)
class PeerCase:
    id: str  # file::test[index] in math-verify's tests/
    cls: str  # file::test: the class agreement is reported by
    gold: str
    pred: str
    expected: int
    options: str  # math-verify options the case sets, e.g. "precision=4"


def find_sdist(cache_dir: Path, download: bool = True) -> Path:
    """The path of math-verify's sdist in cache_dir, fetched with pip when absent (and download is true)."""
    path = cache_dir / SDIST
    if path.exists() or not download:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run `pip download --no-binary :all: --no-deps "
                                    f"math-verify=={VERSION} -d {cache_dir}`.")
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", f"math-verify=={VERSION}",
           "-d", str(cache_dir)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0 or not path.exists():
        raise FileNotFoundError(f"could not download {SDIST} ({' '.join(cmd)} said: {out.stderr.strip()[-300:]}); "
                                f"download it by hand into {cache_dir} or pass --sdist.")
    return path


def _argnames(node: ast.expr) -> list[str] | None:
    try:
        names = ast.literal_eval(node)
    except ValueError:
        return None
    names = names.split(",") if isinstance(names, str) else list(names)
    return [n.strip() for n in names]


def _field(names: list[str], wanted: tuple[str, ...]) -> int | None:
    return next((i for i, n in enumerate(names) if n in wanted), None)


def read_cases(sdist: Path) -> tuple[list[PeerCase], int]:
    """(cases, skipped) from the parametrize lists of the sdist's tests/*.py with gold, pred and expected fields."""
    cases, skipped = [], 0
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and "/tests/" in m.name and m.name.endswith(".py")),
                         key=lambda m: m.name)
        for member in members:
            fname = member.name.rsplit("/", 1)[1]
            tree = ast.parse(tar.extractfile(member).read().decode("utf-8"))
            for fn in ast.walk(tree):
                if not isinstance(fn, ast.FunctionDef):
                    continue
                for deco in fn.decorator_list:
                    if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize" and len(deco.args) >= 2):
                        continue
                    names = _argnames(deco.args[0])
                    if names is None or not isinstance(deco.args[1], (ast.List, ast.Tuple)):
                        continue
                    ig, ip, ie = _field(names, GOLD), _field(names, PRED), _field(names, EXPECTED)
                    if ig is None or ip is None or ie is None:
                        continue
                    for k, elt in enumerate(deco.args[1].elts):
                        try:
                            row = ast.literal_eval(elt)
                        except ValueError:  # e.g. f"{math.sqrt(17):.15f}": not read, counted
                            skipped += 1
                            continue
                        opts = ", ".join(f"{n}={row[j]!r}" for j, n in enumerate(names) if j not in (ig, ip, ie))
                        cls = f"{fname}::{fn.name}"
                        cases.append(PeerCase(f"{cls}[{k}]", cls, row[ig], row[ip], int(row[ie]), opts))
    return cases, skipped


def placed(pred: str) -> str:
    """The prediction where our extractor looks: as is when boxed, else after 'The answer is'."""
    return pred if "\\boxed" in pred or "\\fbox" in pred else f"The answer is {pred}"


# Disagreements judged by hand (math-verify 0.9.0 case ids): (kind, the rule that decides it; docs/verifier.md).
_LOOSE = ("free text", "the answer stands loose in a sentence, not after a marker or in a box")
_ANSWER_WORD = ("free text", "'Answer' with no 'is' or ':' is no answer marker, so the math after it is not read")
_SENTENCE = ("free text", "after the marker comes a sentence; the math inside it is not looked for")
_DECIMAL_COMMA = ("debatable", "no decimal comma: a comma parts list items, so 1000,99 is the pair 1000, 99")
_ROUNDING = ("debatable", "rounding is not equality (math-verify compares at precision=2)")
_MULTIPLICITY = ("debatable", "a list keeps multiplicity: the prediction repeats a tuple, six items against five")
JUDGED: dict[str, tuple[str, str]] = {
    **{f"test_all.py::test_number_extraction[{i}]": _DECIMAL_COMMA for i in (5, 6)},
    "test_all.py::test_number_extraction[7]": ("free text", "a French sentence, with a decimal comma"),
    **{f"test_all.py::test_number_extraction[{i}]": _LOOSE for i in (13, 14, 15, 16)},
    "test_all.py::test_number_extraction[17]": ("debatable", "no decimal comma: gold 0,111 is the list 0, 111 "
                                                 "(never the thousands number 111)"),
    **{f"test_all.py::test_latex_notation[{i}]": _ANSWER_WORD for i in (0, 1, 2, 3, 4, 7, 8, 9)},
    "test_all.py::test_latex_notation_math[2]": ("free text", "the gold is a whole solution with no box; a gold "
                                                  "answer is read from a box or after '####'"),
    **{f"test_all.py::test_relations_math[{i}]": _LOOSE for i in (0, 1, 2, 3, 4, 7)},
    **{f"test_all.py::test_matrix_extraction[{i}]": _LOOSE for i in (1, 2, 3, 4, 5, 6)},
    **{f"test_all.py::test_complex_math_expressions[{i}]": _ROUNDING for i in (7, 13)},
    **{f"test_all.py::test_math_extraction_edge_cases[{i}]": _LOOSE for i in (0, 1, 2)},
    "test_all.py::test_math_extraction_edge_cases[6]": _SENTENCE,
    **{f"test_all.py::test_math_extraction_additional_cases[{i}]": _SENTENCE for i in (1, 2, 4)},
    "test_all.py::test_math_extraction_additional_cases[7]": ("debatable", "{1,3} is a set and (1,3) a pair or an "
                                                               "interval: a set never equals an ordered pair"),
    "test_all.py::test_math_extraction_additional_cases[8]": _LOOSE,
    "test_all.py::test_math_extraction_additional_cases[17]": ("debatable", "a box wins over a later 'The final "
                                                                "answer is': the box 255 in the reasoning is graded"),
    "test_all.py::test_set_rel_assymetry[3]": ("debatable", "math-verify's default allow_set_relation_comp=False "
                                               "refuses a relation against a set gold; -2 <= x <= 7 is [-2, 7] "
                                               "either way (case [2], the same pair with the option on, expects 1)"),
    "test_boxed.py::test_boxed[0]": ("debatable", "gold boxes parted by '++++++' are not one answer (the gold is "
                                     "the last box, 4)"),
    **{f"test_numina_cases.py::test_numina_cases[{i}]": _MULTIPLICITY for i in (0, 19)},
    "test_numina_cases.py::test_numina_cases[3]": ("debatable", "1 <= |z| <= 3/2 is the interval [1, 3/2] of |z|; "
                                                   "solving for z is not attempted"),
    "test_numina_cases.py::test_numina_cases[24]": ("debatable", "a garbled gold (unclosed box, doubled backslashes) "
                                                    "against 'or' glued between words"),
    "test_open_thoughts.py::test_open_thoughts[14]": ("debatable", "boxes parted by words ('for part (a) and') are "
                                                      "not one answer: the last box is graded"),
    "test_open_thoughts.py::test_open_thoughts[27]": ("debatable", "gold boxes parted by words ('papers and') are "
                                                      "not one answer"),
    "test_strict.py::test_strict_variable_comparison[1]": ("debatable", "math-verify's option strict=False; "
                                                           "variables are compared by name (f(x) is not f(y))"),
    "test_yujianll.py::test_string_extraction[9]": ("debatable", "1 - 1/e and 1 + 1/e are different numbers; "
                                                    "the expectation of 1 looks wrong"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, default=None, help=f"path of {SDIST} (default: in --cache-dir, downloaded if absent)")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the sdist is kept (outside the repository)")
    ap.add_argument("--all", action="store_true", help="also print the cases that agree")
    args = ap.parse_args()
    sdist = args.sdist or find_sdist(args.cache_dir)
    cases, skipped = read_cases(sdist)

    from sdzero_mlx.verifier import VerifierConfig, check_batch
    from sdzero_mlx.verifier import pool as verifier_pool

    cfg = VerifierConfig(last_number_fallback=False, cache_size=0)
    verdicts = check_batch([placed(c.pred) for c in cases], [c.gold for c in cases], cfg)
    agree = [int(v.score) == c.expected for c, v in zip(cases, verdicts)]

    print(f"math-verify {VERSION} regression cases from {sdist}: {len(cases)} read, {skipped} skipped (not literals)")
    total, ok = Counter(c.cls for c in cases), Counter(c.cls for c, a in zip(cases, agree) if a)
    width = max(map(len, total))
    for cls in total:
        print(f"  {cls:{width}s} {ok[cls]:4d} / {total[cls]:<4d}")
    n0 = sum(c.expected == 0 for c in cases)
    false_pos = sum(c.expected == 0 and not a for c, a in zip(cases, agree))
    print(f"agreement {sum(agree)} / {len(cases)}; of the {n0} cases math-verify expects 0, we score 1 on {false_pos}")

    kinds = Counter()
    print("\ndisagreements (expected = math-verify's, ours = this verifier's):")
    for c, v, a in zip(cases, verdicts, agree):
        if a and not args.all:
            continue
        kind, rule = ("agree", "") if a else JUDGED.get(c.id, ("unjudged", "not yet looked at"))
        kinds[kind] += not a
        print(f"  {c.id} expected {c.expected} ours {v.score:.0f} [{kind}] {rule}\n"
              f"      gold {c.gold[:70]!r} pred {c.pred[:70]!r}{' (' + c.options + ')' if c.options else ''}\n"
              f"      extracted {str(v.extracted)[:60]!r} -> {v.reason}")
    print("\ndisagreements by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    verifier_pool.shutdown()


if __name__ == "__main__":
    main()
