"""Every command the README shows is run by a test (or by CI): this keeps the two in step."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# README command -> (test file that runs it, text that file must contain to run it)
COVERED = {
    "make demo": ("tests/test_demo.py", "-m helpers demo"),
    "make test": (".ci/run", "make test"),
    "make lab": ("tests/test_readme.py", "lab:"),
    "make release": ("tests/test_cli.py", 'main(["release", "01_data"'),
    "make student-bundle": ("tests/test_student_bundle.py", "course.build_bundle("),
    "nbgrader release_assignment 01_data": ("tests/test_exchange.py", '"release_assignment", TINY'),
    "nbgrader list": ("tests/test_exchange.py", '[NBGRADER, "list"]'),
    "nbgrader fetch_assignment 01_data": ("tests/test_exchange.py", '"fetch_assignment", TINY'),
    "nbgrader submit 01_data": ("tests/test_exchange.py", '"submit", TINY'),
    "nbgrader fetch_feedback 01_data": ("tests/test_exchange.py", '"fetch_feedback", TINY'),
    "nbgrader collect 06_challenge": ("tests/test_exchange.py", '"collect", TINY'),
    "nbgrader release_feedback 06_challenge": ("tests/test_exchange.py", '"release_feedback", TINY'),
    "make check-release": ("tests/test_release.py", "release_differences"),
    "source .venv/bin/activate": ("tests/test_ta_workflow.py", "PATH"),
    "nbgrader autograde 06_challenge": ("tests/test_ta_workflow.py", '"nbgrader", "autograde", A'),
    "python -m helpers grade 06_challenge": ("tests/test_ta_workflow.py", '"python", "-m", "helpers", "grade", A'),
    "nbgrader generate_feedback 06_challenge": ("tests/test_ta_workflow.py", '"nbgrader", "generate_feedback", A'),
    "nbgrader export": ("tests/test_ta_workflow.py", '"nbgrader", "export"'),
    "bash scripts/slurm_grade.sh submit 06_challenge 8": ("tests/test_slurm_script.py", '"submit"'),
    ".venv/bin/python benchmarks/data_speed.py": ("tests/test_benchmarks.py", "data_speed.py"),
    ".venv/bin/python benchmarks/train_speed.py": ("tests/test_benchmarks.py", "train_speed.py"),
    ".venv/bin/python benchmarks/harness_time.py": ("tests/test_benchmarks.py", "harness_time.py"),
    ".venv/bin/python -m helpers train -m experiment=fastnet optim.lr=0.1,0.2 seed=0,1,2":
        ("tests/test_hydra_cli.py", '_train(tmp_path, "-m", '),
    ".venv/bin/python -m helpers calibrate out/fastnet/checkpoint.pt": ("tests/test_inference.py", 'cli.main(["calibrate"'),
    ".venv/bin/python -m helpers predict out/fastnet/checkpoint.pt my_photos/ --out predictions.csv":
        ("tests/test_inference.py", 'cli.main(["predict", str(path), str(folder), "--out"'),
    ".venv/bin/python -m helpers serve out/fastnet/checkpoint.pt": ("tests/test_serve.py", '"-m", "helpers", "serve"'),
}
TRAIN_PREFIX = ".venv/bin/python -m helpers train "


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def runnable_train_example(command: str) -> bool:
    """A single training run (flags or Hydra overrides): run below; a sweep (-m) is covered in COVERED."""
    return command.startswith(TRAIN_PREFIX) and not command[len(TRAIN_PREFIX):].startswith("-m ")


def test_every_readme_command_is_covered():
    for command in readme_commands():
        if runnable_train_example(command):
            continue  # run below
        assert command in COVERED, f"README command {command!r} is run by no test: add one and list it here"
        path, needle = COVERED[command]
        assert needle in (ROOT / path).read_text(), f"{path} no longer runs {command!r}"


def test_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "lab", "release", "check-release", "student-bundle"):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"Makefile has no target {target}"
    for command in ("release", "check-release", "student-bundle", "demo"):  # the one command line
        assert re.search(rf"^\t\$\(PY\) -m helpers {command}$", makefile, re.M), command
    assert "jupyter lab release/" in makefile


def test_make_lab_runs_as_root():
    """JupyterLab refuses root without --allow-root; `make lab` adds it for root only."""
    dry = subprocess.run(["make", "-n", "-o", ".venv/.installed", "lab"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    command = [line for line in dry.stdout.splitlines() if "jupyter lab release/" in line]
    assert len(command) == 1, dry.stdout
    assert ("--allow-root" in command[0]) == (os.getuid() == 0), command[0]


@pytest.mark.parametrize("command", [c for c in readme_commands() if runnable_train_example(c)])
def test_readme_train_examples_run_in_reduced_mode(command, tmp_path):
    args = command[len(TRAIN_PREFIX):].split()
    if "--out" in args:
        args[args.index("--out") + 1] = str(tmp_path / "out")
    else:  # Hydra overrides: out=PATH
        args = [f"out={tmp_path / 'out'}" if a.startswith("out=") else a for a in args]
        assert f"out={tmp_path / 'out'}" in args, f"{command!r}: give out=PATH so the test can redirect it"
    args = ["data=synthetic" if a.startswith("data=") else a for a in args]  # offline: the generated dataset
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CIFAR10", "COURSE_CIFAR100")}
    env.update(COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_DATA_DIR=str(tmp_path / "data"), MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-m", "helpers", "train", *args, "--no-progress"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"checkpoint.pt", "metrics.json", "history.json",
                                                               "curves.png"}
