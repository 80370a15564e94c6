"""`python -m helpers grade`: grade every assignment outside the students' kernels.

    python -m helpers grade [score] <assignment> [--course-root .] [--jobs N] [--dataset cifar10] [--timeout 120]
        [--allow-synthetic] [--points-from-gradebook] [--db GRADEBOOK] [--out DIR]
        [--shard I --of N | --students a,b] [--scan-autograded] [--device cuda] [--tiers FILE]
    python -m helpers grade merge --into gradebook.db shards/gradebook-0.db shards/gradebook-1.db ...
        [--reports shards/out-*/grades-06_challenge.csv --assignment 06_challenge --out DIR]
    python -m helpers grade shard-students 06_challenge --shard I --of N [--course-root .]
    python -m helpers grade shard-init --from gradebook.db --to shards/gradebook-I.db

The first word picks the action: `score` (grade an assignment; `grade <assignment>` is short
for `grade score <assignment>`), `merge`, `shard-students` or `shard-init`. Grading runs after `nbgrader autograde`. When hidden_tests/<assignment>/
exists, every student's answer cells run in a sandboxed worker and the hidden tests run in a
fresh trusted process per student (harness/, HARNESS.md); each test cell's points and a one-line
reason become its manual score and comment (autograde --force keeps them), and
blocks-<assignment>.csv and agreement-<assignment>.csv (cells where nbgrader's in-kernel result
differs) go to --out. Then, for every student with
autograded/<student>/<assignment> (or submitted/), each scored part (task cell `model-score`:
challenge_model.pt on CIFAR-10; `cifar100-score`: cifar100_model.pt on CIFAR-100, when the
assignment has that cell) is scored in a fresh process and written into the gradebook; then
grades-<assignment>.csv, a histogram PNG and tamper-<assignment>.csv go to --out (default
<course-root>/reports). The checkpoint scored is the student's submitted file (autograde runs
the student's code, which could overwrite the autograded copy); the autograded copy is used
only when no submitted one exists. Every checkpoint is hashed (SHA-256) and scored from those
exact bytes in the sandbox (see score.py); identical checkpoints of different students are
reported in the tamper report. Tiers come from `--tiers FILE` or `$COURSE_TIERS` (never from the
course root); test sets are verified against pinned digests (testsets.py); helpers/,
nbgrader_config.py, the test sets and the gradebook schema are hashed before and after the run
(integrity.py). Exit code 0 when the run finished (zero scores included), 2 on misuse: unknown
assignment, no gradebook, no score cell, no test data or a test set that fails its digest, bad
tiers file; 3 when the integrity check failed.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from ..settings import env
from .challenge import CIFAR100_SCORE_CELL, SCORE_CELL, SCORED_PARTS
from .course import assignment_students  # noqa: F401  (the shard scripts import it from here)

ACTIONS = ("score", "merge", "shard-students", "shard-init")


class UsageError(Exception):
    """The command cannot run as asked (exit code 2); the message says what to fix."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`grade`'s actions as subcommands, each with its own options and help."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(parser))
    helps = {"score": "grade an assignment: hidden tests, checkpoints, gradebook, reports",
             "merge": "merge shard gradebooks into the course gradebook (idempotent)",
             "shard-students": "print the students of one shard, one per line",
             "shard-init": "create a shard gradebook: the course's structure, no submissions"}
    adders = {"score": add_score_arguments, "merge": _merge_arguments, "shard-students": _shard_list_arguments,
              "shard-init": _shard_init_arguments}
    runners = {"score": _score, "merge": _merge, "shard-students": _shard_list, "shard-init": _shard_init}
    for name in ACTIONS:
        sub = actions.add_parser(name, help=helps[name], description=helps[name])
        adders[name](sub)
        sub.set_defaults(_action=runners[name])


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    from ..data import dataset_names
    p.add_argument("assignment", help="the assignment to grade, e.g. 06_challenge")
    p.add_argument("--course-root", default=".", help="the nbgrader course folder (default: .)")
    p.add_argument("--dataset", default="cifar10", choices=dataset_names(),
                   help="test set of the model-score part (default: cifar10; the cifar100 part always uses cifar100)")
    p.add_argument("--timeout", type=float, default=120, help="seconds per checkpoint before it scores 0 (default: 120)")
    p.add_argument("--allow-synthetic", action="store_true",
                   help="score on the generated dataset when the real one is missing (demo, tests; said in every reason)")
    p.add_argument("--points-from-gradebook", action="store_true",
                   help="take each score cell's points from the gradebook instead of the release notebook")
    p.add_argument("--db", help="gradebook file or URL (default: the course's, from nbgrader_config.py)")
    p.add_argument("--out", help="folder for the CSVs and the histogram (default: <course-root>/reports)")
    p.add_argument("--shard", type=int, help="with --of: score only students i with i mod N == shard")
    p.add_argument("--of", type=int, help="number of shards")
    p.add_argument("--students", help="comma-separated student ids to score (default: all)")
    p.add_argument("--scan-autograded", action="store_true", help="also scan the autograded notebooks for tampering")
    p.add_argument("--device", help="device for scoring (default: CUDA when available, else the CPU)")
    p.add_argument("--jobs", type=int, default=1, help="students graded at once by the hidden tests (default: 1)")
    p.add_argument("--tiers", help="a tiers JSON file kept outside the course folder (default: $COURSE_TIERS, "
                                   "else the defaults of helpers/grading/tiers.py)")
    p.add_argument("--reduced-tiers", action="store_true",
                   help="judge models by the reduced-mode tiers (the demo and tests, COURSE_FAST=1); refused on a "
                        "full test set, so a real course is never graded with them")


def score_parser() -> argparse.ArgumentParser:
    """The parser of `grade score` alone (tests read its options)."""
    p = argparse.ArgumentParser(prog="python -m helpers grade score")
    add_score_arguments(p)
    return p


def shard_students(students: list[str], shard: int, of: int) -> list[str]:
    """The students of one shard: index i (in sorted order) with i mod `of` == `shard`."""
    if of < 1 or not 0 <= shard < of:
        raise UsageError(f"--shard must lie in [0, --of) and --of must be at least 1, got {shard} of {of}")
    return [s for i, s in enumerate(sorted(students)) if i % of == shard]


def _course_db(course_root, db) -> str:
    """The gradebook URL: --db when given, else the course's CourseDirectory.db_url."""
    from .gradebook import db_url
    if db:
        return db_url(db)
    from nbgrader.coursedir import CourseDirectory
    from .course import load_config
    return CourseDirectory(config=load_config(course_root)).db_url


def _release_points(course_root, assignment: str) -> dict:
    """{grade_id: points} of the cells in the release (or source) notebooks."""
    from .tamper import release_notebooks
    points = {}
    for nb in release_notebooks(course_root, assignment).values():
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade_id") and "points" in meta:
                points[meta["grade_id"]] = float(meta["points"])
    return points


def _parts(url: str, course_root, assignment: str, opts) -> list[dict]:
    """The scored parts this assignment has: cell, checkpoint name, dataset, max points."""
    from .gradebook import GradebookError, find_cell, open_gradebook
    release = _release_points(course_root, assignment)
    parts = []
    try:
        with open_gradebook(url) as gb:
            for cell, (checkpoint, dataset) in SCORED_PARTS.items():
                found = find_cell(gb, assignment, cell)
                if found is None:
                    continue
                points = found[1] if opts.points_from_gradebook or cell not in release else release[cell]
                parts.append({"cell": cell, "checkpoint": checkpoint, "max_points": points, "tiers_key": dataset,
                              "dataset": opts.dataset if cell == SCORE_CELL else dataset})
    except GradebookError as exc:
        raise UsageError(str(exc)) from None
    return parts


def _warm_data(parts: list[dict], allow_synthetic: bool) -> dict:
    """Load and verify each test set once here (against its pinned digest), so no worker spends its
    time limit on that and a bad test set stops grading before anything is scored;
    {dataset: VerifiedTestSet}."""
    from ..data.datasets import DataError
    from .testsets import TestSetError, verified_testset
    digests = {}
    for dataset in sorted({p["dataset"] for p in parts}):
        try:
            data = verified_testset(dataset, allow_synthetic=allow_synthetic)
        except DataError as exc:
            raise UsageError(f"no {dataset} test data: {str(exc).splitlines()[0]}. Set $COURSE_CIFAR10/"
                             "$COURSE_CIFAR100, or pass --allow-synthetic to use the generated dataset") from None
        except TestSetError as exc:
            raise UsageError(f"grader error, grading stopped: {exc}") from None
        digests[dataset] = data
        print(f"[grade] {dataset} test set: {len(data.labels)} images from {data.source}; sha256 {data.digest[:16]}... "
              f"verified ({data.verified})" + (f" -- NOTE: {data.note}" if data.note else ""))
    return digests


def _testset_digests_now(datasets, allow_synthetic: bool) -> dict[str, str]:
    """The test sets' digests loaded afresh (not remembered), for the integrity check after the run."""
    from ..data.datasets import DataError
    from .testsets import TestSetError, load_verified
    digests = {}
    for dataset in sorted(datasets):
        try:
            digests[dataset] = load_verified(dataset, allow_synthetic=allow_synthetic).digest
        except (DataError, TestSetError) as exc:
            digests[dataset] = f"unverifiable ({str(exc).splitlines()[0][:80]})"
    return digests


def _identical_checkpoints(rows: list[dict]) -> list:
    """Tamper findings for checkpoints that are byte-for-byte identical across students."""
    from .tamper import Finding
    by_hash: dict[str, set] = {}
    for row in rows:
        if row.get("sha256") and row.get("student"):
            by_hash.setdefault(row["sha256"], set()).add((row["student"], row.get("checkpoint") or row["dataset"]))
    found = []
    for digest, owners in sorted(by_hash.items()):
        students = sorted({s for s, _ in owners})
        if len(students) < 2:
            continue
        for student, name in sorted(owners):
            others = ", ".join(s for s in students if s != student)
            found.append(Finding(student, name, "(file)", None, f"sha256 {digest[:16]}",
                                 f"identical checkpoint: byte-for-byte the same file as {others}'s"))
    return found


def _checkpoint(course_root: Path, student: str, assignment: str, name: str) -> Path:
    """The student's submitted checkpoint, or the autograded copy when nothing was submitted."""
    submitted = course_root / "submitted" / student / assignment / name
    autograded = course_root / "autograded" / student / assignment / name
    return submitted if submitted.exists() or submitted.is_symlink() or not autograded.exists() else autograded


def _changed_checkpoints(course_root: Path, assignment: str, students, names) -> list:
    """Tamper findings for checkpoints whose autograded copy differs from the submitted file."""
    from .score import collect_checkpoint
    from .tamper import Finding

    def digest(path: Path) -> str | None:
        return collect_checkpoint(path)[1]  # never follows a link, never opens a device or FIFO

    found = []
    for student in students:
        for name in names:
            a = course_root / "submitted" / student / assignment / name
            b = course_root / "autograded" / student / assignment / name
            if (a.is_file() and b.is_file() and not a.is_symlink() and not b.is_symlink()
                    and digest(a) != digest(b)):
                found.append(Finding(student, name, "(file)", None, "", "the checkpoint changed during autograde "
                                     "(the submitted file was scored)"))
    return found


def grade_assignment(assignment: str, opts) -> int:
    """Grade every student's blocks (hidden tests) and checkpoints, fill the gradebook, write the
    reports; 0 when it finished."""
    from . import report
    from .harness.grade import grade_blocks, has_hidden_tests, print_blocks
    from .integrity import IntegrityError, check, snapshot
    from .tamper import scan_assignment, write_csv
    root = Path(opts.course_root).resolve()
    url = _course_db(root, opts.db)
    before = snapshot(root, url)
    parts = _parts(url, root, assignment, opts)
    blocks = has_hidden_tests(assignment)
    if not parts and not blocks:
        raise UsageError(f"{assignment} has neither hidden tests (hidden_tests/{assignment}/) nor a score cell "
                         f"({SCORE_CELL!r} or {CIFAR100_SCORE_CELL!r}) in the gradebook")
    if blocks and not (root / "release" / assignment).is_dir():
        raise UsageError(f"release/{assignment} is missing: the harness takes every non-answer cell from it "
                         "(python -m helpers release)")
    students = _selected_students(root, assignment, opts)
    _require_sandbox()
    out = Path(opts.out) if opts.out else root / "reports"
    findings, written = [], []
    if blocks:
        graded = grade_blocks(root, assignment, students, url, jobs=opts.jobs)
        findings += graded["findings"]
        written.append(write_csv(graded["rows"], out / f"blocks-{assignment}.csv",
                                 ["student", "notebook", "cell", "status", "points", "max_points", "reason"]))
        written.append(write_csv(graded["agreement"], out / f"agreement-{assignment}.csv",
                                 ["student", "cell", "in_kernel", "harness", "max_points", "harness_reason"]))
    testset_digests, rows = {}, []
    if parts:
        testset_digests, rows = _score_parts(root, url, assignment, parts, students, opts)
        before.update({f"test set {k}": v for k, v in testset_digests.items()})
        paths = report.write_report(rows, out, assignment)
        written += [paths["csv"], paths["histogram"]]
        findings += _changed_checkpoints(root, assignment, students, [p["checkpoint"] for p in parts])
        findings += _identical_checkpoints(rows)
    findings += scan_assignment(root, assignment, autograded=opts.scan_autograded, students=set(students))
    written.append(write_csv(findings, out / f"tamper-{assignment}.csv"))
    if blocks:
        print()
        print_blocks(graded["rows"])
        if graded["agreement"]:
            print(f"\n{len(graded['agreement'])} cells where nbgrader's in-kernel result differs from the "
                  f"hidden tests' (the hidden tests' result stands): see agreement-{assignment}.csv")
    if rows:
        print()
        report.print_table(rows)
    print()
    report.print_findings(findings)  # identical checkpoints among them
    print("\n" + "\n".join(f"wrote {p}" for p in written))
    after = snapshot(root, url, _testset_digests_now(testset_digests, opts.allow_synthetic))
    try:
        check(before, after)
    except IntegrityError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 3
    print("[grade] integrity check passed: helpers/, hidden_tests/, nbgrader_config.py, the test sets and the "
          "gradebook schema are unchanged")
    return 0


def _selected_students(root: Path, assignment: str, opts) -> list[str]:
    students = assignment_students(root, assignment)
    if opts.shard is not None or opts.of is not None:
        students = shard_students(students, opts.shard or 0, opts.of or 1)
    if opts.students:
        wanted = [s.strip() for s in opts.students.split(",") if s.strip()]
        students = [s for s in students if s in wanted]
    return students


def _require_sandbox() -> None:
    from .sandbox import SandboxUnavailable, find_bwrap, sandbox_disabled
    if sandbox_disabled():
        print("[grade] WARNING: COURSE_SANDBOX=off: student code runs WITHOUT the sandbox (trusted local run only)")
        return
    try:
        find_bwrap()
    except SandboxUnavailable as exc:
        raise UsageError(str(exc)) from None
    print("[grade] student code runs in the sandbox (bubblewrap, python -I, no labels or hidden tests inside)")


def _part_tables(root: Path, parts: list[dict], testsets: dict, opts) -> dict:
    """{cell: TierTable}: the course's tiers (defaults, or --tiers / $COURSE_TIERS), or with
    --reduced-tiers the reduced-mode tables, which only a reduced-mode test set may use."""
    from .tiers import TIERS_ENV, load_tiers, reduced_tiers
    if opts.reduced_tiers:
        if opts.tiers:
            raise UsageError("--reduced-tiers and --tiers both name the tiers: choose one")
        tables = {}
        for part in parts:
            data = testsets[part["dataset"]]
            if not data.reduced:
                raise UsageError(f"--reduced-tiers is for the reduced-mode demo and tests, but the {part['dataset']} "
                                 f"test set here is the full one ({len(data.labels):,} images): this is a real "
                                 "grading run. Drop --reduced-tiers (or set COURSE_FAST=1 for a demo)")
            try:
                tables[part["cell"]] = reduced_tiers(part["tiers_key"], data.name)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return tables
    try:
        tables = load_tiers(opts.tiers)  # never from the course root: the kernel could have written there
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    tiers_file = opts.tiers or env(TIERS_ENV)
    if tiers_file:
        tiers_path = Path(tiers_file).expanduser().resolve()
        print(f"[grade] tiers from {tiers_path} (sha256 {hashlib.sha256(tiers_path.read_bytes()).hexdigest()[:16]}...)"
              + (" -- WARNING: it lies inside the course folder, which students' code could write"
                 if root in tiers_path.parents else ""))
    if any(data.reduced for data in testsets.values()):
        print("[grade] WARNING: the test set is a reduced-mode subset (COURSE_FAST=1) but the course's tiers apply: "
              "unset COURSE_FAST to grade a course, or pass --reduced-tiers for a demo")
    return {part["cell"]: tables[part["tiers_key"]] for part in parts}


def _score_parts(root: Path, url: str, assignment: str, parts: list[dict], students: list[str], opts):
    """Score every student's checkpoints into the parts' cells; ({dataset: test set digest}, rows)."""
    from .gradebook import write_scores
    from .score import score_checkpoints
    from .tiers import describe
    testsets = _warm_data(parts, opts.allow_synthetic)
    testset_digests = {name: data.digest for name, data in testsets.items()}
    tables = _part_tables(root, parts, testsets, opts)
    for part in parts:
        print(f"[grade] {part['cell']} tiers: {describe(tables[part['cell']])}")
    # One fresh process per student scores all of that student's checkpoints (torch loads once).
    results = {part["cell"]: [] for part in parts}
    print(f"[grade] {len(students)} students; " + "; ".join(
        f"{p['cell']}: {p['checkpoint']} on {p['dataset']}, {p['max_points']:g} points" for p in parts))
    for student in students:
        todo = [{"path": _checkpoint(root, student, assignment, part["checkpoint"]), "dataset": part["dataset"],
                 "max_points": part["max_points"], "tiers": tables[part["cell"]]} for part in parts]
        try:
            scored = score_checkpoints(todo, timeout=opts.timeout, allow_synthetic=opts.allow_synthetic,
                                       student=student, device=opts.device)
        except Exception as exc:  # a grader bug must not stop the class: these rows are not written
            scored = [{"student": student, "dataset": part["dataset"], "status": "error", "points": 0.0,
                       "max_points": part["max_points"], "seconds": 0.0,
                       "reason": f"the grader failed ({type(exc).__name__}: {exc}); not written"} for part in parts]
        for part, result in zip(parts, scored):
            result["part"] = part["tiers_key"]
            result["checkpoint"] = part["checkpoint"]
            print(f"  {student} {part['cell']}: {result['points']:g}/{part['max_points']:g} "
                  f"({result['seconds']:.1f} s) {result['reason']}")
            results[part["cell"]].append(result)
    rows = []
    for part in parts:
        for line in write_scores(url, assignment, part["cell"], results[part["cell"]]):
            print(f"  skipped {line}")
        rows += results[part["cell"]]
    return testset_digests, rows


def _score(opts) -> int:
    return grade_assignment(opts.assignment, opts)


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--into", required=True, help="the course gradebook (it must hold the assignment already)")
    p.add_argument("shards", nargs="+", help="shard gradebook files")
    p.add_argument("--reports", nargs="*", default=[], help="shard grades CSVs to combine into one report")
    p.add_argument("--assignment", default="06_challenge", help="names the combined report (default: %(default)s)")
    p.add_argument("--out", default="reports", help="folder for the combined report (default: %(default)s)")


def _merge(opts) -> int:
    from . import report
    from .gradebook import merge_gradebooks
    summary = merge_gradebooks(opts.shards, opts.into)
    print(f"merged {summary['submissions']} submissions of {summary['students']} students from "
          f"{summary['shards']} shards into {opts.into}")
    if opts.reports:
        paths = report.write_report(report.read_rows(opts.reports), opts.out, opts.assignment)
        print(f"wrote {paths['csv']}\nwrote {paths['histogram']}")
    return 0


def _shard_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("assignment")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--of", type=int, required=True)
    p.add_argument("--course-root", default=".")


def _shard_list(opts) -> int:
    for student in shard_students(assignment_students(opts.course_root, opts.assignment), opts.shard, opts.of):
        print(student)
    return 0


def _shard_init_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, help="the course gradebook")
    p.add_argument("--to", dest="target", required=True, help="the shard gradebook to write")


def _shard_init(opts) -> int:
    from .gradebook import empty_copy
    print(f"wrote {empty_copy(opts.source, opts.target)}")
    return 0


def run(args) -> int:
    from .gradebook import GradebookError
    try:
        return args._action(args)
    except (UsageError, GradebookError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
