"""Verifier tests: the case table, hostile inputs, threads, batch + cache, file grading, config checks.

Everything runs through the real worker pool (small budgets keep the hostile cases quick).
"""

import json
import threading
import time

import pytest

from sdzero_mlx.verifier import pool as verifier_pool
from sdzero_mlx.verifier.extract import extract_answer, normalize
from sdzero_mlx.verifier.parse import ParseError, parse_answer
from sdzero_mlx.verifier import VerifierConfig, check, check_batch, grade_file, verify, verify_batch

from verifier_cases import CASES, HOSTILE

FAST = VerifierConfig(timeout_s=1.0)


def test_case_table_is_large_and_balanced():
    assert len(CASES) >= 150
    n_true = sum(e == 1.0 for _, _, e in CASES)
    assert 0.35 < n_true / len(CASES) < 0.75  # enough false-positive traps to matter


def test_case_table():
    # one batch over the pool: the whole table in a few seconds
    verdicts = check_batch([t for t, _, _ in CASES], [g for _, g, _ in CASES], FAST)
    wrong = [(i, CASES[i][0][:80], CASES[i][1][:40], CASES[i][2], v) for i, v in enumerate(verdicts) if v.score != CASES[i][2]]
    assert not wrong, "\n".join(map(str, wrong))


def test_verdict_fields():
    v = check("We get \\boxed{\\dfrac{1}{2}}.", "0.5")
    assert (v.score, v.extracted, v.gold, v.reason) == (1.0, "\\dfrac{1}{2}", "0.5", "equal as numbers")
    v = check("No box here, just 0.5", "0.5")
    assert (v.score, v.extracted, v.reason) == (0.0, None, "no final answer found")


def test_last_number_fallback_flag():
    text = "So we add them and get 15"
    assert verify(text, "15") == 0.0
    assert verify(text, "15", VerifierConfig(last_number_fallback=True)) == 1.0
    assert verify("It costs $1,250 in total", "1250", VerifierConfig(last_number_fallback=True)) == 1.0


def test_percent_policies():
    strip, divide = VerifierConfig(percent_policy="strip"), VerifierConfig(percent_policy="divide")
    assert verify("\\boxed{50\\%}", "50", strip) == 1.0
    assert verify("\\boxed{50\\%}", "0.5", strip) == 0.0
    assert verify("\\boxed{50\\%}", "0.5", divide) == 1.0
    assert verify("\\boxed{50\\%}", "50", divide) == 0.0


def test_tolerance_is_configurable():
    loose = VerifierConfig(rel_tol=1e-3)
    assert verify("\\boxed{0.3333}", "1/3") == 0.0
    assert verify("\\boxed{0.3333}", "1/3", loose) == 1.0
    assert verify("\\boxed{0.33}", "1/3", loose) == 0.0  # 1% off


def test_extraction_and_normalisation_units():
    assert extract_answer("a \\boxed{\\frac{1}{\\sqrt{2}}} b") == "\\frac{1}{\\sqrt{2}}"
    assert extract_answer("x\n#### 72") == "72"
    assert extract_answer("Final Answer: The final answer is $7$. I hope it is correct.") == "7"
    assert extract_answer("nothing here 42") is None
    assert normalize("\\$1,000.") == ("1000", False)
    assert normalize("50\\%") == ("50", True)
    # an equation stays one (the parser reads "x = ..." as naming its value); membership is the set
    assert normalize("x = \\left(\\dfrac{1}{2}\\right)") == ("x = (\\frac{1}{2})", False)
    assert normalize("x \\in \\left[1, 2\\right)") == ("[1, 2)", False)


def test_parser_never_evaluates_python():
    for s in ("__import__('os').system('echo hi')", "(lambda: 1)()", "().__class__", "exec('1')", "x.__dict__"):
        with pytest.raises(ParseError):
            parse_answer(s)
    # a colon is a ratio: "lambda: 1" is the product of six symbols over 1, a value that is never run
    assert parse_answer("lambda: 1") == parse_answer("l a m b d a")
    assert verify("\\boxed{lambda: 1}", "1") == 0.0


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_inputs_return_zero_fast(i):
    text, gold, _ = HOSTILE[i]
    verifier_pool.get_pool(FAST).ask({"answer": "1", "gold": "1", "percent_policy": "strip", "rel_tol": 0, "abs_tol": 0}, 30)  # warm
    t0 = time.monotonic()
    v = check(text, gold, FAST)
    elapsed = time.monotonic() - t0
    assert v.score == 0.0, v
    assert elapsed < FAST.timeout_s + 0.5, (elapsed, v.reason)


def _slow_pair() -> tuple[str, str]:
    """A ~900-character list whose unordered matching takes ~0.5 s (quadratic, each pair a sympy check)."""
    ks = list(range(2, 90))
    gold = ",".join(f"\\sin({k}x)" for k in ks)
    answer = ",".join(f"\\sin({k}x)" for k in [*reversed(ks[1:]), 99])
    return answer, gold


def test_overrunning_worker_is_killed_and_replaced():
    # with a 0.05 s budget the worker must be killed, the verdict must be 0.0, and the next call must still work
    answer, gold = _slow_pair()
    tight = VerifierConfig(timeout_s=0.05, cache_size=0)
    verify("\\boxed{x}", "2", tight)  # warm the pool (a plain number would not reach it)
    t0 = time.monotonic()
    v = check(f"\\boxed{{{answer}}}", gold, tight)
    assert v.score == 0.0 and v.reason == "timed out after 0.05 s", v
    assert time.monotonic() - t0 < 1.0
    assert verify("\\boxed{\\sqrt{4}}", "2.0", tight) == 1.0


def test_verify_from_threads():
    results, errors = {}, []

    def work(k):
        try:
            results[k] = (verify(f"\\boxed{{{k}/2}}", str(k / 2)), verify(f"\\boxed{{{k}}}", str(k + 1)))
        except Exception as exc:  # noqa: BLE001 - record it; the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and results == {k: (1.0, 0.0) for k in range(8)}
    # an overrunning comparison from a non-main thread is also cut off (no signal.alarm anywhere)
    out = []
    answer, gold = _slow_pair()
    tight = VerifierConfig(timeout_s=0.05, cache_size=0)
    t = threading.Thread(target=lambda: out.append(check(f"\\boxed{{{answer}}}", gold, tight)))
    t.start()
    t.join(timeout=10)
    assert [v.reason for v in out] == ["timed out after 0.05 s"]


def test_deep_nesting_with_a_large_answer_limit():
    roomy = VerifierConfig(max_answer_chars=50_000, timeout_s=1.0)
    t0 = time.monotonic()
    v = check("\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}", "1", roomy)
    assert v.score == 0.0 and "too deeply nested" in v.reason, v
    assert time.monotonic() - t0 < 1.5


def test_verify_batch_and_cache():
    # plain numbers are decided in the caller (verifier/numbers.py); the cache holds the worker's verdicts
    texts = ["\\boxed{\\frac{\\sqrt{4}}{4}}", "\\boxed{3}", "#### 7", "no answer"] * 5
    golds = ["0.5", "4", "7", "1"] * 5
    assert verify_batch(texts, golds) == [1.0, 0.0, 1.0, 0.0] * 5
    key = ("\\frac{\\sqrt{4}}{4}", "0.5", "either", 1e-9, 1e-12)
    assert verifier_pool.cache_get(key) == (True, "equal as numbers", "0.5")
    with pytest.raises(ValueError, match="one gold answer per response"):
        verify_batch(["a"], [])


def test_pool_is_reused():
    pool = verifier_pool.get_pool(VerifierConfig())
    verify_batch(["\\boxed{1}"] * 4, ["2"] * 4, VerifierConfig(cache_size=0))
    assert verifier_pool.get_pool(VerifierConfig()) is pool


def test_grade_file(tmp_path):
    path = tmp_path / "preds.jsonl"
    rows = [{"response": "\\boxed{4}", "answer": "4"}, {"text": "#### 5", "answer": 6}, {"response": "The answer is 1/2.", "answer": "0.5"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    g = grade_file(path)
    assert (g.n, g.correct) == (3, 2) and g.accuracy == pytest.approx(2 / 3)
    assert [v.score for v in g.verdicts] == [1.0, 0.0, 1.0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"response": "x"}) + "\n")
    with pytest.raises(ValueError, match="Line 1 .* no field 'answer'"):
        grade_file(bad)
    bad.write_text(json.dumps({"response": "x", "answer": ["1"]}) + "\n")
    with pytest.raises(ValueError, match="Line 1 .* 'answer' of type list"):
        grade_file(bad)
    bad.write_text(json.dumps({"answer": "1"}) + "\n")
    with pytest.raises(ValueError, match="Line 1 .* no field 'response' or 'text'"):
        grade_file(bad)


def test_never_raises_on_model_text():
    for text in (None, 42, "\\boxed{", "\\boxed{\\frac{}{}}", "\\boxed{)(}", "\\boxed{\\sqrt}", "\\boxed{1/0}", "\\boxed{\x00}"):
        assert verify(text, "1", FAST) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    ({"percent_policy": "keep"}, "percent_policy"),
    ({"rel_tol": -1.0}, "rel_tol"),
    ({"abs_tol": "1e-9"}, "abs_tol"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"max_chars": 0}, "max_chars"),
    ({"workers": -1}, "workers"),
    ({"last_number_fallback": "yes"}, "last_number_fallback"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VerifierConfig(**kwargs)


def test_worker_killed_while_idle_is_replaced():
    cfg = VerifierConfig(workers=1, cache_size=0)
    pool = verifier_pool.get_pool(cfg)
    assert verify("\\boxed{\\sqrt{9}}", "3.0", cfg) == 1.0
    worker = pool._idle.get()
    worker.proc.kill()
    worker.proc.wait()
    pool._idle.put(worker)
    assert verify("\\boxed{\\sqrt{9}}", "3.0", cfg) == 1.0  # the dead worker was replaced and the job retried


def test_broken_environment_fails_loudly(monkeypatch):
    # a worker that cannot start must raise, not return silent all-zero rewards
    verifier_pool.shutdown()
    monkeypatch.setattr(verifier_pool.sys, "executable", "/bin/false")
    try:
        with pytest.raises(RuntimeError, match="did not start"):
            verify("\\boxed{x}", "2", VerifierConfig(workers=1, cache_size=0))  # not a plain number: needs a worker
    finally:
        verifier_pool.shutdown()


def test_answer_span_is_where_the_extracted_answer_sits():
    from sdzero_mlx.verifier.extract import answer_span, extract_answer

    cases = [  # (text, fallback, span) counted by hand
        ("so \\boxed{ 12 }.", False, (11, 13)),
        ("work\n#### 42\nmore", False, (10, 12)),
        ("x. The answer is: 7 apples. Done", False, (18, 26)),
        ("the answer is $3$.", False, (15, 16)),
        ("1 + 5 = 6", True, (8, 9)),
        ("1 + 5 = 6,", True, (8, 9)),
        ("1 + 5 = 6", False, None),
        ("Answer: -4", False, (8, 10)),
    ]
    for text, fallback, want in cases:
        assert answer_span(text, fallback) == want, text
        got = extract_answer(text, fallback)
        assert got == (None if want is None else text[want[0]:want[1]])
