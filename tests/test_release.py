"""release/ is exactly what nbgrader makes of source/, notebooks follow the conventions
(helpers/grading/NOTEBOOK_CONVENTIONS.md), and nbgrader_config.py holds the settings grading needs."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import PROJECT_ROOT
from helpers.grading import course, simulate

pytest.importorskip("nbgrader")

SOURCE_NBS = sorted((PROJECT_ROOT / "source").glob("*/*.ipynb"))
RELEASE_NBS = sorted((PROJECT_ROOT / "release").glob("*/*.ipynb"))


def _rel(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def _nbg(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def test_there_is_something_to_check():
    assert SOURCE_NBS, "no notebooks under source/"
    assert course.assignments(), "no assignments under source/"


def test_release_is_what_generate_assignment_makes_of_source():
    diffs = course.release_differences(PROJECT_ROOT)
    assert not diffs, ("release/ is stale; run `python -m helpers release`. Differing: "
                       + ", ".join(diffs))


@pytest.mark.parametrize("path", SOURCE_NBS + RELEASE_NBS, ids=_rel)
def test_notebook_has_no_outputs(path):
    nb = simulate.read(path)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{_rel(path)}: cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", SOURCE_NBS, ids=_rel)
def test_source_follows_the_conventions(path):
    nb = simulate.read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{_rel(path)}: kernelspec must be python3"
    ids = [_nbg(c)["grade_id"] for c in nb.cells if "grade_id" in _nbg(c)]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"{_rel(path)}: duplicate grade_ids {dupes} (nbgrader cannot grade them)"
    problems = []
    for cell in nb.cells:
        meta = _nbg(cell)
        gid = meta.get("grade_id", "")
        if meta.get("solution") and cell.cell_type == "code":
            if not gid.endswith("-answer"):
                problems.append(f"answer cell {gid!r} should be named <function>-answer")
            if "### BEGIN SOLUTION" not in cell.source or "### END SOLUTION" not in cell.source:
                problems.append(f"answer cell {gid!r} has no ### BEGIN/END SOLUTION region")
            if not cell.source.lstrip().startswith("#"):
                problems.append(f"answer cell {gid!r} should start with its specification as comments")
        elif meta.get("grade") and cell.cell_type == "code":
            if not gid.endswith("-tests"):
                problems.append(f"test cell {gid!r} should be named <function>-tests")
            if not meta.get("points"):
                problems.append(f"test cell {gid!r} has no points")
        elif meta.get("grade") and meta.get("solution") and not gid.startswith("q-"):
            problems.append(f"written answer {gid!r} should be named q-<topic>")
        if "HIDDEN TESTS" in cell.source:
            problems.append(f"cell {gid or cell.get('id')!r} holds hidden tests: they belong in hidden_tests/")
    assert not problems, f"{_rel(path)}:\n  " + "\n  ".join(problems)
    names = {a[:-len("-answer")] for a, _ in simulate.blocks(nb)}
    orphans = [a for a in simulate.answer_ids(nb) if a.endswith("-answer") and a[:-len("-answer")] not in names]
    assert not orphans, f"{_rel(path)}: answer cells without a <function>-tests cell: {orphans}"


@pytest.mark.parametrize("path", SOURCE_NBS, ids=_rel)
def test_every_test_cell_is_decided_by_hidden_tests_outside_the_assignment(path):
    from helpers.grading.harness.plugin import declared_blocks
    from helpers.grading.harness.run import HIDDEN_TESTS
    nb = simulate.read(path)
    name = path.parent.name
    cells = {_nbg(c)["grade_id"] for c in nb.cells
             if c.cell_type == "code" and _nbg(c).get("grade") and not _nbg(c).get("solution")}
    decided = declared_blocks(HIDDEN_TESTS / name)
    assert cells <= set(decided), f"{name}: test cells no hidden test decides: {sorted(cells - set(decided))}"
    assert set(decided) <= cells, f"{name}: hidden tests for cells the notebook lacks: {sorted(set(decided) - cells)}"
    assert not [p for p in path.parent.rglob("*") if p.suffix == ".py"], "Python files in source/ reach students"
    last = nb.cells[-1]
    assert _nbg(last).get("grade_id") == "grading-canary" and _nbg(last).get("locked"), \
        f"{_rel(path)}: the last cell must be the locked grading canary"


@pytest.mark.parametrize("path", RELEASE_NBS, ids=_rel)
def test_release_answers_are_stubs_and_tests_are_visible_only(path):
    nb = simulate.read(path)
    for cell in nb.cells:
        meta = _nbg(cell)
        if meta.get("solution") and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source, \
                f"{_rel(path)}: answer cell {meta['grade_id']} has no NotImplementedError stub"
        assert "HIDDEN TESTS" not in cell.source, f"{_rel(path)}: hidden tests left in {meta.get('grade_id')}"
        assert "BEGIN SOLUTION" not in cell.source, f"{_rel(path)}: a solution left in {meta.get('grade_id')}"


@pytest.mark.parametrize("name", sorted(simulate.WRONG_ANSWERS))
def test_wrong_answers_registry_points_at_answer_cells(name):
    nbs = [simulate.read(p) for p in (PROJECT_ROOT / "source" / name).glob("*.ipynb")]
    assert simulate.WRONG_ANSWERS[name], f"WRONG_ANSWERS[{name!r}] is empty"
    for wrong in simulate.WRONG_ANSWERS[name]:
        assert any(wrong.grade_id in dict(simulate.blocks(nb)) for nb in nbs), \
            f"WRONG_ANSWERS[{name!r}] names {wrong.grade_id!r}, which is not a <function>-answer cell with tests there"
        assert wrong.source.strip() and wrong.points > 0 and wrong.why.strip()


# ----------------------------------------------------------------------------- nbgrader_config.py

@pytest.fixture
def config(monkeypatch):
    for var in ("COURSE_CELL_TIMEOUT",):
        monkeypatch.delenv(var, raising=False)
    return course.load_config(PROJECT_ROOT)


def test_config_execution_settings(config):
    ex = config.Execute
    assert config.CourseDirectory.course_id
    assert ex.timeout == 60 and ex.startup_timeout >= 60 and ex.interrupt_on_timeout
    # one limit for every cell: no tag (a student's or a trusted cell's) buys more time, no tag skips a cell
    assert "timeout_func" not in ex and "skip_cells_with_tag" not in ex
    assert ex.kernel_name == "course-sandbox"


def test_config_timeouts_follow_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_CELL_TIMEOUT", "7")
    config = course.load_config(PROJECT_ROOT)
    assert config.Execute.timeout == 7


@pytest.mark.parametrize("text", [
    "\r 42%|████▏     | 21/50 [00:01<00:01, 15.2it/s]",
    "epoch 1: 100%|##########| 10/10 [00:02<00:00,  4.90it/s, loss=1.23]",
    "\r3it [00:00, 10.1it/s]",
    "  2%|▏         | 1/50 [00:03<02:27,  3.01s/it]",
    "/x/y.py:3: UserWarning: the thing is deprecated\n  warnings.warn(\n",
    "/x/y.py:9: DeprecationWarning: old\n",
    "/x/y.py:9: FutureWarning: soon\n",
    "Warning: something harmless\n",
    "[helpers] cifar10 is not available here, so this run uses the generated 'synthetic' dataset\n",
])
def test_ignore_pattern_drops_noise(config, text):
    assert config.IgnorePattern.enabled
    assert re.search(config.IgnorePattern.pattern, text), f"IgnorePattern keeps {text!r}"


@pytest.mark.parametrize("text", ["Traceback (most recent call last):\n", "AssertionError: expected 3, got 2\n",
                                  "oops, I print to stderr\n", "50% of the test failed\n"])
def test_ignore_pattern_keeps_real_errors(config, text):
    assert not re.search(config.IgnorePattern.pattern, text), f"IgnorePattern drops {text!r}"


def test_config_grading_and_feedback_settings(config):
    assert config.OverwriteCells.add_missing_cells is True
    assert config.ClearOutput.enabled is True
    assert 0 < config.LimitOutput.max_lines <= 1000 and 0 < config.LimitOutput.max_traceback <= 100
    names = [p.__name__ for p in config.GenerateFeedback.preprocessors]
    assert "HideHiddenTests" in names and names[0] == "GetGrades"


def test_check_command_reports_a_stale_release(tmp_path, capsys):
    name = course.assignments()[0]
    for folder in ("source", "release"):
        (tmp_path / folder).mkdir()
        shutil.copytree(PROJECT_ROOT / folder / name, tmp_path / folder / name)
    (tmp_path / "nbgrader_config.py").write_text((PROJECT_ROOT / "nbgrader_config.py").read_text())
    stale = next((tmp_path / "release" / name).glob("*.ipynb"))
    stale.write_text(stale.read_text().replace("YOUR CODE HERE", "YOUR CODE THERE", 1))
    (tmp_path / "release" / "99_gone").mkdir()
    from helpers.cli import main
    assert main(["check-release", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"release/{name}/{stale.name}" in out and "release/99_gone/" in out


def test_nbgrader_command_works_without_activating_the_venv(tmp_path):
    """`.venv/bin/nbgrader` must create the gradebook (it runs `alembic`) with the venv not on PATH."""
    nbgrader = Path(sys.executable).parent / "nbgrader"
    if not nbgrader.exists():
        pytest.skip("nbgrader is not installed beside this Python")
    shutil.copytree(PROJECT_ROOT / "source" / "01_data", tmp_path / "source" / "01_data")
    shutil.copy2(PROJECT_ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    env = dict(os.environ, PATH="/usr/bin:/bin")
    run = subprocess.run([str(nbgrader), "generate_assignment", "01_data", "--force",
                          f"--CourseDirectory.root={tmp_path}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "release" / "01_data" / "01_data.ipynb").is_file()
