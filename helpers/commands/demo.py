"""`python -m helpers demo`: the course's whole loop on the data this machine has.

1. find the data (CIFAR-10 when present, otherwise the generated dataset, and say which);
2. generate the release of every assignment with nbgrader, in a fresh course folder, and release
   it to the course's own exchange (`<out>/course/exchange`; $COURSE_EXCHANGE is never used here);
3. simulated students, each with a home folder of their own (`<out>/students/<name>`, with
   ~/.jupyter/nbgrader_config.py naming the course and the exchange): they `nbgrader list`,
   `fetch_assignment`, do their work (a full solution, a blank one, a partly wrong one, and for the
   challenge one whose checkpoint is missing, one whose checkpoint is hostile, one that monkeypatches
   its kernel, one that attacks the grader) and `submit`; then `nbgrader collect`;
4. autograde every assignment, then grade it outside the students' kernels with
   `python -m helpers grade` (the hidden tests in the trusted harness; for the challenge also
   the models);
5. `nbgrader generate_feedback` and `release_feedback`, and every student `fetch_feedback`;
6. export the grades and print the gradebook with the path of the class histogram.

Every nbgrader step is printed as the command line that does it (`$ ...` in the course folder,
`[ada] $ ...` in ada's home). Instructor steps run through nbgrader's Python API, student steps
through nbgrader's exchange classes (`helpers.grading.course.run_student`), in this process: the
same code the commands run, without a nbgrader start-up per command (tests/test_exchange.py runs
the commands themselves).

It runs in reduced mode (COURSE_FAST=1) unless `--full` is given, so it takes minutes on a CPU.
"""
from __future__ import annotations

import argparse
import copy
import csv
import os
import shlex
import shutil
import time
import warnings
from pathlib import Path

from ..settings import PROJECT_ROOT

STUDENTS = {
    "ada": "full solution",
    "ben": "blank: the release as handed out",
    "cy": "partly wrong: one function wrong in each notebook; challenge models trained one epoch",
    "dee": "challenge only: full solution, but the checkpoint was not submitted",
    "eve": "challenge only: full solution, with a hostile checkpoint (a pickle that runs code)",
    "fay": "challenge only: full solution, plus a cell that monkeypatches helpers in the kernel",
    "gus": "blank, plus code that tries to rewrite the gradebook, other students' files, helpers/ and the config",
}
# What fay adds after her last answer: it fakes nothing the out-of-kernel score uses, but it is
# the kind of line the tamper report must flag.
MONKEYPATCH = "import helpers.eval.metrics\nhelpers.metrics.accuracy = lambda *args, **kwargs: 1.0\n"
CHALLENGE = "06_challenge"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "demo", help="output folder")
    parser.add_argument("--assignments", nargs="*", help="assignments to run (default: all of source/)")
    parser.add_argument("--full", action="store_true", help="full data and epochs instead of reduced mode")


class HostilePayload:
    """Unpickling this would create the file `marker`; the scoring must never run it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _say(message: str) -> None:
    print(f"\n== {message}", flush=True)


# What each student's challenge models must earn under the reduced tiers: (what, test), where a test
# gets {part: (points, max points)} of that student.
def _total(parts):
    return sum(p for p, _ in parts.values()), sum(m for _, m in parts.values())


EXPECTED_MODEL_POINTS = {
    "ada": ("all model points", lambda parts: _total(parts)[0] == _total(parts)[1] > 0),
    "ben": ("0: nothing trained", lambda parts: _total(parts)[0] == 0),
    "cy": ("some, not all: one epoch", lambda parts: 0 < _total(parts)[0] < _total(parts)[1]),
    "dee": ("0: no checkpoint", lambda parts: _total(parts)[0] == 0),
    "eve": ("0 for her hostile CIFAR-10 file", lambda parts: parts.get("cifar10", (1, 0))[0] == 0),
    "fay": ("all model points", lambda parts: _total(parts)[0] == _total(parts)[1] > 0),
    "gus": ("0: nothing trained", lambda parts: _total(parts)[0] == 0),
}
# Appended to cy's recipe cells: the same recipe trained for one epoch in reduced mode (a weaker model).
ONE_EPOCH = """
_own_{name} = {name}
def {name}():
    recipe = _own_{name}()
    return {{**recipe, "epochs": by_mode(recipe.get("epochs", 10), 1)}}
"""


def _run_notebook(nb, folder: Path, timeout: int = 900, allow_errors: bool = False):
    """Execute a notebook in `folder`, as a student runs it before submitting (writes checkpoints);
    with `allow_errors`, cells after a failing one still run (as Run All past a failed check does)."""
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def one_epoch(nb):
    """The notebook with every recipe function trained for one epoch in reduced mode."""
    from ..grading import simulate
    for grade_id in ("challenge_recipe-answer", "cifar100_recipe-answer"):
        cell = nb.cells[simulate.cell_index(nb, grade_id)]
        nb = simulate.with_answer(nb, grade_id, cell.source + ONE_EPOCH.format(name=grade_id.split("-")[0]))
    return nb


def class_work(root: Path, assignment: str, release_nb, source_nb, write) -> list[str]:
    """Each simulated student's work on one assignment; returns who takes part.

    `write(student, {name: notebook})` puts a student's notebook into that student's assignment
    folder and returns the folder (their fetched copy in the demo, submitted/ in the tests). ada
    runs the challenge notebook there before submitting (it trains and saves the checkpoint).
    """
    import torch

    from ..grading import hostile, simulate
    from ..grading.challenge import CHECKPOINT_NAME
    name = f"{assignment}.ipynb"
    solved = simulate.solution(release_nb, source_nb)
    wrong = (simulate.WRONG_ANSWERS.get(assignment) or [None])[0]  # the first registered: one function wrong
    partly = simulate.with_answer(solved, wrong.grade_id, wrong.source) if wrong else solved
    folder = write("ada", {name: solved})
    write("ben", {name: simulate.blank(release_nb)})
    write("gus", {name: hostile.attacker(release_nb, source_nb, root)})
    if assignment != CHALLENGE:
        write("cy", {name: partly})
        return ["ada", "ben", "cy", "gus"]
    print(f"ada runs the challenge notebook before submitting (trains and saves {CHECKPOINT_NAME})", flush=True)
    _run_notebook(simulate.solution(release_nb, source_nb), folder)
    partly = one_epoch(partly)
    cy_folder = write("cy", {name: partly})
    print("cy runs hers with one training epoch (and one wrong function: Run All goes past its failed check)",
          flush=True)
    _run_notebook(copy.deepcopy(partly), cy_folder, allow_errors=True)
    last_code = [i for i in simulate.answer_ids(solved)
                 if solved.cells[simulate.cell_index(solved, i)].cell_type == "code"][-1]
    patched = simulate.with_answer(solved, last_code,
                                   solved.cells[simulate.cell_index(solved, last_code)].source + "\n" + MONKEYPATCH)
    targets = {}
    for student in ("dee", "eve", "fay"):
        targets[student] = target = write(student, {name: patched if student == "fay" else solved})
        for extra in folder.glob("*.pt"):
            if student == "fay" or (student == "eve" and extra.name != CHECKPOINT_NAME):
                shutil.copy2(extra, target / extra.name)
    good = torch.load(folder / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    good["payload"] = HostilePayload(root / "HOSTILE_PAYLOAD_RAN")
    torch.save(good, targets["eve"] / CHECKPOINT_NAME)
    return list(STUDENTS)


def submit_class(root: Path, assignment: str, release_nb, source_nb) -> list[str]:
    """The simulated students' submissions for one assignment, written straight into
    submitted/<student>/<assignment>/ (as `nbgrader collect` leaves them); returns who submitted."""
    from ..grading.course import submit
    return class_work(root, assignment, release_nb, source_nb,
                      lambda student, notebooks: submit(root, student, assignment, notebooks))


def _write_work(folder: Path, notebooks: dict) -> Path:
    """A student's notebooks saved over their fetched copies in `folder`."""
    import nbformat

    from ..atomic import atomic_write
    folder.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        with atomic_write(folder / name, "w") as f:
            nbformat.write(nb, f)
    return folder


def _shell(command: list[str], student: str | None = None) -> None:
    """Print a command as the shell line that runs it (in the course folder, or in a student's home)."""
    print(f"  {f'[{student}] ' if student else ''}$ {shlex.join(command)}", flush=True)


def _print_gradebook(csv_path: Path, assignments: list[str]) -> None:
    """The exported grades as a student x assignment table of score/max."""
    table: dict[str, dict[str, str]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["assignment"] in assignments and row["timestamp"]:  # no timestamp: nothing submitted
                score = float(row["score"] or 0)
                table.setdefault(row["student_id"], {})[row["assignment"]] = f"{score:g}/{float(row['max_score']):g}"
    width = max(len(a) for a in assignments) + 1
    print("student " + "".join(f"{a:>{width}}" for a in assignments))
    for student in STUDENTS:
        cells = table.get(student, {})
        print(f"{student:<8}" + "".join(f"{cells.get(a, '-'):>{width}}" for a in assignments))


def closing_table(grades_csv: Path, changed: list[str], payload_ran: bool) -> bool:
    """What each simulated student shows (expected vs got for the challenge's model points); True when
    every row is as expected, i.e. the course grades as designed."""
    got: dict[str, dict[str, tuple[float, float]]] = {}
    with open(grades_csv, newline="") as f:
        for row in csv.DictReader(f):
            got.setdefault(row["student"], {})[row["part"]] = (float(row["points"] or 0), float(row["max_points"] or 0))
    print(f"{'student':<8} {'what':<84} {'model points expected':<56} {'got':>9}  ok")
    all_ok = True
    for student, what in STUDENTS.items():
        expected, test = EXPECTED_MODEL_POINTS[student]
        parts = got.get(student, {})
        ok = bool(parts) and test(parts)
        if student == "eve":
            ok, expected = ok and not payload_ran, expected + ", its payload never runs"
        if student == "gus":
            ok, expected = ok and not changed, expected + ", nothing else changed"
        all_ok &= ok
        points, most = _total(parts)
        print(f"{student:<8} {what[:84]:<84} {expected:<56} {points:>4g}/{most:<4g}  {'yes' if ok else 'NO'}")
    return all_ok


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if not args.full:
        os.environ.setdefault("COURSE_FAST", "1")
    # nbgrader 0.9's own SQLAlchemy session warnings say nothing about the course.
    warnings.filterwarnings("ignore", module=r"nbgrader\.")
    from ..data.datasets import course_data
    from ..eval.plots import image_grid, save_figure
    from ..data.split import channel_mean_std, stratified_subset
    from ..grading import course, simulate
    from ..grading.sandbox import SandboxUnavailable, find_bwrap, sandbox_disabled
    from ..cli import main as helpers_cli

    _say("sandbox")
    if sandbox_disabled():
        print("error: COURSE_SANDBOX=off is for a trusted local run; the demo grades a class, so it always "
              "uses the sandbox. Unset COURSE_SANDBOX and run again.")
        return 2
    try:
        bwrap = find_bwrap()
    except SandboxUnavailable as exc:
        print(f"error: {exc}")
        return 2
    print(f"every student kernel and checkpoint scorer runs sandboxed by {bwrap}: as uid 65534, no network, "
          "a private copy of its own folder, the course's files read-only (helpers/grading/SANDBOX.md)")

    _say("data")
    data = course_data("cifar10")
    print(data.summary())
    mean, std = channel_mean_std(data.train_images)
    print("training-split channel mean:", " ".join(f"{m:.4f}" for m in mean),
          "| std:", " ".join(f"{s:.4f}" for s in std))
    picks = stratified_subset(data.train_labels, 4, seed=0)[:40]  # a few of every class
    grid = save_figure(image_grid(data.train_images[picks], data.train_labels[picks], data.classes, n=len(picks)),
                       Path(args.out) / f"{data.name}-samples.png")
    print(f"sample grid: {grid}\nthis demo uses: {data.name}")
    assignments = args.assignments or course.assignments()
    out = Path(args.out).resolve()
    root, homes = out / "course", out / "students"
    for folder in (root, homes):
        if folder.exists():
            shutil.rmtree(folder)
    course.make_course_dir(root, assignments)
    exchange = root / "exchange"
    if os.environ.pop(course.EXCHANGE_ENV, None):  # never release the demo to a real class
        print(f"(${course.EXCHANGE_ENV} is ignored: the demo uses an exchange of its own)")
    cid = course.course_id(root)

    _say(f"release: nbgrader generate_assignment and release_assignment (exchange: {exchange})")
    for a in assignments:
        _shell(["nbgrader", "generate_assignment", a, "--force"])
        course.generate_release(root, a)
        _shell(["nbgrader", "release_assignment", a, "--force"])
        course.release_assignment(root, a, exchange)

    _say(f"simulated students, each in a home of their own under {homes}")
    for student, what in STUDENTS.items():
        print(f"  {student:<5} {what}")
        course.student_config(homes / student, exchange, cid)
    print(f"each has ~/.jupyter/nbgrader_config.py naming the course ({cid}) and the exchange; `[ada] $ ...` is a "
          f"command run in {homes / 'ada'} with HOME set to it (--student because they share one OS user here)")
    _shell(course.student_command("list"), "ada")
    print(f"  released: {', '.join(course.released(homes / 'ada'))}")

    graded = {}
    for a in assignments:
        _say(f"{a}: students fetch, work and submit; the TA collects")
        release_nb = simulate.read(root / "release" / a / f"{a}.ipynb")
        source_nb = simulate.read(root / "source" / a / f"{a}.ipynb")
        fetched = set()

        def fetch_and_write(student, notebooks, a=a, fetched=fetched):
            if student not in fetched:
                _shell(course.student_command("fetch_assignment", a), student)
                course.run_student(homes / student, "fetch_assignment", a)
                fetched.add(student)
            return _write_work(homes / student / a, notebooks)

        takers = class_work(root, a, release_nb, source_nb, fetch_and_write)
        for student in takers:
            _shell(course.student_command("submit", a, student), student)
            course.run_student(homes / student, "submit", a, student)
        _shell(["nbgrader", "collect", a, "--update", "--ExchangeCollect.check_owner=False"])
        graded[a] = course.collect(root, a, exchange, check_owner=False)
        print(f"  submitted/: {', '.join(graded[a])}")

    from ..grading.hostile import course_fingerprint
    guarded = [PROJECT_ROOT / "helpers", root / "nbgrader_config.py", root / "source", root / "submitted", exchange]
    before = course_fingerprint(guarded)
    for a in assignments:
        _say(f"nbgrader autograde {a} in the sandbox ({', '.join(graded[a])})")
        _shell(["nbgrader", "autograde", a, "--force"])
        t0 = time.perf_counter()
        result = course.autograde(root, a, graded[a], strict=False)
        status = "ok" if result.get("success") else "finished with failures (see the autograded notebooks)"
        print(f"{a}: {status} in {time.perf_counter() - t0:.0f} s")

    after = course_fingerprint(guarded)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    print("gus's attacks: " + (f"CHANGED {', '.join(changed[:5])} (this is a bug)" if changed
                               else "nothing outside his sandbox changed"))

    reports = out / "reports"
    from ..grading.harness.grade import has_hidden_tests
    for a in assignments:
        if not (has_hidden_tests(a) or a == CHALLENGE):
            continue
        what = "hidden tests and models" if a == CHALLENGE else "hidden tests"
        _say(f"grade outside the students' kernels ({what}): python -m helpers grade {a}")
        argv = [a, "--course-root", str(root), "--out", str(reports)]
        if a == CHALLENGE and data.name == "synthetic":
            argv.append("--allow-synthetic")
        if a == CHALLENGE and not args.full:
            argv.append("--reduced-tiers")  # a reduced-mode model is judged by reduced-mode tiers, and says so
        helpers_cli(["grade", *argv])  # exactly what a TA runs
    ran = (root / "HOSTILE_PAYLOAD_RAN").exists()
    if CHALLENGE in assignments:
        print(f"hostile checkpoint: its payload {'RAN (this is a bug)' if ran else 'never ran'}")

    _say("feedback: generate_feedback and release_feedback; every student fetches theirs")
    fetched_feedback = []
    for a in assignments:
        _shell(["nbgrader", "generate_feedback", a, "--force"])
        course.generate_feedback(root, a)
        _shell(["nbgrader", "release_feedback", a])
        course.release_feedback(root, a, exchange)
        for student in graded[a]:
            _shell(course.student_command("fetch_feedback", a), student)
            course.run_student(homes / student, "fetch_feedback", a)
            fetched_feedback += sorted((homes / student / a / "feedback").glob("*/*.html"))
    print(f"feedback fetched: {len(fetched_feedback)} pages in the students' homes"
          + (f", e.g. {fetched_feedback[0]}" if fetched_feedback else ""))

    _say("nbgrader export")
    reports.mkdir(parents=True, exist_ok=True)
    grades = course.export_grades(root, reports / "grades.csv")
    _print_gradebook(grades, assignments)
    print("(score/max of each assignment, '-' where nothing was submitted; written answers count once a TA "
          "grades them by hand)")
    print(f"\ngrades: {grades}")
    histogram = reports / f"grades-{CHALLENGE}.png"
    if histogram.exists():
        print(f"histogram of the class: {histogram}")
    print(f"course folder: {root}\nstudents' homes: {homes}")
    as_designed = True
    if CHALLENGE in assignments:
        tiers = "reduced-mode tiers (a few CPU epochs on a subset)" if not args.full else "the course's tiers"
        _say(f"what each student shows: the challenge's model points on {data.name}, under {tiers}")
        as_designed = closing_table(reports / f"grades-{CHALLENGE}.csv", changed, ran)
        print("the course grades as designed" if as_designed else
              "SOMETHING IS WRONG: a row above is not as expected (see its grade line in the reports)")
    print(f"demo finished in {time.perf_counter() - start:.0f} s on {data.name}")
    return 0 if as_designed else 1
