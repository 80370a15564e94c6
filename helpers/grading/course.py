"""The instructor's round trip through nbgrader's Python API, in a course folder of its own.

Used by the tests, the demo and the command line:

    python -m helpers.grading.course release   # rebuild release/ from source/
    python -m helpers.grading.course check     # exit 1 (and list the files) when release/ is stale

Steps: `make_course_dir` -> `generate_release` -> `submit` -> `autograde` -> `read_grades`,
`generate_feedback`, `export_grades`; `validate` checks one notebook as a student would.
nbgrader is imported inside the functions, so `helpers` imports without it. Every call reads
the course's `nbgrader_config.py` from the course root and nothing else, so runs are repeatable.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from ..config import PROJECT_ROOT

CONFIG_FILE = "nbgrader_config.py"


class NbgraderError(RuntimeError):
    """An nbgrader step reported failure; the message holds its log."""


# ----------------------------------------------------------------------------- config

def load_config(course_root):
    """The traitlets Config of `<course_root>/nbgrader_config.py`, rooted at `course_root`."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    course_root = Path(course_root).resolve()
    config = Config()
    if (course_root / CONFIG_FILE).is_file():
        config = PyFileConfigLoader(CONFIG_FILE, path=str(course_root)).load_config()
    config.CourseDirectory.root = str(course_root)
    return config


def _alembic_on_path() -> None:
    """nbgrader 0.9.6's Gradebook runs the `alembic` command; find it beside this Python (a venv not activated)."""
    if shutil.which("alembic") is None:
        bin_dir = str(Path(sys.executable).parent)
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + bin_dir


def _api(course_root):
    """An NbGraderAPI for the course folder (no exchange is needed: its absence is fine)."""
    _alembic_on_path()
    from nbgrader.apps import NbGraderAPI
    return NbGraderAPI(config=load_config(course_root))


def _check(result: dict, what: str) -> dict:
    """Raise NbgraderError with nbgrader's log when an API call did not succeed."""
    if not result.get("success"):
        raise NbgraderError(f"{what} failed:\n{result.get('log', '')}\n{result.get('error', '')}")
    return result


def assignments(repo_root=PROJECT_ROOT) -> list[str]:
    """The assignments of a course: the folders under source/ that hold a notebook."""
    source = Path(repo_root) / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) \
        if source.is_dir() else []


# ----------------------------------------------------------------------------- instructor

def make_course_dir(tmp, names: list[str], repo_root=PROJECT_ROOT) -> Path:
    """A course root at `tmp` holding source/<name> for each assignment named, and nbgrader_config.py."""
    root = Path(tmp)
    (root / "source").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(Path(repo_root) / "source" / name, root / "source" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pt"), dirs_exist_ok=True)
    shutil.copy2(Path(repo_root) / CONFIG_FILE, root / CONFIG_FILE)
    return root


def generate_release(course_root, assignment: str) -> Path:
    """`nbgrader generate_assignment --force`: writes release/<assignment> and fills the gradebook."""
    _check(_api(course_root).generate_assignment(assignment, force=True, create=True),
           f"generate_assignment {assignment}")
    return Path(course_root) / "release" / assignment


def validate(notebook_path, course_root=PROJECT_ROOT) -> dict:
    """Run a notebook as `nbgrader validate` does and say whether it passes.

    Returns {"passed": bool, "failed": [{"source", "error"}], "changed": [...], "type_changed": [...]}.
    (The `nbgrader validate` command exits 0 even when validation fails; this does not hide it.)
    """
    from nbgrader.validator import Validator
    results = Validator(config=load_config(course_root)).validate(str(Path(notebook_path).resolve()))
    out = {key: results.get(key, []) for key in ("failed", "changed", "type_changed")}
    out["failed"] = [{"source": f["source"], "error": f.get("raw_error", "")} for f in out["failed"]]
    out["passed"] = not any(out[key] for key in ("failed", "changed", "type_changed"))
    return out


def submit(course_root, student: str, assignment: str, notebooks: dict) -> Path:
    """Write submitted/<student>/<assignment>/{<name>.ipynb, timestamp.txt} as `nbgrader collect` would."""
    import nbformat
    folder = Path(course_root) / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, str(folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
    (folder / "timestamp.txt").write_text(stamp)
    return folder


def autograde(course_root, assignment: str, students: list[str] | None = None, strict: bool = True) -> dict:
    """`nbgrader autograde --force --create` in one run for the given students (None: all submitted).

    Students are created in the gradebook as needed; returns nbgrader's result (with its log).
    nbgrader grades every submission it can and reports failure at the end: `strict` raises
    NbgraderError then, otherwise the result says `success: False` and the other grades stand.
    """
    api = _api(course_root)
    if students is not None:  # one run over "*", leaving out the submitted students not asked for
        others = sorted(set(_submitted_students(course_root, assignment)) - set(students))
        api.coursedir.student_id_exclude = ",".join(others)
    result = api.autograde(assignment, "*", force=True, create=True)
    return _check(result, f"autograde {assignment}") if strict else result


def _submitted_students(course_root, assignment: str) -> list[str]:
    submitted = Path(course_root) / "submitted"
    return sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir()) if submitted.is_dir() else []


def _db_url(course_root) -> str:
    """The gradebook's URL as the course config sets it (default: <course_root>/gradebook.db)."""
    from nbgrader.coursedir import CourseDirectory
    return CourseDirectory(config=load_config(course_root)).db_url


def solution_class(root, assignment: str, n: int) -> list[str]:
    """A course folder at `root` with the release of `assignment` and n students who submit the
    solution (with the files its run leaves, e.g. the challenge's checkpoints); their ids."""
    from . import simulate
    root = make_course_dir(root, [assignment])
    generate_release(root, assignment)
    release = simulate.read(root / "release" / assignment / f"{assignment}.ipynb")
    source = simulate.read(root / "source" / assignment / f"{assignment}.ipynb")
    students = [f"student{i:03d}" for i in range(n)]
    for student in students:
        folder = submit(root, student, assignment, {f"{assignment}.ipynb": simulate.solution(release, source)})
        simulate.write_work_files(assignment, folder)
    return students


def grade_blocks(course_root, assignment: str, students: list[str] | None = None, jobs: int = 1) -> dict:
    """The hidden tests for every (or the given) student, as `python -m helpers grade` runs them:
    each test cell's points become its manual score. Returns harness.grade.grade_blocks's dict."""
    from .cli import assignment_students
    from .harness.grade import grade_blocks as run_blocks
    students = students if students is not None else assignment_students(course_root, assignment)
    return run_blocks(Path(course_root), assignment, list(students), _db_url(course_root), jobs=jobs)


def read_grades(course_root, assignment: str, student: str) -> dict:
    """{grade_id: (score, max_score)} of a student's graded cells, from the gradebook.

    Manually graded cells not graded yet count 0. An assignment with several notebooks keys a
    grade_id that occurs in more than one of them as "<notebook>/<grade_id>".
    """
    from nbgrader.api import Gradebook
    _alembic_on_path()
    grades, seen = {}, {}
    with Gradebook(_db_url(course_root)) as gb:
        for nb in gb.find_submission(assignment, student).notebooks:
            for grade in nb.grades:
                seen.setdefault(grade.name, []).append(nb.name)
                grades[(nb.name, grade.name)] = (float(grade.score), float(grade.max_score))
    return {(gid if len(seen[gid]) == 1 else f"{nb}/{gid}"): value for (nb, gid), value in grades.items()}


def generate_feedback(course_root, assignment: str) -> Path:
    """`nbgrader generate_feedback --force` for every autograded student; returns feedback/."""
    _check(_api(course_root).generate_feedback(assignment, force=True), f"generate_feedback {assignment}")
    return Path(course_root) / "feedback"


def export_grades(course_root, dest) -> Path:
    """`nbgrader export`: every grade in the gradebook as CSV at `dest`."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin
    _alembic_on_path()
    with Gradebook(_db_url(course_root)) as gb:
        CsvExportPlugin(to=str(dest)).export(gb)
    return Path(dest)


# ----------------------------------------------------------------------------- release/

def _generated_release(repo_root, assignment: str, tmp) -> Path:
    """What `nbgrader generate_assignment` makes of source/<assignment>, built in `tmp`."""
    course = make_course_dir(Path(tmp) / "course", [assignment], repo_root)
    return generate_release(course, assignment)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def release_differences(repo_root=PROJECT_ROOT) -> list[str]:
    """Paths under release/ that differ from (or are missing in) a fresh generate_assignment of source/."""
    repo_root = Path(repo_root)
    names = assignments(repo_root)
    diffs = []
    with tempfile.TemporaryDirectory(prefix="release-check-") as tmp:
        for name in names:
            fresh = _generated_release(repo_root, name, tmp)
            committed = repo_root / "release" / name
            for rel in sorted(_files(fresh) | _files(committed)):
                a, b = fresh / rel, committed / rel
                if not (a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)):
                    diffs.append(f"release/{name}/{rel}")
    release = repo_root / "release"
    if release.is_dir():  # a release without a source is stale too
        diffs += [f"release/{p.name}/" for p in sorted(release.iterdir()) if p.is_dir() and p.name not in names]
    return diffs


def regenerate_release(repo_root=PROJECT_ROOT, names: list[str] | None = None) -> list[Path]:
    """Rebuild release/<a> from source/<a> exactly as `nbgrader generate_assignment` makes it."""
    repo_root = Path(repo_root)
    done = []
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        for name in names or assignments(repo_root):
            fresh = _generated_release(repo_root, name, tmp)
            target = repo_root / "release" / name
            staging = target.with_name(f".{name}.new")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(fresh, staging)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
            done.append(target)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.grading.course",
                                     description="Keep release/ exactly what nbgrader makes of source/.")
    parser.add_argument("command", choices=["release", "check"],
                        help="release: regenerate release/; check: exit 1 when release/ is stale")
    parser.add_argument("assignments", nargs="*", help="only these assignments (release only; default: all)")
    parser.add_argument("--root", default=str(PROJECT_ROOT), help="the repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "release":
        for path in regenerate_release(args.root, args.assignments or None):
            print(f"wrote {path}")
        return 0
    diffs = release_differences(args.root)
    if diffs:
        print("release/ differs from `nbgrader generate_assignment` of source/ in:")
        print("\n".join(f"  {d}" for d in diffs))
        print("run: python -m helpers.grading.course release")
        return 1
    print("release/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
