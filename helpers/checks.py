"""Assertions for the notebooks' test cells that say in one sentence what is wrong.

Each check raises `AssertionError("<name>: expected ..., got ...; <hint>")`, so a student (and
the feedback a TA returns) reads what was expected, what came out and where to look.
Arrays may be NumPy arrays, torch tensors (any device) or anything `np.asarray` takes.
"""
from __future__ import annotations

import numpy as np


def _np(x):
    """A NumPy view of x: torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _short(x, limit: int = 6) -> str:
    """A short description of a value: arrays as shape, dtype and their first few values."""
    if isinstance(x, (list, tuple, np.ndarray)) or hasattr(x, "shape"):
        arr = _np(x)
        if arr.ndim == 0:
            return repr(arr.item())
        flat = arr.ravel()[:limit].tolist()
        more = ", ..." if arr.size > limit else ""
        return f"array of shape {tuple(arr.shape)} {arr.dtype} [{', '.join(map(str, flat))}{more}]"
    return repr(x)


def _fail(name: str, expected: str, got: str, hint: str) -> None:
    raise AssertionError(f"{name}: expected {expected}, got {got}" + (f"; {hint}" if hint else ""))


def check(condition, message: str) -> None:
    """Fail with `message` unless `condition` holds (for checks the others do not cover)."""
    if not condition:
        raise AssertionError(message)


def check_shape(x, expected, name: str, hint: str = "") -> None:
    """`x` has exactly the shape `expected` (a tuple; None in it matches any size)."""
    if not hasattr(x, "shape"):
        _fail(name, f"an array of shape {tuple(expected)}", f"{type(x).__name__} {_short(x)}", hint)
    got = tuple(x.shape)
    ok = len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got))
    if not ok:
        _fail(name, f"shape {tuple(expected)}", f"shape {got}", hint)


def check_dtype(x, expected, name: str, hint: str = "") -> None:
    """`x` has dtype `expected`: a dtype, or "integer" / "floating" for any of that kind."""
    got = _np(x).dtype
    kinds = {"integer": np.integer, "floating": np.floating}
    ok = np.issubdtype(got, kinds[expected]) if expected in kinds else got == np.dtype(expected)
    if not ok:
        want = f"an {expected} dtype" if expected in kinds else f"dtype {np.dtype(expected)}"
        _fail(name, want, f"dtype {got}", hint)


def check_equal(got, expected, name: str, hint: str = "") -> None:
    """`got` equals `expected` exactly (arrays element-wise, with the same shape)."""
    g, e = _np(got), _np(expected)
    if g.shape != e.shape:
        _fail(name, f"shape {e.shape}", f"shape {g.shape}", hint)
    if not np.array_equal(g, e):
        bad = int(np.count_nonzero(g != e)) if g.shape else 1
        where = f" ({bad} of {max(g.size, 1)} entries differ)" if g.size > 1 else ""
        _fail(name, _short(e), _short(g) + where, hint)


def check_close(got, expected, name: str, atol: float = 1e-6, rtol: float = 0.0, hint: str = "") -> None:
    """`got` is within `atol + rtol * |expected|` of `expected` everywhere (same shape)."""
    g, e = _np(got).astype(np.float64), _np(expected).astype(np.float64)
    if g.shape != e.shape:
        _fail(name, f"shape {e.shape}", f"shape {g.shape}", hint)
    if not np.allclose(g, e, atol=atol, rtol=rtol, equal_nan=False):
        diff = float(np.nanmax(np.abs(g - e))) if g.size else float("nan")
        _fail(name, f"{_short(e)} (within {atol:g})", f"{_short(g)}, largest difference {diff:.3g}", hint)


# ----------------------------------------------------------------------------- unfinished blocks
# Notebook cells that use a student's function (plots, prints, training on top of it) wrap their
# code in `with checks.needs(class_counts=2):`. While that function is still the release's stub,
# the cell prints one line saying which part to finish and goes on, instead of a traceback (and
# instead of NameErrors in the cells after it). The blocks' own test cells are not wrapped: their
# failure on a blank answer is the designed one.

_UNFINISHED: dict[str, int | None] = {}  # blocks a `needs` cell found unfinished, in this kernel


def _label(block: str, part) -> str:
    return f"`{block}`" + (f" (part {part})" if part is not None else "")


def _figures() -> set:
    """Numbers of the open matplotlib figures (none when pyplot was never imported)."""
    import sys
    plt = sys.modules.get("matplotlib.pyplot")
    return set(plt.get_fignums()) if plt is not None else set()


class needs:
    """`with checks.needs(stratified_split=3, channel_mean_std=4):` around a cell that uses those
    answer blocks (keyword: the function or class, value: its part number, or None).

    When the cell stops because one of them is not written yet (its stub raises
    NotImplementedError, or its cell raised so the name is missing) or because a name an earlier
    such cell would have made is missing, it prints one line, "skipped: finish `stratified_split`
    (part 3) first; this cell uses it", closes the figures the cell opened, and the notebook goes
    on. Every other error (a bug in a finished function included) propagates as usual.
    """

    def __init__(self, *blocks: str, **parts):
        self.parts = {**{b: None for b in blocks}, **parts}
        self.message = None

    def __enter__(self):
        import sys
        self._file = sys._getframe(1).f_code.co_filename  # the cell (or function) whose body is wrapped
        self._figures = _figures()
        return self

    def _block_on_stack(self, tb) -> str | None:
        """The innermost frame of the traceback that belongs to one of the blocks, by qualified name
        (`class_counts`, `MLP.__init__`, `class_counts.<locals>.helper`, an `EarlyStopping` body)."""
        found = None
        while tb is not None:
            code = tb.tb_frame.f_code
            top = getattr(code, "co_qualname", code.co_name).split(".")[0]
            if top in self.parts:
                found = top
            tb = tb.tb_next
        return found

    def _made_here(self, tb) -> bool:
        """True when the innermost frame is this cell's code (or a function defined in this cell),
        not a student's function from another cell: a NameError there is a missing earlier result."""
        while tb.tb_next is not None:
            tb = tb.tb_next
        return tb.tb_frame.f_code.co_filename == self._file

    def __exit__(self, kind, exc, tb):
        if kind is None:
            for block in self.parts:
                _UNFINISHED.pop(block, None)
            return False
        message = None
        if issubclass(kind, NotImplementedError):
            block = self._block_on_stack(tb)
            if block is not None:
                message = f"skipped: finish {_label(block, self.parts[block])} first; this cell uses it"
                _UNFINISHED[block] = self.parts[block]
        elif issubclass(kind, NameError) and getattr(exc, "name", None):
            if exc.name in self.parts:
                message = f"skipped: finish {_label(exc.name, self.parts[exc.name])} first and run its cell; " \
                          "this cell uses it"
                _UNFINISHED[exc.name] = self.parts[exc.name]
            elif self._made_here(tb):
                suspects = [b for b in self.parts if b in _UNFINISHED] or list(self.parts)
                which = " or ".join(_label(b, self.parts[b]) for b in suspects)
                message = (f"skipped: `{exc.name}` comes from an earlier cell that did not run to the end; "
                           f"finish {which} and rerun the cells after it")
        if message is None:
            return False
        self.message = message
        print(message)
        import sys
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            for number in _figures() - self._figures:
                plt.close(number)
        return True


def check_defined(name: str, part=None) -> None:
    """Fail with one sentence when the caller's notebook has no `name` yet (its answer cell raised,
    e.g. a class body that still holds `raise NotImplementedError()`, or was not run)."""
    import sys
    if name not in sys._getframe(1).f_globals:
        raise AssertionError(f"{name} is not defined: write it in its answer cell{f' (part {part})' if part else ''} "
                             "and run that cell first")
