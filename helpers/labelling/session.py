"""The labelling tool's state, apart from any widget: files, labels, cursor, undo, skip, autosave.

Tests and scripts drive a `LabelSession` directly; `LabellingTool` only draws it. Every label is
written to labels.csv the moment it is given (temporary file + rename), so a killed kernel loses
nothing, and reopening the folder resumes at the first unlabelled image.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..atomic import atomic_write

# Files that sit in image folders but are never images: not tried, not reported as unreadable.
NOT_IMAGES = {".csv", ".ipynb", ".txt", ".md", ".json", ".py", ".yaml", ".yml", ".log", ".zip", ".gz",
              ".tar", ".tgz", ".npz", ".npy", ".pt", ".pth", ".html", ".pdf"}
HEADER = ["path", "label"]


class LabelError(ValueError):
    """A labelling folder, class list or labels file cannot be used; the message says what to do."""


def check_classes(classes) -> list[str]:
    """The class names as a list (a "a,b" string is split), after checking they can name folders."""
    if isinstance(classes, str):
        classes = classes.split(",")
    names = [str(c).strip() for c in classes]
    bad = [c for c in names if not c or c.startswith(".") or "/" in c or "\\" in c]
    if bad:
        raise LabelError(f"class names {bad} cannot be used: each must be non-empty, must not start with '.' "
                         "and must not contain '/' or '\\' (they become folder names on export).")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise LabelError(f"class names {dup} are given twice; give each class once.")
    if len(names) < 2:
        raise LabelError(f"give at least two classes to label with, got {names}.")
    return names


def _is_export_tree(folder: str) -> bool:
    """True for a folder written by helpers.data.export (it holds our manifest.json): never labelled again."""
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            return str(json.load(f).get("written_by", "")).startswith("helpers.")
    except (OSError, ValueError, AttributeError):
        return False


def probe_image(path: Path) -> str | None:
    """None when Pillow can open and verify the file, else a short reason it cannot."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.verify()
        return None
    except Exception as exc:  # Pillow raises many types for broken or foreign files
        return f"{type(exc).__name__}: {exc}"[:200]


def scan_images(folder: Path) -> tuple[list[str], dict[str, str]]:
    """Readable images under `folder` (relative POSIX paths, sorted) and {unreadable path: reason}.

    Hidden files and folders, non-image files (.csv, .ipynb, ...) and trees written by
    helpers.data.export are left out: they are not data to label.
    """
    files, unreadable = [], {}
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _is_export_tree(os.path.join(here, d)))
        for name in names:
            if name.startswith(".") or os.path.splitext(name)[1].lower() in NOT_IMAGES:
                continue
            path = Path(here) / name
            rel = path.relative_to(folder).as_posix()
            reason = probe_image(path)
            if reason is None:
                files.append(rel)
            else:
                unreadable[rel] = reason
    return sorted(files), dict(sorted(unreadable.items()))


def read_labels(path: Path) -> dict[str, str]:
    """{relative path: label} from a labels CSV (columns path,label); {} when there is none yet."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    if [c.strip() for c in rows[0][:2]] != HEADER:
        raise LabelError(f"{path}: the first row is {rows[0]}, expected the header 'path,label'. It is not a "
                         "labels file of this tool: pass labels_csv= another file, or fix its header.")
    labels = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise LabelError(f"{path}, line {line}: {row} is not 'path,label'. Fix or delete that line.")
        labels[row[0].strip()] = row[1].strip()
    return labels


def write_labels(path: Path, labels: dict[str, str]) -> None:
    """Write all labels, sorted by path, atomically: a reader or a crash never sees half a file."""
    with atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(sorted(labels.items()))


class LabelSession:
    """Which image is shown, which are labelled, and every label saved at once to `labels_csv`.

    `label`, `skip`, `undo`, `next_unlabelled`, `prev` and `next` change the state; the widget and
    the key handler call only these, so everything the tool does can be tested without Jupyter.
    """

    def __init__(self, folder, classes, labels_csv=None, *, verbose: bool = True):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise LabelError(f"{self.folder}: no such folder. Pass the folder holding your images (subfolders "
                             f"are searched too), or make a practice one with make_sample_folder('{folder}').")
        self.classes = check_classes(classes)
        self.labels_csv = Path(labels_csv).expanduser() if labels_csv is not None else self.folder / "labels.csv"
        self.files, self.unreadable = scan_images(self.folder)
        if not self.files:
            extra = f" ({len(self.unreadable)} files could not be read: {', '.join(list(self.unreadable)[:5])})" \
                if self.unreadable else ""
            raise LabelError(f"{self.folder}: no images found, subfolders included{extra}. Put PNG, JPEG or other "
                             "image files in it, or make a practice folder with make_sample_folder(path).")
        self.labels = read_labels(self.labels_csv)
        self.missing = sorted(p for p in self.labels
                              if p not in self.unreadable and not (self.folder / p).is_file())
        self.skipped: set[str] = set()
        self._history: list[tuple] = []
        self._index = {p: i for i, p in enumerate(self.files)}
        self.cursor = self.first_unlabelled()
        if verbose:
            print(self.report())

    # ------------------------------------------------------------------ what there is
    @property
    def current(self) -> str | None:
        """The relative path of the image shown."""
        return self.files[self.cursor] if self.files else None

    @property
    def n_labelled(self) -> int:
        return sum(1 for p in self.files if p in self.labels)

    @property
    def done(self) -> bool:
        return self.n_labelled == len(self.files)

    @property
    def progress(self) -> str:
        """E.g. "12/40 labelled, 2 skipped"."""
        text = f"{self.n_labelled}/{len(self.files)} labelled"
        skipped = sum(1 for p in self.skipped if p not in self.labels)
        return text + (f", {skipped} skipped" if skipped else "")

    def report(self) -> str:
        """What was found: images, labels, and any unreadable or vanished files with what to do."""
        lines = [f"[labelling] {self.folder}: {len(self.files)} images, {self.progress}; labels in {self.labels_csv}"]
        if self.unreadable:
            shown = ", ".join(list(self.unreadable)[:5]) + (", ..." if len(self.unreadable) > 5 else "")
            lines.append(f"[labelling] {len(self.unreadable)} files are not readable images and are skipped "
                         f"(see .unreadable): {shown}")
        if self.missing:
            shown = ", ".join(self.missing[:5]) + (", ..." if len(self.missing) > 5 else "")
            lines.append(f"[labelling] {len(self.missing)} labels in {self.labels_csv.name} are for files no longer "
                         f"in the folder (kept in the CSV, listed in .missing): {shown}. Put the files back, or "
                         "delete those rows if you removed the files on purpose.")
        unknown = sorted({v for v in self.labels.values() if v not in self.classes})
        if unknown:
            lines.append(f"[labelling] {self.labels_csv.name} uses classes {unknown} that are not in classes="
                         f"{self.classes}: those labels are kept; add the classes to relabel them by key.")
        return "\n".join(lines)

    def first_unlabelled(self) -> int:
        """Index of the first unlabelled image (where a reopened session resumes); 0 when all are done."""
        return next((i for i, p in enumerate(self.files) if p not in self.labels), 0)

    def _find_unlabelled(self, avoid_skipped: bool) -> int | None:
        n = len(self.files)
        for step in range(1, n + 1):
            i = (self.cursor + step) % n
            p = self.files[i]
            if p not in self.labels and not (avoid_skipped and p in self.skipped):
                return i
        return None

    def _advance(self) -> None:
        """After a label or skip: the next unlabelled image, skipped ones last; stay when none is left."""
        i = self._find_unlabelled(avoid_skipped=True)
        if i is None:
            i = self._find_unlabelled(avoid_skipped=False)
        if i is not None:
            self.cursor = i

    # ------------------------------------------------------------------ actions
    def _require_current(self) -> str:
        if not self.files:
            raise LabelError(f"{self.folder}: no readable images are left (see .unreadable). Add images and "
                             "open the folder again.")
        return self.current

    def label(self, cls) -> str:
        """Give the current image class `cls` (a name or an index), save at once, move on."""
        if isinstance(cls, int) and not isinstance(cls, bool):
            if not 0 <= cls < len(self.classes):
                raise LabelError(f"class index {cls} is out of range: there are {len(self.classes)} classes "
                                 f"{self.classes}.")
            cls = self.classes[cls]
        if cls not in self.classes:
            raise LabelError(f"{cls!r} is not one of the classes {self.classes}.")
        path = self._require_current()
        self._history.append(("label", path, self.labels.get(path), self.cursor))
        self.labels[path] = cls
        self.skipped.discard(path)
        self.save()
        self._advance()
        return path

    def skip(self) -> str:
        """Leave the current image unlabelled for now and show the next unlabelled one."""
        path = self._require_current()
        self._history.append(("skip", path, None, self.cursor))
        self.skipped.add(path)
        self._advance()
        return path

    def undo(self) -> str | None:
        """Take back the last label (or skip) and show that image again; None when there is nothing to undo."""
        if not self._history:
            return None
        kind, path, previous, cursor = self._history.pop()
        if kind == "label":
            if previous is None:
                self.labels.pop(path, None)
            else:
                self.labels[path] = previous
            self.save()
        else:
            self.skipped.discard(path)
        self.cursor = self._index.get(path, cursor)
        return path

    def next_unlabelled(self) -> int:
        """Show the next unlabelled image after this one (wrapping round), skipped ones included."""
        i = self._find_unlabelled(avoid_skipped=False)
        if i is not None:
            self.cursor = i
        return self.cursor

    def prev(self) -> int:
        self.cursor = max(0, self.cursor - 1)
        return self.cursor

    def next(self) -> int:
        self.cursor = min(len(self.files) - 1, self.cursor + 1)
        return self.cursor

    def go(self, where) -> int:
        """Show image `where`: an index or a relative path."""
        self.cursor = self._index[where] if isinstance(where, str) else max(0, min(len(self.files) - 1, int(where)))
        return self.cursor

    def neighbours(self, k: int = 2) -> tuple[list[int], list[int]]:
        """Indices of up to `k` images before and after the current one."""
        return (list(range(max(0, self.cursor - k), self.cursor)),
                list(range(self.cursor + 1, min(len(self.files), self.cursor + 1 + k))))

    def mark_unreadable(self, path: str, reason: str) -> None:
        """Move a file that failed to decode (a truncated JPEG passes the scan) to `unreadable`."""
        if path not in self._index:
            return
        current = self.current
        self.unreadable[path] = reason
        self.files.remove(path)
        self._index = {p: i for i, p in enumerate(self.files)}
        if not self.files:
            self.cursor = 0
        elif current in self._index:
            self.cursor = self._index[current]
        else:
            self.cursor = min(self.cursor, len(self.files) - 1)

    def save(self) -> None:
        """Write every label, including those of vanished files, to labels_csv atomically."""
        write_labels(self.labels_csv, self.labels)
