"""nbgrader's exchange with the course config, through the commands students and TAs type.

One loop, kept small (each nbgrader command costs a few seconds of start-up): the instructor
releases the course's 01_data (the committed release) and a two-cell assignment made here (00_tiny),
with the exchange on a "farm" path named by $COURSE_EXCHANGE (`nbgrader release_assignment` from the
course root). ada, in a home of her own, runs the real commands: `nbgrader list` finds both
assignments, `fetch_assignment 00_tiny`, answers, `submit`; the TA runs `nbgrader collect`;
autograde and feedback go through helpers.grading.course (nbgrader's API); the TA runs `nbgrader
release_feedback` and ada `nbgrader fetch_feedback`. ben does the same through `course.run_student` (what the demo uses,
in-process) and submits the blank release: each gets only their own feedback.
"""
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.config import PROJECT_ROOT
from helpers.grading import course

NBGRADER = str(Path(sys.executable).parent / "nbgrader")
TINY = "00_tiny"
REAL = "01_data"


def tiny_source() -> nbformat.NotebookNode:
    """An assignment of one answer cell (1 point) and its test cell, in nbgrader's cell metadata."""
    def cell(source, grade_id, **flags):
        meta = {"grade": False, "solution": False, "locked": False, "schema_version": 3, "grade_id": grade_id}
        meta.update(flags)
        return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("Write `double(x)`.", metadata={"nbgrader": {
            "grade": False, "solution": False, "locked": True, "schema_version": 3, "grade_id": "intro"}}),
        cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n", "double-answer",
             solution=True),
        cell("assert double(21) == 42", "double-tests", grade=True, locked=True, points=1),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _run(argv, cwd, env):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(argv)} in {cwd}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exchange")
    farm = tmp / "farm" / "exchange"  # as on a farm: a shared path, not in the course folder
    root = course.make_course_dir(tmp / "course", [])
    (root / "source" / TINY).mkdir()
    nbformat.write(tiny_source(), str(root / "source" / TINY / f"{TINY}.ipynb"))
    shutil.copytree(PROJECT_ROOT / "release" / REAL, root / "release" / REAL)
    ta_env = dict(os.environ, COURSE_EXCHANGE=str(farm))
    homes = {name: tmp / "home" / name for name in ("ada", "ben")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_EXCHANGE", str(farm))
        assert course.exchange_root(root) == farm
        course.generate_release(root, TINY)
        _run([NBGRADER, "release_assignment", TINY], root, ta_env)
        course.release_assignment(root, REAL)
        cid = course.course_id(root)
        for home in homes.values():
            course.student_config(home, farm, cid)

        ada = course.student_env(homes["ada"])  # her shell: her HOME, her ~/.jupyter, no course variables
        listed = _run([NBGRADER, "list"], homes["ada"], ada)
        _run([NBGRADER, "fetch_assignment", TINY], homes["ada"], ada)
        fetched = homes["ada"] / TINY / f"{TINY}.ipynb"
        nb = nbformat.read(str(fetched), as_version=4)
        nb.cells[1].source = "def double(x):\n    return x + x\n"
        nbformat.write(nb, str(fetched))
        _run([NBGRADER, "submit", TINY, "--student", "ada"], homes["ada"], ada)  # one OS user for both students

        ben_listed = course.released(homes["ben"])
        course.run_student(homes["ben"], "fetch_assignment", TINY)
        course.run_student(homes["ben"], "submit", TINY, "ben")

        _run([NBGRADER, "collect", TINY, "--update", "--ExchangeCollect.check_owner=False"], root, ta_env)
        mp.setenv("COURSE_SANDBOX", "off")  # a notebook this test wrote: the exchange is under test, not the sandbox
        course.autograde(root, TINY)
        course.generate_feedback(root, TINY)
        _run([NBGRADER, "release_feedback", TINY], root, ta_env)
        fetched_feedback = _run([NBGRADER, "fetch_feedback", TINY], homes["ada"], ada)
        course.run_student(homes["ben"], "fetch_feedback", TINY)
    return {"root": root, "farm": farm, "homes": homes, "listed": listed, "ben_listed": ben_listed,
            "fetched_feedback": fetched_feedback}


def test_a_student_lists_the_released_assignments(loop):
    assert f"cifar10-course {TINY}" in loop["listed"] and f"cifar10-course {REAL}" in loop["listed"], loop["listed"]
    assert loop["ben_listed"] == [TINY, REAL]
    assert not (loop["root"] / "exchange").exists()  # $COURSE_EXCHANGE named the exchange, not the course folder


def test_exchange_permissions_are_nbgrader_s(loop):
    course_dir = loop["farm"] / "cifar10-course"
    assert loop["farm"].stat().st_mode & 0o777 == 0o777
    assert (course_dir / "inbound").stat().st_mode & 0o7777 == 0o2733  # anyone submits, nobody lists
    assert (course_dir / "outbound" / REAL / f"{REAL}.ipynb").is_file()


def test_submissions_are_collected_into_submitted(loop):
    for student in ("ada", "ben"):
        folder = loop["root"] / "submitted" / student / TINY
        assert {p.name for p in folder.iterdir()} >= {f"{TINY}.ipynb", "timestamp.txt", "submission_secret.txt"}
    assert course.read_grades(loop["root"], TINY, "ada") == {"double-tests": (1.0, 1.0)}
    assert course.read_grades(loop["root"], TINY, "ben") == {"double-tests": (0.0, 1.0)}


def test_each_student_fetches_only_their_own_feedback(loop):
    assert "Fetched feedback" in loop["fetched_feedback"]
    pages = {name: list((home / TINY / "feedback").glob(f"*/{TINY}.html")) for name, home in loop["homes"].items()}
    assert all(len(found) == 1 for found in pages.values()), pages
    ada, ben = (html.unescape(re.sub(r"<[^>]+>", "", pages[name][0].read_text())) for name in ("ada", "ben"))
    assert "return x + x" in ada and "return x + x" not in ben
    assert "NotImplementedError" in ben and "NotImplementedError" not in ada


def test_a_missing_exchange_says_what_to_do(tmp_path):
    home = tmp_path / "home"
    course.student_config(home, tmp_path / "nowhere", "cifar10-course")
    with pytest.raises(course.NbgraderError, match=r"does not exist.*release_assignment"):
        course.run_student(home, "list")
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(course.NbgraderError, match=r"inbound does not exist.*course id"):
        course.run_student(home, "submit", TINY, "ada")


def test_an_unwritable_exchange_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(course.os, "access", lambda path, mode: False)  # as a user without write access
    with pytest.raises(course.NbgraderError, match=r"not writable by .*chmod 0777"):
        course.check_exchange(tmp_path)


def test_the_exchange_defaults_to_the_course_folder(tmp_path, monkeypatch):
    root = course.make_course_dir(tmp_path / "course", [])
    monkeypatch.delenv("COURSE_EXCHANGE", raising=False)
    assert course.exchange_root(root) == root.resolve() / "exchange"
    monkeypatch.setenv("COURSE_EXCHANGE", "/srv/nbgrader/exchange")
    assert course.exchange_root(root) == Path("/srv/nbgrader/exchange")
    assert course.exchange_root(root, tmp_path / "mine") == (tmp_path / "mine").resolve()
