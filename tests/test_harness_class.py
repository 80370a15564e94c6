"""Students who take the course's own reference code or a forbidden library shortcut, graded by
the hidden tests alone (the harness decides block points; nbgrader's part is in test_roundtrip).

Per assignment, in the real sandbox with the generated dataset:
- "x-dropin" wraps, in every answer cell, the helpers reference its block denies (direct import,
  alias, importlib with built-up names, bound at import time in another cell): each such block
  scores 0 with a reason naming the rule, and the tamper report would list it;
- "x-shortcut" is the solution with the shortcuts of hostile.SHORTCUTS swapped in (per-image
  loops, F.cross_entropy's label_smoothing, sklearn's confusion matrix, `.grad` in FGSM): exactly
  those blocks score 0.
"""
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers.config import PROJECT_ROOT
from helpers.grading import course, hostile, simulate
from helpers.grading.harness.grade import tamper_findings
from helpers.grading.harness.plugin import declared_blocks
from helpers.grading.harness.run import HIDDEN_TESTS

pytest.importorskip("nbgrader")

ASSIGNMENTS = [a for a in course.assignments() if (HIDDEN_TESTS / a).is_dir()]


def denied_references(assignment: str) -> dict[str, str]:
    """{answer grade_id: the first helpers reference its block denies}."""
    out = {}
    for grade_id, block in declared_blocks(HIDDEN_TESTS / assignment).items():
        refs = [r for r in block["deny"] if r.startswith("helpers.") and ":" not in r]
        if refs:
            out[grade_id.removesuffix("-tests") + "-answer"] = refs[0]
    return out


def _grade(assignment: str, folder) -> dict:
    proc = subprocess.run([sys.executable, "-m", "helpers.grading.harness.run", "--assignment", assignment,
                           "--submission", str(folder), "--release", str(PROJECT_ROOT / "release" / assignment)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def graded(kernel_env, tmp_path_factory):
    """Every case of every assignment, two harness runs at a time."""
    cases = []
    for a in ASSIGNMENTS:
        release = simulate.read(PROJECT_ROOT / "release" / a / f"{a}.ipynb")
        source = simulate.read(PROJECT_ROOT / "source" / a / f"{a}.ipynb")
        students = hostile.dropin_attacker(release, source, denied_references(a))
        if a in hostile.SHORTCUTS:
            students.update(hostile.shortcut_attacker(release, source, a))
        for student, nb in students.items():
            folder = course.submit(tmp_path_factory.mktemp(f"{a}-{student}"), student, a, {a: nb})
            if student == "x-shortcut":
                simulate.write_work_files(a, folder)
            cases.append((a, student, folder))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: _grade(c[0], c[2]), cases))
    return {(a, s): r for (a, s, _), r in zip(cases, results)}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_dropin_of_the_reference_scores_zero_and_names_the_rule(graded, assignment):
    result = graded[(assignment, "x-dropin")]
    denied = denied_references(assignment)
    assert denied, f"{assignment}: no block denies a helpers reference"
    for answer, ref in denied.items():
        block = result["blocks"][answer.removesuffix("-answer") + "-tests"]
        assert not block["passed"], f"{assignment}: wrapping {ref} passed {answer}"
        assert "is not allowed" in block["reason"] and ref.rsplit(".", 1)[-1] in block["reason"], block["reason"]
    lines = tamper_findings("x-dropin", result, None)
    assert len([f for f in lines if f.code == "denied"]) == len(denied)


@pytest.mark.parametrize("assignment", sorted(hostile.SHORTCUTS))
def test_library_shortcuts_lose_exactly_their_blocks(graded, assignment):
    result = graded[(assignment, "x-shortcut")]
    expected = {a.removesuffix("-answer") + "-tests" for a in hostile.SHORTCUTS[assignment]}
    failed = {gid for gid, b in result["blocks"].items() if not b["passed"]}
    assert failed == expected, {gid: result["blocks"][gid]["reason"] for gid in failed | expected}
