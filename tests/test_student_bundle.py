"""What a student gets (`make student-bundle`): the release notebooks and a wheel of `helpers`, and no
solution or hidden-test text anywhere in it, the wheel's files included.

"Solution text" is every `### BEGIN SOLUTION` region of source/, "hidden-test text" every test
function's body in hidden_tests/ (helpers.grading.course.secret_texts). The one exception, by design:
later notebooks build on helpers' reference code (04_training trains with helpers' augmentation and
models), so the wheel carries it; solution text may appear only inside the reference definitions
that the hidden tests deny to the student's code (course.reference_definitions).
"""
import hashlib
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from helpers.config import PROJECT_ROOT
from helpers.grading import course

# The TA-only parts of helpers/grading that carry solution-derived text or grading internals.
TA_ONLY = ("helpers/grading/simulate.py", "helpers/grading/hostile.py", "helpers/grading/harness/",
           "helpers/grading/HARNESS.md", "helpers/grading/sandbox.py", "helpers/grading/score.py",
           "helpers/grading/kernels/", "helpers/grading/course.py", "helpers/commands/demo.py")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / course.BUNDLE_NAME
    # test_release.py proves release/ is what nbgrader makes of source/; not again here
    return course.build_bundle(out, exchange="/srv/nbgrader/exchange", check_release=False)


def _wheel(bundle) -> Path:
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_bundle_is_the_release_and_a_wheel(bundle):
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    release = PROJECT_ROOT / "release"
    expected = {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file()
                and ".ipynb_checkpoints" not in p.parts}
    wheel = _wheel(bundle)
    assert files == expected | {"README.md", "requirements.txt", "nbgrader_config.py", f"wheels/{wheel.name}"}
    for rel in expected:
        assert (bundle / rel).read_bytes() == (release / rel).read_bytes(), f"{rel} is not the release's"
    assert (bundle / "requirements.txt").read_text() == f"./wheels/{wheel.name}\n"
    assert "/srv/nbgrader/exchange" in (bundle / "nbgrader_config.py").read_text()
    with tarfile.open(bundle.with_name(bundle.name + ".tar.gz")) as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
    assert members == {f"{bundle.name}/{rel}" for rel in files}


def test_nothing_of_source_or_hidden_tests_is_in_it(bundle):
    assert course.bundle_leaks(bundle) == []
    secret_files = [p for folder in ("source", "hidden_tests") for p in (PROJECT_ROOT / folder).rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.stat().st_size > 0]
    secret = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in secret_files}
    shipped = {str(p.relative_to(bundle)): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    with zipfile.ZipFile(_wheel(bundle)) as wheel:
        members = wheel.namelist()
        shipped.update({f"wheel!{m}": wheel.read(m) for m in members})
    same = {name: secret[h] for name, data in shipped.items() if (h := hashlib.sha256(data).hexdigest()) in secret}
    assert not same, f"files of source/ or hidden_tests/ in the bundle: {same}"
    assert not [m for m in members if m.startswith(TA_ONLY)], members
    grading = sorted(m for m in members if m.startswith("helpers/grading/"))
    assert "helpers/grading/challenge.py" in grading and "helpers/grading/tiers.py" in grading  # the notebooks use them


def test_the_check_finds_every_solution_and_hidden_test_it_is_shown(bundle, tmp_path):
    """Plant source/, hidden_tests/ and the TA-only modules in a copy of the bundle: every solution
    region and test body that has a line or run of lines to find is reported."""
    import shutil
    planted = tmp_path / "planted"
    shutil.copytree(bundle, planted)
    shutil.copytree(PROJECT_ROOT / "source", planted / "copied-source",
                    ignore=shutil.ignore_patterns("*.pt", ".ipynb_checkpoints"))
    for path in (PROJECT_ROOT / "hidden_tests").rglob("*.py"):  # renamed: found by content, not by name
        (planted / "notes").mkdir(exist_ok=True)
        (planted / "notes" / f"{path.parent.name}.txt").write_text(path.read_text())
    for name in ("simulate.py", "hostile.py"):
        shutil.copy2(PROJECT_ROOT / "helpers" / "grading" / name, planted / f"copied-{name}")
    leaks = course.bundle_leaks(planted)
    secrets, public = course.secret_texts()
    shown = {text for _, _, text in course._snippets(course._code_lines(public))}
    findable = [where for _, where, text in secrets
                if any(s not in shown for _, _, s in course._snippets(course._code_lines(text)))]
    assert len(findable) >= 0.9 * len(secrets)  # only one-liners such as `return self.net(x)` are not
    reported = "\n".join(leaks)
    missed = [where for where in findable if f"of {where}:" not in reported]
    assert not missed, missed
    assert re.search(r"copied-simulate\.py line \d+: solution text", reported)  # wrong answers built on solutions
    assert re.search(r"copied-hostile\.py line \d+: solution text", reported)


def test_the_wheel_installs_and_serves_the_notebooks(bundle, tmp_path):
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                                "--target", str(target), str(_wheel(bundle))], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    used = set()
    for nb in (bundle).glob("*/*.ipynb"):
        used.update(re.findall(r"(?:from|import)\s+(helpers(?:\.\w+)*)", course._notebook_text(nb.read_text())))
    assert "helpers.grading.challenge" in used
    probe = ("import importlib, sys, helpers\n"
             f"assert helpers.__file__.startswith({str(target)!r}), helpers.__file__\n"
             f"for name in {sorted(used)!r}: importlib.import_module(name)\n"
             "from helpers.cli import build_parser\n"
             "print(sorted(build_parser()._subparsers._group_actions[0].choices))\n")
    # -S: no .pth files, so not the editable install of this checkout; torch and the rest from the venv
    path = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    run = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin", "COURSE_OFFLINE": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "['calibrate', 'label', 'predict', 'serve', 'train']"  # no demo, no grade: TA-only
