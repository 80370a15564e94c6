"""`export_image_folder`: write a dataset as `<path>/{train,test}/<class>/<index>.png`, with a manifest.

The layout is the one `helpers.data.imagefolder` reads, so `load_dataset(name, path=path)` gives the
same pixels and labels back. Each file is written atomically, a rerun writes nothing that is
already right, and `manifest.json` (dataset, source, classes, counts, checksums) is written last.
A folder that holds another dataset is refused: two datasets in one folder silently become one
dataset with the classes of both (how a 10-class run once trained on 110 classes).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_json

MANIFEST = "manifest.json"
MARKER = ".export-in-progress.json"  # the identity of an export under way: a rerun may finish it
SPLIT_DIRS = ("train", "val", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".ppm"}
SHA256_OF = "int64 little-endian labels, then the uint8 (N, 32, 32, 3) images, in the dataset's index order"


class ExportError(RuntimeError):
    """An export would mix datasets or cannot be written; the message says what is there and what to do."""


@dataclass
class ExportResult:
    """What an export did: files written, files already right, stale files removed, and the manifest."""
    path: Path
    written: int
    kept: int
    removed: int = 0
    manifest: dict = field(default_factory=dict, repr=False)

    def __str__(self):
        return (f"{self.path}: {self.written} files written, {self.kept} already there"
                + (f", {self.removed} stale removed" if self.removed else ""))


def content_sha256(images, labels) -> str:
    """Checksum of one split's content (see SHA256_OF): equal exactly when pixels and labels are."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(np.asarray(labels), dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(np.asarray(images), dtype=np.uint8).tobytes())
    return h.hexdigest()


def check_class_names(classes) -> None:
    """Class names must be usable as folder names and distinct, or the export would merge classes."""
    bad = [c for c in classes if not str(c) or str(c).startswith(".") or "/" in str(c) or "\\" in str(c)]
    if bad:
        raise ExportError(f"class names {bad} cannot be folder names (empty, leading '.', or a '/' or '\\'). "
                          "Rename those classes before exporting.")
    if len(set(classes)) != len(classes):
        raise ExportError(f"class names repeat ({sorted({c for c in classes if list(classes).count(c) > 1})}); "
                          "two classes would share a folder. Make the names distinct before exporting.")


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def _has_pixels(path: Path, image: np.ndarray) -> bool:
    """True when `path` decodes to exactly `image` (a file already right is not written again)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return np.array_equal(np.asarray(im.convert("RGB")), image)
    except Exception:
        return False


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        return value if isinstance(value, dict) else {"unreadable": str(path)}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"unreadable": str(path)}


def _describe(m: dict) -> str:
    if "unreadable" in m:
        return f"an unreadable {Path(m['unreadable']).name}"
    classes = list(m.get("classes", []))
    shown = ", ".join(map(str, classes[:4])) + (", ..." if len(classes) > 4 else "")
    counts = " / ".join(f"{sum(c.values())} {s}" for s, c in m.get("counts", {}).items())
    return (f"'{m.get('dataset')}' ({len(classes)} classes: {shown}; {counts} images; "
            f"source: {m.get('source') or 'not recorded'})")


def _images_on_disk(root: Path) -> set[str]:
    found = set()
    for split in SPLIT_DIRS:
        if (root / split).is_dir():
            found |= {p.relative_to(root).as_posix() for p in (root / split).rglob("*")
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    return found


def write_tree(root, items: dict[str, np.ndarray], manifest: dict, *, identity: tuple[str, ...],
               update: bool = False, workers: int | None = None) -> ExportResult:
    """Write {relative path: uint8 image} as PNGs under `root`, then `manifest.json`, idempotently.

    Refused when `root` holds a manifest (or an unfinished export) whose `identity` fields differ,
    images without any manifest, or images it would not write. With `update`, files an earlier
    export of the same identity listed in its manifest ("files") but not in `items` are removed.
    """
    root = Path(root).expanduser()
    old, marker = _read_json(root / MANIFEST), _read_json(root / MARKER)
    prior = marker or old
    on_disk = _images_on_disk(root)
    fresh = f"export into an empty folder (e.g. {root.name}-{manifest.get('dataset', 'new').replace(':', '-')})"
    if prior is not None and any(prior.get(k) != manifest.get(k) for k in identity):
        what = "an unfinished export of" if marker else "the exported dataset"
        raise ExportError(
            f"{root} already holds {what} {_describe(prior)}; you asked to write {_describe(manifest)}. Two "
            f"datasets in one folder are read as one dataset with the classes of both. Either {fresh}, or "
            f"delete {root} first if you mean to replace what is there.")
    if prior is None and on_disk:
        raise ExportError(
            f"{root} already holds {len(on_disk)} images under {'/'.join(SPLIT_DIRS)}/ but no {MANIFEST}, so what "
            f"they are is unknown and they would be mixed with {_describe(manifest)}. Either {fresh}, or move "
            f"those images away (or delete {root}) first.")
    listed = set((old or {}).get("files", [])) | set((marker or {}).get("files", [])) if update else set()
    foreign = sorted(on_disk - set(items) - listed)
    if foreign:
        raise ExportError(
            f"{root} holds {len(foreign)} images this export did not write (e.g. {', '.join(foreign[:3])}); "
            f"they would be read as part of {_describe(manifest)}. Move them out of {root}, or {fresh}.")
    stale = sorted((on_disk & listed) - set(items))
    rels = sorted(items)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        todo = [r for r, ok in zip(rels, pool.map(lambda r: _has_pixels(root / r, items[r]), rels)) if not ok]
        provenance = ("source", "note")  # a reloaded dataset may describe its source differently
        same = old is not None and all(old.get(k) == v for k, v in manifest.items() if k not in provenance)
        if not todo and not stale and same and marker is None:
            return ExportResult(root, 0, len(rels), 0, old)  # already exported: touch nothing
        write_json(root / MARKER, manifest)

        def write_one(rel):
            with atomic_write(root / rel, "wb") as f:
                f.write(png_bytes(items[rel]))
        list(pool.map(write_one, todo))
    for rel in stale:
        (root / rel).unlink(missing_ok=True)
        for parent in list((root / rel).parents)[:2]:  # empty class and split folders go too
            if parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
    write_json(root / MANIFEST, manifest)
    (root / MARKER).unlink(missing_ok=True)
    return ExportResult(root, len(todo), len(rels) - len(todo), len(stale), manifest)


def export_image_folder(data, path, *, note: str = "", verbose: bool = True) -> ExportResult:
    """Write `data` (any ImageData) as `<path>/{train,test}/<class>/<index>.png` plus manifest.json.

    Reruns write nothing that is already right; a folder holding another dataset is refused.
    Read it back with `load_dataset(name, path=path)` (class folders are numbered alphabetically).
    """
    classes = [str(c) for c in data.classes]
    check_class_names(classes)
    items, counts, sha = {}, {}, {}
    for split in ("train", "test"):
        images = np.asarray(getattr(data, f"{split}_images"))
        labels = np.asarray(getattr(data, f"{split}_labels"))
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise ExportError(f"{data.name} {split} images are {images.dtype} {images.shape}; the image-folder "
                              "reader takes uint8 (N, 32, 32, 3). Convert or resize them first.")
        if len(labels) != len(images) or (len(labels) and not 0 <= labels.min() <= labels.max() < len(classes)):
            raise ExportError(f"{data.name} {split}: {len(labels)} labels for {len(images)} images, or labels "
                              f"outside 0..{len(classes) - 1}. Fix the ImageData before exporting.")
        width = max(5, len(str(max(len(labels) - 1, 0))))  # zero-padded: name order is index order
        for i, (image, label) in enumerate(zip(images, labels)):
            items[f"{split}/{classes[label]}/{i:0{width}d}.png"] = image
        per_class = np.bincount(labels, minlength=len(classes))
        counts[split] = {c: int(n) for c, n in zip(classes, per_class)}
        sha[split] = content_sha256(images, labels)
    manifest = {
        "written_by": "helpers.data.export.export_image_folder",
        "dataset": data.name,
        "source": data.source,
        "note": note or "; ".join(getattr(data, "notes", []) or []),
        "layout": "<split>/<class>/<index>.png, 32x32 RGB; read back with helpers.load_dataset(name, path=...)",
        "classes": classes,
        "counts": counts,
        "sha256": sha,
        "sha256_of": SHA256_OF,
    }
    if verbose and len(items) > 5000:
        print(f"[helpers] export {data.name}: checking and writing {len(items):,} images under {path} ...")
    result = write_tree(path, items, manifest, identity=("written_by", "dataset", "classes", "sha256"))
    if verbose:
        print(f"[helpers] export {data.name}: {result}")
        if classes != sorted(classes):
            print(f"[helpers] note: the reader numbers class folders alphabetically ({sorted(classes)[:3]}, ...), "
                  "not in this dataset's order; compare labels by class name.")
    return result
