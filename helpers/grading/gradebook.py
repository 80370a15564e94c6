"""Write challenge scores into the nbgrader gradebook, and merge shard gradebooks into the course's.

- `write_scores`: each result's points become the task cell's Grade.manual_score (capped at the
  cell's points) and its reason the cell's Comment.manual_comment, so `nbgrader export` and
  `nbgrader generate_feedback` show both. Students without an autograded submission are skipped
  and reported.
- `empty_copy`: a shard gradebook holding the course gradebook's structure (assignments,
  notebooks, cells, students) and no submissions, for `nbgrader autograde` on one shard.
- `merge_gradebooks`: copies every student, submission, grade (auto, manual, extra credit) and
  comment from shard gradebooks into the course gradebook; idempotent; a student graded
  differently in two shards is an error naming the student, and nothing is written.
nbgrader is imported inside the functions.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from contextlib import closing, contextmanager
from pathlib import Path


class GradebookError(RuntimeError):
    """The gradebook is missing or does not hold what the command needs; the message says what."""


def db_url(path_or_url) -> str:
    """An SQLAlchemy URL: URLs as they are, file paths as sqlite:///<absolute path>."""
    text = str(path_or_url)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL (None for other databases)."""
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def _course_id(url: str) -> str:
    """The course id already stored in the database, so opening it adds no course row."""
    from sqlalchemy import create_engine, inspect, text
    engine = create_engine(url)
    try:
        if "course" not in inspect(engine).get_table_names():
            return "default_course"
        with engine.connect() as conn:
            ids = [row[0] for row in conn.execute(text("SELECT id FROM course"))]
    finally:
        engine.dispose()
    return ids[0] if len(ids) == 1 else "default_course"


@contextmanager
def open_gradebook(path_or_url, *, must_exist: bool = True):
    """An nbgrader Gradebook, closed afterwards; GradebookError when a sqlite file is missing."""
    url = db_url(path_or_url)
    file = sqlite_path(url)
    if must_exist and file is not None and not file.is_file():
        raise GradebookError(f"no gradebook at {file}: run `nbgrader generate_assignment` (and autograde) first")
    if shutil.which("alembic") is None:  # nbgrader runs `alembic` when it creates a database
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + str(Path(sys.executable).parent)
    from nbgrader.api import Gradebook
    gb = Gradebook(url, course_id=_course_id(url) if file is None or file.is_file() else "default_course")
    try:
        yield gb
    finally:
        gb.close()


def find_cell(gb, assignment: str, cell: str):
    """(notebook name, max points) of the task or grade cell `cell` in `assignment`, or None."""
    from nbgrader.api import MissingEntry
    try:
        notebooks = gb.find_assignment(assignment).notebooks
    except MissingEntry:
        raise GradebookError(f"assignment {assignment!r} is not in the gradebook: run "
                             f"`nbgrader generate_assignment {assignment}` first") from None
    for nb in notebooks:
        for graded in list(nb.task_cells) + list(nb.grade_cells):
            if graded.name == cell:
                return nb.name, float(graded.max_score)
    return None


def write_score(gb, assignment: str, student: str, notebook: str, cell: str, points: float, comment: str) -> float:
    """Set the cell's manual score (capped to [0, max points]) and manual comment; returns the score written."""
    grade = gb.find_grade(cell, notebook, assignment, student)
    score = min(max(float(points), 0.0), float(grade.max_score))
    grade.manual_score = score
    grade.needs_manual_grade = False
    gb.find_comment(cell, notebook, assignment, student).manual_comment = comment
    gb.db.commit()
    return score


def write_block(gb, assignment: str, student: str, notebook: str, cell: str, points: float,
                comment: str, needs_review: bool = False) -> float | None:
    """The harness's result for a test cell as its manual score; returns nbgrader's in-kernel
    auto_score (None when autograde has not run). LookupError when the cell is unknown.

    nbgrader keeps comments on answer cells only, so the reason goes to the manual comment of the
    block's answer cell (`<function>-answer` for `<function>-tests`), shown beside the student's code.
    """
    from nbgrader.api import MissingEntry
    try:
        grade = gb.find_grade(cell, notebook, assignment, student)
    except MissingEntry:
        raise LookupError(f"no grade for cell {cell} of {notebook} in the gradebook (run nbgrader autograde first)")
    auto = grade.auto_score
    grade.manual_score = min(max(float(points), 0.0), float(grade.max_score))
    grade.needs_manual_grade = bool(needs_review)
    try:
        gb.find_comment(cell.removesuffix("-tests") + "-answer", notebook, assignment, student).manual_comment = comment
    except MissingEntry:
        pass
    gb.db.commit()
    return auto


def write_scores(path_or_url, assignment: str, cell: str, results: list[dict]) -> list[str]:
    """Write each result {student, points, reason} into `cell`; returns one line per student skipped.

    Results with status "error" (the grader could not work) are not written.
    """
    from nbgrader.api import MissingEntry
    skipped = []
    with open_gradebook(path_or_url) as gb:
        found = find_cell(gb, assignment, cell)
        if found is None:
            raise GradebookError(f"assignment {assignment!r} has no graded cell {cell!r} in the gradebook")
        notebook, _ = found
        for row in results:
            if row.get("status") == "error":
                skipped.append(f"{row['student']}: not written, the grader failed ({row.get('reason')})")
                continue
            try:
                write_score(gb, assignment, row["student"], notebook, cell, row["points"], row["reason"])
            except MissingEntry:
                skipped.append(f"{row['student']}: no autograded submission of {assignment} in the gradebook "
                               "(run nbgrader autograde first); score not written")
    return skipped


# ----------------------------------------------------------------------------- shards

def empty_copy(course_db, shard_db) -> Path:
    """Write `shard_db`: the course gradebook's structure and students, without any submission."""
    source = sqlite_path(db_url(course_db))
    target = sqlite_path(db_url(shard_db))
    if source is None or target is None:
        raise GradebookError("empty_copy works on sqlite gradebook files")
    if not source.is_file():
        raise GradebookError(f"no gradebook at {source}: run `nbgrader generate_assignment` first")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(tmp)) as dst:
        src.backup(dst)  # a consistent copy even while someone writes the course gradebook
        for table in ("comment", "grade", "submitted_notebook", "submitted_assignment"):
            dst.execute(f"DELETE FROM {table}")
        dst.commit()
    os.replace(tmp, target)
    return target


def _snapshot(sub) -> dict:
    """Everything a submission holds, keyed by names (ids differ between gradebooks)."""
    return {
        "timestamp": sub.timestamp, "extension": sub.extension,
        "notebooks": {nb.name: {
            "flagged": nb.flagged, "late_submission_penalty": nb.late_submission_penalty,
            "grades": {g.name: (g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade) for g in nb.grades},
            "comments": {c.name: (c.auto_comment, c.manual_comment) for c in nb.comments},
        } for nb in sub.notebooks},
    }


def _read_shard(path) -> tuple[dict, dict]:
    """({student id: fields}, {(assignment, student): snapshot}) of one shard gradebook."""
    from nbgrader.api import SubmittedAssignment
    with open_gradebook(path) as gb:
        students = {s.id: {k: getattr(s, k) for k in ("first_name", "last_name", "email", "lms_user_id")}
                    for s in gb.students}
        subs = {(sub.assignment.name, sub.student.id): _snapshot(sub)
                for sub in gb.db.query(SubmittedAssignment).all()}
    return students, subs


def _collect(shard_dbs) -> tuple[dict, dict]:
    """Students and submissions of all shards; GradebookError when two shards disagree on a student."""
    students, subs, origin = {}, {}, {}
    for shard in shard_dbs:
        shard_students, shard_subs = _read_shard(shard)
        for sid, fields in shard_students.items():
            kept = students.setdefault(sid, {})
            kept.update({k: v for k, v in fields.items() if v is not None})
        for key, snap in shard_subs.items():
            if key in subs:
                same = {**subs[key], "timestamp": None} == {**snap, "timestamp": None}
                if not same:
                    raise GradebookError(f"conflicting grades for student {key[1]!r} ({key[0]}) in {origin[key]} "
                                         f"and {shard}: grade each student in one shard only; nothing was merged")
                stamps = [t for t in (subs[key]["timestamp"], snap["timestamp"]) if t is not None]
                subs[key]["timestamp"] = max(stamps) if stamps else None  # the same grades: keep the latest
                continue
            subs[key], origin[key] = snap, shard
    return students, subs


def _check_structure(gb, subs: dict) -> None:
    """GradebookError unless every assignment, notebook and cell of the shards exists in the target."""
    from nbgrader.api import MissingEntry
    for (assignment, student), snap in subs.items():
        try:
            notebooks = {nb.name: nb for nb in gb.find_assignment(assignment).notebooks}
        except MissingEntry:
            raise GradebookError(f"assignment {assignment!r} (student {student!r}) is not in the course gradebook: "
                                 f"run `nbgrader generate_assignment {assignment}` there first") from None
        for nb_name, nb in snap["notebooks"].items():
            if nb_name not in notebooks:
                raise GradebookError(f"notebook {nb_name!r} of {assignment!r} is not in the course gradebook")
            target = notebooks[nb_name]
            graded = {c.name for c in list(target.grade_cells) + list(target.task_cells)}
            commented = {c.name for c in list(target.solution_cells) + list(target.task_cells)}
            missing = (set(nb["grades"]) - graded) | (set(nb["comments"]) - commented)
            if missing:
                raise GradebookError(f"cells {sorted(missing)} of {assignment}/{nb_name} are not in the course "
                                     "gradebook: regenerate the assignment from the same source")


def _write_submission(gb, assignment: str, student: str, snap: dict) -> None:
    """Make the target's submission hold exactly the shard's values (created when missing)."""
    from nbgrader.api import MissingEntry
    try:
        sub = gb.find_submission(assignment, student)
    except MissingEntry:
        sub = gb.add_submission(assignment, student)
    sub.timestamp, sub.extension = snap["timestamp"], snap["extension"]
    for nb in sub.notebooks:
        shard_nb = snap["notebooks"].get(nb.name)
        if shard_nb is None:
            continue
        nb.flagged, nb.late_submission_penalty = shard_nb["flagged"], shard_nb["late_submission_penalty"]
        for grade in nb.grades:
            if grade.name in shard_nb["grades"]:
                (grade.auto_score, grade.manual_score, grade.extra_credit,
                 grade.needs_manual_grade) = shard_nb["grades"][grade.name]
        for comment in nb.comments:
            if comment.name in shard_nb["comments"]:
                comment.auto_comment, comment.manual_comment = shard_nb["comments"][comment.name]
    gb.db.commit()


def merge_gradebooks(shard_dbs, target_db) -> dict:
    """Copy all students and submissions of the shard gradebooks into the course gradebook.

    The target must already hold the assignments (generate_assignment). The shards' values
    replace the target's for the submissions they hold; running it twice changes nothing more.
    Returns {"students": n, "submissions": n, "shards": n}.
    """
    shard_dbs = [str(s) for s in shard_dbs]
    if not shard_dbs:
        raise GradebookError("no shard gradebooks given")
    for shard in shard_dbs:
        file = sqlite_path(db_url(shard))
        if file is not None and not file.is_file():
            raise GradebookError(f"no shard gradebook at {file}")
    students, subs = _collect(shard_dbs)
    with open_gradebook(target_db) as gb:
        _check_structure(gb, subs)  # everything is checked before anything is written
        for sid, fields in sorted(students.items()):
            gb.update_or_create_student(sid, **fields)
        for (assignment, student), snap in sorted(subs.items()):
            _write_submission(gb, assignment, student, snap)
    return {"students": len(students), "submissions": len(subs), "shards": len(shard_dbs)}
