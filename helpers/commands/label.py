"""`python -m helpers label FOLDER --classes a,b`: open the labelling tool on FOLDER in JupyterLab.

    python -m helpers label photos/ --classes cat,dog            # writes photos/../label_photos.ipynb, starts Lab
    python -m helpers label photos/ --classes cat,dog --dry-run  # only write the notebook, print the command
    python -m helpers label practice/ --classes disk,square --sample   # practise on generated images

Labels are saved to FOLDER/labels.csv after every key press; run it again to carry on where you stopped.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

MARK = "helpers_label"  # notebook metadata key: a notebook this command wrote (and may rewrite)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("folder", type=Path, help="the folder of images to label (subfolders are searched too)")
    a("--classes", required=True, help="comma-separated class names, e.g. cat,dog (keys A/B or 1-9, 0)")
    a("--notebook", type=Path, help="the notebook to write (default: label_<folder>.ipynb next to the folder)")
    a("--labels", type=Path, help="the labels CSV (default: FOLDER/labels.csv)")
    a("--sample", action="store_true", help="first fill FOLDER with generated practice images (no network)")
    a("--no-browser", action="store_true", help="do not open a browser (passed on to jupyter lab)")
    a("--dry-run", action="store_true", help="write the notebook and print the jupyter command; start nothing")


def _rel(target: Path, start: Path) -> str:
    try:
        return os.path.relpath(target.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return str(target.resolve())


def build_notebook(folder: Path, classes: list[str], notebook: Path, labels: Path | None = None):
    """A notebook whose cells open LabellingTool on `folder` (paths relative to the notebook)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    from ..labelling.keys import key_help
    here = notebook.parent
    kit = Path(__file__).resolve().parent.parent
    args = f"{_rel(folder, here)!r}, {classes!r}" + (f", labels_csv={_rel(labels, here)!r}" if labels else "")
    nb = new_notebook(cells=[
        new_markdown_cell(
            f"# Label `{folder.name}`\n\nRun the cell below. Keep the mouse over the tool and press keys: "
            f"{key_help(classes)}. Every label is saved to `labels.csv` at once; reopen this notebook to carry "
            "on where you stopped. When you are done, run the last cell to write `splits.csv`."),
        new_code_cell(
            "import sys\ntry:\n    import helpers\nexcept ImportError:  # the kit is not installed: use the copy "
            f"this notebook was made from\n    sys.path.insert(0, {str(kit)!r})\n"
            f"from helpers.labelling import LabellingTool, export_splits\n\ntool = LabellingTool({args})\ntool"),
        new_code_cell("export_splits(tool.session.labels_csv, ratios=(0.7, 0.15, 0.15), seed=0)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata[MARK] = {"folder": str(folder.resolve()), "classes": classes,
                         "labels": str(labels.resolve()) if labels else None}
    nbformat.validate(nb)
    return nb


def write_notebook(nb, path: Path) -> bool:
    """Write `nb` atomically, unless the same notebook is already there (its outputs are kept);
    a notebook this command did not write is never overwritten. True when written."""
    import nbformat
    from ..atomic import atomic_write
    if path.exists():
        try:
            mark = nbformat.read(path, as_version=4).metadata.get(MARK)
        except Exception:
            mark = None
        if mark is None:
            raise SystemExit(f"error: {path} exists and was not written by `python -m helpers label`; "
                             "choose another with --notebook PATH.")
        if mark == nb.metadata[MARK]:
            return False
    with atomic_write(path, "w") as f:
        nbformat.write(nb, f)
    return True


def lab_command(notebook: Path, no_browser: bool = False) -> list[str]:
    """The `jupyter lab` command that opens `notebook` (with --allow-root when running as root)."""
    cmd = [sys.executable, "-m", "jupyter", "lab", notebook.name, f"--ServerApp.root_dir={notebook.parent.resolve()}"]
    if no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def run(args) -> int:
    from ..labelling.session import LabelError, check_classes
    try:
        classes = check_classes(args.classes)
    except LabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folder = args.folder.expanduser()
    if args.sample:
        from ..labelling import make_sample_folder
        from ..data.synthetic import CLASSES
        if not set(classes) <= set(CLASSES):
            print(f"error: --sample draws generated shapes, so --classes must be shape names from {CLASSES} "
                  "(e.g. --classes disk,square).", file=sys.stderr)
            return 2
        make_sample_folder(folder, classes=classes)
        print(f"wrote practice images of {classes} to {folder}")
    if not folder.is_dir():
        print(f"error: {folder}: no such folder. Pass the folder holding your images, or add --sample to "
              "make a practice folder there.", file=sys.stderr)
        return 2
    notebook = (args.notebook or folder.resolve().parent / f"label_{folder.resolve().name}.ipynb").expanduser()
    notebook.parent.mkdir(parents=True, exist_ok=True)
    written = write_notebook(build_notebook(folder, classes, notebook, args.labels), notebook)
    cmd = lab_command(notebook, args.no_browser)
    print(f"{'wrote' if written else 'using the existing'} {notebook}")
    print(("would run: " if args.dry_run else "running: ") + shlex.join(cmd))
    if args.dry_run:
        return 0
    try:
        return subprocess.call(cmd, cwd=notebook.parent)
    except KeyboardInterrupt:
        return 0
