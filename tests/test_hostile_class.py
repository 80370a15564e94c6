"""A hostile class graded through the TA's steps: every attack of issue 9 is one student.

One shared autograde run per assignment (module fixtures), asserted on many times:
- 01_data: kernel attacks (gradebook rewrite, peer overwrite, helpers/config/.pth/sitecustomize
  poisoning, cache relabelling, a tiers file, reading source/ and the environment, skip tags,
  a 30 MB line, memory and fork bombs, os._exit, deleted written-answer cells);
- 06_challenge: checkpoint attacks scored by `python -m helpers grade` (meta-device bomb, zip
  bomb, links to /dev/zero and /etc/passwd, a FIFO, a copied checkpoint) and student code
  called from a trusted training cell.
Each attacker must score exactly what it earned, peers must be unchanged, nothing may change
outside the sandbox and no secret may reach its autograded notebook or feedback.
"""
import csv
import os
import site
import time
from pathlib import Path

import pytest

from helpers.config import PACKAGE_DIR, PROJECT_ROOT
from helpers.grading import course, hostile, simulate
from helpers.grading.challenge import CHECKPOINT_NAME

pytest.importorskip("nbgrader")
if os.environ.get("CI") != "true":
    import shutil
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed: apt-get install bubblewrap", allow_module_level=True)

pytestmark = [pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
              pytest.mark.filterwarnings("ignore:Cell is missing an id field")]

SECRET = "ta-secret-41d9c2"  # in the TA's environment during grading; must never reach a student


@pytest.fixture(scope="module")
def grading_env(kernel_env):
    """The test kernels' environment plus what a TA's shell might hold: a secret, the old skip tag."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_SANDBOX_MEMORY_MB", "1536")
        mp.setenv("COURSE_SKIP_TAG", hostile.OLD_PUBLIC_SKIP_TAG)
        mp.setenv("TA_API_TOKEN", SECRET)
        yield kernel_env


def guarded_paths(root, data_dir) -> list:
    """What no student may change: the course's code and config, the environment, caches, source, peers."""
    sp = [Path(p) for p in site.getsitepackages()]
    extra = [p for d in sp for p in d.glob("*.pth")] + [p for d in sp for p in d.glob("sitecustomize.py")]
    return [PACKAGE_DIR, PROJECT_ROOT / "nbgrader_config.py", root / "nbgrader_config.py", root / "source",
            root / "submitted", Path(data_dir) / "cache", *extra]


def _run_class(root, assignment, students, data_dir):
    before = hostile.course_fingerprint(guarded_paths(root, data_dir))
    t0 = time.perf_counter()
    result = course.autograde(root, assignment, students, strict=False)
    seconds = time.perf_counter() - t0
    return before, result, seconds


@pytest.fixture(scope="module")
def class01(grading_env, tmp_path_factory):
    a = "01_data"
    root = course.make_course_dir(tmp_path_factory.mktemp("hostile01") / "course", [a])
    course.generate_release(root, a)
    release = simulate.read(root / "release" / a / f"{a}.ipynb")
    source = simulate.read(root / "source" / a / f"{a}.ipynb")
    pickle_marker = root / "PICKLE-PAYLOAD-RAN"
    notebooks = {"ada": simulate.solution(release, source), **hostile.kernel_attackers(release, source, root, a),
                 **hostile.bypass_attackers(release, source), **hostile.pickle_attacker(release, source, pickle_marker),
                 "zed": simulate.solution(release, source)}
    for student, nb in notebooks.items():
        course.submit(root, student, a, {a: nb})
    before, result, seconds = _run_class(root, a, list(notebooks), grading_env)
    in_kernel = {s: course.read_grades(root, a, s) for s in notebooks}
    from helpers.cli import main as helpers_cli
    t0 = time.perf_counter()
    code = helpers_cli(["grade", a, "--course-root", str(root), "--jobs", "2"])
    harness_seconds = time.perf_counter() - t0
    feedback = course.generate_feedback(root, a)
    after = hostile.course_fingerprint(guarded_paths(root, grading_env))
    grades = {s: course.read_grades(root, a, s) for s in notebooks}
    reports = {}
    for kind in ("tamper", "agreement", "blocks"):
        with open(root / "reports" / f"{kind}-{a}.csv", newline="") as f:
            reports[kind] = list(csv.DictReader(f))
    print(f"\nhostile 01_data: {len(notebooks)} students autograded in {seconds:.0f} s, "
          f"hidden tests in {harness_seconds:.0f} s")
    return {"a": a, "root": root, "source": source, "grades": grades, "in_kernel": in_kernel, "before": before,
            "after": after, "result": result, "seconds": seconds, "feedback": feedback, "students": list(notebooks),
            "grade_exit": code, "reports": reports, "pickle_marker": pickle_marker}


def _auto(source):
    return simulate.autograded_ids(source)


def _earned(grades, ids):
    return sum(grades[g][0] for g in ids)


def test_the_run_finishes_and_peers_keep_full_marks(class01):
    assert class01["result"].get("success"), class01["result"].get("log", "")[-3000:]
    ids = _auto(class01["source"])
    full = sum(class01["grades"]["ada"][g][1] for g in ids)
    for peer in ("ada", "zed"):
        assert _earned(class01["grades"][peer], ids) == full, (peer, class01["grades"][peer])


@pytest.mark.parametrize("attacker", [f"x-{name}" for name in hostile.ATTACKS] + ["x-skiptags", "x-pickle"]
                         + [f"x-bypass-{name}" for name in hostile.BYPASSES])
def test_attackers_earn_nothing(class01, attacker):
    grades = class01["grades"][attacker]
    earned = {g: grades[g] for g in grades if grades[g][0] != 0}
    assert not earned, f"{attacker} earned points it did not: {earned}"


@pytest.mark.parametrize("attacker", [f"x-bypass-{name}" for name in hostile.BYPASSES])
def test_kernel_bypasses_are_reported_and_the_hidden_tests_result_stands(class01, attacker):
    assert class01["grade_exit"] == 0
    lines = [r for r in class01["reports"]["tamper"] if r["student"] == attacker]
    assert lines, f"{attacker}: no line in the tamper report"
    assert any(r["code"] in ("ast_transformer", "input_transformer", "custom_exc", "event_callback",
                             "rebound_name", "patched_attribute", "canary") and r["line"] for r in lines), lines
    # in the kernel the visible checks were switched off; the harness's 0 is what counts, and the TA sees it
    kernel = class01["in_kernel"][attacker]
    disagreements = {r["cell"] for r in class01["reports"]["agreement"] if r["student"] == attacker}
    assert {g for g in _auto(class01["source"]) if kernel[g][0] > 0} <= disagreements


def test_pickled_return_values_never_run_in_the_grader(class01):
    assert not class01["pickle_marker"].exists()
    rows = [r for r in class01["reports"]["blocks"] if r["student"] == "x-pickle"]
    assert rows and all(float(r["points"]) == 0 and r["status"] == "zero" for r in rows), rows


def test_os_exit_costs_only_its_own_block(class01):
    grades, source = class01["grades"]["x-exit"], class01["source"]
    kept = hostile.exit_kept_blocks(source)
    assert all(grades[g][0] == grades[g][1] > 0 for g in kept), {g: grades[g] for g in kept}
    assert all(grades[g][0] == 0 for g in _auto(source) if g not in kept)


def test_deleted_written_answer_and_prompt_are_restored(class01):
    grades, source = class01["grades"]["x-deleted-q"], class01["source"]
    assert all(grades[g][0] == grades[g][1] for g in _auto(source)), grades
    nb = simulate.read(class01["root"] / "autograded" / "x-deleted-q" / class01["a"] / f"{class01['a']}.ipynb")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    q = [g for g in simulate.answer_ids(source) if g.startswith("q-")][0]
    assert q in ids and q + "-prompt" in ids


def test_nothing_outside_the_sandbox_changed(class01):
    changed = sorted(k for k in set(class01["before"]) | set(class01["after"])
                     if class01["before"].get(k) != class01["after"].get(k))
    assert not changed, f"files changed by student code: {changed[:10]}"
    root = class01["root"]
    for name in ("grading_tiers.json", "sitecustomize.py"):
        assert not (root / name).exists() and not (PROJECT_ROOT / name).exists()
    for sp in site.getsitepackages():
        assert not (Path(sp) / "zz_hostile.pth").exists()


def test_no_secret_reaches_notebooks_or_feedback(class01):
    """The TA's environment, solutions and hidden tests never appear in what student code printed."""
    import json
    root, a = class01["root"], class01["a"]
    for student in class01["students"]:
        nb = simulate.read(root / "autograded" / student / a / f"{a}.ipynb")
        texts = [json.dumps(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]
        texts += [p.read_text() for p in (class01["feedback"] / student / a).glob("*.html")]
        for text in texts:
            assert SECRET not in text, f"{student}: the TA's environment leaked"
            assert "BEGIN HIDDEN TESTS" not in text, f"{student}: hidden tests leaked"
            assert "BEGIN SOLUTION" not in text, f"{student}: a solution leaked"
    reader = simulate.read(root / "autograded" / "x-reader" / a / f"{a}.ipynb")
    assert "environ" in json.dumps([c.get("outputs", []) for c in reader.cells if c.cell_type == "code"])


def test_feedback_carries_no_student_script(class01):
    page = next((class01["feedback"] / "x-html" / class01["a"]).glob("*.html")).read_text()
    # the attack's source is shown escaped (&lt;script&gt;); its output must not be live markup
    assert '<script>alert("hostile-xss")' not in page and '<img src=x onerror' not in page
    assert 'onerror="alert(2)"' not in page.replace('&lt;img src=x onerror="alert(2)"&gt;', "")


def test_output_is_capped_in_bytes(class01):
    path = class01["root"] / "autograded" / "x-bigline" / class01["a"] / f"{class01['a']}.ipynb"
    assert path.stat().st_size < 2 * 10**6, f"{path.stat().st_size / 1e6:.1f} MB autograded notebook"


def test_bombs_did_not_stall_the_class(class01):
    # 15+ students, two bombs: the memory bomb is killed at the cap, the fork bomb stops at the process cap.
    assert class01["seconds"] < 600, class01["seconds"]
    nb = (class01["root"] / "autograded" / "x-forkbomb" / class01["a"] / f"{class01['a']}.ipynb").read_text()
    forked = [int(t.split()[0].strip('\\n"')) for t in nb.split("forked ")[1:] if t.split()[0].strip('\\n"').isdigit()]
    assert forked and forked[0] <= 256, forked


# ----------------------------------------------------------------------------- 06_challenge

A6 = "06_challenge"


@pytest.fixture(scope="module")
def class06(grading_env, tmp_path_factory):
    root = course.make_course_dir(tmp_path_factory.mktemp("hostile06") / "course", [A6])
    course.generate_release(root, A6)
    release = simulate.read(root / "release" / A6 / f"{A6}.ipynb")
    source = simulate.read(root / "source" / A6 / f"{A6}.ipynb")
    solved = simulate.solution(release, source)
    folders = {}
    for student in ["ada", "x-copycat", *hostile.CHECKPOINT_ATTACKS]:
        folders[student] = course.submit(root, student, A6, {A6: solved})
        simulate.write_work_files(A6, folders[student])
    (folders["x-copycat"] / CHECKPOINT_NAME).write_bytes((folders["ada"] / CHECKPOINT_NAME).read_bytes())
    hostile.checkpoint_attackers(folders, CHECKPOINT_NAME)
    # Her own code, run from the trusted training cell: must be held to the student's cell limit.
    recipe = simulate.strip_solution_markers(source.cells[simulate.cell_index(source, "challenge_recipe-answer")].source)
    longtrain = simulate.with_answer(solved, "challenge_recipe-answer",
                                     recipe + "\nimport time as _t\ndef Path(*args):\n    _t.sleep(10**6)\n")
    folders["x-longtrain"] = course.submit(root, "x-longtrain", A6, {A6: longtrain})
    simulate.write_work_files(A6, folders["x-longtrain"])
    students = sorted(folders)
    before, result, seconds = _run_class(root, A6, students, grading_env)
    from helpers.cli import main as helpers_cli
    t0 = time.perf_counter()
    code = helpers_cli(["grade", A6, "--course-root", str(root), "--allow-synthetic"])
    grade_seconds = time.perf_counter() - t0
    with open(root / "reports" / f"grades-{A6}.csv", newline="") as f:
        rows = {(r["student"], r["part"]): r for r in csv.DictReader(f)}
    tamper = (root / "reports" / f"tamper-{A6}.csv").read_text()
    print(f"\nhostile 06_challenge: autograde {seconds:.0f} s, grade {grade_seconds:.0f} s for {len(students)} students")
    return {"root": root, "rows": rows, "code": code, "result": result, "seconds": seconds,
            "grade_seconds": grade_seconds, "tamper": tamper, "source": source, "students": students}


def test_scoring_finishes_and_ada_scores(class06):
    assert class06["code"] == 0
    assert class06["result"].get("success"), class06["result"].get("log", "")[-3000:]
    ada = class06["rows"][("ada", "cifar10")]  # an untrained model: scored, below the lowest tier
    assert ada["status"] == "ok" and float(ada["accuracy"]) > 0, ada


@pytest.mark.parametrize("student, words", [
    ("x-metabomb", ("too large", "parameters", "memory")),
    ("x-zipbomb", ("compress", "unpacks to", "zip")),
    ("x-devzero", ("symbolic link",)),
    ("x-passwd", ("symbolic link",)),
    ("x-fifo", ("not a regular file",)),
])
def test_hostile_checkpoints_score_zero_with_a_reason(class06, student, words):
    row = class06["rows"][(student, "cifar10")]
    assert float(row["points"]) == 0, row
    assert any(w in row["reason"] for w in words), row["reason"]


def test_links_are_never_copied_into_autograded(class06):
    for student in ("x-devzero", "x-passwd"):
        path = class06["root"] / "autograded" / student / A6 / CHECKPOINT_NAME
        assert not path.exists() or (not path.is_symlink() and b"root:" not in path.read_bytes()[:4096])


def test_identical_checkpoints_are_reported(class06):
    lines = [ln for ln in class06["tamper"].splitlines() if "x-copycat" in ln]
    assert lines and any("ada" in ln for ln in lines), class06["tamper"][:2000]
    assert float(class06["rows"][("x-copycat", "cifar10")]["points"]) == float(class06["rows"][("ada", "cifar10")]["points"])


def test_student_code_in_a_training_cell_gets_the_student_limit(class06):
    # Her Path() never returns: only the per-cell limit (20 s here) ends the trusted training cell.
    assert class06["seconds"] < 400, class06["seconds"]
    nb = simulate.read(class06["root"] / "autograded" / "x-longtrain" / A6 / f"{A6}.ipynb")
    cell = nb.cells[simulate.cell_index(nb, "train-cifar10")]
    assert any(o.output_type == "error" for o in cell.outputs), cell.outputs


def test_a_grading_run_whose_trusted_files_change_fails_loudly(class06, monkeypatch, capsys):
    """Were anything to escape and touch the course config mid-run, `grade` exits 3 naming it (runs last:
    it changes the course's nbgrader_config.py)."""
    from helpers.cli import main as helpers_cli
    from helpers.grading import score
    config = class06["root"] / "nbgrader_config.py"
    real = score.score_checkpoints

    def escaped(*args, **kwargs):
        with open(config, "a") as f:
            f.write(f"\n# {hostile.MARKER}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(score, "score_checkpoints", escaped)
    code = helpers_cli(["grade", A6, "--course-root", str(class06["root"]), "--allow-synthetic", "--students", "ada"])
    assert code == 3
    captured = capsys.readouterr()
    assert "INTEGRITY CHECK FAILED" in captured.err + captured.out
