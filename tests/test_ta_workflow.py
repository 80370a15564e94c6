"""A simulated class through the README's TA commands, run literally: autograde, scoring outside
the kernels, feedback and export.

The students (see helpers.demo.STUDENTS): ada submits the solution with the checkpoint her
notebook saved; ben the blank release; cy one wrong answer and models trained for one epoch; dee no
checkpoint; eve a checkpoint
that carries code; fay ada's work plus a cell that monkeypatches helpers in her kernel; gus the
blank release plus code that tries to rewrite the gradebook, other students' files and helpers/.
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.demo import submit_class
from helpers.grading import course, simulate
from helpers.grading.challenge import SCORE_CELL

A = "06_challenge"


ARCHIVES = ("COURSE_CIFAR10", "COURSE_CIFAR100")


@pytest.fixture(scope="module", params=["synthetic", "cifar"])
def graded(request, tmp_path_factory):
    """The class graded on the generated dataset (always) and on real CIFAR-10/100 when both archives are
    named by COURSE_CIFAR10/COURSE_CIFAR100 (e.g. the ones in ../shared/data/; CI has none)."""
    real = request.param == "cifar"
    if real and not all(os.environ.get(key) for key in ARCHIVES):
        pytest.skip("real-data run: set COURSE_CIFAR10 and COURSE_CIFAR100 to the CIFAR archives")
    tmp = tmp_path_factory.mktemp(f"ta-{request.param}")
    root = course.make_course_dir(tmp / "course", [A])
    env = {k: v for k, v in os.environ.items() if real or k not in ARCHIVES}
    env.update(COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_DATA_DIR=str(tmp / "data"), MPLBACKEND="Agg",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])  # as `source .venv/bin/activate`
    with pytest.MonkeyPatch.context() as mp:
        if not real:
            for key in ARCHIVES:
                mp.delenv(key, raising=False)
        for key in ("COURSE_FAST", "COURSE_OFFLINE", "COURSE_DATA_DIR", "MPLBACKEND"):
            mp.setenv(key, env[key])
        run = lambda *cmd: subprocess.run(list(cmd), cwd=root, env=env, capture_output=True, text=True, timeout=900)
        made = run("nbgrader", "generate_assignment", A, "--force")
        assert made.returncode == 0, made.stderr[-3000:]
        release = simulate.read(root / "release" / A / f"{A}.ipynb")
        source = simulate.read(root / "source" / A / f"{A}.ipynb")
        students = submit_class(root, A, release, source)
        grade = ["python", "-m", "helpers", "grade", A, "--reduced-tiers"] + ([] if real else ["--allow-synthetic"])
        steps = {
            "autograde": run("nbgrader", "autograde", A),
            "grade": run(*grade),
            "feedback": run("nbgrader", "generate_feedback", A),
            "export": run("nbgrader", "export"),
        }
    return root, students, steps


def _scores(root):
    with open(root / "reports" / f"grades-{A}.csv", newline="") as f:
        return {(row["student"], row["part"]): row for row in csv.DictReader(f)}


def test_every_step_finishes(graded):
    _, students, steps = graded
    assert students == ["ada", "ben", "cy", "dee", "eve", "fay", "gus"]
    for name, result in steps.items():
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}{result.stderr[-2000:]}"


def test_model_scores_and_reasons(graded):
    root, _, _ = graded
    rows = _scores(root)
    for part in ("cifar10", "cifar100"):  # reduced-mode tiers: the solution earns them all, and it says why
        ada, cy = rows[("ada", part)], rows[("cy", part)]
        assert float(ada["points"]) == float(ada["max_points"]) > 0, ada
        assert "[reduced-mode tiers" in ada["reason"], ada
        assert 0 < float(cy["points"]) < float(ada["points"]), (cy, ada)  # one epoch: a lower tier
        for student in ("ben", "dee", "gus") + (("eve",) if part == "cifar10" else ()):  # eve's CIFAR-100 file is ada's
            assert float(rows[(student, part)]["points"]) == 0, rows[(student, part)]
    ada = rows[("ada", "cifar10")]
    assert float(rows[("fay", "cifar10")]["points"]) == float(ada["points"])  # her checkpoint earns the same
    for student in ("ben", "dee"):
        row = rows[(student, "cifar10")]
        assert float(row["points"]) == 0 and "missing" in row["reason"], row
    eve = rows[("eve", "cifar10")]
    assert float(eve["points"]) == 0 and "refused" in eve["reason"], eve
    assert not (root / "HOSTILE_PAYLOAD_RAN").exists(), "the hostile checkpoint's code ran"


def test_gradebook_feedback_and_export_show_the_model_score(graded):
    root, _, _ = graded
    grades = course.read_grades(root, A, "ada")
    points = float(_scores(root)[("ada", "cifar10")]["points"])
    assert grades[SCORE_CELL][0] == pytest.approx(points)
    assert course.read_grades(root, A, "eve")[SCORE_CELL][0] == 0
    feedback = next((root / "feedback" / "eve" / A).glob("*.html")).read_text()
    assert "refused" in feedback
    exported = {row["student_id"]: row for row in csv.DictReader(open(root / "grades.csv", newline=""))}
    assert float(exported["ada"]["score"]) > float(exported["ben"]["score"])


def test_tamper_report_flags_the_monkeypatch_without_changing_scores(graded):
    root, _, _ = graded
    with open(root / "reports" / f"tamper-{A}.csv", newline="") as f:
        flagged = list(csv.DictReader(f))
    fay = [row for row in flagged if row["student"] == "fay"]
    assert any("helpers.metrics.accuracy" in row["code"] for row in fay), flagged
    # ada is listed only because fay handed in ada's checkpoints byte for byte
    ada = [row for row in flagged if row["student"] == "ada"]
    assert ada and all("identical checkpoint" in row["reason"] and "fay" in row["reason"] for row in ada), ada
