"""`python -m helpers <command>`: one command line with real subcommands, whose choices come from
the registries, and the instructor's release commands run on a course folder of their own."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import pytest

from helpers import cli
from helpers.settings import PROJECT_ROOT


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_every_command_is_a_subcommand_with_its_own_help(capsys):
    commands = subparsers(cli.build_parser())
    assert set(commands) == set(cli.COMMANDS)
    assert {"train", "grade", "release", "check-release", "student-bundle", "demo"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        assert f"python -m helpers {name}" in capsys.readouterr().out


def test_grade_actions_are_subcommands_and_an_assignment_is_short_for_score(capsys):
    from helpers.grading import cli as grade_cli
    assert cli.GRADE_ACTIONS == grade_cli.ACTIONS
    actions = subparsers(subparsers(cli.build_parser())["grade"])
    assert tuple(actions) == grade_cli.ACTIONS
    assert cli.expand_shorthand(["grade", "06_challenge", "--jobs", "2"]) == ["grade", "score", "06_challenge", "--jobs", "2"]
    assert cli.expand_shorthand(["grade", "merge", "--into", "x.db"]) == ["grade", "merge", "--into", "x.db"]
    parsed = cli.build_parser().parse_args(cli.expand_shorthand(["grade", "06_challenge", "--reduced-tiers"]))
    assert parsed.action == "score" and parsed.assignment == "06_challenge" and parsed.reduced_tiers
    with pytest.raises(SystemExit):  # a mistyped option is reported by `grade score`, with its options
        cli.main(["grade", "06_challenge", "--tiers-file", "x"])
    err = capsys.readouterr().err
    assert "python -m helpers grade score: error: unrecognized arguments: --tiers-file" in err and "--tiers" in err


def test_choices_come_from_the_registries():
    from helpers.data import dataset_names
    from helpers.eval.inference import TTA_CHOICES
    from helpers.models import model_names
    from helpers.train.recipes import DEFAULT_LR
    from helpers.train.schedules import SCHEDULES
    commands = subparsers(cli.build_parser())
    train = commands["train"]
    assert option(train, "--dataset").choices == dataset_names() == ["cifar10", "cifar100", "synthetic"]
    assert sorted(option(train, "--model").choices) == sorted(model_names())
    assert list(option(train, "--schedule").choices) == list(SCHEDULES)
    assert list(option(train, "--optimizer").choices) == list(DEFAULT_LR)
    assert set(option(train, "--tta").choices) == set(TTA_CHOICES) - {"none"}
    assert option(commands["calibrate"], "--dataset").choices == dataset_names()
    for name in ("calibrate", "predict", "serve"):
        assert tuple(option(commands[name], "--tta").choices) == TTA_CHOICES
    score = subparsers(commands["grade"])["score"]
    assert option(score, "--dataset").choices == dataset_names()


def test_the_makefile_calls_the_one_command_line():
    dry = subprocess.run(["make", "-n", "--always-make", "release", "check-release", "student-bundle", "demo"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True)
    lines = [line for line in dry.stdout.splitlines() if " -m helpers" in line]
    assert [line.split(" -m helpers ", 1)[1] for line in lines] == ["release", "check-release", "student-bundle", "demo"]
    assert not any("helpers.grading" in line for line in dry.stdout.splitlines())


def test_release_and_check_release_on_a_course_of_their_own(tmp_path, capsys):
    """`release` rebuilds release/<a> from source/<a> with nbgrader; `check-release` fails, naming
    the files, while release/ is stale, and passes once it is rebuilt."""
    root = tmp_path / "course"
    shutil.copytree(PROJECT_ROOT / "source" / "01_data", root / "source" / "01_data",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy2(PROJECT_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    assert cli.main(["check-release", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "release/01_data/01_data.ipynb" in out and "run: python -m helpers release" in out
    assert cli.main(["release", "01_data", "--root", str(root)]) == 0
    assert (root / "release" / "01_data" / "01_data.ipynb").is_file()
    assert cli.main(["check-release", "--root", str(root)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert "### BEGIN SOLUTION" not in (root / "release" / "01_data" / "01_data.ipynb").read_text()


def test_the_old_entry_points_are_gone():
    """One command line: the grading modules no longer run as scripts of their own."""
    for module in ("helpers.grading.course", "helpers.grading.cli", "helpers.commands.label"):
        run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert "usage:" not in run.stdout, module
