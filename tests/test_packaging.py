"""pyproject.toml and environment.yml name the same packages; the layout is the one the design fixes."""
import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda's name for a package -> PyPI's


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    conda = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^\s{2}- ([A-Za-z][\w.-]*)", line)
        if m and m.group(1) not in ("python", "pip"):
            conda.add(CONDA_NAMES.get(_name(m.group(1)), _name(m.group(1))))
    assert conda == pyproject, f"only in environment.yml: {conda - pyproject}; only in pyproject: {pyproject - conda}"


def test_layout_of_the_design():
    for name in ["source", "release", "autograded", "helpers", "tests", "nbgrader_config.py",
                 "environment.yml", "README.md", "pyproject.toml", "Makefile", ".ci/run"]:
        assert (ROOT / name).exists(), f"{name} is missing"
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_data_is_ignored_by_git():
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "data/*" in ignore and ".venv/" in ignore


BARE_MACHINE = """
import runpy, sys
for name in {blocked!r}:
    sys.modules[name] = None  # importing it raises ModuleNotFoundError, as on the bare GPU machine
sys.argv = ["helpers", *{argv!r}]
runpy.run_module("helpers", run_name="__main__", alter_sys=True)
"""
# Not on the GPU machine (it has torch, torchvision, numpy, Pillow, matplotlib and tqdm only).
NOT_ON_THE_GPU_MACHINE = ("hydra", "omegaconf", "mlflow", "fastapi", "uvicorn", "starlette", "multipart", "nbgrader",
                          "nbformat", "nbclient", "ipykernel", "ipywidgets", "ipyevents", "IPython", "jupyterlab",
                          "sklearn", "selenium")


def test_helpers_trains_on_a_machine_with_only_torch(tmp_path):
    """`python -m helpers train` with flags needs none of the Jupyter, web, config or tracking packages
    (they are imported where used); tracking is skipped with a warning."""
    import subprocess
    import sys
    argv = ["train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "out"),
            "--no-progress"]
    env = dict(os.environ, COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_DATA_DIR=str(tmp_path / "data"),
               MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-c", BARE_MACHINE.format(blocked=NOT_ON_THE_GPU_MACHINE, argv=argv)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "out" / "checkpoint.pt").is_file() and (tmp_path / "out" / "metrics.json").is_file()
