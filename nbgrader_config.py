"""nbgrader 0.9.x settings for the course; nbgrader reads this file from the course root.

Run nbgrader from the repository root (or a copy of it: see helpers/grading/course.py).
COURSE_CELL_TIMEOUT (seconds per cell, default 60) comes from the environment so that a TA or a
test can change it without editing this file; COURSE_SANDBOX=off is the trusted local opt-out;
COURSE_EXCHANGE names nbgrader's exchange folder (default: exchange/ in the course root).
"""
import importlib.util
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

# The name nbgrader stores with every assignment in the gradebook, and the course's folder in the
# exchange (students name it too: see helpers/grading/course.py student_config).
c.CourseDirectory.course_id = "cifar10-course"

# ----------------------------------------------------------------------------- exchange

# nbgrader's exchange: `release_assignment` copies release/<a> there, students `fetch_assignment`
# and `submit`, `collect` copies submissions into submitted/, `release_feedback` and `fetch_feedback`
# carry the feedback back. Default: `exchange/` in the course root (beside this file), which serves
# one machine (the demo, the tests, an instructor trying things out). On a farm, COURSE_EXCHANGE
# names the shared folder every student and TA reaches (e.g. /srv/nbgrader/exchange); students put
# the same path in their own nbgrader config. nbgrader wants it mode 0777 (release_assignment creates
# it so), with <course>/inbound 2733 (anyone may submit, nobody may list others' submissions).
# (traitlets sets __file__ when it loads this file; nbgrader reads it from the course root.)
COURSE_ROOT = os.path.dirname(os.path.abspath(globals().get("__file__") or "nbgrader_config.py"))
EXCHANGE_ROOT = os.environ.get("COURSE_EXCHANGE") or os.path.join(COURSE_ROOT, "exchange")
c.Exchange.root = EXCHANGE_ROOT

# ----------------------------------------------------------------------------- execution

# One limit for every cell. Under autograde and validate (NBGRADER_EXECUTION set) the notebooks'
# training cells do not train (they load the student's checkpoint or make a token run of seconds),
# so no cell needs more; a longer limit for "training" cells would also cover whatever student
# code such a cell calls (a student can rebind any name a trusted cell uses).
CELL_TIMEOUT = int(os.environ.get("COURSE_CELL_TIMEOUT", "60"))


# Every notebook's kernel runs in the course sandbox (helpers/grading/sandbox_kernel.py, kernelspec
# helpers/grading/kernels/course-sandbox): uid 65534, no network, a private copy of its own folder
# only, read-only environment and data, no course secret in its environment, memory and output caps,
# cell timeouts interrupted by kernel message. COURSE_SANDBOX=off runs the same kernelspec without the
# sandbox: for a trusted local run only, never for real grading.
# (c.Execute.kernel_manager_class would be ignored: nbgrader passes its own; and c.KernelSpecManager
# does not reach the kernel manager nbclient makes, so the kernelspec is found through JUPYTER_PATH.)
_HELPERS_SPEC = importlib.util.find_spec("helpers")  # located without importing helpers (and torch)
if _HELPERS_SPEC is None or not _HELPERS_SPEC.submodule_search_locations:
    raise SystemExit("nbgrader_config.py: the course package `helpers` is not importable (pip install -e .)")
_KERNELS_PARENT = os.path.join(list(_HELPERS_SPEC.submodule_search_locations)[0], "grading")
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [_KERNELS_PARENT] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != _KERNELS_PARENT])
c.Execute.kernel_name = "course-sandbox"
if sys.argv[1:2] in (["autograde"], ["validate"]):  # without bubblewrap, stop before any student runs
    from helpers.grading.sandbox import SandboxUnavailable, find_bwrap, sandbox_disabled
    if not sandbox_disabled():
        try:
            find_bwrap()
        except SandboxUnavailable as _exc:
            raise SystemExit(f"nbgrader: {_exc}") from None


# Per-cell limit; a hung cell costs at most this long and scores 0.
c.Execute.timeout = CELL_TIMEOUT
# Importing torch on a busy grading machine can take a while before the kernel answers.
c.Execute.startup_timeout = 180
# On a timeout, interrupt the kernel and go on with the next cell instead of aborting the notebook.
c.Execute.interrupt_on_timeout = True

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

# Output is capped in bytes (1 MB a cell, 10 MB a notebook; helpers.grading.sandbox.LIMITS): as it
# arrives, by the sandboxed kernel's proxy, and on the executed notebook by CapOutputBytes, run
# right after Execute (named as a string: nbconvert imports it only when autograde runs).
from nbgrader.converters import Autograde as _Autograde  # noqa: E402
_AUTOGRADE_PPS = list(_Autograde.class_traits()["autograde_preprocessors"].default())
_AFTER_EXECUTE = [getattr(p, "__name__", p) for p in _AUTOGRADE_PPS].index("Execute") + 1
c.Autograde.autograde_preprocessors = (_AUTOGRADE_PPS[:_AFTER_EXECUTE] + ["helpers.grading.preprocessors.CapOutputBytes"]
                                       + _AUTOGRADE_PPS[_AFTER_EXECUTE:])

# Keep autograded notebooks and feedback readable when a submission prints in a loop.
c.LimitOutput.max_lines = 300
# Deep tracebacks (torch internals) are cut to their head and tail.
c.LimitOutput.max_traceback = 60

# ----------------------------------------------------------------------------- grading

# The course's hooks: helpers/grading/autograde_hooks.py, each class says what and why. Named as
# strings: nbconvert imports them only when autograde runs (importing helpers here costs seconds).
_HOOKS = "helpers.grading.autograde_hooks."


def _autograde_steps(name):
    """c.Autograde.<name> as set above in this file, else nbgrader's default list."""
    if name in c.Autograde:
        return list(c.Autograde[name])
    from nbgrader.converters import Autograde
    return list(Autograde.class_traits()[name].default())


def _step_name(step):
    return getattr(step, "__name__", str(step).rsplit(".", 1)[-1])


# Before execution, nbgrader's sanitize steps plus: every cell a student deleted is put back in
# place (locked prompts and save cells too; nbgrader's own add_missing_cells raises KeyError when a
# deleted graded cell follows a locked non-graded one), and every cell with a grade_id takes its
# tags and metadata from source/ (a student's `skip-execution` or "training" tag is dropped).
c.Autograde.sanitize_preprocessors = [
    new for step in _autograde_steps("sanitize_preprocessors")
    for new in ([_HOOKS + "RestoreMissingCells", step, _HOOKS + "ResetCellMetadata"]
                if _step_name(step) == "OverwriteCells" else [step])]
# Kept as a second net (it finds nothing missing after RestoreMissingCells).
c.OverwriteCells.add_missing_cells = True
# Execute becomes GuardedExecute (Execute's settings above apply to it): a dead kernel costs only the
# cells not yet run, and the reason is written to the gradebook (RecordReasons after SaveAutoGrades).
c.Autograde.autograde_preprocessors = [
    new for step in _autograde_steps("autograde_preprocessors")
    for new in ([_HOOKS + "GuardedExecute"] if _step_name(step) == "Execute" else
                [step, _HOOKS + "RecordReasons"] if _step_name(step) == "SaveAutoGrades" else [step])]
# An unreadable or failing notebook scores 0 with a reason instead of failing the whole run; its
# making also installs RefuseUnsafeFiles: symlinks, devices, FIFOs and files over 200 MB in a
# submission are not copied to autograded/ (a line in the log, a reason in the gradebook).
c.Autograde.exporter_class = _HOOKS + "RefuseBrokenSubmissions"
c.RefuseUnsafeFiles.max_file_bytes = 200 * 10**6
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
        # Only the errors stay, as one "name: message" line: student code runs in the same kernel
        # and could print the hidden source into this cell's other outputs.
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        for output in errors:
            output.evalue = str(output.evalue)[:500]
            output.traceback = [f"{output.ename}: {output.evalue}"]
        cell.outputs = errors
        return cell, resources


# The feedback HTML a student receives: grades, then the notebook without hidden tests.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
# Student output is untrusted HTML: no scripts or event handlers in the page a TA or an LMS opens.
c.HTMLExporter.sanitize_html = True
