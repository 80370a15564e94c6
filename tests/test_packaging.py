"""pyproject.toml and environment.yml name the same packages; the layout is the one the design fixes."""
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
