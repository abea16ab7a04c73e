"""The code reward (`verifier.kind: code`): run the program in a model's answer against the row's
tests; 1.0 only if every test passes.

The program is the answer's last fenced block (```python ... ``` or ```cpp ... ```; an untagged
block is in `verifier.language`; blocks tagged otherwise, e.g. ```text, are skipped). A code row's
gold `answer` is JSON in one of two shapes, which the data loader builds from the row
(`tests_answer`) and `sdzero verify --tests-file` reads as is:
  {"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...]}   stdin -> expected stdout, one run per pair
                                                        (compared up to trailing whitespace per line)
  {"test": "def check(candidate): ...", "entry_point": "f"}   HumanEval: the test code runs after
                                                        the program and check(f) must not raise
Python runs everywhere, C++ where `g++` is installed (macOS: the Command Line Tools' clang++;
stdin/stdout tests only). Each answer is graded by one of a pool of `code_worker` processes (the
math verifier's pool model), each run in the sandbox of `sandbox.py`; identical (program, tests)
pairs are graded once (the verdict cache). Where this machine offers no isolation the workers
refuse to start, and grading raises RuntimeError naming verifier.allow_unisolated_code, unless the
recipe sets it.
"""

from __future__ import annotations

import json
import re

from .config import VerifierConfig
from .verdict import Verdict
from .pool import SharedPool, WorkerPool, cache_get, cache_put

LANGUAGES = {"python": "python", "py": "python", "python3": "python", "cpp": "cpp", "c++": "cpp", "cxx": "cpp", "cc": "cpp"}
SCRATCH_MB = 128  # each worker's tmpfs for job folders (Linux as root); a run's files share it
FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", re.DOTALL)
SHAPES = ('{"inputs": [...], "outputs": [...]} (stdin/stdout pairs) or '
          '{"test": "<code defining check(candidate)>", "entry_point": "<function name>"}')


def extract_program(text: str, default_language: str = "python") -> tuple[str, str] | None:
    """(language, source) of the last fenced code block in `text`, or None.

    Example: extract_program("Here:\\n```py\\nprint(1)\\n```") == ("python", "print(1)\\n")
    """
    found = None
    for m in FENCE.finditer(text):
        tag = m.group(1).strip().lower()
        tag = tag.split()[0] if tag else ""
        language = default_language if not tag else LANGUAGES.get(tag)
        if language is not None:
            found = (language, m.group(2))
    return found


def validate_tests(tests) -> dict:
    """The tests in their canonical shape; ValueError (without a location) if malformed."""
    if not isinstance(tests, dict):
        raise ValueError(f"code tests must be a JSON object, got {type(tests).__name__}; write {SHAPES}")
    if "inputs" in tests or "outputs" in tests:
        inputs, outputs = tests.get("inputs"), tests.get("outputs")
        for name, value in (("inputs", inputs), ("outputs", outputs)):
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ValueError(f"code tests' {name!r} must be a non-empty list of strings, got {value!r:.80}; write {SHAPES}")
        if len(inputs) != len(outputs):
            raise ValueError(f"code tests have {len(inputs)} inputs but {len(outputs)} outputs; give one output per input.")
        return {"inputs": inputs, "outputs": outputs}
    if "test" in tests:
        test, entry = tests.get("test"), tests.get("entry_point")
        if not isinstance(test, str) or "check" not in test:
            raise ValueError(f"code tests' 'test' must be Python source defining check(candidate), got {test!r:.80}.")
        if not isinstance(entry, str) or not entry.isidentifier():
            raise ValueError(f"code tests with 'test' need 'entry_point', the tested function's name, got {entry!r:.80}.")
        return {"test": test, "entry_point": entry}
    raise ValueError(f"code tests have neither 'inputs'/'outputs' nor 'test' (found: {sorted(tests)}); write {SHAPES}")


def parse_tests(answer: str) -> dict:
    """A code row's gold answer (JSON text) as canonical tests; ValueError naming the fix."""
    if not isinstance(answer, str):
        raise ValueError(f"a code row's answer must be its tests as JSON text, got {type(answer).__name__}.")
    try:
        tests = json.loads(answer)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"with verifier.kind: code the gold answer must be tests as JSON, {SHAPES}; got {answer[:60]!r} ({err.msg}). "
            "Set data.fields.tests (and data.fields.entry_point), or use verifier.kind: math."
        ) from None
    return validate_tests(tests)


def tests_answer(row: dict, tests_field: str | None, entry_field: str | None) -> str | None:
    """A row's tests as the JSON gold answer, or None for a row without tests (a math row).

    With `tests_field` unset, a row holding `inputs` and `outputs`, or `test` and `entry_point`
    (HumanEval's own fields), is a code row. The field may hold an object or JSON text of one; a
    string that is not JSON is HumanEval test code, whose entry point is `row[entry_field]`.
    """
    entry_field = entry_field or "entry_point"
    if tests_field is None:
        if "inputs" in row and "outputs" in row:
            value = {"inputs": row["inputs"], "outputs": row["outputs"]}
        elif "test" in row and entry_field in row:
            value = {"test": row["test"], "entry_point": row[entry_field]}
        else:
            return None
    else:
        if tests_field not in row:
            raise ValueError(f"has no field {tests_field!r} (found: {sorted(row)}). Set data.fields.tests.")
        value = row[tests_field]
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"field {tests_field!r} is not valid JSON ({err.msg}); write {SHAPES}") from None
        if isinstance(value, str):
            if entry_field not in row:
                raise ValueError(f"has test code in {tests_field!r} but no field {entry_field!r} naming the tested function "
                                 f"(found: {sorted(row)}). Set data.fields.entry_point.")
            value = {"test": value, "entry_point": row[entry_field]}
        elif isinstance(value, dict) and "test" in value and "entry_point" not in value and entry_field in row:
            value = {**value, "entry_point": row[entry_field]}
    return json.dumps(validate_tests(value))


# -- grading ---------------------------------------------------------------------------------

_code_pool = SharedPool("sdzero_mlx.verifier.code_worker")


def get_code_pool(config: VerifierConfig) -> WorkerPool:
    """The process-wide pool of code workers, (re)built if the configured size or permission changed."""
    allow = ("--allow-unisolated",) if config.allow_unisolated_code else ()
    return _code_pool.get(config.n_workers(), (str(SCRATCH_MB), *allow))


def describe(tests: dict) -> str:
    if "test" in tests:
        return f"check({tests['entry_point']})"
    return f"{len(tests['inputs'])} stdin/stdout test(s)"


def check_code(text: str, answer: str, cfg: VerifierConfig) -> Verdict:
    """Grade one answer against its tests (a malformed gold raises ValueError: the data is wrong, not the model)."""
    tests = parse_tests(answer)
    if not isinstance(text, str):
        return Verdict(0.0, None, describe(tests), f"response is not a string ({type(text).__name__})")
    found = extract_program(text[-cfg.max_chars:], cfg.language)
    if found is None:
        return Verdict(0.0, None, describe(tests), "no fenced code block (```python ... ```) in the answer")
    language, program = found
    if "test" in tests and language != "python":
        return Verdict(0.0, program, describe(tests), f"assertion tests run Python, but the answer's block is {language}")
    key = ("code", language, program, answer, cfg.timeout_s, cfg.code_memory_mb)
    hit = cache_get(key) if cfg.cache_size > 0 else None
    if hit is not None:
        return Verdict(1.0 if hit[0] else 0.0, program, describe(tests), hit[1])
    job = {"language": language, "program": program, "tests": tests,
           "limits": {"wall_s": cfg.timeout_s, "cpu_s": cfg.timeout_s, "memory_mb": cfg.code_memory_mb}}
    runs = len(tests.get("inputs", [None]))
    # a backstop only: every run inside is bounded by its own wall-clock limit (and a compile by 30 s)
    budget = runs * (cfg.timeout_s + 2.0) + (32.0 if language == "cpp" else 0.0) + 10.0
    reply, failure = get_code_pool(cfg).ask(job, budget)
    if reply is not None and "fatal" in reply:  # the sandbox, not the program, failed: stop rather than score 0
        raise RuntimeError(reply["fatal"])
    if reply is None:
        return Verdict(0.0, program, describe(tests), f"code worker {'overran its budget' if failure == 'timeout' else 'crashed'}")
    if "timed out" not in reply["reason"]:  # a timeout may be the machine's load, not the program: retry it next time
        cache_put(key, (reply["ok"], reply["reason"]), cfg.cache_size)
    return Verdict(1.0 if reply["ok"] else 0.0, program, describe(tests), reply["reason"])


def sandbox_description(config: VerifierConfig | None = None) -> str:
    """What the code workers isolate on this machine, in one line (asks one worker; RuntimeError if none can start)."""
    cfg = config or VerifierConfig(kind="code")
    job = {"language": "python", "program": "print(1)", "tests": {"inputs": [""], "outputs": ["1"]}, "limits": {}}
    reply, _ = get_code_pool(cfg).ask(job, 30.0)
    return reply["sandbox"] if reply else "unknown (the code worker did not answer)"
