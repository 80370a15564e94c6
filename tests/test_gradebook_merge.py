"""Scores land in the nbgrader gradebook's task cell, shard gradebooks merge into the course's without
losing anything (twice gives the same), conflicts name the student, and the whole `grade` command
works after a real `nbgrader autograde` of a tiny 06_challenge."""
import csv
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

from nbgrader.plugins import CsvExportPlugin

from helpers.cli import main
from helpers.config import PROJECT_ROOT
from helpers.grading import course
from helpers.grading.challenge import CHECKPOINT_NAME, CIFAR100_CHECKPOINT_NAME, CIFAR100_SCORE_CELL, SCORE_CELL
from helpers.grading.challenge import save_challenge_checkpoint, task_cell_metadata
from helpers.grading.gradebook import GradebookError, empty_copy, merge_gradebooks, open_gradebook, write_scores

A = "06_challenge"


def _code(source, grade_id, *, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})


def tiny_challenge(with_cifar100=False):
    """A 06_challenge in miniature: one answer, one autograded test, the task cell(s) the scorer fills."""
    cells = [
        _code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "answer", solution=True),
        _code("assert x == 1", "answer-tests", grade=True, locked=True, points=2),
        nbformat.v4.new_markdown_cell("Model score (filled in by the TAs' scoring).",
                                      metadata=task_cell_metadata(SCORE_CELL, 10)),
    ]
    if with_cifar100:
        cells.append(nbformat.v4.new_markdown_cell("CIFAR-100 score.", metadata=task_cell_metadata(CIFAR100_SCORE_CELL, 5)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_course(root: Path, with_cifar100=False) -> Path:
    (root / "source" / A).mkdir(parents=True)
    nbformat.write(tiny_challenge(with_cifar100), str(root / "source" / A / f"{A}.ipynb"))
    shutil.copy2(PROJECT_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    course.generate_release(root, A)
    return root


@pytest.fixture(scope="module")
def course_root(tmp_path_factory):
    """One generated course for the module; `pristine.db` is its gradebook before any grading."""
    root = make_course(tmp_path_factory.mktemp("course"), with_cifar100=True)
    shutil.copy2(root / "gradebook.db", root.parent / "pristine.db")
    return root


@pytest.fixture
def course_db(course_root, tmp_path):
    """A fresh copy of the course gradebook (structure only) for one test."""
    return Path(shutil.copy2(course_root.parent / "pristine.db", tmp_path / "gradebook.db"))


def _submission(db, student, auto, comment=None, extra=None, first_name=None):
    """A submission as autograde leaves it: the test cell's auto score, optionally extra credit."""
    with open_gradebook(db) as gb:
        gb.update_or_create_student(student, first_name=first_name)
        gb.add_submission(A, student)
        grade = gb.find_grade("answer-tests", A, A, student)
        grade.auto_score, grade.needs_manual_grade, grade.extra_credit = auto, False, extra
        gb.find_comment("answer", A, A, student).auto_comment = comment
        gb.db.commit()


def _state(db):
    """Everything the merge must carry, by names."""
    with open_gradebook(db) as gb:
        out = {}
        for student in gb.students:
            for sub in student.submissions:
                for nb in sub.notebooks:
                    for g in nb.grades:
                        out[(student.id, "grade", g.name)] = (g.auto_score, g.manual_score, g.extra_credit,
                                                              g.needs_manual_grade)
                    for c in nb.comments:
                        out[(student.id, "comment", c.name)] = (c.auto_comment, c.manual_comment)
        out["students"] = sorted((s.id, s.first_name) for s in gb.students)
        return out


def test_scores_reach_the_task_cell_and_shards_merge_losslessly(course_db, tmp_path):
    shards = [empty_copy(course_db, tmp_path / f"gradebook-{i}.db") for i in range(2)]
    _submission(shards[0], "ann", 2.0, comment="No response.", extra=1.0, first_name="Ann")
    _submission(shards[1], "bob", 0.0)
    skipped = write_scores(shards[0], A, SCORE_CELL, [
        {"student": "ann", "points": 9.0, "reason": "accuracy 0.7500 >= 0.7: 90%", "status": "ok"},
        {"student": "carl", "points": 5.0, "reason": "never autograded", "status": "ok"}])
    assert len(skipped) == 1 and skipped[0].startswith("carl: no autograded submission")
    write_scores(shards[1], A, SCORE_CELL, [{"student": "bob", "points": 12.0, "reason": "too many", "status": "ok"},
                                            {"student": "bob", "points": 3, "reason": "x", "status": "error"}])
    bob = _state(shards[1])
    assert bob[("bob", "grade", SCORE_CELL)] == (None, 10.0, None, False)  # capped at the cell's points
    assert bob[("bob", "comment", SCORE_CELL)] == (None, "too many")  # the "error" row was not written

    expected = {**_state(shards[0]), **_state(shards[1])}
    expected["students"] = [("ann", "Ann"), ("bob", None)]
    assert merge_gradebooks(shards, course_db) == {"students": 2, "submissions": 2, "shards": 2}
    merged = _state(course_db)
    assert merged == expected
    assert merged[("ann", "grade", SCORE_CELL)] == (None, 9.0, None, False)
    assert merged[("ann", "grade", "answer-tests")] == (2.0, None, 1.0, False)
    assert merged[("ann", "comment", SCORE_CELL)] == (None, "accuracy 0.7500 >= 0.7: 90%")
    assert merged[("ann", "comment", "answer")] == ("No response.", None)
    assert main(["grade", "merge", "--into", str(course_db), *map(str, shards)]) == 0  # idempotent
    assert _state(course_db) == merged

    out = tmp_path / "grades.csv"  # the exporter `nbgrader export` runs shows the manual score in the total
    with open_gradebook(course_db) as gb:
        CsvExportPlugin(to=str(out)).export(gb)
    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    assert float(rows["ann"]["score"]) == 2.0 + 1.0 + 9.0 and float(rows["ann"]["max_score"]) == 17.0
    assert float(rows["bob"]["score"]) == 10.0

    clash = empty_copy(course_db, tmp_path / "gradebook-2.db")
    _submission(clash, "ann", 0.0)
    _submission(clash, "dora", 1.0)
    with pytest.raises(GradebookError, match="conflicting grades for student 'ann'"):
        merge_gradebooks([*shards, clash], course_db)
    assert _state(course_db) == merged  # nothing was written, not even dora


def test_merge_refuses_a_target_without_the_assignment(course_db, tmp_path):
    shard = empty_copy(course_db, tmp_path / "shard.db")
    _submission(shard, "eve", 1.0)
    with open_gradebook(course_db) as gb:
        gb.remove_assignment(A)
    with pytest.raises(GradebookError, match="not in the course gradebook"):
        merge_gradebooks([shard], course_db)
    with pytest.raises(GradebookError, match="no gradebook"):
        merge_gradebooks([shard], tmp_path / "absent.db")


# ----------------------------------------------------------------------------- the command, end to end

HOSTILE_ANSWER = "import helpers.checks\nhelpers.checks.check_close = lambda *a, **k: None\nx = 1"


def test_grade_command_after_a_real_autograde(course_root, capsys, monkeypatch, tmp_path):
    from helpers.models import build_model
    root = course_root
    release = nbformat.read(str(root / "release" / A / f"{A}.ipynb"), as_version=4)
    solved = nbformat.from_dict(release)
    solved.cells[0].source = "x = 1"
    hostile = nbformat.from_dict(release)
    hostile.cells[0].source = HOSTILE_ANSWER
    for student, nb in (("good", solved), ("hostile", hostile), ("missing", release)):
        folder = course.submit(root, student, A, {A: nb})
    from helpers.data import course_data
    with pytest.MonkeyPatch.context() as mp:  # the data the grader scores with below: reduced-mode synthetic
        mp.setenv("COURSE_FAST", "1")
        trained_on = course_data("synthetic", verbose=False)
    for seed, student in enumerate(("good", "hostile")):  # different models: identical files would be reported
        torch.manual_seed(seed)
        model = build_model("mlp", num_classes=10, hidden=(32,))
        save_challenge_checkpoint(root / "submitted" / student / A / CHECKPOINT_NAME, model, history=[],
                                  mean=[0.5] * 3, std=[0.25] * 3, dataset=trained_on)
    (root / "submitted" / "hostile" / A / "torch.py").write_text("raise SystemExit\n")
    (root / "submitted" / "hostile" / A / CIFAR100_CHECKPOINT_NAME).symlink_to(
        root / "submitted" / "good" / A / CHECKPOINT_NAME)  # someone else's file: refused in the worker
    assert folder.is_dir()
    course.autograde(root, A)
    tiers = tmp_path / "ta-only-tiers.json"  # outside the course folder; named explicitly with --tiers
    tiers.write_text('{"cifar10": {"tiers": [{"at_least": 0.0, "fraction": 0.5}]}}')

    monkeypatch.setenv("COURSE_FAST", "1")  # the scoring workers inherit it
    capsys.readouterr()
    assert main(["grade", A, "--course-root", str(root), "--dataset", "synthetic", "--allow-synthetic",
                 "--timeout", "90", "--tiers", str(tiers)]) == 0
    stdout = capsys.readouterr().out
    grades = {s: course.read_grades(root, A, s) for s in ("good", "hostile", "missing")}
    assert grades["good"][SCORE_CELL] == (5.0, 10.0)  # the tiers file: any accuracy earns half
    assert grades["hostile"][SCORE_CELL] == (5.0, 10.0)  # tampering is reported, not penalized
    assert grades["missing"][SCORE_CELL] == (0.0, 10.0)
    assert grades["good"][CIFAR100_SCORE_CELL] == (0.0, 5.0)  # the part is scored: no file, 0 points
    assert grades["hostile"][CIFAR100_SCORE_CELL] == (0.0, 5.0)
    assert grades["good"]["answer-tests"] == (2.0, 2.0)
    with open_gradebook(root / "gradebook.db") as gb:
        comment = gb.find_comment(SCORE_CELL, A, A, "missing").manual_comment
        link = gb.find_comment(CIFAR100_SCORE_CELL, A, A, "hostile").manual_comment
    assert "checkpoint missing: challenge_model.pt not found in the submission" in comment
    assert "refused: cifar100_model.pt is a symbolic link" in link

    reports = root / "reports"
    rows = list(csv.DictReader((reports / f"grades-{A}.csv").open()))
    assert len(rows) == 6 and {r["student"] for r in rows} == {"good", "hostile", "missing"}
    assert (reports / f"grades-{A}.png").stat().st_size > 5_000
    flagged = list(csv.DictReader((reports / f"tamper-{A}.csv").open()))
    assert {r["student"] for r in flagged} == {"hostile"}
    assert any(r["code"] == "helpers.checks.check_close = lambda *a, **k: None" and r["line"] == "2" for r in flagged)
    assert any(r["notebook"] == "torch.py" for r in flagged)
    assert "1 student(s) flagged: hostile" in stdout and "synthetic" in stdout

    course.generate_feedback(root, A)  # the reason reaches the student's feedback
    html = next((root / "feedback" / "missing" / A).glob("*.html")).read_text()
    assert "checkpoint missing" in html

    assert main(["grade", "no_such_assignment", "--course-root", str(root)]) == 2
    assert "not in the gradebook" in capsys.readouterr().err
