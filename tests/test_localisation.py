"""The self-localisation score: where the largest-KL tokens of wrong answers fall, against chance, by hand."""

import pytest

from sdzero_mlx.config import KlSettings
from sdzero_mlx.explain import TokenReport, first_mistake_span, localisation_score


def report(pieces, kl, reward=0.0, problem="p"):
    n = len(pieces)
    return TokenReport(tuple(range(n)), tuple(pieces), (0.0,) * n, (0.0,) * n, (0.0,) * n, tuple(kl), reward,
                       KlSettings("reverse", 0.5, 0), problem)


def test_first_mistake_span():
    assert first_mistake_span("x=5\n5+3=8\n", "x=6\n6+3=9\n") == (0, 3)
    assert first_mistake_span("x=6\n6+3=8", "x=6\n6+3=9") == (4, 9)
    assert first_mistake_span("x=6\n6+3=9", "x=6\n6+3=9") is None


def test_localisation_score_by_hand():
    gold = {"p": "x=6\n6+3=9\n\\boxed{6}", "q": "x=1\n1+1=2\n\\boxed{1}"}
    # 20 tokens, top 5% = 1 token. Answer 1: the mistake is line 0 (tokens 0-2 of 20), the top KL token is #2 -> hit.
    a = report(["x", "=", "5", "\n", "5", "+", "3", "=", "8", "\n"] + ["."] * 10,
               [0.1, 0.1, 5.0] + [0.0] * 17)
    # Answer 2: mistake on line 1 (tokens 4-8 of 20), top KL token is #0 (line 0) -> miss.
    b = report(["x", "=", "1", "\n", "1", "+", "1", "=", "3", "\n"] + ["."] * 10,
               [9.0] + [0.0] * 19, problem="q")
    right = report(["x", "=", "6"], [1.0, 0.0, 0.0], reward=1.0)  # right answers are not counted
    score = localisation_score([a, b, right], gold)
    assert score.answers == 2 and score.top_tokens == 2
    assert score.hit_share == pytest.approx(0.5)
    # chance: 3/20 for answer 1 (line "x=5"), 5/20 for answer 2 (line "1+1=3"): mean 0.2
    assert score.chance_share == pytest.approx((3 / 20 + 5 / 20) / 2)
    assert score.ratio == pytest.approx(0.5 / 0.2)
