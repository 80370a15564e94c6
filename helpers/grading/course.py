"""The instructor's round trip through nbgrader's Python API, in a course folder of its own.

Used by the tests, the demo and the command line (helpers/grading/release_cli.py):

    python -m helpers release          # rebuild release/ from source/
    python -m helpers check-release    # exit 1 (and list the files) when release/ is stale
    python -m helpers student-bundle   # what a student gets: dist/cifar10-course-student(.tar.gz)

Steps: `make_course_dir` -> `generate_release` -> `submit` -> `autograde` -> `read_grades`,
`generate_feedback`, `export_grades`; `validate` checks one notebook as a student would.
Through nbgrader's exchange: `release_assignment`, then each student (a home folder with
`student_config`) `run_student(home, "fetch_assignment"/"submit", ...)`, then `collect`, and after
the feedback `release_feedback` and `run_student(home, "fetch_feedback", ...)`.
The student bundle: `build_bundle` (`student_modules`, `build_student_wheel`, `bundle_leaks`).
nbgrader is imported inside the functions, so `helpers` imports without it. Every call reads
the course's `nbgrader_config.py` from the course root and nothing else, so runs are repeatable.
"""
from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..settings import PROJECT_ROOT, env

CONFIG_FILE = "nbgrader_config.py"


class NbgraderError(RuntimeError):
    """An nbgrader step reported failure; the message holds its log."""


# ----------------------------------------------------------------------------- config

def load_config(course_root, exchange=None):
    """The traitlets Config of `<course_root>/nbgrader_config.py`, rooted at `course_root`.

    `exchange` replaces the exchange folder the config names ($COURSE_EXCHANGE, else
    <course_root>/exchange): the demo and the tests use one of their own.
    """
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    course_root = Path(course_root).resolve()
    config = Config()
    if (course_root / CONFIG_FILE).is_file():
        config = PyFileConfigLoader(CONFIG_FILE, path=str(course_root)).load_config()
    config.CourseDirectory.root = str(course_root)
    if exchange is not None:
        config.Exchange.root = str(Path(exchange).resolve())
    return config


def _alembic_on_path() -> None:
    """nbgrader 0.9.6's Gradebook runs the `alembic` command; find it beside this Python (a venv not activated)."""
    if shutil.which("alembic") is None:
        bin_dir = str(Path(sys.executable).parent)
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + bin_dir


def _api(course_root, exchange=None, config=None):
    """An NbGraderAPI for the course folder (no exchange is needed: its absence is fine)."""
    _alembic_on_path()
    from nbgrader.apps import NbGraderAPI
    return NbGraderAPI(config=config if config is not None else load_config(course_root, exchange))


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
    with _nbgrader_environment():
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
    with _nbgrader_environment():
        result = api.autograde(assignment, "*", force=True, create=True)
    return _check(result, f"autograde {assignment}") if strict else result


@contextmanager
def _nbgrader_environment():
    """Put NBGRADER_EXECUTION and NBGRADER_VALIDATING back as they were: nbgrader 0.9 sets them
    around a run without restoring them when the run fails (a kernel that never starts), which
    would leave this process believing it is inside autograde."""
    before = {name: env(name) for name in ("NBGRADER_EXECUTION", "NBGRADER_VALIDATING")}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def assignment_students(course_root, assignment: str) -> list[str]:
    """Sorted ids of the students with submitted/ or autograded/ folders for the assignment."""
    names = set()
    for stage in ("submitted", "autograded"):
        folder = Path(course_root) / stage
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir() if (p / assignment).is_dir()}
    return sorted(names)


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


# ----------------------------------------------------------------------------- the exchange

EXCHANGE_ENV = "COURSE_EXCHANGE"
# In a student's home: the file nbgrader reads there for the course id and the exchange folder.
STUDENT_CONFIG = Path(".jupyter") / CONFIG_FILE
# Student commands run in-process by `run_student` (the demo), with nbgrader's own exchange classes.
STUDENT_COMMANDS = ("list", "fetch_assignment", "submit", "fetch_feedback")


def course_id(course_root=PROJECT_ROOT) -> str:
    """The course id of the course config (the course's folder in the exchange)."""
    return str(load_config(course_root).CourseDirectory.course_id)


def exchange_root(course_root=PROJECT_ROOT, exchange=None) -> Path:
    """The exchange folder: `exchange` if given, else the course config's ($COURSE_EXCHANGE, else
    <course root>/exchange)."""
    return Path(load_config(course_root, exchange).Exchange.root)


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def check_exchange(exchange, course: str | None = None, role: str = "student") -> Path:
    """Say what is wrong, and what to do, before nbgrader fails with "Unwritable directory".

    role "instructor" (release_assignment): the folder may be missing when its parent is writable
    (nbgrader creates it, mode 0777). Other roles: it must exist and be writable and searchable by
    this user (nbgrader wants 0777). role "submit": the course's inbound folder must exist (the
    instructor's first release creates it, mode 2733) and be writable.
    """
    exchange = Path(exchange)
    if not exchange.is_dir():
        if role == "instructor":
            parent = exchange.parent
            while not parent.exists():
                parent = parent.parent
            if os.access(parent, os.W_OK | os.X_OK):
                return exchange
            raise NbgraderError(
                f"the exchange folder {exchange} does not exist and {_user()} cannot create it ({parent} is not "
                f"writable): create it once as root (`mkdir -p {exchange} && chmod 0777 {exchange}`) or point "
                f"${EXCHANGE_ENV} at a folder you can write")
        raise NbgraderError(
            f"the exchange folder {exchange} does not exist: check that it is the path your course gave "
            f"(c.Exchange.root in your nbgrader config, ${EXCHANGE_ENV} on the instructor's side); the "
            f"instructor's first `nbgrader release_assignment <assignment>` creates it")
    if not os.access(exchange, os.W_OK | os.X_OK):
        raise NbgraderError(
            f"the exchange folder {exchange} is not writable by {_user()}: nbgrader needs it open to every student "
            f"and TA (mode 0777): its owner runs `chmod 0777 {exchange}`")
    if role == "submit" and course:
        inbound = exchange / course / "inbound"
        if not inbound.is_dir():
            raise NbgraderError(
                f"{inbound} does not exist: nothing of course {course!r} was released to this exchange (the course "
                f"id in your nbgrader config may be wrong, or the instructor has not run `nbgrader "
                f"release_assignment` yet)")
        if not os.access(inbound, os.W_OK | os.X_OK):
            raise NbgraderError(f"{inbound} is not writable by {_user()}: submissions need it mode 2733: its owner "
                                f"runs `chmod 2733 {inbound}`")
    return exchange


def release_assignment(course_root, assignment: str, exchange=None) -> Path:
    """`nbgrader release_assignment <assignment> --force`: release/<assignment> into the exchange's
    outbound folder, where students fetch it. Returns that folder."""
    config = load_config(course_root, exchange)
    check_exchange(config.Exchange.root, role="instructor")
    if not (Path(course_root) / "release" / assignment).is_dir():
        raise NbgraderError(f"release/{assignment} does not exist in {course_root}: run `nbgrader generate_assignment "
                            f"{assignment}` (make release) first")
    config.ExchangeReleaseAssignment.force = True
    _check(_api(course_root, config=config).release_assignment(assignment), f"release_assignment {assignment}")
    return Path(config.Exchange.root) / config.CourseDirectory.course_id / "outbound" / assignment


def collect(course_root, assignment: str, exchange=None, check_owner: bool = True) -> list[str]:
    """`nbgrader collect <assignment> --update`: each student's latest submission, from the exchange
    into submitted/<student>/<assignment>/. Returns the students who have a submission there.

    check_owner=False silences nbgrader's "owned by ...; cheating attempt?" warning, for simulated
    students who share one OS user (the demo, the tests); on a farm leave it on.
    """
    config = load_config(course_root, exchange)
    check_exchange(config.Exchange.root, role="ta")
    config.ExchangeCollect.check_owner = check_owner
    _check(_api(course_root, config=config).collect(assignment, update=True), f"collect {assignment}")
    return _submitted_students(course_root, assignment)


def release_feedback(course_root, assignment: str, exchange=None) -> Path:
    """`nbgrader release_feedback <assignment>`: feedback/<student>/<assignment>/*.html into the
    exchange, where only the student who submitted can find it (named by a hash of the submission's
    secret). Returns the exchange's feedback folder."""
    config = load_config(course_root, exchange)
    check_exchange(config.Exchange.root, role="ta")
    _check(_api(course_root, config=config).release_feedback(assignment), f"release_feedback {assignment}")
    return Path(config.Exchange.root) / config.CourseDirectory.course_id / "feedback"


def student_config(home, exchange, course: str) -> Path:
    """Write `<home>/.jupyter/nbgrader_config.py`: the course id and the exchange folder, all that a
    student's `nbgrader list`, `fetch_assignment`, `submit` and `fetch_feedback` need. (On a farm the
    admin can put the same two lines in /etc/jupyter/nbgrader_config.py for everyone.)"""
    from ..atomic import atomic_write
    path = Path(home) / STUDENT_CONFIG
    with atomic_write(path, "w") as f:
        f.write("# The course's exchange, for nbgrader's student commands (list, fetch_assignment, submit,\n"
                "# fetch_feedback). Written by helpers.grading.course.student_config.\n"
                "c = get_config()  # noqa: F821\n"
                f"c.CourseDirectory.course_id = {course!r}\n"
                f"c.Exchange.root = {str(Path(exchange).resolve())!r}\n")
    return path


def student_env(home, base: dict | None = None) -> dict:
    """The environment of a student's shell whose home is `home` (for running the nbgrader commands
    as that student): HOME and Jupyter's config and data folders under it, no course settings."""
    home = str(Path(home).resolve())
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("JUPYTER_", "COURSE_EXCHANGE"))}
    env.update(HOME=home, JUPYTER_CONFIG_DIR=os.path.join(home, ".jupyter"),
               JUPYTER_DATA_DIR=os.path.join(home, ".local", "share", "jupyter"))
    return env


def student_command(command: str, assignment: str | None = None, student: str | None = None) -> list[str]:
    """The nbgrader command line a student types (in their home folder) for `command`.

    `student` adds `--student <id>`: nbgrader otherwise takes the OS user name, and simulated students
    share one OS user.
    """
    if command not in STUDENT_COMMANDS:
        raise ValueError(f"unknown student command {command!r}: one of {', '.join(STUDENT_COMMANDS)}")
    return ["nbgrader", command] + ([assignment] if assignment else []) + (["--student", student] if student else [])


def run_student(home, command: str, assignment: str | None = None, student: str | None = None) -> dict:
    """Do what `student_command(...)` does when the student runs it in `home` with HOME=home, in this
    process: nbgrader's own exchange classes, configured from `<home>/.jupyter/nbgrader_config.py`,
    with `home` as the working folder and nbgrader's cache under it (~/.local/share/jupyter/nbgrader_cache,
    which `fetch_feedback` reads). Saves nbgrader's start-up time per command (the demo runs dozens).

    Returns {"log": nbgrader's log, "value": what the exchange step returned (`list`: the assignments)};
    raises NbgraderError with the log and what to do when the step fails.
    """
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeFactory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    argv = student_command(command, assignment, student)
    home = Path(home).resolve()
    what = f"`{' '.join(argv)}` in {home}"
    config_file = home / STUDENT_CONFIG
    config = PyFileConfigLoader(CONFIG_FILE, path=str(config_file.parent)).load_config() \
        if config_file.is_file() else Config()
    course = config.CourseDirectory.get("course_id", "")
    if not course or "root" not in config.Exchange:
        raise NbgraderError(f"{what}: {config_file} does not name the course and the exchange "
                            "(helpers.grading.course.student_config writes it)")
    check_exchange(config.Exchange.root, course, role="submit" if command == "submit" else "student")
    config.Exchange.assignment_dir = str(home)  # the command's working folder
    config.Exchange.cache = str(home / ".local" / "share" / "jupyter" / "nbgrader_cache")  # jupyter_data_dir()
    config.CourseDirectory.root = str(home)
    if assignment:
        config.CourseDirectory.assignment_id = assignment
    if student:
        config.CourseDirectory.student_id = student
    factory = ExchangeFactory(config=config)
    make = {"list": factory.List, "fetch_assignment": factory.FetchAssignment, "submit": factory.Submit,
            "fetch_feedback": factory.FetchFeedback}[command]
    app = make(coursedir=CourseDirectory(config=config), authenticator=Authenticator(config=config), config=config)
    return _run_exchange(app, what)


def _run_exchange(app, what: str) -> dict:
    """app.start() with its log captured (nbgrader's capture_log drops start()'s value)."""
    import io
    import logging
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    app.log.addHandler(handler)
    try:
        value = app.start()
    except Exception as exc:  # nbgrader's ExchangeError and anything under it
        raise NbgraderError(f"{what} failed: {exc}\n{buffer.getvalue()}") from None
    finally:
        app.log.removeHandler(handler)
    return {"log": buffer.getvalue(), "value": value}


def released(home) -> list[str]:
    """What `nbgrader list` shows a student (in `home`): the assignments released to the course."""
    return [info["assignment_id"] for info in run_student(home, "list")["value"]]


# ----------------------------------------------------------------------------- what a student gets

BUNDLE_NAME = "cifar10-course-student"
# A solution or hidden-test text is found in a file when one of its lines of at least LONG_LINE
# characters, or RUN of its lines of at least SHORT characters in a row (shorter lines skipped), occur
# there; lines compared without indentation, blank lines and comments. Lines the release shows anyway
# (given code, specs, the visible checks the hidden tests repeat) do not count. Fewer or shorter lines
# find boilerplate: `self.features = nn.Sequential(*layers)`, `self.classifier = nn.Sequential(`,
# `nn.Flatten(),` opens many a CNN.
LONG_LINE, RUN, SHORT = 60, 3, 16


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, the line without indentation and repeated spaces) of each line that is not
    blank or a comment."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = " ".join(line.split())
        if line and not line.startswith("#"):
            out.append((number, line))
    return out


def _snippets(lines: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """(first line, last line, text) of each long line and each run of RUN lines in a row."""
    found = [(n, n, s) for n, s in lines if len(s) >= LONG_LINE]
    lines = [(n, s) for n, s in lines if len(s) >= SHORT]
    for i in range(len(lines) - RUN + 1):
        run = lines[i:i + RUN]
        found.append((run[0][0], run[-1][0], "\n".join(s for _, s in run)))
    return found


def _notebook_text(raw: str) -> str:
    """The sources of a notebook's cells, one after another (unreadable JSON: the raw text)."""
    import json
    try:
        cells = json.loads(raw).get("cells", [])
    except (ValueError, AttributeError):
        return raw
    return "\n".join("".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")
                     for c in cells)


_SECRET_REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)


def secret_texts(repo_root=PROJECT_ROOT) -> tuple[list[tuple[str, str, str]], str]:
    """What a student must never receive, and what the release shows anyway.

    Returns ([(kind, where, text)], public) with kind "solution" (each ### BEGIN SOLUTION region of
    source/) or "hidden test" (each ### BEGIN HIDDEN TESTS region of source/, each test function's
    body in hidden_tests/), and `public`: the source notebooks' text with those regions cut out.
    """
    import ast
    repo_root = Path(repo_root)
    secrets, public = [], []
    for nb in sorted((repo_root / "source").glob("*/*.ipynb")):
        text = _notebook_text(nb.read_text(errors="replace"))
        for i, m in enumerate(_SECRET_REGION.finditer(text)):
            kind = "solution" if m.group(1) == "SOLUTION" else "hidden test"
            secrets.append((kind, f"{nb.relative_to(repo_root)} {kind} region {i + 1}", m.group(2)))
        public.append(_SECRET_REGION.sub("", text))
    for path in sorted((repo_root / "hidden_tests").rglob("*.py")):
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                body = "\n".join(lines[node.body[0].lineno - 1:node.end_lineno])
                secrets.append(("hidden test", f"{path.relative_to(repo_root)}::{node.name}", body))
    return secrets, "\n".join(public)


def reference_definitions(repo_root=PROJECT_ROOT) -> dict[str, list[tuple[int, int, str]]]:
    """The course's reference code that the hidden tests deny to the student's code: every
    "helpers.<module>.<name>" named in hidden_tests/, as {file under helpers/: [(first line, last
    line, dotted name)]} of its def or class (a name re-exported by a package: where it is defined).

    Later notebooks build on these (04_training trains with helpers' augmentation and models), so
    they are part of what students install; the harness denies them to the block they solve and the
    tamper report flags pasted copies.
    """
    import ast
    repo_root = Path(repo_root)
    names = set()
    for path in (repo_root / "hidden_tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(errors="replace"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"helpers(\.\w+)+", node.value):
                names.add(node.value)
    found: dict[str, list[tuple[int, int, str]]] = {}
    for dotted in sorted(names):
        module, _, name = _defining_module(dotted).rpartition(".")
        base = repo_root / Path(*module.split("."))
        files = [base.with_suffix(".py")] if base.with_suffix(".py").is_file() else sorted(base.glob("*.py"))
        for path in files:
            for node in ast.parse(path.read_text(errors="replace")).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                    found.setdefault(str(path.relative_to(repo_root)), []).append(
                        (node.lineno, node.end_lineno, dotted))
    return found


def _defining_module(dotted: str) -> str:
    """"helpers.<module>.<name>" with <module> the one that defines <name>: old module names
    (helpers/moved.py) and re-exports (helpers.data.augment.denormalize) lead to the definition."""
    import inspect
    from ..moved import current_name
    from .harness import resolve_name
    dotted = current_name(dotted)
    try:
        obj = inspect.unwrap(resolve_name(dotted))
    except (ImportError, AttributeError):
        return dotted
    module = getattr(obj, "__module__", None)
    return f"{module}.{dotted.rpartition('.')[2]}" if isinstance(module, str) and module.startswith("helpers.") else dotted


def _bundle_files(bundle) -> dict[str, str]:
    """{path: text} of every file of a bundle folder, the members of its wheels included (as
    "<wheel>!<member>", the wheel's helpers/... files also under their own path for the check)."""
    import zipfile
    bundle = Path(bundle)
    files = {}
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        rel = str(path.relative_to(bundle))
        if path.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(path) as wheel:
                for member in wheel.namelist():
                    files[f"{rel}!{member}"] = wheel.read(member).decode("utf-8", "replace")
        else:
            text = path.read_bytes().decode("utf-8", "replace")
            files[rel] = _notebook_text(text) if path.suffix == ".ipynb" else text
    return files


def bundle_leaks(bundle, repo_root=PROJECT_ROOT) -> list[str]:
    """Where a bundle holds solution or hidden-test text (empty: none), one line each.

    Solution text inside a reference definition the hidden tests deny (`reference_definitions`) is
    the course's reference code, not a leak; anywhere else it is, and hidden-test text always is.
    Also a leak: any file named like one of source/ or hidden_tests/, and nbgrader's markers.
    """
    secrets, public = secret_texts(repo_root)
    shown = {text for _, _, text in _snippets(_code_lines(public))}
    wanted: dict[str, list[tuple[str, str]]] = {}
    for kind, where, text in secrets:
        for _, _, snippet in _snippets(_code_lines(text)):
            if snippet not in shown:
                wanted.setdefault(snippet, []).append((kind, where))
    references = reference_definitions(repo_root)
    leaks = []
    for name, text in _bundle_files(bundle).items():
        member = name.split("!", 1)[-1]
        if re.search(r"(^|/)(source|hidden_tests)/", member) or re.search(r"(^|/)test_\d\d_\w+\.py$", member):
            leaks.append(f"{name}: a file of source/ or hidden_tests/")
        for marker in ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS"):
            if marker in text:
                leaks.append(f"{name}: holds nbgrader's marker {marker!r}")
        for offset, segment in _segments(member, text):
            for first, last, snippet in _snippets(_code_lines(segment)):
                first, last = first + offset, last + offset
                for kind, where in wanted.get(snippet, []):
                    if kind == "solution" and any(start <= first and last <= end
                                                  for start, end, _ in references.get(member, [])):
                        continue
                    leaks.append(f"{name} line {first}: {kind} text of {where}: {snippet.splitlines()[0][:70]!r}")
    return sorted(set(leaks))


def _segments(name: str, text: str) -> list[tuple[int, str]]:
    """(line offset, text) to scan: the file, and for a Python file also each string in it that spans
    lines, decoded (code kept in a "...\\n" literal reads as code then)."""
    import ast
    segments = [(0, text)]
    if name.endswith(".py"):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            return segments
        segments += [(node.lineno - 1, node.value) for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" in node.value]
    return segments


def _imports_of(path: Path, package: str) -> set[str]:
    """Dotted names of the helpers modules a Python file imports (relative imports resolved)."""
    import ast
    found = set()
    for node in ast.walk(ast.parse(path.read_text(errors="replace"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "helpers" or name.startswith("helpers.")}


def _module_file(repo_root: Path, dotted: str) -> Path | None:
    base = repo_root / Path(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def student_modules(repo_root=PROJECT_ROOT) -> list[str]:
    """The files of `helpers` that go into the student wheel (paths under the repository root).

    Everything outside helpers/grading except the demo, and of helpers/grading only what the
    release notebooks import and what that imports in turn (the challenge's contract, the tiers).
    The rest of helpers/grading is TA-only and stays out: it holds the wrong answers of simulated
    students (simulate.py), attacks that carry pieces of solutions (hostile.py), the hidden-test
    harness and its notes (harness/, HARNESS.md), the sandbox and the scorer.
    """
    repo_root = Path(repo_root)
    package = repo_root / "helpers"
    grading = package / "grading"
    files = {p for p in package.rglob("*.py") if "__pycache__" not in p.parts
             and grading not in p.parents and p != package / "commands" / "demo.py"}
    seeds = set()
    for nb in (repo_root / "release").glob("*/*.ipynb"):
        seeds.update(re.findall(r"\bhelpers\.grading(?:\.\w+)+", _notebook_text(nb.read_text(errors="replace"))))
    for path in files:
        seeds.update(n for n in _imports_of(path, _package_of(repo_root, path)) if n.startswith("helpers.grading."))
    todo, done = sorted(seeds), set()
    while todo:
        dotted = todo.pop()
        if dotted in done:
            continue
        done.add(dotted)
        path = _module_file(repo_root, dotted)
        if path is None:
            continue  # a name inside a module, not a module
        files.add(path)
        todo += sorted(_imports_of(path, _package_of(repo_root, path)) - done)
    files.add(grading / "__init__.py")
    return sorted(str(p.relative_to(repo_root)) for p in files)


def _package_of(repo_root: Path, path: Path) -> str:
    """The dotted package a module file belongs to (its own name for an __init__.py)."""
    parts = path.relative_to(repo_root).with_suffix("").parts
    return ".".join(parts[:-1])


STUDENT_GRADING_INIT = '''"""The parts of the course's grading a student's notebook uses: the challenge's contract
(what to save, how it is scored) and the tiers. Grading itself runs on the TAs' side."""
'''


def build_student_wheel(dest, repo_root=PROJECT_ROOT) -> Path:
    """`pip wheel --no-deps` of a copy of `helpers` holding only `student_modules`; returns the wheel.

    Same package name and dependencies as the course's, version "<version>+student". Built without
    build isolation when setuptools is installed (offline), else pip fetches setuptools.
    """
    import importlib.util
    import subprocess
    import tomllib
    repo_root, dest = Path(repo_root), Path(dest)
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    with tempfile.TemporaryDirectory(prefix="student-wheel-") as tmp:
        stage = Path(tmp) / "course-helpers"
        for rel in student_modules(repo_root):
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root / rel, stage / rel)
        (stage / "helpers" / "grading" / "__init__.py").write_text(STUDENT_GRADING_INIT)
        toml = lambda value: json.dumps(value)  # a JSON string or list of strings is valid TOML
        (stage / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = {toml(project["name"])}\nversion = {toml(project["version"] + "+student")}\n'
            'description = "The course helpers for students: data, augmentation, models, GPU training, metrics, '
            'plots (no grading code)."\n'
            f'requires-python = {toml(project.get("requires-python", ">=3.11"))}\n'
            f'dependencies = {toml(project.get("dependencies", []))}\n\n'
            '[tool.setuptools.packages.find]\ninclude = ["helpers*"]\n')
        dest.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(stage / "dist")]
        if importlib.util.find_spec("setuptools") is not None:
            command.append("--no-build-isolation")
        built = subprocess.run(command + [str(stage)], capture_output=True, text=True, cwd=tmp,
                               env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
        wheels = sorted((stage / "dist").glob("*.whl"))
        if built.returncode != 0 or len(wheels) != 1:
            raise NbgraderError(f"building the student wheel failed ({' '.join(command)}):\n"
                                f"{built.stdout[-2000:]}{built.stderr[-2000:]}")
        target = dest / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def _bundle_readme(cid: str, exchange: str, assignments_: list[str], wheel: str) -> str:
    rows = "\n".join(f"- `{a}/`" for a in assignments_)
    return f"""# {cid}: the student bundle

What you need for the course, and nothing else: the assignment notebooks and the course's `helpers`
package. (Solutions, hidden tests and grading code stay with the TAs.)

## Install (once)

```bash
python3 -m venv .venv && source .venv/bin/activate
pip install -r requirements.txt      # helpers ({wheel}) and its dependencies: torch, jupyterlab, nbgrader
```

On a GPU farm the course environment usually has all of this already.

## Get and submit assignments through the course's exchange

Where the course runs nbgrader's exchange (the GPU farm), `nbgrader_config.py` in this folder names
the course (`{cid}`) and the exchange folder (`{exchange}`; your course may give another path:
edit it there, or put the two lines in `~/.jupyter/nbgrader_config.py`). From this folder:

```bash
nbgrader list                       # what the course released
jupyter lab                         # work on ./01_data/
nbgrader submit 01_data             # hand in ./01_data/ (again to replace it, until the TAs collect)
nbgrader fetch_feedback 01_data     # once the TAs released it: ./01_data/feedback/
```

`nbgrader fetch_assignment <assignment>` fetches an assignment this bundle does not hold yet.

## Without the exchange

The released notebooks are here already:

{rows}

Open them with `jupyter lab`, fill in the cells marked `# YOUR CODE HERE`, run the visible checks,
and hand in the assignment folder the way your course says. Without a GPU, start JupyterLab with
`COURSE_FAST=1` for a reduced mode that runs in minutes on a laptop.
"""


def build_bundle(out=None, repo_root=PROJECT_ROOT, exchange=None, check_release: bool = True) -> Path:
    """What a student gets, in folder `out` (default dist/cifar10-course-student) and `<out>.tar.gz`:
    the release notebooks (release/<assignment>/ as nbgrader generated it), the student wheel of
    `helpers` with a requirements.txt, an nbgrader_config.py naming the course and the exchange, and a
    README. Nothing from source/ or hidden_tests/; `bundle_leaks` must find nothing, else no bundle
    is written and NbgraderError lists what it found. Written whole or not at all.

    check_release: first prove that release/ is what nbgrader makes of source/ (a generate_assignment
    per assignment, most of the time this takes; the tests check that on their own)."""
    import tarfile

    from ..atomic import atomic_write
    repo_root = Path(repo_root)
    out = Path(out) if out is not None else repo_root / "dist" / BUNDLE_NAME
    names = [a for a in assignments(repo_root) if (repo_root / "release" / a).is_dir()]
    if not names:
        raise NbgraderError(f"no release/ in {repo_root}: run `make release` first")
    stale = release_differences(repo_root) if check_release else []
    if stale:
        raise NbgraderError("release/ is not what nbgrader makes of source/ (run `make release`):\n  "
                            + "\n  ".join(stale))
    cid = course_id(repo_root)
    exchange_path = str(Path(exchange) if exchange else exchange_root(repo_root))
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for a in names:
            shutil.copytree(repo_root / "release" / a, stage / a,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        wheel = build_student_wheel(stage / "wheels", repo_root)
        (stage / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
        (stage / CONFIG_FILE).write_text(
            "# nbgrader's student commands read this from the folder they run in (list, fetch_assignment,\n"
            "# submit, fetch_feedback): the course and its exchange. COURSE_EXCHANGE overrides the path.\n"
            "import os\n\nc = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.course_id = {cid!r}\n"
            f"c.Exchange.root = os.environ.get({EXCHANGE_ENV!r}, {exchange_path!r})\n")
        (stage / "README.md").write_text(_bundle_readme(cid, exchange_path, names, wheel.name))
        leaks = bundle_leaks(stage, repo_root)
        if leaks:
            raise NbgraderError("the student bundle would hold solution or hidden-test text; nothing was written:\n  "
                                + "\n  ".join(leaks[:50]))
        os.chmod(stage, 0o755)
        with atomic_write(out.with_name(out.name + ".tar.gz")) as f:
            with tarfile.open(fileobj=f, mode="w:gz") as tar:
                tar.add(stage, arcname=out.name)
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


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
