"""The autograde hooks of helpers/grading/autograde_hooks.py, through plain nbgrader autograde.

One course (01_data, reduced mode, the generated dataset) and one autograde run over five
simulated students, shared by every test here:
- "tagged": the solution, but a class_counts the visible checks reject, whose test cell carries `skip-execution` and the
  old secret skip tag (it must run and score 0), `skip-execution` on the denormalize answer (it must
  run: its tests pass) and "training" + `skip-execution` on a stratified_split answer that then
  hangs (it must run and time out at the normal cell limit);
- "delq": the solution without the q-train-only-stats prompt and answer (nbgrader 0.9.6's
  add_missing_cells raised KeyError here, failing the notebook): both come back, the rest is graded;
- "exit": the solution with `os._exit(1)` at the end of the channel_mean_std answer: the tests
  before it keep their points, the later ones score 0 with the reason;
- "broken": a notebook that is not JSON and a timestamp that is not a date: 0 with a reason, and
  the run still succeeds;
- "links": the solution plus a symlink to /dev/zero, one to /etc/passwd, a FIFO and a plain file:
  only the plain file is copied to autograded/ (and its timestamp.txt, a link, is ignored).
"""
import os
import time

import pytest

from helpers.config import PROJECT_ROOT
from helpers.grading import course, simulate

pytest.importorskip("nbgrader")
pytestmark = [
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
    pytest.mark.filterwarnings("ignore:Cell is missing an id field"),
]

NAME = "01_data"
STUDENTS = ("tagged", "delq", "exit", "broken", "links")
CELL_TIMEOUT = int(os.environ.get("COURSE_TEST_CELL_TIMEOUT", "20"))
OLD_SECRET_TAG = "course-skip-7d1f93c0a5e2"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The course, the submissions and nbgrader's result of one autograde run over all of them."""
    data_dir = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_FAST", "1")
        mp.setenv("COURSE_OFFLINE", "1")
        mp.setenv("COURSE_DATA_DIR", str(data_dir))
        mp.setenv("COURSE_CELL_TIMEOUT", str(CELL_TIMEOUT))
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
        mp.setenv("MPLBACKEND", "Agg")
        for var in ("COURSE_CIFAR10", "COURSE_CIFAR100", "COURSE_SKIP_TAG", "COURSE_TRAINING_TIMEOUT"):
            mp.delenv(var, raising=False)
        from helpers.data import load_dataset
        load_dataset("synthetic", root=data_dir)
        for folder in [data_dir, *data_dir.rglob("*")]:  # the sandboxed kernel reads it as another uid
            folder.chmod(0o755 if folder.is_dir() else 0o644)

        root = course.make_course_dir(tmp_path_factory.mktemp("course"), [NAME])
        release = simulate.read(course.generate_release(root, NAME) / f"{NAME}.ipynb")
        source = simulate.read(root / "source" / NAME / f"{NAME}.ipynb")
        solved = simulate.solution(release, source)
        answer = {gid: simulate.strip_solution_markers(source.cells[simulate.cell_index(source, gid)].source)
                  for gid in simulate.answer_ids(source)}

        # wrong in a way the notebook's visible checks catch: this is about nbgrader's run of the
        # test cell (the hidden tests run outside the kernel, see test_roundtrip.py)
        wrong_id = "class_counts-answer"
        wrong_code = "def class_counts(labels, num_classes):\n    return np.zeros(num_classes, dtype=np.int64)\n"
        tagged = simulate.with_answer(solved, wrong_id, wrong_code)
        tagged = simulate.tag_cell(tagged, "class_counts-tests", "skip-execution")
        tagged = simulate.tag_cell(tagged, "class_counts-tests", OLD_SECRET_TAG)
        tagged = simulate.tag_cell(tagged, "denormalize-answer", "skip-execution")
        tagged = simulate.with_answer(tagged, "stratified_split-answer",
                                      answer["stratified_split-answer"] + simulate.HANG)
        tagged = simulate.tag_cell(tagged, "stratified_split-answer", "training")
        tagged = simulate.tag_cell(tagged, "stratified_split-answer", "skip-execution")

        delq = simulate.delete_cell(simulate.delete_cell(solved, "q-train-only-stats"), "q-train-only-stats-prompt")
        exits = simulate.with_answer(solved, "channel_mean_std-answer",
                                     answer["channel_mean_std-answer"] + "\nimport os\nos._exit(1)\n")

        for student, nb in (("tagged", tagged), ("delq", delq), ("exit", exits), ("links", solved)):
            course.submit(root, student, NAME, {NAME: nb})
        broken = course.submit(root, "broken", NAME, {NAME: solved})
        (broken / f"{NAME}.ipynb").write_text('{"cells": [ this is not JSON')
        links = root / "submitted" / "links" / NAME
        (links / "challenge_model.pt").symlink_to("/dev/zero")
        (links / "passwd.txt").symlink_to("/etc/passwd")
        os.mkfifo(links / "pipe.pt")
        (links / "notes.txt").write_text("my notes\n")
        (links / "timestamp.txt").unlink()
        (links / "timestamp.txt").symlink_to("/etc/passwd")  # nbgrader: "Invalid timestamp", student failed
        (broken / "timestamp.txt").write_text("not a date")

        t0 = time.perf_counter()
        result = course.autograde(root, NAME, list(STUDENTS), strict=False)
        seconds = time.perf_counter() - t0
        print(f"\nautograde of {len(STUDENTS)} students: {seconds:.1f} s")
        grades = {s: course.read_grades(root, NAME, s) for s in STUDENTS}
        yield {"root": root, "source": source, "result": result, "grades": grades, "seconds": seconds}


def _autograded(run, student):
    return simulate.read(run["root"] / "autograded" / student / NAME / f"{NAME}.ipynb")


def _cell(nb, gid):
    return nb.cells[simulate.cell_index(nb, gid)]


def _comments(run, student) -> dict:
    from nbgrader.api import Gradebook
    with Gradebook(course._db_url(run["root"])) as gb:
        sub = gb.find_submission_notebook(NAME, NAME, student)
        return {c.name: c.comment or "" for c in sub.comments}


def _full(grade) -> bool:
    return grade[0] == grade[1] and grade[1] > 0


def test_the_run_succeeds_for_everyone(run):
    result = run["result"]
    assert result["success"], result.get("log", "")[-3000:] + str(result.get("error"))
    for student in STUDENTS:
        assert (run["root"] / "autograded" / student / NAME / f"{NAME}.ipynb").is_file(), student


def test_student_tags_on_a_test_cell_do_not_skip_it(run):
    grades = run["grades"]["tagged"]
    assert grades["class_counts-tests"][0] == 0, f"the skip-tagged test of a wrong answer scored {grades}"
    cell = _cell(_autograded(run, "tagged"), "class_counts-tests")
    assert cell.execution_count is not None
    assert not {"skip-execution", OLD_SECRET_TAG} & set(cell.metadata.get("tags", []))


def test_skip_execution_on_an_answer_cell_is_dropped(run):
    grades = run["grades"]["tagged"]
    assert _full(grades["denormalize-tests"]), grades
    cell = _cell(_autograded(run, "tagged"), "denormalize-answer")
    assert cell.execution_count is not None and "skip-execution" not in cell.metadata.get("tags", [])


def test_training_tag_on_an_answer_cell_gets_no_long_timeout(run):
    nb = _autograded(run, "tagged")
    cell = _cell(nb, "stratified_split-answer")
    assert "training" not in cell.metadata.get("tags", [])
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert errors and "Timeout" in errors[-1].ename + " ".join(errors[-1].traceback), cell.outputs
    # the rest was graded normally: only the wrong answer lost points
    grades = run["grades"]["tagged"]
    assert _full(grades["stratified_split-tests"]) and _full(grades["channel_mean_std-tests"]), grades
    # the run did not wait anywhere near the training limit (30 min) for that cell
    assert run["seconds"] < 600


def test_locked_cells_keep_the_source_tags(run):
    source_tags = {simulate._meta(c)["grade_id"]: c.metadata.get("tags", []) for c in run["source"].cells
                   if simulate._meta(c).get("grade_id")}
    nb = _autograded(run, "tagged")
    for cell in nb.cells:
        gid = simulate._meta(cell).get("grade_id")
        if gid:
            assert cell.metadata.get("tags", []) == source_tags[gid], gid


def test_deleted_prompt_and_answer_are_restored_and_the_rest_graded(run):
    nb = _autograded(run, "delq")
    ids = [simulate._meta(c).get("grade_id") for c in nb.cells]
    source_ids = [simulate._meta(c).get("grade_id") for c in run["source"].cells]
    want = [g for g in source_ids if g]
    assert [g for g in ids if g] == want, "restored cells are missing or out of order"
    prompt = _cell(nb, "q-train-only-stats-prompt")
    assert prompt.source == _cell(run["source"], "q-train-only-stats-prompt").source
    grades = run["grades"]["delq"]
    auto = simulate.autograded_ids(run["source"])
    assert all(_full(grades[g]) for g in auto), grades
    assert grades["q-train-only-stats"][0] == 0  # a deleted written answer is no answer


def test_a_dead_kernel_keeps_earlier_points(run):
    grades = run["grades"]["exit"]
    assert _full(grades["class_counts-tests"]) and _full(grades["stratified_split-tests"]), grades
    assert grades["channel_mean_std-tests"][0] == 0 and grades["denormalize-tests"][0] == 0, grades
    nb = _autograded(run, "exit")
    later = _cell(nb, "denormalize-tests")
    assert later.outputs and later.outputs[-1].ename == "KernelDied"
    comments = _comments(run, "exit")
    assert all("kernel died" in text for text in comments.values()), comments
    assert "kernel died" in run["result"]["log"]


def test_a_broken_notebook_scores_zero_with_a_reason(run):
    grades = run["grades"]["broken"]
    assert all(score == 0 for score, _ in grades.values()), grades
    comments = _comments(run, "broken")
    assert comments and all("could not be read" in text for text in comments.values()), comments
    assert "could not be read" in run["result"]["log"]
    # nothing of the broken submission ran
    nb = _autograded(run, "broken")
    assert all(c.execution_count is None for c in nb.cells if c.cell_type == "code")


def test_links_devices_and_fifos_are_not_copied(run):
    out = run["root"] / "autograded" / "links" / NAME
    assert (out / "notes.txt").read_text() == "my notes\n"
    for name in ("challenge_model.pt", "passwd.txt", "pipe.pt"):
        assert not os.path.lexists(out / name), name
    log = run["result"]["log"]
    assert "challenge_model.pt is a symbolic link" in log and "pipe.pt is not a regular file" in log
    assert all(_full(g) for gid, g in run["grades"]["links"].items() if gid.endswith("-tests"))
    comments = _comments(run, "links")
    assert all("not copied for grading" in text for text in comments.values()), comments


def test_a_timestamp_link_to_dev_zero_is_not_read(tmp_path):
    """nbgrader reads timestamp.txt whole before any copy: a link to /dev/zero would never end."""
    from nbgrader.coursedir import CourseDirectory

    from helpers.grading.autograde_hooks import RefuseUnsafeFiles
    RefuseUnsafeFiles.install()
    assert hasattr(CourseDirectory.get_existing_timestamp, "__wrapped__")  # else the read below never ends
    (tmp_path / "timestamp.txt").symlink_to("/dev/zero")
    assert CourseDirectory().get_existing_timestamp(str(tmp_path)) is None
    (tmp_path / "timestamp.txt").unlink()
    (tmp_path / "timestamp.txt").write_text("2026-01-02 03:04:05.000000 UTC")
    assert CourseDirectory().get_existing_timestamp(str(tmp_path)).year == 2026


def test_sanitize_restores_cells_after_locked_non_graded_ones(tmp_path, monkeypatch):
    """06_challenge without a save cell and the test after it, a q-* prompt and its answer, and the first
    cell: nbgrader 0.9.6's add_missing_cells raised KeyError on such notebooks. The sanitize steps (no
    kernel) put every cell back in source order, and tags come from source/ (a training cell keeps its
    "training" tag, a test cell loses a student's `skip-execution`)."""
    from nbgrader.preprocessors import OverwriteCells

    from helpers.grading.autograde_hooks import ResetCellMetadata, RestoreMissingCells
    name = "06_challenge"
    root = course.make_course_dir(tmp_path / "course", [name])
    release = simulate.read(course.generate_release(root, name) / f"{name}.ipynb")
    source = simulate.read(root / "source" / name / f"{name}.ipynb")
    nb = simulate.solution(release, source)
    for gid in ("save-cifar10", "saved_model-tests", "q-model-card-prompt", "q-model-card", "setup"):
        nb = simulate.delete_cell(nb, gid)
    nb.cells[simulate.cell_index(nb, "train-cifar10")].metadata["tags"] = []
    nb = simulate.tag_cell(nb, "cifar100_recipe-tests", "skip-execution")

    monkeypatch.chdir(root)
    resources = {"nbgrader": {"notebook": name, "assignment": name, "student": "s",
                              "db_url": course._db_url(root)}}
    for step in (RestoreMissingCells(), OverwriteCells(add_missing_cells=True), ResetCellMetadata()):
        nb, resources = step.preprocess(nb, resources)

    ids = [simulate._meta(c).get("grade_id") for c in nb.cells]
    assert [g for g in ids if g] == [simulate._meta(c)["grade_id"] for c in source.cells if simulate._meta(c).get("grade_id")]
    for gid in ("save-cifar10", "saved_model-tests", "q-model-card-prompt", "setup"):
        assert _cell(nb, gid).source == _cell(source, gid).source, gid
    assert "training" in _cell(nb, "train-cifar10").metadata["tags"]
    assert "skip-execution" not in _cell(nb, "cifar100_recipe-tests").metadata.get("tags", [])
    assert ids.index("saved_model-tests") == ids.index("save-cifar10") + 1


def test_a_kernel_that_never_starts_fails_the_run_instead_of_zeroing_the_class(run, tmp_path):
    """No student code has run when the kernel fails to start: that is the grader's fault, so the
    run reports failure (the TA fixes the setup and reruns) and nobody is graded 0 for it."""
    root = course.make_course_dir(tmp_path / "course", [NAME])
    release = simulate.read(course.generate_release(root, NAME) / f"{NAME}.ipynb")
    with open(root / "nbgrader_config.py", "a") as f:
        f.write('\nc.Execute.kernel_name = "no-such-kernel"  # a broken grading setup\n')
    course.submit(root, "ok", NAME, {NAME: simulate.blank(release)})
    result = course.autograde(root, NAME, ["ok"], strict=False)
    assert not result["success"]
    assert "did not start" in result["log"] and "not graded" in result["log"]
    assert not (root / "autograded" / "ok" / NAME / f"{NAME}.ipynb").exists()
    assert "NBGRADER_EXECUTION" not in os.environ  # this process is not left believing it is inside autograde
