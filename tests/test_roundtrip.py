"""The whole nbgrader round trip, for every assignment with an entry in WRONG_ANSWERS.

In a temporary course folder, with reduced mode and the generated dataset: generate the release,
validate the source (passes) and the release (fails), then autograde the simulated students in
one run and grade their blocks with the hidden tests (the trusted harness): "solution" scores full
marks, "blank" scores zero, "tampered" loses exactly the points of the assignment's first wrong
answer (which only the hidden tests catch) although it also deletes, edits and skip-tags test cells
and hangs in an answer cell, and "wrong1", "wrong2", ... (simulate.wrong_students: the other
registered wrong answers, at most one per block in each student) lose exactly the points of each
of their wrong answers' blocks and nothing else. Then feedback (no hidden test reaches it) and the
CSV export.
"""
import csv
import html
import re
import time
from pathlib import Path

import pytest

from helpers.grading import course, simulate

pytest.importorskip("nbgrader")
pytestmark = [
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),  # nbgrader's gradebook sessions
    pytest.mark.filterwarnings("ignore:Cell is missing an id field"),  # cells nbgrader re-adds carry no id
]

ASSIGNMENTS = [a for a in course.assignments() if a in simulate.WRONG_ANSWERS]
STUDENTS = ("solution", "blank", "tampered")


def _notebooks(folder: Path) -> dict:
    return {p.stem: simulate.read(p) for p in sorted(folder.glob("*.ipynb"))}


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded(request, kernel_env, tmp_path_factory):
    """One assignment taken through release, validation, submission and a single autograde run."""
    name = request.param
    wrong_id = simulate.WRONG_ANSWERS[name][0].grade_id
    wrong_groups = {f"wrong{i}": group for i, group in enumerate(simulate.wrong_students(name), 1)}
    students = [*STUDENTS, *wrong_groups]
    timings = {}
    t0 = time.perf_counter()
    root = course.make_course_dir(tmp_path_factory.mktemp(f"course-{name}"), [name])
    release_dir = course.generate_release(root, name)
    sources, releases = _notebooks(root / "source" / name), _notebooks(release_dir)
    timings["generate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # The source is validated from a copy holding the files the solution's run leaves (the
    # challenge's checkpoints): files in source/ would be copied over every student's.
    checked = tmp_path_factory.mktemp(f"validate-{name}")
    for nb in sources:
        simulate.write(sources[nb], checked / f"{nb}.ipynb")
    simulate.write_work_files(name, checked)
    validation = {
        "source": {nb: course.validate(checked / f"{nb}.ipynb", root) for nb in sources},
        "release": {nb: course.validate(release_dir / f"{nb}.ipynb", root) for nb in releases},
    }
    timings["validate"] = time.perf_counter() - t0

    plans = {}
    submissions = {student: {} for student in students}
    for nb in releases:
        submissions["solution"][nb] = simulate.solution(releases[nb], sources[nb])
        submissions["blank"][nb] = simulate.blank(releases[nb])
        if wrong_id in simulate.answer_ids(sources[nb]):
            submissions["tampered"][nb], plans[nb] = simulate.tampered(releases[nb], sources[nb], name)
        else:
            submissions["tampered"][nb] = submissions["solution"][nb]
        for student, group in wrong_groups.items():
            submissions[student][nb] = simulate.with_wrong_answers(releases[nb], sources[nb], group)
    assert len(plans) == 1, f"{name}: {wrong_id!r} must be the grade_id of an answer cell in one notebook"
    for student, nbs in submissions.items():
        folder = course.submit(root, student, name, nbs)
        if student != "blank":
            simulate.write_work_files(name, folder)

    t0 = time.perf_counter()
    course.autograde(root, name, students)
    timings["autograde"] = time.perf_counter() - t0
    in_kernel = {s: course.read_grades(root, name, s) for s in students}
    t0 = time.perf_counter()
    harness = course.grade_blocks(root, name, students, jobs=2)
    timings["harness"] = time.perf_counter() - t0
    grades = {s: course.read_grades(root, name, s) for s in students}
    print(f"\n{name} round trip timings (s), {len(students)} students: "
          + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return {"name": name, "root": root, "sources": sources, "validation": validation, "plans": plans,
            "students": students, "wrong_groups": wrong_groups, "grades": grades, "in_kernel": in_kernel,
            "harness": harness, "timings": timings}


def _auto_ids(graded) -> list[str]:
    return [gid for nb in graded["sources"].values() for gid in simulate.autograded_ids(nb)]


def _autograded_nb(graded, student, nb):
    return simulate.read(graded["root"] / "autograded" / student / graded["name"] / f"{nb}.ipynb")


def test_source_passes_validation(graded):
    for nb, result in graded["validation"]["source"].items():
        assert result["passed"], f"{nb}: the source notebook fails validation:\n" + "\n".join(
            f"--- {f['source'][:200]}\n{f['error'][-800:]}" for f in result["failed"]) + str(result["changed"])


def test_release_fails_validation(graded):
    for nb, result in graded["validation"]["release"].items():
        assert not result["passed"] and result["failed"], f"{nb}: the blank release notebook passes validation"


def test_solution_scores_full_marks(graded):
    grades = graded["grades"]["solution"]
    lost = {gid: grades[gid] for gid in _auto_ids(graded) if grades[gid][0] != grades[gid][1]}
    assert not lost, f"the solution loses points in {lost}"


def test_blank_scores_zero(graded):
    grades = graded["grades"]["blank"]
    scored = {gid: grades[gid] for gid in _auto_ids(graded) if grades[gid][0] != 0}
    assert not scored, f"the blank submission scores in {scored}"


def test_tampered_loses_exactly_the_wrong_answer(graded):
    (nb, plan), = graded["plans"].items()
    grades = graded["grades"]["tampered"]
    ids = _auto_ids(graded)
    lost = sum(grades[g][1] - grades[g][0] for g in ids)
    assert grades[plan["wrong_tests"]][0] < grades[plan["wrong_tests"]][1], \
        f"the wrong answer in {plan['wrong']} passed its (skip-execution tagged) tests: {grades[plan['wrong_tests']]}"
    assert lost == pytest.approx(plan["points_lost"]), \
        f"expected to lose {plan['points_lost']} points, lost {lost}: {[(g, grades[g]) for g in ids]}"
    for gid in (plan["deleted"], plan["edited"]):
        if gid:
            assert grades[gid][0] == grades[gid][1], f"{gid} was not graded normally: {grades[gid]}"
    if plan["noisy"]:  # its function wrote a warning and a progress bar to stderr in the test cell
        tests_id = plan["noisy"][:-len("-answer")] + "-tests"
        assert grades[tests_id][0] == grades[tests_id][1], f"stderr noise cost points in {tests_id}"


def test_harness_result_stands_and_disagreements_are_listed(graded):
    """The wrong answer passes the visible checks in the kernel; the hidden tests' 0 is the score."""
    (nb, plan), = graded["plans"].items()
    cell = plan["wrong_tests"]
    kernel, final = graded["in_kernel"]["tampered"][cell], graded["grades"]["tampered"][cell]
    assert final[0] == 0, f"{cell}: the hidden tests' result did not become the score: {final}"
    listed = [(a["student"], a["cell"]) for a in graded["harness"]["agreement"]]
    if kernel[0] != final[0]:
        assert ("tampered", cell) in listed, f"the disagreement on {cell} is not listed: {listed}"
    assert all(r["status"] != "error" for r in graded["harness"]["rows"]), graded["harness"]["rows"]


def test_each_wrong_answer_loses_exactly_its_points(graded):
    """Every other registered wrong answer (in the "wrongN" students) costs exactly its block's points,
    decided by the hidden tests, and nothing else of that student's autograded cells loses a point."""
    ids = _auto_ids(graded)
    for student, group in graded["wrong_groups"].items():
        grades = graded["grades"][student]
        wrong_tests = {w.tests_id: w for w in group}
        assert len(wrong_tests) == len(group), f"{student} holds two wrong answers of one block: {group}"
        for gid in ids:
            got, full = grades[gid]
            if gid in wrong_tests:
                w = wrong_tests[gid]
                assert full - got == pytest.approx(w.points), \
                    f"{student}: the wrong {w.grade_id} ({w.why}) lost {full - got} points in {gid}, expected " \
                    f"{w.points}: {got}/{full}"
            else:
                assert got == full, f"{student}: {gid} lost points although its answer is the solution: {got}/{full}"
        rows = {r["cell"]: r for r in graded["harness"]["rows"] if r["student"] == student}
        for gid, w in wrong_tests.items():
            assert rows[gid]["status"] == "zero", f"{student}: the hidden tests did not decide {gid}: {rows[gid]}"


def test_tampered_notebook_was_repaired_and_timed_out(graded):
    (nb, plan), = graded["plans"].items()
    source = graded["sources"][nb]
    out = _autograded_nb(graded, "tampered", nb)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in out.cells]
    assert plan["deleted"] in ids, f"deleted test cell {plan['deleted']} was not restored"
    if plan["edited"]:
        edited = out.cells[ids.index(plan["edited"])]
        assert edited.source == source.cells[simulate.cell_index(source, plan["edited"])].source, \
            "the test cell edited to `pass` was not restored"
    skipped = out.cells[ids.index(plan["skip_tagged"])]
    assert skipped.execution_count is not None, "the skip-execution tagged test cell did not run"
    if plan["noisy"]:  # the noise was there, and IgnorePattern removed it from the test cell
        noisy = out.cells[ids.index(plan["noisy"][:-len("-answer")] + "-tests")]
        assert not [o for o in noisy.outputs if o.get("name") == "stderr"], noisy.outputs
    hung = out.cells[ids.index(plan["hung"])]
    errors = [o for o in hung.outputs if o.output_type == "error"]
    assert errors and "Timeout" in errors[-1].ename + " ".join(errors[-1].traceback), \
        f"the hanging answer cell {plan['hung']} has no timeout error: {hung.outputs}"


def _hidden_lines(name: str, source_nbs: dict) -> list[str]:
    """Distinctive lines of the assignment's hidden test files (not also in its notebooks)."""
    from helpers.grading.harness.run import HIDDEN_TESTS
    notebook_text = "\n".join(c.source for nb in source_nbs.values() for c in nb.cells)
    lines = []
    for path in sorted((HIDDEN_TESTS / name).glob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) >= 30 and not line.startswith(("#", "import ", "from ")) and line not in notebook_text:
                lines.append(line)
    return lines


def _html_text(path: Path) -> str:
    """The visible text of an HTML file (tags removed, entities decoded), as code appears in it."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def test_feedback_hides_hidden_tests_and_export_works(graded, tmp_path):
    name, root = graded["name"], graded["root"]
    feedback = course.generate_feedback(root, name)
    hidden = _hidden_lines(name, graded["sources"])
    assert hidden, f"{name} has no hidden tests"
    copied = [p for p in (root / "release" / name, *(root / stage for stage in ("autograded", "feedback")))
              for p in p.rglob("*") if p.is_file() and p.suffix != ".ipynb" and p.suffix != ".html"]
    assert not [p for p in copied if p.suffix == ".py"], f"Python files reached the students' folders: {copied}"
    for folder in (root / "release" / name, root / "autograded", root / "feedback"):
        for path in folder.rglob("*.ipynb"):
            text = path.read_text(encoding="utf-8")
            assert not [ln for ln in hidden if ln in text], f"{path} holds hidden test lines"
    for nb in graded["sources"]:
        for student in graded["students"]:
            page = feedback / student / name / f"{nb}.html"
            text = _html_text(page)
            assert "def " in text, f"{page} shows no code"
            shown = [ln for ln in hidden if ln in text]
            assert not shown, f"{page} shows hidden test lines: {shown[:3]}"
            assert "HIDDEN TESTS" not in text.replace("hidden tests: not shown", "")
    tampered = _html_text(feedback / "tampered" / name / f"{next(iter(graded['plans']))}.html")
    assert "[harness]" in tampered, "the feedback does not say why the wrong answer failed"

    dest = course.export_grades(root, tmp_path / "grades.csv")
    rows = {r["student_id"]: r for r in csv.DictReader(dest.open()) if r["assignment"] == name}
    assert set(rows) == set(graded["students"])
    total = sum(graded["grades"]["solution"][g][1] for g in _auto_ids(graded))
    assert float(rows["solution"]["score"]) == pytest.approx(total)
    assert float(rows["blank"]["score"]) == 0


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_wrong_answer_registry(name):
    """Without a round trip: every registered wrong answer names an answer cell with a tests cell in the
    source, loses all of that cell's points (blocks are all or nothing), says why it is wrong and shares
    no line with the hidden tests, and the packing puts at most one wrong answer per block into each
    simulated student."""
    from helpers.config import PROJECT_ROOT
    nbs = [simulate.read(p) for p in sorted((PROJECT_ROOT / "source" / name).glob("*.ipynb"))]
    points = {}
    for nb in nbs:
        for _, tests_id in simulate.blocks(nb):
            points[tests_id] = float(nb.cells[simulate.cell_index(nb, tests_id)].metadata["nbgrader"]["points"])
    hidden = _hidden_lines(name, dict(enumerate(nbs)))
    for w in simulate.WRONG_ANSWERS[name]:
        assert w.tests_id in points, f"{name}: {w.grade_id} is not a <function>-answer cell with a tests cell"
        assert w.points == points[w.tests_id], \
            f"{name}: {w.grade_id} must lose all {points[w.tests_id]} points of {w.tests_id}, registered {w.points}"
        assert w.source.strip() and w.why.strip()
        shared = [ln for ln in hidden if ln in w.source]
        assert not shared, f"{name}: {w.grade_id}'s wrong answer holds hidden test lines (the feedback check would " \
                           f"take them for a leak): {shared}"
    packed = simulate.wrong_students(name)
    rest, flat = simulate.WRONG_ANSWERS[name][1:], [w for group in packed for w in group]
    assert sorted(flat, key=rest.index) == rest, f"{name}: not every wrong answer after the first is in one student"
    for group in packed:
        assert len({w.grade_id for w in group}) == len(group), f"{name}: one student holds two wrong answers of a block"
