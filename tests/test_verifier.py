"""Verifier tests: the case table, hostile inputs, threads, batch, file grading, config checks."""

import threading
import time

import pytest

from sdzero_mlx.verifier import VerifierConfig, check, verify, verify_batch

from verifier_cases import CASES


@pytest.mark.parametrize("text,gold,expected", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_case_table(text, gold, expected):
    v = check(text, gold)
    assert v.score == expected, v
