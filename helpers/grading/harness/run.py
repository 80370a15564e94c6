"""Grade one student's assignment with the hidden tests, in this fresh trusted process.

    python -m helpers.grading.harness.run --assignment 01_data --submission DIR --release DIR \
        [--tests hidden_tests/01_data] [--out result.json] [--cell-timeout 60]

The submission's answer cells run in a sandboxed worker (session.py) with the assignment's deny
rules applied; pytest runs hidden_tests/<assignment> here, in the trusted process. The result
(JSON, written atomically) holds per block: passed, reason, tests; plus the worker's cell errors,
its runtime tamper events, whether the canary's error surfaced, and seconds. `grade_student` is
the same as a function for callers that already run in a fresh process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ...settings import PROJECT_ROOT

HIDDEN_TESTS = PROJECT_ROOT / "hidden_tests"


def read_notebooks(folder) -> dict:
    """{file name: notebook JSON} of the .ipynb files in a folder; unreadable ones map to {}."""
    out = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        try:
            if path.is_symlink() or path.stat().st_size > 50 * 2**20:
                raise ValueError("not a regular notebook file")
            out[path.name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            out[path.name] = {}
    return out


def _make_student_factory(program: dict, submission: str | None, scratch: Path):
    from ..sandbox import sandbox_disabled
    from .. import sandbox_kernel
    from ... import settings as config
    from .deny import build_view
    from .session import Student

    def make(rules):
        sandbox = not sandbox_disabled()
        overlays = build_view(rules, scratch / "view") if sandbox else []
        env = sandbox_kernel._kernel_env(sandbox_module(), config, program.get("env", {}))
        readonly = sandbox_kernel._readonly_paths(config) if sandbox else []
        return Student(program, submission=submission, readonly=readonly, overlays=overlays, env=env,
                       sandbox=sandbox)
    return make


def sandbox_module():
    from .. import sandbox
    return sandbox


def grade_student(assignment: str, submission, release, *, tests=None, cell_seconds: float | None = None) -> dict:
    """Run the hidden tests of `assignment` against one submission folder; returns the result dict."""
    import pytest

    from .plugin import HarnessPlugin
    from .program import build_program
    t0 = time.perf_counter()
    tests = Path(tests) if tests else HIDDEN_TESTS / assignment
    if not tests.is_dir():
        raise FileNotFoundError(f"no hidden tests for {assignment} at {tests}")
    program = build_program(read_notebooks(release), read_notebooks(submission) if submission else {},
                            cell_seconds=cell_seconds)
    with tempfile.TemporaryDirectory(prefix="harness-") as scratch:
        copy = None
        if submission:  # the worker gets a private copy: links, devices and huge files are left out
            from ..sandbox import private_copy
            copy = Path(scratch) / "submission"
            private_copy(Path(submission), copy)
            os.chmod(scratch, 0o755)
        plugin = HarnessPlugin(_make_student_factory(program, str(copy) if copy else None, Path(scratch)))
        args = [str(tests), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--no-header", "-rN",
                "-c", os.devnull, "--rootdir", str(tests), "-W", "ignore::DeprecationWarning"]
        code = pytest.main(args, plugins=[plugin])
    student = plugin.session_student
    ready = student.ready if student is not None else {}
    pasted = pasted_code(program, plugin.rules)
    static = static_findings(program, plugin.batched)
    return {"assignment": assignment, "exit_code": int(code), "blocks": plugin.blocks,
            "problems": plugin.problems, "cells": ready.get("cells", []), "events": ready.get("events", []),
            "canary_swallowed": ready.get("canary_swallowed"), "pasted": pasted, "static": static,
            "worker_starts": student.starts if student else 0,
            "startup_seconds": round(student.startup_seconds, 2) if student else 0.0,
            "seconds": round(time.perf_counter() - t0, 2)}


def static_findings(program: dict, batched: set[str]) -> list[dict]:
    """Suspicious lines of every answer cell, and loops in the blocks whose spec asks for batched code."""
    from .static import python_loops, suspicious_lines
    found = []
    for cell in program["cells"]:
        if cell["kind"] not in ("answer", "skipped"):
            continue
        grade_id = cell["id"].split(":", 1)[-1]
        items = suspicious_lines(cell["source"])
        if grade_id.removesuffix("-answer") + "-tests" in batched:
            items += python_loops(cell["source"])
        found += [dict(item, cell=grade_id) for item in items]
    return found


def pasted_code(program: dict, rules) -> list[dict]:
    """Answer cells holding a copy of a reference their block denies (AST match, for the TA to judge)."""
    from .paste import pasted_references
    found = []
    for cell in program["cells"]:
        if cell["kind"] != "answer":
            continue
        block = cell["id"].split(":", 1)[-1].removesuffix("-answer")
        references = [r.target for r in rules if r.block == block and not r.argument and "." in r.target]
        for item in pasted_references(cell["source"], references) if references else []:
            found.append(dict(item, cell=cell["id"].split(":", 1)[-1]))
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers.grading.harness.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--assignment", required=True, help="e.g. 01_data")
    p.add_argument("--submission", help="the student's submitted folder (without it: the blank release)")
    p.add_argument("--release", required=True, help="release/<assignment> (every non-answer cell comes from it)")
    p.add_argument("--tests", help="hidden tests folder (default: hidden_tests/<assignment>)")
    p.add_argument("--cell-timeout", type=float, help="seconds per cell and per call (default: $COURSE_CELL_TIMEOUT or 60)")
    p.add_argument("--out", help="write the result JSON here (default: print it)")
    opts = p.parse_args(argv)
    # pytest's own report goes to stderr: stdout may carry the JSON
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        result = grade_student(opts.assignment, opts.submission, opts.release, tests=opts.tests,
                               cell_seconds=opts.cell_timeout)
    finally:
        sys.stdout = real_stdout
    if opts.out:
        from ...atomic import write_json
        write_json(opts.out, result)
    else:
        json.dump(result, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
