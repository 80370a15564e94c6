"""Grade every student's blocks with the hidden tests and put the points where nbgrader shows them.

For each student, `run.py` runs in a fresh trusted process (its own pytest session and sandboxed
worker). Each block's points go into the gradebook as the test cell's **manual_score** with a
manual comment "[harness] ...": nbgrader's final score of a cell is its manual score when one is
set, `nbgrader autograde --force` rewrites only auto_score (and flags the cell for review), so a
later autograde cannot silently replace the harness's result, while `generate_feedback` and
`export` show it. auto_score keeps nbgrader's in-kernel result; where the two disagree, the
disagreement is listed in reports/agreement-<assignment>.csv for the TA.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...settings import PROJECT_ROOT
from .run import HIDDEN_TESTS

RUN_SECONDS = 1800  # one student's whole harness run; beyond it the student's blocks are not written
COMMENT_PREFIX = "[harness] "


def has_hidden_tests(assignment: str, tests_root: Path = HIDDEN_TESTS) -> bool:
    return any((tests_root / assignment).glob("test_*.py"))


def _run_one(course_root: Path, assignment: str, student: str, tests_root: Path) -> dict:
    """The result of run.py for one student (a fresh trusted process), or an error result."""
    submitted = course_root / "submitted" / student / assignment
    release = course_root / "release" / assignment
    with tempfile.TemporaryDirectory(prefix="harness-result-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "helpers.grading.harness.run", "--assignment", assignment,
               "--release", str(release), "--tests", str(tests_root / assignment), "--out", str(out)]
        if submitted.is_dir():
            cmd += ["--submission", str(submitted)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            return {"error": f"the harness ran longer than {RUN_SECONDS} s", "seconds": RUN_SECONDS}
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            return {"error": f"the harness failed (exit {proc.returncode}): {' | '.join(tail)[:400]}",
                    "seconds": time.perf_counter() - t0}
        result = json.loads(out.read_text(encoding="utf-8"))
        result["wall_seconds"] = round(time.perf_counter() - t0, 2)
        return result


def _release_cells(course_root: Path, assignment: str) -> dict:
    """{test cell grade_id: (notebook name without .ipynb, points)} of the release's graded code cells."""
    from .run import read_notebooks
    cells = {}
    for name, nb in read_notebooks(course_root / "release" / assignment).items():
        for cell in nb.get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.get("cell_type") == "code" and meta.get("grade") and not meta.get("solution"):
                cells[meta["grade_id"]] = (name.removesuffix(".ipynb"), float(meta.get("points", 0)))
    return cells


def block_rows(student: str, result: dict, cells: dict) -> list[dict]:
    """One row per graded test cell: points, max, reason (a harness error gives status "error")."""
    rows = []
    blocks = result.get("blocks", {}) if "error" not in result else {}
    for grade_id, (notebook, max_points) in sorted(cells.items()):
        block = blocks.get(grade_id)
        if "error" in result:
            status, points, reason = "error", 0.0, f"not graded: {result['error']}"
        elif block is None:
            status, points, reason = "undecided", 0.0, "no hidden test decides this cell; not written"
        elif block.get("passed"):
            status, points, reason = "ok", max_points, f"all {block.get('tests', 0)} hidden tests passed"
        else:
            status, points, reason = "zero", 0.0, block.get("reason") or "a hidden test failed"
        rows.append({"student": student, "notebook": notebook, "cell": grade_id, "status": status,
                     "points": points, "max_points": max_points, "reason": reason})
    return rows


def write_block_scores(url: str, assignment: str, rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Write each row as manual_score + comment; returns (agreement rows, lines about rows flagged)."""
    from ..gradebook import open_gradebook, write_block
    agreement, skipped = [], []
    with open_gradebook(url) as gb:
        for row in rows:
            if row["status"] == "undecided":  # the course's hidden tests do not cover it (tests/test_release.py)
                skipped.append(f"{row['student']} {row['cell']}: {row['reason']}")
                continue
            # When the harness could not finish (the student's code can cause that), the cell gets
            # 0 and is flagged for review: nbgrader's in-kernel score must never stand instead.
            review = row["status"] == "error"
            if review:
                skipped.append(f"{row['student']} {row['cell']}: {row['reason']} (0, flagged for review)")
            try:
                in_kernel = write_block(gb, assignment, row["student"], row["notebook"], row["cell"],
                                        row["points"], COMMENT_PREFIX + row["reason"], needs_review=review)
            except LookupError as exc:
                skipped.append(f"{row['student']} {row['cell']}: {exc}")
                continue
            if in_kernel is not None and abs(in_kernel - row["points"]) > 1e-9:
                agreement.append({"student": row["student"], "cell": row["cell"], "in_kernel": in_kernel,
                                  "harness": row["points"], "max_points": row["max_points"],
                                  "harness_reason": row["reason"]})
    return agreement, skipped


def tamper_findings(student: str, result: dict, autograded: Path | None) -> list:
    """Runtime tamper events, a swallowed canary, denied references and pasted reference code."""
    from ..tamper import Finding
    found = []
    for ev in result.get("events", []):
        notebook, _, cell = str(ev.get("cell", "")).partition(":")
        found.append(Finding(student, notebook, cell or notebook, ev.get("line"), ev.get("kind", ""),
                             f"runtime: {ev.get('detail', '')}"))
    if result.get("canary_swallowed"):
        found.append(Finding(student, "", "grading-canary", None, "canary",
                             "the canary's error did not surface in the harness: errors were being swallowed"))
    for grade_id, block in sorted(result.get("blocks", {}).items()):
        if "_CourseDeniedReference" in str(block.get("reason", "")):
            found.append(Finding(student, "", grade_id, None, "denied", f"used a denied reference: {block['reason'][:200]}"))
    for item in result.get("pasted", []):
        found.append(Finding(student, "", item.get("cell", ""), item.get("line"), "pasted",
                             f"{item.get('name')} matches {item.get('reference')} "
                             f"(similarity {item.get('similarity')}); a pasted copy of reference code?"))
    for item in result.get("static", []):
        found.append(Finding(student, "", item.get("cell", ""), item.get("line"), item.get("code", ""),
                             f"static: {item.get('detail', '')}"))
    if autograded is not None:
        found += kernel_canary_findings(student, autograded)
    return found


def kernel_canary_findings(student: str, folder: Path) -> list:
    """The autograded notebooks' canary cell must carry its error: if not, the kernel swallowed errors."""
    from ..tamper import Finding
    from .run import read_notebooks
    found = []
    for name, nb in read_notebooks(folder).items():
        for cell in nb.get("cells", []):
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "grading-canary":
                continue
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if not any("grading canary" in str(o.get("evalue", "")) for o in errors):
                found.append(Finding(student, name, "grading-canary", None, "canary",
                                     "in nbgrader's run the canary's error is missing: the kernel swallowed errors"))
    return found


def grade_blocks(course_root: Path, assignment: str, students: list[str], url: str, *, jobs: int = 1,
                 tests_root: Path = HIDDEN_TESTS) -> dict:
    """Run the harness for every student; write the gradebook; returns rows, agreement, findings, timings."""
    cells = _release_cells(course_root, assignment)
    print(f"[grade] hidden tests of {assignment}: {len(cells)} graded cells, one sandboxed worker per student")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = dict(zip(students, pool.map(lambda s: _run_one(course_root, assignment, s, tests_root), students)))
    rows, findings, seconds = [], [], {}
    for student in students:
        result = results[student]
        seconds[student] = result.get("wall_seconds", result.get("seconds", 0.0))
        student_rows = block_rows(student, result, cells)
        rows += student_rows
        autograded = course_root / "autograded" / student / assignment
        findings += tamper_findings(student, result, autograded if autograded.is_dir() else None)
        got = sum(r["points"] for r in student_rows)
        total = sum(r["max_points"] for r in student_rows)
        print(f"  {student} blocks: {got:g}/{total:g} ({seconds[student]:.1f} s)"
              + (f" -- {result['error']}" if "error" in result else ""))
    agreement, skipped = write_block_scores(url, assignment, rows)
    for line in skipped:
        print(f"  not graded: {line}")
    return {"rows": rows, "agreement": agreement, "findings": findings, "seconds": seconds}


def print_blocks(rows: list[dict]) -> None:
    """A per-student table: one line per block that lost points, then the student's total."""
    by_student: dict[str, list[dict]] = {}
    for row in rows:
        by_student.setdefault(row["student"], []).append(row)
    for student, student_rows in sorted(by_student.items()):
        got = sum(r["points"] for r in student_rows)
        total = sum(r["max_points"] for r in student_rows)
        print(f"{student:<16} hidden tests {got:g}/{total:g}")
        for r in student_rows:
            if r["points"] < r["max_points"]:
                print(f"    {r['cell']:<40} {r['points']:g}/{r['max_points']:g}  {r['reason'][:150]}")
