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
