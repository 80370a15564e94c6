"""helpers.checks: passes silently on the right values and says name, expected, got and hint otherwise."""
import numpy as np
import pytest
import torch

from helpers import checks


def test_passing_checks_are_silent():
    x = np.zeros((2, 3), dtype=np.int64)
    checks.check(True, "unused")
    checks.check_shape(x, (2, 3), "x")
    checks.check_shape(x, (None, 3), "x")
    checks.check_dtype(x, np.int64, "x")
    checks.check_dtype(x, "integer", "x")
    checks.check_equal(torch.zeros(2, 3), x, "x")
    checks.check_close([0.1, 0.2], [0.1, 0.2 + 1e-9], "v")


@pytest.mark.parametrize("call, words", [
    (lambda: checks.check_shape(np.zeros(5), (9,), "counts", hint="one per class"),
     ["counts: expected shape (9,), got shape (5,); one per class"]),
    (lambda: checks.check_shape([1, 2], (2,), "counts"), ["counts: expected an array", "list"]),
    (lambda: checks.check_dtype(np.zeros(2), np.int64, "counts.dtype"), ["expected dtype int64, got dtype float64"]),
    (lambda: checks.check_dtype(np.zeros(2), "integer", "idx"), ["expected an integer dtype"]),
    (lambda: checks.check_equal(np.array([1, 2, 3]), np.array([1, 2, 4]), "f(x)"), ["f(x): expected", "1 of 3"]),
    (lambda: checks.check_equal(np.zeros(2), np.zeros(3), "f(x)"), ["expected shape (3,), got shape (2,)"]),
    (lambda: checks.check_close([0.5], [0.4], "mean", atol=1e-3, hint="divide by 255"),
     ["mean: expected", "largest difference 0.1", "divide by 255"]),
    (lambda: checks.check(False, "plain message"), ["plain message"]),
])
def test_failing_checks_explain(call, words):
    with pytest.raises(AssertionError) as info:
        call()
    for word in words:
        assert word in str(info.value)
