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


# ----------------------------------------------------------------------------- unfinished blocks

def _cell(code: str, namespace: dict, name: str = "<cell>"):
    """Run code as a notebook cell of its own (its own file name, as ipykernel gives each cell)."""
    exec(compile(code, name, "exec"), namespace)


STUB = "def class_counts(labels, num_classes):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"


@pytest.fixture
def notebook():
    checks._UNFINISHED.clear()
    ns = {"checks": checks, "np": np}
    _cell(STUB, ns, "<answer-cell>")
    yield ns
    checks._UNFINISHED.clear()


def test_needs_turns_a_stub_into_one_line(notebook, capsys):
    _cell("with checks.needs(class_counts=2):\n    counts = class_counts([0, 1], 2)\n    print('not reached')\n",
          notebook)
    assert capsys.readouterr().out == "skipped: finish `class_counts` (part 2) first; this cell uses it\n"
    assert "counts" not in notebook


def test_needs_names_the_block_behind_a_missing_name(notebook, capsys):
    _cell("with checks.needs(class_counts=2):\n    counts = class_counts([0, 1], 2)\n", notebook, "<cell-8>")
    capsys.readouterr()
    _cell("with checks.needs(class_counts=2):\n    print(counts.sum())\n", notebook, "<cell-9>")
    out = capsys.readouterr().out
    assert out.startswith("skipped: `counts` comes from an earlier cell") and "finish `class_counts` (part 2)" in out
    # a class body that raised leaves its name undefined: that block is named
    _cell("with checks.needs(EarlyStopping=4):\n    stopper = EarlyStopping(3)\n", notebook)
    assert capsys.readouterr().out.startswith("skipped: finish `EarlyStopping` (part 4) first")


def test_needs_lets_every_other_error_through(notebook, capsys):
    with pytest.raises(ZeroDivisionError):  # a bug in the cell itself
        _cell("with checks.needs(class_counts=2):\n    1 / 0\n", notebook)
    with pytest.raises(NotImplementedError):  # raised by something that is not one of the named blocks
        _cell("with checks.needs(other=1):\n    class_counts([0], 1)\n", notebook)
    # a finished function with a typo in it: its NameError is the student's to see
    _cell("def class_counts(labels, num_classes):\n    return np.bincount(labelz, minlength=num_classes)\n",
          notebook, "<answer-cell>")
    with pytest.raises(NameError, match="labelz"):
        _cell("with checks.needs(class_counts=2):\n    class_counts([0], 1)\n", notebook)
    assert capsys.readouterr().out == ""


def test_needs_finds_the_block_through_methods_and_helpers(notebook, capsys):
    _cell("class MLP:\n    def __init__(self):\n        raise NotImplementedError()\n"
          "def helper():\n    raise NotImplementedError()\n"
          "def feature_maps():\n    return helper()\n", notebook, "<answer-cell>")
    _cell("with checks.needs(MLP=3):\n    MLP()\n", notebook)
    _cell("with checks.needs(feature_maps=8):\n    feature_maps()\n", notebook)
    assert capsys.readouterr().out.splitlines() == [
        "skipped: finish `MLP` (part 3) first; this cell uses it",
        "skipped: finish `feature_maps` (part 8) first; this cell uses it"]


def test_needs_closes_the_figures_of_a_skipped_cell(notebook):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    before = plt.figure()
    _cell("import matplotlib.pyplot as plt\nwith checks.needs(class_counts=2):\n"
          "    fig = plt.figure()\n    class_counts([0], 1)\n", notebook)
    assert plt.get_fignums() == [before.number]  # only the cell's own figure was closed
    plt.close(before)


def test_check_defined_fails_in_one_sentence(notebook):
    _cell("checks.check_defined('class_counts', part=2)", notebook)
    with pytest.raises(AssertionError, match=r"EarlyStopping is not defined: write it in its answer cell \(part 4\)"):
        _cell("checks.check_defined('EarlyStopping', part=4)", notebook)
