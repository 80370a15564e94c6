"""What the worker runs for one student: the release's setup and given cells, the student's answers.

Only the answer cells (nbgrader `solution` code cells) come from the submission; every other cell
comes from release/, so a student's edits to read-only cells, test cells or plain cells change
nothing. An answer cell missing from the submission runs as the release's blank version. A final
canary cell raises on purpose: when no error comes back, the student's code swallows errors.
"""
from __future__ import annotations

import ast

CANARY = 'raise RuntimeError("grading canary: this error is expected; it shows errors still surface")'


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def answer_cells(nb) -> dict:
    """{grade_id: source} of the code answer cells of a notebook (the student's, if it is theirs)."""
    out = {}
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        meta = _meta(cell) if isinstance(cell, dict) else {}
        if cell.get("cell_type") == "code" and meta.get("solution") and isinstance(meta.get("grade_id"), str):
            out.setdefault(meta["grade_id"], _source(cell))
    return out


def kind(cell) -> str | None:
    """setup | given | answer for the cells the harness runs, else None (tests, training, plots)."""
    meta = _meta(cell)
    grade_id = str(meta.get("grade_id", ""))
    if cell.get("cell_type") != "code":
        return None
    if meta.get("solution") and not meta.get("grade"):
        return "answer"
    if grade_id == "setup":
        return "setup"
    if grade_id.endswith("-given"):
        return "given"
    return None


def visible_check_names(nb) -> list[str]:
    """Global names the release's test cells read (e.g. checks, np, data): rebinding them is reported."""
    names = set()
    for cell in nb.get("cells", []):
        meta = _meta(cell)
        if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError:
            continue
        stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                  and not n.id.startswith("_") and n.id not in stored}
    return sorted(names)


def build_program(release: dict, submission: dict, *, cell_seconds: float | None = None) -> dict:
    """The worker's program from {notebook name: release nb} and {notebook name: submitted nb}."""
    cells, watched = [], set()
    for name, release_nb in sorted(release.items()):
        answers = answer_cells(submission.get(name) or {})
        watched |= set(visible_check_names(release_nb))
        for cell in release_nb.get("cells", []):
            k = kind(cell)
            if k is None:
                continue
            grade_id = str(_meta(cell).get("grade_id", ""))
            source = answers.get(grade_id, _source(cell)) if k == "answer" else _source(cell)
            cells.append({"id": f"{name}:{grade_id}", "kind": k, "source": source})
    cells.append({"id": "grading-canary", "kind": "canary", "source": CANARY})
    from ...settings import env_number
    seconds = cell_seconds if cell_seconds is not None else env_number("COURSE_CELL_TIMEOUT", 60)
    return {"cells": cells, "watched_names": sorted(watched), "cell_seconds": seconds,
            "env": {"NBGRADER_EXECUTION": "autograde"}}
