"""`python -m helpers <command>`: the course's command line, one module per command.

Each command module defines `add_arguments(parser)` and `run(args) -> int`; this file only
dispatches, so a command's options and its code sit together.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    # name: (module, one-line help)
    "demo": ("helpers.demo", "run the course's main job end to end on the data available"),
    "train": ("helpers.train_cli", "train a registry model and write checkpoint, metrics.json and curves"),
    "grade": ("helpers.grading.cli", "score students' checkpoints outside their kernels and fill the gradebook"),
    "predict": ("helpers.predict_cli", "a checkpoint's predictions for an image folder, a .tar.gz or a dataset split"),
    "calibrate": ("helpers.calibrate_cli", "fit a temperature on the validation split and store it in the checkpoint"),
    "label": ("helpers.label_cli", "label a folder of images in JupyterLab (keys, undo, autosave to labels.csv)"),
    "serve": ("helpers.serve", "serve a checkpoint over HTTP: a prediction API and a web page (needs fastapi, uvicorn)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that lists the valid options when it meets an unknown one."""

    def parse_args(self, args=None, namespace=None):
        # argparse reports a subcommand's unknown options from the top-level parser, which
        # knows only --help; report them from the subcommand's parser, which lists its own.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen = self
            for action in self._actions:
                if isinstance(action, argparse._SubParsersAction):
                    chosen = action.choices.get(getattr(parsed, action.dest, None), self)
            chosen.error("unrecognized arguments: " + " ".join(extras))
        return parsed

    def error(self, message):
        if "unrecognized arguments" in message or "invalid choice" in message:
            opts = sorted({o for a in self._actions for o in a.option_strings if o.startswith("--")})
            message += "\nvalid options: " + " ".join(opts)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise  # a real import error inside the command, not a missing command
            continue  # a command not built yet
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        sub.choices[name].set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
