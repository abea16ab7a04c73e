"""The verifier's case table: (model text, gold answer, expected verdict), each checkable by hand.

Grouped by the issue's bullets. The benchmark (benchmarks/bench_verifier.py) grades the same
table with math-verify. Expected verdicts follow our documented policies: default tolerance
(rounding is not equality), percent_policy="either", no last-number fallback.
"""

B = "\\boxed"

EXTRACTION = [
    # last \boxed / \fbox, nested braces
    (f"First {B}{{3}}, then correcting myself: {B}{{4}}", "4", 1.0),
    (f"First {B}{{3}}, then correcting myself: {B}{{4}}", "3", 0.0),
    (f"So the result is {B}{{\\frac{{\\sqrt{{3}}}}{{2}}}}.", "\\frac{\\sqrt3}{2}", 1.0),
    ("Hence \\fbox{17}.", "17", 1.0),
    (f"{B}{{\\left(\\frac{{1}}{{2}}, \\frac{{3}}{{4}}\\right)}}", "(0.5, 0.75)", 1.0),
    (f"{B} 5", "5", 1.0),
    (f"The answer is {B}{{12", "12", 0.0),  # truncated box: no final answer
    (f"Earlier {B}{{12}} but the last box is cut: {B}{{1", "12", 0.0),
    (f"{B}{{}}", "0", 0.0),
    # GSM8K
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72", 1.0),
    ("She has 5 - 2 = 3 left.\n#### 3", "4", 0.0),
    ("Total: 1200 + 34 = 1234\n#### 1,234", "1234", 1.0),
    ("#### $18", "18", 1.0),
    # "The answer is ..." / "Final answer: ..."
    ("The answer is 7.", "7", 1.0),
    ("Therefore, the answer is $\\frac{3}{4}$.", "0.75", 1.0),
    ("Final Answer: The final answer is $\\sqrt{5}$. I hope it is correct.", "\\sqrt{5}", 1.0),
    ("Final answer: 2.5", "\\frac52", 1.0),
    ("final answer: x = 9", "9", 1.0),
    ("The answer is 3.5 meters.", "3.5", 1.0),
    ("I think the answer is 8, not 9.", "9", 0.0),
    # answers that appear only in the reasoning, never in the final answer
    (f"We find x = 42 along the way. {B}{{41}}", "42", 0.0),
    ("Step 1: 6 * 7 = 42. So I'm not sure.", "42", 0.0),  # no final answer, fallback off
    ("The product is 42, which we double.", "42", 0.0),
    ("", "1", 0.0),
    ("The answer is", "1", 0.0),
]

NORMALISATION = [
    # thousands separators, currency, percent, degrees
    (f"{B}{{1,000,000}}", "1000000", 1.0),
    (f"{B}{{1{{,}}000}}", "1000", 1.0),
    (f"{B}{{12\\,345}}", "12345", 1.0),
    (f"{B}{{\\$5.50}}", "5.5", 1.0),
    (f"{B}{{\\$1,299}}", "1299", 1.0),
    (f"{B}{{25\\%}}", "25", 1.0),
    (f"{B}{{25\\%}}", "0.25", 1.0),  # percent_policy "either"
    (f"{B}{{25\\%}}", "2.5", 0.0),
    (f"{B}{{0.25}}", "25\\%", 1.0),
    (f"{B}{{30^\\circ}}", "30", 1.0),
    (f"{B}{{30^{{\\circ}}}}", "30", 1.0),
    (f"{B}{{45 degrees}}", "45", 1.0),
    (f"{B}{{45^\\circ}}", "135", 0.0),
    # units and trailing words
    (f"{B}{{12\\text{{ cm}}}}", "12", 1.0),
    (f"{B}{{12 \\text{{cm}}^2}}", "12", 1.0),
    (f"{B}{{7 \\mbox{{ apples}}}}", "7", 1.0),
    (f"{B}{{18 dollars}}", "18", 1.0),
    (f"{B}{{18 dollars}}", "81", 0.0),
    (f"{B}{{\\text{{Evelyn}}}}", "Evelyn", 1.0),
    # \left / \right, \dfrac / \tfrac, \cdot / \times
    (f"{B}{{\\left[ 2, 5 \\right)}}", "[2,5)", 1.0),
    (f"{B}{{\\dfrac{{2}}{{3}}}}", "\\frac{2}{3}", 1.0),
    (f"{B}{{\\tfrac{{9}}{{4}}}}", "2.25", 1.0),
    (f"{B}{{3 \\cdot 4}}", "12", 1.0),
    (f"{B}{{2 \\times 3 \\times 5}}", "30", 1.0),
    (f"{B}{{2 \\cdot \\pi}}", "2\\pi", 1.0),
    # spaces, trailing periods, leading "x ="
    (f"{B}{{ 1 2 }}", "12", 0.0),  # "1 2" is not a number we guess at
    ("The answer is 14.", "14", 1.0),
    (f"{B}{{x = 5}}", "5", 1.0),
    (f"{B}{{x=-3}}", "-3", 1.0),
    (f"{B}{{y = 2x + 1}}", "2x+1", 1.0),
    (f"{B}{{k = 4}}", "5", 0.0),
    (f"{B}{{+7}}", "7", 1.0),
    # gold answers in the same forms
    (f"{B}{{6}}", "#### 6", 1.0),
    (f"{B}{{6}}", "$\\boxed{6}$", 1.0),
    (f"{B}{{6}}", "\\$6", 1.0),
    ("#### 6", "6.0", 1.0),
]

NUMBERS = [
    (f"{B}{{3}}", "3", 1.0),
    (f"{B}{{3.0}}", "3", 1.0),
    (f"{B}{{3.00}}", "3", 1.0),
    (f"{B}{{-0}}", "0", 1.0),
    (f"{B}{{0.5}}", "1/2", 1.0),
    (f"{B}{{.5}}", "0.5", 1.0),
    (f"{B}{{-2.75}}", "-\\frac{11}{4}", 1.0),
    (f"{B}{{1/2}}", "2", 0.0),
    (f"{B}{{2}}", "1/2", 0.0),
    (f"{B}{{0.3333}}", "\\frac{1}{3}", 0.0),  # rounding is not equality
    (f"{B}{{0.33}}", "1/3", 0.0),
    (f"{B}{{3.14}}", "\\pi", 0.0),
    (f"{B}{{3.14159}}", "3.14159", 1.0),
    (f"{B}{{3}}", "-3", 0.0),
    (f"{B}{{10}}", "100", 0.0),
    (f"{B}{{1000001}}", "1000000", 0.0),
    (f"{B}{{0.1}}", "0.10", 1.0),
    (f"{B}{{0.01}}", "0.1", 0.0),
    # fractions and mixed numbers
    (f"{B}{{\\frac{{6}}{{8}}}}", "\\frac34", 1.0),
    (f"{B}{{\\frac{{3}}{{4}}}}", "\\frac{4}{3}", 0.0),
    (f"{B}{{3\\frac{{1}}{{2}}}}", "7/2", 1.0),
    (f"{B}{{3\\frac12}}", "3.5", 1.0),
    (f"{B}{{-2\\frac{{1}}{{4}}}}", "-2.25", 1.0),
    (f"{B}{{3 1/2}}", "\\frac{7}{2}", 1.0),
    (f"{B}{{3\\frac{{1}}{{2}}}}", "\\frac{3}{2}", 0.0),
    (f"{B}{{\\frac{{-1}}{{2}}}}", "-\\frac12", 1.0),
    (f"{B}{{\\frac{{1}}{{-2}}}}", "-0.5", 1.0),
    # scientific notation
    (f"{B}{{1.5 \\times 10^{{3}}}}", "1500", 1.0),
    (f"{B}{{1.5e3}}", "1500", 1.0),
    (f"{B}{{2E-4}}", "0.0002", 1.0),
    (f"{B}{{6.02 \\times 10^{{23}}}}", "6.02e23", 1.0),
    (f"{B}{{1.5 \\times 10^{{4}}}}", "1500", 0.0),
    (f"{B}{{10^{{-3}}}}", "0.001", 1.0),
    # radicals and pi
    (f"{B}{{\\sqrt{{8}}}}", "2\\sqrt{2}", 1.0),
    (f"{B}{{\\frac{{\\sqrt{{2}}}}{{2}}}}", "\\frac{1}{\\sqrt{2}}", 1.0),
    (f"{B}{{\\sqrt{{3}}}}", "3", 0.0),
    (f"{B}{{\\sqrt[3]{{27}}}}", "3", 1.0),
    (f"{B}{{2\\sqrt3}}", "\\sqrt{12}", 1.0),
    (f"{B}{{\\sqrt{{2}}+\\sqrt{{3}}}}", "\\sqrt{5}", 0.0),
    (f"{B}{{4\\pi}}", "4\\pi", 1.0),
    (f"{B}{{\\pi \\cdot 4}}", "4\\pi", 1.0),
    (f"{B}{{\\frac{{\\pi}}{{2}}}}", "\\frac12\\pi", 1.0),
    (f"{B}{{2\\pi}}", "\\pi", 0.0),
    (f"{B}{{\\pi r^2}}", "r^2\\pi", 1.0),
    (f"{B}{{8\\pi}}", "25.13", 0.0),  # a rounded value is not the exact answer
    (f"{B}{{e^{{i\\pi}}}}", "-1", 1.0),
    (f"{B}{{\\binom{{5}}{{2}}}}", "10", 1.0),
    (f"{B}{{5!}}", "120", 1.0),
    (f"{B}{{\\log_2 8}}", "3", 1.0),
    (f"{B}{{|{-4}|}}", "4", 1.0),
]

SYMBOLIC = [
    (f"{B}{{x+1}}", "1+x", 1.0),
    (f"{B}{{x+1}}", "x-1", 0.0),
    (f"{B}{{(x+1)^2}}", "x^2+2x+1", 1.0),
    (f"{B}{{(x-1)^2}}", "x^2+2x+1", 0.0),
    (f"{B}{{x^2-1}}", "(x-1)(x+1)", 1.0),
    (f"{B}{{\\frac{{x^2-1}}{{x-1}}}}", "x+1", 1.0),
    (f"{B}{{2x}}", "x^2", 0.0),
    (f"{B}{{\\sin^2 x + \\cos^2 x}}", "1", 1.0),
    (f"{B}{{\\frac{{a}}{{b}}}}", "\\frac{b}{a}", 0.0),
    (f"{B}{{ab}}", "ba", 1.0),
    (f"{B}{{3a+2b}}", "2b+3a", 1.0),
    (f"{B}{{\\sqrt{{x^2}}}}", "x", 1.0),  # variables sampled positive, as in contest answers
    (f"{B}{{\\ln(e^2)}}", "2", 1.0),
    (f"{B}{{2\\sin x \\cos x}}", "\\sin(2x)", 1.0),
    (f"{B}{{x^3}}", "x^2", 0.0),
    (f"{B}{{\\frac{{1}}{{x}}+\\frac{{1}}{{y}}}}", "\\frac{x+y}{xy}", 1.0),
    (f"{B}{{n(n+1)/2}}", "\\frac{n^2+n}{2}", 1.0),
    (f"{B}{{n(n-1)/2}}", "\\frac{n^2+n}{2}", 0.0),
    (f"{B}{{a_1 + a_2}}", "a_2 + a_1", 1.0),
    (f"{B}{{\\alpha + \\beta}}", "\\beta+\\alpha", 1.0),
    (f"{B}{{3+4i}}", "4i+3", 1.0),
    (f"{B}{{(1+i)^2}}", "2i", 1.0),
    (f"{B}{{3-4i}}", "3+4i", 0.0),
]

CONTAINERS = [
    # tuples / points / intervals: ordered, brackets matter
    (f"{B}{{(1, 2)}}", "(1,2)", 1.0),
    (f"{B}{{(2, 1)}}", "(1,2)", 0.0),
    (f"{B}{{(\\frac12, -3)}}", "(0.5,-3)", 1.0),
    (f"{B}{{(1,2,3)}}", "(1,2)", 0.0),
    (f"{B}{{[1, 2)}}", "[1,2)", 1.0),
    (f"{B}{{(1, 2]}}", "[1,2)", 0.0),
    (f"{B}{{[1,2]}}", "(1,2)", 0.0),
    (f"{B}{{(-\\infty, 3]}}", "(-\\infty,3]", 1.0),
    (f"{B}{{(-\\infty, 3)}}", "(-\\infty,3]", 0.0),
    (f"{B}{{(-\\infty,-1)\\cup(1,\\infty)}}", "(1,\\infty)\\cup(-\\infty,-1)", 1.0),
    (f"{B}{{(-\\infty,-1]\\cup(1,\\infty)}}", "(-\\infty,-1)\\cup(1,\\infty)", 0.0),
    (f"{B}{{1, 2}}", "(1,2)", 1.0),  # a bare list stands for the tuple, in order
    # sets and unordered lists
    (f"{B}{{\\{{1,2,3\\}}}}", "\\{3,2,1\\}", 1.0),
    (f"{B}{{\\{{1,2\\}}}}", "\\{1,2,3\\}", 0.0),
    (f"{B}{{3, 1, 2}}", "1,2,3", 1.0),
    (f"{B}{{-2, 2}}", "2,-2", 1.0),
    (f"{B}{{1, 1, 2}}", "1,2,2", 0.0),
    (f"{B}{{\\{{1, 2\\}}}}", "1, 2", 1.0),
    (f"{B}{{x = 2 \\text{{ or }} x = -2}}", "2, -2", 1.0),
    (f"{B}{{2 \\text{{ and }} 5}}", "5,2", 1.0),
    (f"{B}{{\\frac12, \\frac13}}", "1/3, 0.5", 1.0),
    (f"{B}{{\\frac12, \\frac14}}", "1/3, 0.5", 0.0),
    # equations
    (f"{B}{{y = 2x + 3}}", "y=3+2x", 1.0),
    (f"{B}{{2x + 3y = 6}}", "3y + 2x = 6", 1.0),
    (f"{B}{{4x + 6y = 12}}", "2x+3y=6", 1.0),
    (f"{B}{{2x + 3y = 7}}", "2x+3y=6", 0.0),
    (f"{B}{{x^2 + y^2 = 1}}", "y^2 + x^2 - 1 = 0", 1.0),
    (f"{B}{{x \\le 3}}", "x \\leq 3", 1.0),
    (f"{B}{{x \\geq 3}}", "3 \\le x", 1.0),
    (f"{B}{{x < 3}}", "x \\le 3", 0.0),
    # matrices
    (f"{B}{{\\begin{{pmatrix}} 1 & 2 \\\\ 3 & 4 \\end{{pmatrix}}}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 1.0),
    (f"{B}{{\\begin{{pmatrix}} \\frac12 \\\\ 2 \\end{{pmatrix}}}}", "\\begin{pmatrix}0.5\\\\2\\end{pmatrix}", 1.0),
    (f"{B}{{\\begin{{pmatrix}} 1 & 2 \\\\ 3 & 5 \\end{{pmatrix}}}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0.0),
    (f"{B}{{\\begin{{bmatrix}} 1 & 2 \\end{{bmatrix}}}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", 0.0),
]

TEXT_AND_CHOICE = [
    (f"{B}{{\\text{{(B)}}}}", "B", 1.0),
    (f"{B}{{B}}", "(B)", 1.0),
    (f"{B}{{b}}", "B", 1.0),
    ("The answer is (C).", "C", 1.0),
    ("The answer is C) 42", "C", 1.0),
    (f"{B}{{D}}", "C", 0.0),
    (f"{B}{{\\textbf{{(A)}}}}", "A", 1.0),
    (f"{B}{{\\text{{Monday}}}}", "monday", 1.0),
    (f"{B}{{\\text{{Tuesday}}}}", "Monday", 0.0),
    (f"{B}{{\\text{{yes}}}}", "Yes", 1.0),
    (f"{B}{{no}}", "yes", 0.0),
    (f"{B}{{\\text{{even}}}}", "\\text{odd}", 0.0),
    (f"{B}{{North East}}", "north east", 1.0),
]

MORE_FORMS = [
    # plus-minus, repeating decimals, units after pi, the reals, plain-text pi / sqrt
    (f"{B}{{1 \\pm \\sqrt{{2}}}}", "1+\\sqrt2, 1-\\sqrt2", 1.0),
    (f"{B}{{1 \\pm \\sqrt{{2}}}}", "1+\\sqrt2", 0.0),
    (f"{B}{{x = \\frac{{-3 \\pm \\sqrt{{5}}}}{{2}}}}", "\\frac{-3+\\sqrt5}{2},\\frac{-3-\\sqrt5}{2}", 1.0),
    (f"{B}{{1/3}}", "0.\\overline{3}", 1.0),
    (f"{B}{{0.1\\overline{{6}}}}", "\\frac16", 1.0),
    (f"{B}{{0.1\\overline{{6}}}}", "0.16", 0.0),
    (f"{B}{{20\\pi \\text{{ cm}}^2}}", "20\\pi", 1.0),
    (f"{B}{{\\mathbb{{R}}}}", "(-\\infty,\\infty)", 1.0),
    (f"{B}{{12cm}}", "12", 1.0),
    (f"{B}{{2 pi}}", "2\\pi", 1.0),
    (f"{B}{{sqrt(2)/2}}", "\\frac{\\sqrt2}{2}", 1.0),
    (f"{B}{{-\\infty}}", "\\infty", 0.0),
    (f"{B}{{\\frac{{\\sqrt{{3}}}}{{3}}}}", "\\frac{1}{\\sqrt3}", 1.0),
    (f"{B}{{\\frac{{-1+\\sqrt5}}{{2}}}}", "\\frac{\\sqrt5-1}{2}", 1.0),
    (f"{B}{{\\frac{{1+\\sqrt5}}{{2}}}}", "\\frac{\\sqrt5-1}{2}", 0.0),
    (f"{B}{{\\sqrt{{2}}/2}}", "0.7071", 0.0),
    (f"{B}{{3.5\\%}}", "0.035", 1.0),
    (f"{B}{{a=2, b=3}}", "(2,3)", 1.0),
    (f"{B}{{x \\in [1, 2)}}", "[1,2)", 1.0),
    ("The final answer is $\\boxed{5}$.", "5", 1.0),
    (f"{B}{{\\frac{{x+1}}{{x}}}}", "1+\\frac1x", 1.0),
    (f"{B}{{\\frac{{x+1}}{{x}}}}", "1+x", 0.0),
]

HOSTILE = [
    # refused or timed out: each must come back 0.0, quickly (see test_hostile_inputs_return_zero_fast)
    (f"{B}{{2^{{2^{{2^{{100}}}}}}}}", "2", 0.0),
    (f"{B}{{10^{{10^{{10}}}}}}", "10", 0.0),
    (f"{B}{{" + "(" * 3000 + "1" + ")" * 3000 + "}", "1", 0.0),  # over max_answer_chars
    (f"{B}{{" + "(" * 450 + "1" + ")" * 450 + "}", "1", 0.0),  # under it: the parser's depth guard
    (f"{B}{{" + "\\sqrt{" * 300 + "2" + "}" * 300 + "}", "2", 0.0),
    (f"{B}{{__import__('os').system('true')}}", "0", 0.0),
    (f"{B}{{9999999999!}}", "1", 0.0),
    ("x" * 1_000_000 + f"{B}{{2}}", "1", 0.0),  # only the tail is read: fast, and graded
]

# the last-number fallback is a recipe flag; with it off (default) these have no answer
FALLBACK_OFF = [
    ("So we add them and get 15", "15", 0.0),
    ("It costs $1,250 in total", "1250", 0.0),
]

CASES = EXTRACTION + NORMALISATION + NUMBERS + SYMBOLIC + CONTAINERS + TEXT_AND_CHOICE + MORE_FORMS + HOSTILE + FALLBACK_OFF
