"""Answer forms models write that the verifier used to miss (issue 14, defect 7), and its cold start.

Each row: (model text, gold, expected verdict). The wrong-answer rows keep the new forms from
turning into "accept everything": a unit does not hide a wrong number, an integral that evaluates
to 2 is not 1.
"""

import subprocess
import sys
import time

from sdzero_mlx.verifier import VerifierConfig, check, check_batch
from sdzero_mlx.verifier import pool as verifier_pool
from sdzero_mlx.verifier.numbers import compare_plain_numbers, plain_number

B = "\\boxed"
UNITS = [
    (f"{B}{{12 cm^2}}", "12", 1.0),
    (f"{B}{{12\\text{{ m}}^3}}", "12", 1.0),
    (f"{B}{{5 \\mathrm{{cm}}^{{2}}}}", "5", 1.0),
    (f"{B}{{3.5 \\, \\text{{m}}^2}}", "3.5", 1.0),
    (f"{B}{{9.8 \\text{{ m/s}}^2}}", "9.8", 1.0),
    (f"{B}{{1,200 \\text{{ cm}}^3}}", "1200", 1.0),
    (f"{B}{{12 m^2}}", "12", 1.0),  # a bare one-letter unit, against a numeric gold
    ("The area is $12 \\text{ m}^2$.\n\nFinal answer: 12 m^2", "12", 1.0),
    (f"{B}{{13\\text{{ m}}^3}}", "12", 0.0),
    (f"{B}{{12 x^2}}", "12", 0.0),  # x is no unit
    (f"{B}{{2}}", "2s", 0.0),  # a gold with a letter keeps it: "2s" is an expression
]
CALCULUS = [
    (f"{B}{{\\int_0^1 2x\\,dx}}", "1", 1.0),
    (f"{B}{{\\int_0^1 2x\\,dx}}", "2", 0.0),
    (f"{B}{{\\int_{{0}}^{{\\pi}} \\sin x \\, \\mathrm{{d}}x}}", "2", 1.0),
    (f"{B}{{\\int_0^1 e^x dx}}", "e-1", 1.0),
    (f"{B}{{\\sum_{{k=1}}^{{4}} k}}", "10", 1.0),
    (f"{B}{{\\sum_{{k=1}}^{{4}} k}}", "11", 0.0),
    (f"{B}{{\\sum_{{n=1}}^{{10}} n^2}}", "385", 1.0),
    (f"{B}{{\\sum_{{k=1}}^{{n}} k}}", "\\frac{n(n+1)}{2}", 1.0),
    (f"{B}{{\\sum_{{k=1}}^{{\\infty}} \\frac{{1}}{{k^2}}}}", "\\frac{\\pi^2}{6}", 1.0),
    (f"{B}{{\\prod_{{k=1}}^{{5}} k}}", "120", 1.0),
]
HUGE_POWERS = [
    (f"{B}{{2^{{1000}}-2^{{1000}}+3}}", "3", 1.0),
    (f"{B}{{\\frac{{10^{{400}}}}{{10^{{399}}}}}}", "10", 1.0),
    (f"{B}{{3^{{50000}}-3^{{50000}}+7}}", "7", 1.0),  # past the old 10^5000 cap
    (f"{B}{{\\frac{{10^{{40000}}}}{{10^{{39999}}}}}}", "10", 1.0),
    (f"{B}{{10^{{40000}}}}", "10", 0.0),
    (f"{B}{{2^{{2^{{100}}}}}}", "2", 0.0),  # still refused at once
]
LONG = [
    ("Let me think. " * 40_000 + f"So the answer is {B}{{42}}.", "42", 1.0),  # 560 KB of reasoning
    ("x" * 1_000_000 + f"{B}{{\\frac{{1}}{{2}}}}", "0.5", 1.0),
    (f"{B}{{42}} " + "y" * 300_000, "42", 0.0),  # the final answer is missing from the tail: no early box counts
]
CASES = UNITS + CALCULUS + HUGE_POWERS + LONG
FAST = VerifierConfig(timeout_s=5.0)


def test_forms_are_graded():
    verdicts = check_batch([t for t, _, _ in CASES], [g for _, g, _ in CASES], FAST)
    wrong = [(t[:60], g, want, v) for (t, g, want), v in zip(CASES, verdicts) if v.score != want]
    assert not wrong, "\n".join(map(str, wrong))


def test_long_response_is_read_from_a_bounded_tail_quickly():
    text = "step " * 2_000_000 + f"{B}{{7}}"  # 10 MB
    tic = time.perf_counter()
    v = check(text, "7")
    assert v.score == 1.0 and v.extracted == "7"
    assert time.perf_counter() - tic < 0.5


def test_plain_numbers_are_exact_fractions():
    assert plain_number("-0.25") == plain_number("-1/4") == plain_number("-\\frac{1}{4}")
    assert plain_number("1 2") is None and plain_number("1/0") is None and plain_number("x") is None
    cfg = VerifierConfig()
    assert compare_plain_numbers("50\\%", "0.5", cfg)[0] is True  # percent policy "either"
    assert compare_plain_numbers("0.3333", "1/3", cfg)[0] is False  # rounding is not equality
    assert compare_plain_numbers("\\sqrt{4}", "2", cfg) is None  # not plain: the worker decides


def test_plain_numbers_need_no_worker():
    verifier_pool.shutdown()
    cfg = VerifierConfig(cache_size=0)
    tic = time.perf_counter()
    for _ in range(200):
        assert check("so \\boxed{\\frac{3}{4}}", "0.75", cfg).score == 1.0
        assert check("so \\boxed{12 \\text{ cm}^2}", "13", cfg).score == 0.0
    assert verifier_pool._math_pool._pool is None  # no worker was started
    assert (time.perf_counter() - tic) / 400 < 0.005  # a warm call takes well under 5 ms


def test_cold_verify_command_is_fast():
    code = ("import time; t = time.perf_counter(); from sdzero_mlx.cli import main; import sys; "
            "sys.argv = ['sdzero', 'verify', 'so \\\\boxed{0.5}', '1/2']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(time.perf_counter() - t, 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "verdict:   correct" in out.stdout, out.stdout + out.stderr
    seconds, sympy_loaded = out.stdout.strip().splitlines()[-1].split()
    assert sympy_loaded == "False"
    assert float(seconds) < 1.0
