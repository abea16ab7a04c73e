"""OpenBLAS thread choice (sdzero_mlx/platform/threads.py): the user's setting wins, then ours."""

import pytest

from sdzero_mlx.platform.threads import DEFAULT_THREADS, ENV_VAR, apply_blas_threads, blas_threads, chosen_threads, _openblas


def test_choice_order():
    assert chosen_threads({}) == DEFAULT_THREADS == 1
    assert chosen_threads({ENV_VAR: "2"}) == 2
    assert chosen_threads({ENV_VAR: "0"}) is None  # OpenBLAS's own default
    assert chosen_threads({"OPENBLAS_NUM_THREADS": "4", ENV_VAR: "2"}) is None  # the user's OpenBLAS setting stands
    with pytest.raises(ValueError, match=ENV_VAR):
        chosen_threads({ENV_VAR: "many"})


def test_applied_to_the_loaded_openblas():
    api = _openblas()
    if api is None:
        pytest.skip("no OpenBLAS in this process (run with LD_PRELOAD, as make test does)")
    before = api[1]()
    try:
        apply_blas_threads({ENV_VAR: "1"})
        assert api[1]() == 1 and blas_threads().startswith("1 (")
    finally:
        api[0](before)
