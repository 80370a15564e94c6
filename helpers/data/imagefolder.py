"""Decode an image-folder dataset (`<root>/{train,test}/<class>/<image>`) from a folder or .tar.gz.

The root may also be wrapped in one top folder (as in `cifar10-webp.tar.gz`). Every image must
be 32x32; class folders sort alphabetically into label order, and train and test must hold the
same classes. Problems raise `DataError` naming the file and the fix.
"""
from __future__ import annotations

import io
import os
import tarfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

SPLITS = ("train", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".ppm"}


class DataError(RuntimeError):
    """A dataset could not be found or read; the message says which file and what to do."""


def _split_entries(relpaths: list[PurePosixPath]) -> dict[str, list[tuple[str, PurePosixPath]]]:
    """Group image paths by split as (class, path), accepting `train/...` or `<top>/train/...`."""
    entries: dict[str, list] = {s: [] for s in SPLITS}
    for p in relpaths:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        parts = p.parts
        if len(parts) == 3 and parts[0] in SPLITS:
            entries[parts[0]].append((parts[1], p))
        elif len(parts) == 4 and parts[1] in SPLITS:
            entries[parts[1]].append((parts[2], p))
    return entries


def _check_classes(entries, where: str) -> list[str]:
    """The sorted class names, after checking both splits exist and hold the same classes."""
    for split in SPLITS:
        if not entries[split]:
            raise DataError(
                f"{where}: no images found under '{split}/<class>/'. Expected the layout "
                f"<root>/train/<class>/<image> and <root>/test/<class>/<image>.")
    train_classes = sorted({c for c, _ in entries["train"]})
    test_classes = sorted({c for c, _ in entries["test"]})
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataError(
            f"{where}: train and test hold different classes (only in train: {only_train}; "
            f"only in test: {only_test}). Add the missing class folders or remove the extra ones.")
    return train_classes


def _decode_one(name: str, blob: bytes) -> np.ndarray:
    """One image as a (32, 32, 3) uint8 array, or DataError naming the file."""
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im = im.convert("RGB")
            if im.size != (32, 32):
                raise DataError(f"{name}: image is {im.size[0]}x{im.size[1]}, expected 32x32. "
                                "Resize the dataset to 32x32 or remove this file.")
            return np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise DataError(f"{name}: cannot decode this image ({exc}). Replace or delete the file.") from None


def _decode_chunk(items: list[tuple[str, bytes]]) -> np.ndarray:
    return np.stack([_decode_one(name, blob) for name, blob in items]) if items else np.zeros((0, 32, 32, 3), np.uint8)


def _decode_all(items: list[tuple[str, bytes]]) -> np.ndarray:
    """Decode many images, in two worker processes when there are many of them."""
    workers = min(4, os.cpu_count() or 1)
    if len(items) < 4000 or workers < 2:
        return _decode_chunk(items)
    size = -(-len(items) // (workers * 4))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_decode_chunk, chunks)))


def _assemble(entries, blobs: dict, classes: list[str]):
    """Arrays per split, ordered by (class, file name) so the result never depends on disk order."""
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for split in SPLITS:
        items = sorted(entries[split], key=lambda e: (e[0], e[1].name))
        images = _decode_all([(str(p), blobs[p]) for _, p in items])
        labels = np.array([index[c] for c, _ in items], dtype=np.int64)
        out[split] = (images, labels)
    return out


def read_folder(root: Path):
    """Read `<root>/{train,test}/<class>/<image>`: ({split: (images, labels)}, class names)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found. Check the path (or $COURSE_CIFAR10/100).")
    rel = [PurePosixPath(p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()]
    entries = _split_entries(rel)
    classes = _check_classes(entries, str(root))
    blobs = {}
    for split in SPLITS:
        for _, p in entries[split]:
            try:
                blobs[p] = (root / p).read_bytes()
            except OSError as exc:
                raise DataError(f"{root / p}: cannot read ({exc}).") from None
    return _assemble(entries, blobs, classes), classes


def read_tar(path: Path):
    """Read a .tar(.gz) archive in the image-folder layout: ({split: (images, labels)}, classes)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: archive not found. Check the path (or $COURSE_CIFAR10/100).")
    blobs: dict[PurePosixPath, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                p = PurePosixPath(member.name.lstrip("./"))
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    blobs[p] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: archive is truncated or corrupt ({exc}). "
                        "Copy or download it again, then retry.") from None
    entries = _split_entries(list(blobs))
    classes = _check_classes(entries, str(path))
    return _assemble(entries, blobs, classes), classes


def read_image_folder(path: Path):
    """Read a folder or an archive, whichever `path` is."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_tar(path)
    raise DataError(f"{path}: no such folder or archive. Point it at <root> of "
                    "<root>/{train,test}/<class>/<image>, or at a .tar.gz of that layout.")
