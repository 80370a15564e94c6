"""nbgrader 0.9.x settings for the course; nbgrader reads this file from the course root.

Run nbgrader from the repository root (or a copy of it: see helpers/grading/course.py).
Three values come from the environment so that a TA or a test can change them without editing
this file: COURSE_CELL_TIMEOUT, COURSE_TRAINING_TIMEOUT and COURSE_SKIP_TAG. Set COURSE_SKIP_TAG
on the grading machine: the default below is visible to anyone who can read this repository.
"""
import os
import re
import sys

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor
from traitlets import List

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# nbgrader 0.9.6 creates the gradebook by running the `alembic` command: find the one beside this
# Python, so `.venv/bin/nbgrader ...` works without activating the virtualenv.
_BIN = os.path.dirname(sys.executable)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

# The name nbgrader stores with every assignment in the gradebook.
c.CourseDirectory.course_id = "cifar10-course"

# ----------------------------------------------------------------------------- execution

CELL_TIMEOUT = int(os.environ.get("COURSE_CELL_TIMEOUT", "60"))
TRAINING_TIMEOUT = int(os.environ.get("COURSE_TRAINING_TIMEOUT", "1800"))


def cell_timeout(cell):
    """Seconds a cell may run: TRAINING_TIMEOUT for read-only cells tagged "training", else CELL_TIMEOUT.

    Only locked cells with a grade_id qualify: autograde restores their source from the gradebook
    (an unknown grade_id is dropped first), so a student cannot buy a long timeout for their own code.
    """
    meta = getattr(cell, "metadata", None) or {}
    nbg = meta.get("nbgrader", {})
    trusted = nbg.get("grade_id") and nbg.get("locked") and not nbg.get("solution")
    if "training" in meta.get("tags", []) and trusted:
        return TRAINING_TIMEOUT
    return CELL_TIMEOUT


# Default per-cell limit; a hung answer cell costs at most this long and scores 0.
c.Execute.timeout = CELL_TIMEOUT
# Per-cell limits (nbclient calls it with the cell); overrides Execute.timeout.
c.Execute.timeout_func = cell_timeout
# Importing torch on a busy grading machine can take a while before the kernel answers.
c.Execute.startup_timeout = 180
# On a timeout, interrupt the kernel and go on with the next cell instead of aborting the notebook.
c.Execute.interrupt_on_timeout = True
# A student's "skip-execution" tag must not skip a test cell, so the skip tag is a secret value.
c.Execute.skip_cells_with_tag = os.environ.get("COURSE_SKIP_TAG", "course-skip-7d1f93c0a5e2")

# ----------------------------------------------------------------------------- outputs

# Submitted outputs are never trusted: they are cleared before the notebook runs again.
c.ClearOutput.enabled = True

# stderr in a test cell scores 0; drop the stderr outputs that are noise, not failure: tqdm bars
# ("42%|####", "[00:01<00:02", "3.1it/s"), warnings (UserWarning, DeprecationWarning, FutureWarning,
# "Warning: ...") and helpers' "[helpers] ..." notes (the dataset fallback, reduced mode).
# IgnorePattern drops a whole stderr output when the pattern matches anywhere in it.
IGNORE_PATTERN = r"(?m)\d+%\||\[\d+:\d\d[<,]|[\d?](?:it/s|s/it)\b|\b[A-Za-z]*Warning\b|^\s*\[helpers\]"
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = IGNORE_PATTERN

# Keep autograded notebooks and feedback readable when a submission prints in a loop.
c.LimitOutput.max_lines = 300
# Deep tracebacks (torch internals) are cut to their head and tail.
c.LimitOutput.max_traceback = 60

# ----------------------------------------------------------------------------- grading

# Test cells a student deleted are put back (nbgrader only restores edited ones by default).
c.OverwriteCells.add_missing_cells = True
# The stub students see in place of each solution region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# ----------------------------------------------------------------------------- feedback

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback only: remove hidden-test regions from test cells and cut their tracebacks to the message.

    nbgrader 0.9.6 has no setting for this (jupyter/nbgrader#917): feedback shows the hidden
    tests' source, and tracebacks quote the failing hidden line.
    """

    # Configurable, as in nbgrader's GetGrades, so the HTML exporter's setting raises no warning.
    display_data_priority = List(GetGrades.display_data_priority.default_value).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or HIDDEN_BEGIN not in cell.source:
            return cell, resources
        kept, hidden = [], False
        for line in cell.source.split("\n"):
            if HIDDEN_BEGIN in line:
                hidden = True
                kept.append(re.match(r"\s*", line).group(0) + "# (hidden tests: not shown)")
            elif HIDDEN_END in line:
                hidden = False
            elif not hidden:
                kept.append(line)
        cell.source = "\n".join(kept)
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


# The feedback HTML a student receives: grades, then the notebook without hidden tests.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
