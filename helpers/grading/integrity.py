"""Integrity check around a grading run: what the grader trusts must be the same after it as before.

`python -m helpers grade` takes a `snapshot` before scoring and another after it, and fails
loudly (exit code 3, a message naming what changed) when `compare` finds a difference in:
- `helpers/` and `hidden_tests/`: the SHA-256 of every .py file (added, removed or modified files
  all count);
- the course's `nbgrader_config.py` (absent counts as a state too);
- the test sets: the digest of each test split the run scored on (`testsets`);
- the gradebook's schema: `SELECT type, name, sql FROM sqlite_master` (sqlite gradebooks only;
  scores are meant to change, the tables are not).
Nothing student-controlled runs in the grading process itself, so a change means something
outside the run (or a sandbox escape) touched the grader; the run's results must not be trusted.
"""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from ..settings import PACKAGE_DIR


class IntegrityError(RuntimeError):
    """Something the grader trusts changed during the run; the message lists what."""


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def package_digests(package_dir=PACKAGE_DIR) -> dict[str, str]:
    """{"helpers/<relative path>": sha256} of every .py file of the package."""
    root = Path(package_dir)
    return {f"helpers/{p.relative_to(root).as_posix()}": _file_digest(p) for p in sorted(root.rglob("*.py"))}


def schema_digest(db_url: str | None) -> str:
    """SHA-256 of the gradebook's schema (sqlite_master), "not sqlite" for other databases."""
    if not db_url or not db_url.startswith("sqlite:///"):
        return "not sqlite"
    path = Path(db_url[len("sqlite:///"):])
    if not path.is_file():
        return "absent"
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    finally:
        con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def snapshot(course_root, db_url: str | None = None, testset_digests: dict[str, str] | None = None,
             package_dir=PACKAGE_DIR) -> dict[str, str]:
    """{what: digest} of everything the integrity check covers."""
    snap = package_digests(package_dir)
    snap["nbgrader_config.py"] = _file_digest(Path(course_root) / "nbgrader_config.py")
    hidden = PACKAGE_DIR.parent / "hidden_tests"
    for path in sorted(hidden.rglob("*.py")) if hidden.is_dir() else []:
        snap[f"hidden_tests/{path.relative_to(hidden)}"] = _file_digest(path)
    snap["gradebook schema"] = schema_digest(db_url)
    for name, digest in (testset_digests or {}).items():
        snap[f"test set {name}"] = digest
    return snap


def compare(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per difference ("modified: helpers/x.py"), empty when nothing changed."""
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append(f"removed: {key}")
        elif key not in before:
            lines.append(f"added: {key}")
        elif before[key] != after[key]:
            lines.append(f"modified: {key} ({before[key][:12]} -> {after[key][:12]})")
    return lines


def check(before: dict[str, str], after: dict[str, str]) -> None:
    """IntegrityError listing every difference, if any."""
    changed = compare(before, after)
    if changed:
        raise IntegrityError("INTEGRITY CHECK FAILED: files the grader trusts changed during this grading run; "
                             "do not use its results:\n  " + "\n  ".join(changed))
