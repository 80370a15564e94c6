"""The Slurm script parses, every student lands in exactly one shard, and a shard's task (run outside
Slurm with DRY_RUN=1) autogrades and scores exactly its students into its own gradebook."""
import os
import subprocess
import sys

import pytest

from helpers.cli import main
from helpers.config import PROJECT_ROOT
from helpers.grading.cli import UsageError, assignment_students, shard_students

SCRIPT = PROJECT_ROOT / "scripts" / "slurm_grade.sh"
A = "06_challenge"
STUDENTS = ["ann", "bob", "carl", "dora", "eve", "fay", "gus"]


@pytest.fixture
def course(tmp_path):
    for student in STUDENTS:
        (tmp_path / "submitted" / student / A).mkdir(parents=True)
    (tmp_path / "submitted" / "zed" / "01_data").mkdir(parents=True)  # another assignment only
    return tmp_path


def test_script_is_valid_bash():
    run = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 10])
def test_every_student_lands_in_exactly_one_shard(course, shards):
    everyone = assignment_students(course, A)
    assert everyone == STUDENTS
    parts = [shard_students(everyone, i, shards) for i in range(shards)]
    assert sorted(s for part in parts for s in part) == STUDENTS
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_students_command_and_misuse(course, capsys):
    assert main(["grade", "shard-students", A, "--shard", "1", "--of", "3", "--course-root", str(course)]) == 0
    assert capsys.readouterr().out.split() == ["bob", "eve"]
    with pytest.raises(UsageError):
        shard_students(STUDENTS, 3, 3)


def _script(course, *args, **env):
    env = {**os.environ, "DRY_RUN": "1", "COURSE_ROOT": str(course), "PYTHON": sys.executable,
           "PYTHONPATH": str(PROJECT_ROOT), **env}
    env.pop("SLURM_ARRAY_TASK_ID", None)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_shard_autogrades_and_scores_only_its_students(course):
    run = _script(course, "shard", A, "3", SHARD="1", GRADE_ARGS="--timeout 300")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "students: bob eve" in lines
    autograded = [line.split("--student ")[1].split()[0] for line in lines if "nbgrader autograde" in line]
    assert autograded == ["bob", "eve"]
    assert all(f"--CourseDirectory.db_url=sqlite:///{course}/shards/gradebook-1.db" in line
               for line in lines if "nbgrader autograde" in line)
    assert any("grade shard-init --from gradebook.db --to shards/gradebook-1.db" in line for line in lines)
    grade = [line for line in lines if f"helpers grade {A}" in line]
    assert len(grade) == 1 and "--db shards/gradebook-1.db --shard 1 --of 3" in grade[0] and "--timeout 300" in grade[0]


def test_submit_and_merge_commands(course):
    submit = _script(course, "submit", A, "4")
    assert submit.returncode == 0, submit.stderr
    assert "--array=0-3" in submit.stdout and "--dependency=afterany:" in submit.stdout
    merge = _script(course, "merge", A, "2")
    assert merge.returncode == 0, merge.stderr
    assert "grade merge --into gradebook.db shards/gradebook-0.db shards/gradebook-1.db" in merge.stdout
    real = _script(course, "merge", A, "2", DRY_RUN="0")  # without the shards' gradebooks it refuses
    assert real.returncode == 1 and "shards without a gradebook: 0 1" in real.stderr
