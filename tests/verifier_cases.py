"""The verifier's case table: (model text, gold answer, expected verdict). Each checkable by hand."""

CASES = [
    ("so \\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("#### 1,000", "1000", 1.0),
    ("The answer is $42$.", "42", 1.0),
    ("\\boxed{x+1}", "x-1", 0.0),
    ("\\boxed{0.3333}", "\\frac13", 0.0),
    ("\\boxed{1/2}", "2", 0.0),
    ("We get 42 in step one. Final: \\boxed{41}", "42", 0.0),
]
