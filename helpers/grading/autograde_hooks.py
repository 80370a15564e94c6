"""nbgrader 0.9.6 autograde hooks: what a submission cannot change, and what one broken submission cannot stop.

All of these are wired in `nbgrader_config.py` ("grading" section), so a TA who runs plain
`nbgrader autograde` gets them. One class per job:

- `RestoreMissingCells` (sanitize, before OverwriteCells): puts back every cell of the gradebook
  that a student deleted (locked prompts and save cells too, not only grade cells), where it
  stood in source/. nbgrader's own `add_missing_cells` raises KeyError when the deleted graded
  cell follows a locked non-graded one (a `q-*` prompt), which zeroed the whole notebook.
- `ResetCellMetadata` (sanitize, after OverwriteCells): every cell with a known grade_id takes
  its tags and the rest of its metadata from the source notebook; OverwriteCells restores a
  locked cell's source but keeps the student's tags, and tags drive skipping (`skip-execution`)
  and the long "training" timeout.
- `GuardedExecute` (autograde, in place of Execute): a kernel that dies (`os._exit`, a crash)
  stops the run there: the cells that ran keep their points, every later code cell gets an error
  output saying why and scores 0. nbgrader's Execute lets DeadKernelError end the student's whole
  autograde (every cell 0). Any other failure of the run is handled the same way.
- `RecordReasons` (autograde, after SaveAutoGrades): writes the reasons collected above (and the
  files refused at collection) into the gradebook as the auto comment of the notebook's answer
  and task cells, so feedback and export show them.
- `RefuseBrokenSubmissions` (`Autograde.exporter_class`): a notebook that cannot be read (not
  JSON, not a regular file, over the size cap) or whose processing fails is graded as an empty
  submission that scores 0 with the reason, instead of failing the student and, through
  nbgrader's converter, the exit status of the whole run.
- `RefuseUnsafeFiles`: nbgrader copies a submission's other files into autograded/ following
  symbolic links (a link to /dev/zero never finishes, one to /etc/passwd is copied). nbgrader
  has no setting for this copy, so `install()` (called when Autograde makes its exporter) replaces
  `BaseConverter.init_assignment` for Autograde's copy of submitted files only: symlinks,
  devices, FIFOs, sockets and files over the cap are left out with a line in the log and a
  reason in the gradebook.
"""
from __future__ import annotations

import copy
import functools
import os
import shutil
import traceback
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from .sandbox import LIMITS, check_regular_file

STATE_KEY = "course_autograde"  # resources[STATE_KEY]: {"refused": str, "notes": [...], "reasons": [...]}


# ----------------------------------------------------------------------------- shared helpers

def _find_parent_attr(configurable, name: str):
    """The first `name` attribute up the traitlets parent chain (preprocessor -> exporter -> converter)."""
    obj = configurable
    while obj is not None:
        if hasattr(obj, name):
            return getattr(obj, name)
        obj = getattr(obj, "parent", None)
    return None


def _nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _state(resources) -> dict:
    return resources.setdefault(STATE_KEY, {})


def _label(resources) -> str:
    nbg = resources.get("nbgrader", {})
    return f"{nbg.get('student')}/{nbg.get('assignment')}/{nbg.get('notebook')}"


class SourceNotebookMixin:
    """Reads (once per notebook) the instructor's source/<assignment>/<notebook>.ipynb: its cells by grade_id, in order."""

    def source_cells(self, resources) -> tuple[list[str], dict]:
        assignment = resources["nbgrader"]["assignment"]
        notebook = resources["nbgrader"]["notebook"]
        cache = self.__dict__.setdefault("_source_cache", {})
        if (assignment, notebook) not in cache:
            coursedir = _find_parent_attr(self, "coursedir")
            if coursedir is not None:
                folder = coursedir.format_path(coursedir.source_directory, ".", assignment)
            else:  # nbgrader runs converters from the course root
                folder = os.path.join(os.getcwd(), "source", assignment)
            path = os.path.join(folder, f"{notebook}.ipynb")
            order, cells = [], {}
            try:
                nb = nbformat.read(path, as_version=4)
            except (OSError, ValueError) as exc:
                self.log.warning("Source notebook %s not readable (%s): cell metadata is not reset from it", path, exc)
            else:
                for cell in nb.cells:
                    gid = _nbgrader_meta(cell).get("grade_id")
                    if gid and gid not in cells:
                        order.append(gid)
                        cells[gid] = cell
            cache[(assignment, notebook)] = (order, cells)
        return cache[(assignment, notebook)]


def _trusted_metadata(source_cell, current_nbgrader: dict, gradebook_fields: dict) -> dict:
    """The source cell's metadata, with the nbgrader fields the gradebook enforces (locked, checksum, points)."""
    meta = copy.deepcopy(dict(source_cell.metadata)) if source_cell is not None else {}
    nbg = dict(meta.get("nbgrader", {}) or current_nbgrader)
    for key in ("grade_id", "locked", "checksum", "points"):
        if key in gradebook_fields:
            nbg[key] = gradebook_fields[key]
        elif key in current_nbgrader:
            nbg[key] = current_nbgrader[key]
    meta["nbgrader"] = nbg
    meta.setdefault("tags", [])
    return nbformat.from_dict(meta)


# ----------------------------------------------------------------------------- sanitize: cells

class RestoreMissingCells(SourceNotebookMixin, NbGraderPreprocessor):
    """Put back every gradebook cell missing from the submission, in its source position (before OverwriteCells).

    Covers what nbgrader 0.9.6's `OverwriteCells.add_missing_cells` does not: locked non-graded
    cells (a `q-*` prompt, a save cell) are restored too, and a deleted graded cell that follows
    one of them no longer raises KeyError (which failed the student's whole notebook). A restored
    cell holds exactly the gradebook's source (the handed-out stub for answer cells, so a restored
    answer scores 0 as "No response") and the source notebook's metadata; OverwriteCells, which
    runs next, then finds nothing missing. Each restored cell gets a warning in the log.
    """

    def preprocess(self, nb, resources):
        nbg = resources["nbgrader"]
        with Gradebook(nbg["db_url"]) as gb:
            source_nb = gb.find_notebook(nbg["notebook"], nbg["assignment"])
            stored = {c.name: c for c in source_nb.source_cells}
            points = {c.name: float(c.max_score) for c in source_nb.grade_cells}
            points.update({c.name: float(c.max_score) for c in source_nb.task_cells})
            grade_ids = {c.name for c in source_nb.grade_cells}
            solution_ids = {c.name for c in source_nb.solution_cells}
            task_ids = {c.name for c in source_nb.task_cells}
            cells = {name: (c.cell_type, c.locked, c.source, c.checksum) for name, c in stored.items()}
        order, source_cells = self.source_cells(resources)
        order = [gid for gid in order if gid in cells] + [gid for gid in cells if gid not in order]

        def position(gid):
            for i, cell in enumerate(nb.cells):
                if _nbgrader_meta(cell).get("grade_id") == gid:
                    return i
            return None

        present = {_nbgrader_meta(c).get("grade_id") for c in nb.cells} - {None}
        for k, gid in enumerate(order):
            if gid in present:
                continue
            cell_type, locked, source, checksum = cells[gid]
            fields = {"grade_id": gid, "locked": locked, "checksum": checksum}
            if gid in points:
                fields["points"] = points[gid]
            meta = _trusted_metadata(source_cells.get(gid), {
                "grade": gid in grade_ids, "solution": gid in solution_ids, "task": gid in task_ids,
                "schema_version": 3}, fields)
            new = (nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell)(source)
            new.metadata = meta
            before = [position(p) for p in order[:k] if p in present]
            after = [position(p) for p in order[k + 1:] if p in present]
            at = before[-1] + 1 if before else (after[0] if after else len(nb.cells))
            nb.cells.insert(at, new)
            present.add(gid)
            self.log.warning("%s: cell %s was missing from the submission; restored from the gradebook",
                             _label(resources), gid)
        return nb, resources


class ResetCellMetadata(SourceNotebookMixin, NbGraderPreprocessor):
    """Every cell with a known grade_id takes its tags and metadata from source/ (after OverwriteCells).

    Tags decide what runs and how its errors count (`skip-execution`, `raises-exception`, and any
    tag a later setting may read); OverwriteCells restores a locked cell's
    source and nbgrader fields but keeps the student's tags. Answer cells get the source's tags
    too, so a student's `skip-execution` or "training" on them is dropped. The nbgrader fields
    the gradebook holds (locked, checksum, points) come from the gradebook.
    """

    def preprocess(self, nb, resources):
        nbg = resources["nbgrader"]
        with Gradebook(nbg["db_url"]) as gb:
            source_nb = gb.find_notebook(nbg["notebook"], nbg["assignment"])
            self._fields = {c.name: {"grade_id": c.name, "locked": c.locked, "checksum": c.checksum}
                            for c in source_nb.source_cells}
            for c in list(source_nb.grade_cells) + list(source_nb.task_cells):
                self._fields.setdefault(c.name, {"grade_id": c.name})["points"] = float(c.max_score)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        current = _nbgrader_meta(cell)
        gid = current.get("grade_id")
        if not gid:
            return cell, resources
        _, source_cells = self.source_cells(resources)
        source = source_cells.get(gid)
        old_tags = list(cell.metadata.get("tags", []))
        cell.metadata = _trusted_metadata(source, dict(current), self._fields.get(gid, {}))
        if source is None:
            cell.metadata["tags"] = []
        if old_tags != list(cell.metadata.get("tags", [])):
            self.log.warning("%s: tags of cell %s reset from %s to %s", _label(resources), gid,
                             old_tags, list(cell.metadata["tags"]))
        return cell, resources


# ----------------------------------------------------------------------------- autograde: execution

def _error_output(ename: str, reason: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=reason, traceback=[f"{ename}: {reason}"])


class GraderSetupError(RuntimeError):
    """The kernel could not start: the grading setup (sandbox, kernel) is broken, not the student's
    work. It stops that student's grading (nbgrader reports the run as failed) instead of scoring 0."""


class GuardedExecute(Execute):
    """nbgrader's Execute, but a dead kernel or a failed run costs only the cells that did not run.

    When the kernel dies in a cell (DeadKernelError, e.g. `os._exit` in an answer cell), that cell
    and every later code cell get an error output ("KernelDied") and are not run: their tests score
    0, the cells before keep their points. Any other exception after the first cell started is
    treated the same way from the cell where it happened; a kernel that never starts raises
    GraderSetupError (no student can cause it: no code of theirs has run yet). A notebook the exporter
    refused (resources[STATE_KEY]["refused"]) is not run at all: every code cell gets the reason.
    The reason goes to the log and to resources[STATE_KEY]["reasons"] for RecordReasons. Kernel
    selection (kernel_name, the kernel manager) is Execute's, unchanged.
    """

    def _stop(self, resources, ename: str, reason: str) -> None:
        self._course_stopped = (ename, reason)
        _state(resources).setdefault("reasons", []).append(reason)
        self.log.error("%s: %s", _label(resources), reason)

    def _stamp(self, cell) -> None:
        if cell.cell_type == "code":
            ename, reason = self._course_stopped
            cell.outputs = [_error_output(ename, reason)]
            cell.execution_count = None

    def preprocess(self, nb, resources=None, km=None):
        resources = resources if resources is not None else {}
        self._course_stopped = None
        self._course_next = 0
        self._course_started = False
        refused = _state(resources).get("refused")
        if refused:
            self._stop(resources, "SubmissionRefused", refused)
            for cell in nb.cells:
                self._stamp(cell)
            return nb, resources
        try:
            return super().preprocess(nb, resources, km)
        except Exception as exc:  # the run ended early: the cells not run score 0, with the reason
            if self._course_stopped is None:
                if not self._course_started:  # no student code ran: the grading setup is broken
                    raise GraderSetupError(
                        f"{_label(resources)}: the kernel did not start ({type(exc).__name__}: {str(exc)[:500]}). "
                        "The grading setup (kernel, sandbox) is broken: fix it and rerun autograde; "
                        "this student was not graded.") from exc
                reason = (f"autograde stopped at cell {self._course_next} ({type(exc).__name__}: "
                          f"{str(exc)[:300]}); this cell and the ones after it were not run and score 0")
                self._stop(resources, "AutogradeError", reason)
                self.log.debug("%s", traceback.format_exc())
            for cell in nb.cells[self._course_next:]:
                self._stamp(cell)
            return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if self._course_stopped is not None:
            self._stamp(cell)
            return cell, resources
        self._course_next = index
        self._course_started = True
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except _dead_kernel_errors() as exc:
            gid = _nbgrader_meta(cell).get("grade_id") or f"number {index}"
            self._stop(resources, "KernelDied",
                       f"the kernel died while running cell {gid} ({type(exc).__name__}: {exc}: the code ended "
                       "the Python process, e.g. os._exit, a crash or the memory cap); the cells after it "
                       "were not run and score 0")
            self._stamp(cell)
        self._course_next = index + 1
        return cell, resources


@functools.lru_cache(maxsize=None)
def _dead_kernel_errors() -> tuple:
    from nbclient.exceptions import DeadKernelError
    return (DeadKernelError,)


class RecordReasons(NbGraderPreprocessor):
    """Write the reasons collected during autograde into the gradebook (after SaveAutoGrades).

    nbgrader keeps comments only on answer (solution) and task cells, so every such cell of the
    notebook gets the reasons (a dead kernel, a refused notebook, files refused at collection)
    in front of its auto comment; `generate_feedback` and `export` show them.
    """

    def preprocess(self, nb, resources):
        state = resources.get(STATE_KEY, {})
        reasons = list(state.get("reasons", [])) + list(state.get("notes", []))
        if not reasons:
            return nb, resources
        nbg = resources["nbgrader"]
        text = "Autograde: " + " ".join(r.rstrip(".") + "." for r in reasons)
        written = 0
        with Gradebook(nbg["db_url"]) as gb:
            for cell in nb.cells:
                if not (utils.is_solution(cell) or utils.is_task(cell)):
                    continue
                try:
                    comment = gb.find_comment(cell.metadata.nbgrader["grade_id"], nbg["notebook"],
                                              nbg["assignment"], nbg["student"])
                except MissingEntry:
                    continue
                comment.auto_comment = text + (f"\n\n{comment.auto_comment}" if comment.auto_comment else "")
                written += 1
            gb.db.commit()
        self.log.warning("%s: reasons recorded on %d cells: %s", _label(resources), written, text)
        return nb, resources


# ----------------------------------------------------------------------------- autograde: the whole notebook

class RefuseBrokenSubmissions(NotebookExporter):
    """Autograde's exporter: a notebook that cannot be read or processed scores 0 with a reason, the run goes on.

    nbgrader's converter removes a student whose notebook raises and then makes the whole
    `nbgrader autograde` exit 1 (and NbGraderAPI report failure) because of that one student.
    Here a submitted notebook that is not a regular file under the size cap, is not valid JSON
    or an nbformat notebook, or whose sanitizing fails, is replaced by an empty notebook holding
    the reason: RestoreMissingCells fills it with the gradebook's cells, GuardedExecute does not
    run it and gives every code cell the reason (so every test scores 0), RecordReasons writes the
    reason into the gradebook. A failure while autograding the sanitized notebook is retried once
    the same way on that notebook. Files refused at collection (RefuseUnsafeFiles) are passed on
    as notes.
    """

    max_notebook_bytes = Integer(LIMITS.file_bytes, help="Largest notebook file read.").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RefuseUnsafeFiles.install()  # made before any file of the run is copied
        self.refused: dict[tuple, str] = {}
        self.notes: dict[tuple, list[str]] = {}

    @staticmethod
    def _key(resources) -> tuple:
        nbg = (resources or {}).get("nbgrader", {})
        return nbg.get("assignment"), nbg.get("student"), nbg.get("notebook")

    def _sanitizing(self) -> bool:
        return bool(getattr(self.parent, "_sanitizing", True))

    def from_filename(self, filename, resources=None, **kw):
        resources = resources if resources is not None else {}
        resources.setdefault("metadata", {})
        path, basename = os.path.split(filename)
        resources["metadata"]["name"] = os.path.splitext(basename)[0]
        resources["metadata"]["path"] = path
        try:
            check_regular_file(Path(filename), self.max_notebook_bytes)
            with open(filename, encoding="utf-8") as f:
                nb = nbformat.read(f, as_version=4)
        except Exception as exc:  # noqa: BLE001 -- anything unreadable is refused, never fatal
            reason = f"the notebook {basename} could not be read ({type(exc).__name__}: {str(exc)[:300]}); it scores 0"
            self.log.error("%s: %s", _label(resources), reason)
            self.refused[self._key(resources)] = reason
            nb = self._placeholder(reason)
        return self.from_notebook_node(nb, resources, **kw)

    @staticmethod
    def _placeholder(reason: str):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_markdown_cell(f"**This submission was not graded:** {reason}."))
        return nb

    def from_notebook_node(self, nb, resources=None, **kw):
        resources = dict(resources or {})
        key = self._key(resources)
        original = copy.deepcopy(nb)

        def attempt(notebook):
            res = dict(resources)
            state = res[STATE_KEY] = {}
            if key in self.refused:
                state["refused"] = self.refused[key]
            if self.notes.get(key[:2]):
                state["notes"] = list(self.notes[key[:2]])
            return super(RefuseBrokenSubmissions, self).from_notebook_node(notebook, res, **kw)

        try:
            return attempt(nb)
        except GraderSetupError:  # the grader's fault, not the submission's: never a 0
            raise
        except Exception as exc:  # noqa: BLE001 -- one broken submission must not fail the run
            if key in self.refused or key == (None, None, None):
                raise
            reason = (f"autograde failed on this notebook ({type(exc).__name__}: {str(exc)[:300]}); "
                      "it scores 0")
            self.log.error("%s: %s\n%s", _label(resources), reason, traceback.format_exc())
            self.refused[key] = reason
            return attempt(self._placeholder(reason) if self._sanitizing() else original)


# ----------------------------------------------------------------------------- collection: files

class RefuseUnsafeFiles(LoggingConfigurable):
    """Autograde copies only plain files under the cap from submitted/ to autograded/.

    nbgrader's BaseConverter.init_assignment copies every non-notebook file of a submission with
    shutil.copy, which follows symbolic links and reads devices and FIFOs (a `challenge_model.pt`
    linked to /dev/zero never finishes; one linked to /etc/passwd lands in autograded/). No
    nbgrader setting reaches that copy (CourseDirectory.ignore matches names only), so
    `install()` wraps BaseConverter.init_assignment: for Autograde reading submitted/ it copies
    with this filter (helpers.grading.sandbox.check_regular_file, lstat only); every other
    converter keeps nbgrader's copy. Each refused file gets a warning in the log and a note that
    RecordReasons writes into the gradebook. It also wraps CourseDirectory.get_existing_timestamp
    (read before any copy): a timestamp.txt that is not a small regular file, or does not parse,
    counts as no timestamp with a warning, instead of a read that never ends or a failed student.
    """

    max_file_bytes = Integer(LIMITS.file_bytes, help="Largest submitted file copied (bytes).").tag(config=True)

    _original = None

    @classmethod
    def install(cls) -> None:
        """Wrap nbgrader's BaseConverter.init_assignment (idempotent; nbgrader_config.py calls this)."""
        from nbgrader.converters.base import BaseConverter
        if cls._original is not None:
            return
        cls._original = BaseConverter.init_assignment

        @functools.wraps(cls._original)
        def init_assignment(converter, assignment_id, student_id):
            from nbgrader.converters import Autograde
            if isinstance(converter, Autograde) and getattr(converter, "_sanitizing", False):
                return cls(parent=converter).copy_submitted_files(converter, assignment_id, student_id)
            return cls._original(converter, assignment_id, student_id)

        BaseConverter.init_assignment = init_assignment

        from nbgrader.coursedir import CourseDirectory
        read_timestamp = CourseDirectory.get_existing_timestamp

        @functools.wraps(read_timestamp)
        def get_existing_timestamp(coursedir, dest_path):
            path = os.path.join(dest_path, "timestamp.txt")
            if os.path.lexists(path):
                try:
                    check_regular_file(Path(path), 4096)
                    return read_timestamp(coursedir, dest_path)
                except Exception as exc:  # noqa: BLE001 -- a link to /dev/zero, garbage: no timestamp
                    coursedir.log.warning("Ignoring the timestamp file %s: it is not a small regular file "
                                          "holding a date (%s: %s)", path, type(exc).__name__, exc)
                    return None
            return read_timestamp(coursedir, dest_path)

        CourseDirectory.get_existing_timestamp = get_existing_timestamp

    def copy_submitted_files(self, converter, assignment_id: str, student_id: str) -> list[str]:
        """nbgrader's copy of the submission's other files, leaving out what check_regular_file refuses."""
        source = converter._format_source(assignment_id, student_id)
        dest = converter._format_dest(assignment_id, student_id)
        refused = []
        for dirname, dirnames, _ in os.walk(source):
            for name in dirnames:  # os.walk lists links to folders here and never enters them
                if os.path.islink(os.path.join(dirname, name)):
                    refused.append(f"{os.path.relpath(os.path.join(dirname, name), source)} is a symbolic "
                                   "link to a folder; submit the files themselves")
        for filename in utils.find_all_files(source, converter.coursedir.ignore + ["*.ipynb"]):
            rel = os.path.relpath(filename, source)
            try:
                check_regular_file(Path(filename), self.max_file_bytes)
            except (ValueError, OSError) as exc:
                refused.append(str(exc) if rel == os.path.basename(filename) else f"{rel}: {exc}")
                continue
            path = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                utils.remove(path)
            self.log.info("Copying %s -> %s", filename, path)
            shutil.copyfile(filename, path, follow_symlinks=False)
        for line in refused:
            self.log.warning("%s/%s: not copied to autograded/: %s", student_id, assignment_id, line)
        exporter = getattr(converter, "exporter", None)
        if isinstance(getattr(exporter, "notes", None), dict):
            exporter.notes[(assignment_id, student_id)] = [f"not copied for grading: {line}" for line in refused]
        return refused

