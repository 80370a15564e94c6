"""`python -m helpers <command>`: the course's one command line.

Each command is a module (or a class in one) with `add_arguments(parser)` and `run(args) -> int`;
this file only lists and dispatches them, so a command's options and its code sit together.
The Makefile, the README and the tests call these commands and nothing else.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    # name: ("module" or "module:Class", one-line help)
    "demo": ("helpers.commands.demo", "run the course's main job end to end on the data available"),
    "train": ("helpers.commands.train", "train a registry model and write checkpoint, metrics.json and curves"),
    "predict": ("helpers.commands.predict", "a checkpoint's predictions for an image folder, a .tar.gz or a dataset split"),
    "calibrate": ("helpers.commands.calibrate", "fit a temperature on the validation split and store it in the checkpoint"),
    "label": ("helpers.commands.label", "label a folder of images in JupyterLab (keys, undo, autosave to labels.csv)"),
    "serve": ("helpers.serve", "serve a checkpoint over HTTP: a prediction API and a web page (needs fastapi, uvicorn)"),
    "grade": ("helpers.grading.cli", "TAs: score students' blocks and checkpoints outside their kernels, fill the gradebook"),
    "release": ("helpers.grading.release_cli:Release", "instructors: rebuild release/ from source/ with nbgrader"),
    "check-release": ("helpers.grading.release_cli:CheckRelease", "instructors: exit 1 when release/ is stale"),
    "student-bundle": ("helpers.grading.release_cli:StudentBundle",
                       "instructors: what a student gets (release notebooks, a helpers wheel, no solutions)"),
}
# `grade <assignment>` is short for `grade score <assignment>` (helpers.grading.cli.ACTIONS).
GRADE_ACTIONS = ("score", "merge", "shard-students", "shard-init")


class _Parser(argparse.ArgumentParser):
    """argparse that lists the valid options when it meets an unknown one."""

    def parse_args(self, args=None, namespace=None):
        # argparse reports a subcommand's unknown options from the top-level parser, which
        # knows only --help; report them from the innermost subcommand's parser, which lists its own.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen, looking = self, True
            while looking:
                looking = False
                for action in chosen._actions:
                    if isinstance(action, argparse._SubParsersAction):
                        inner = action.choices.get(getattr(parsed, action.dest, None))
                        if inner is not None:
                            chosen, looking = inner, True
                            break
            chosen.error("unrecognized arguments: " + " ".join(extras))
        return parsed

    def error(self, message):
        if "unrecognized arguments" in message or "invalid choice" in message:
            opts = sorted({o for a in self._actions for o in a.option_strings if o.startswith("--")})
            message += "\nvalid options: " + " ".join(opts)
        super().error(message)


def _command(target: str):
    """The module or class a COMMANDS entry names; None when it is not installed (the student
    bundle leaves the TA's grading commands out)."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # a real import error inside the command, not a missing command
        return None
    return getattr(module, attribute) if attribute else module


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (target, help_text) in COMMANDS.items():
        command = _command(target)
        if command is None:
            continue
        command.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        sub.choices[name].set_defaults(_run=command.run)
    return parser


def expand_shorthand(argv: list[str]) -> list[str]:
    """`grade 06_challenge ...` -> `grade score 06_challenge ...`."""
    if len(argv) > 1 and argv[0] == "grade" and argv[1] not in GRADE_ACTIONS and not argv[1].startswith("-"):
        return ["grade", "score", *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = expand_shorthand(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
