"""`python -m helpers predict`: a checkpoint's predictions for an image folder, a .tar.gz or a dataset split.

    python -m helpers predict out/r18/checkpoint.pt photos/            # every image under photos/
    python -m helpers predict out/r18/checkpoint.pt images.tar.gz --out preds.csv
    python -m helpers predict out/r18/checkpoint.pt cifar10:test       # or :train, :val, synthetic:test

writes one CSV row per image in input order (a folder: sorted by path; an archive: its member
order; a dataset split: index order): the file or index, the true label when it is known (a
class folder named like one of the model's classes, or the dataset's label), the predicted class
index and name, and the top-k classes with their calibrated probabilities. Images of any size are
cropped to their centre square and resized to 32x32 (helpers.eval.inference.decode_image). The
temperature and test-time views are the ones `python -m helpers calibrate` stored, when it did.
A summary follows: images, accuracy and macro-F1 when labels exist.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath

import numpy as np

from ..eval.inference import TTA_CHOICES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".ppm", ".tif", ".tiff"}
DATASET_SOURCE = re.compile(r"^(cifar10|cifar100|synthetic):(train|val|test)$")


class InputError(Exception):
    """The images to predict cannot be had; the message says what to fix."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoint", type=Path, help="a checkpoint saved by the course (e.g. out/resnet18/checkpoint.pt)")
    a("source", help="an image folder, a .tar/.tar.gz of images, or a dataset split: cifar10:test, "
                     "cifar10:val, synthetic:test, ... (COURSE_FAST=1 gives the reduced split)")
    a("--out", type=Path, default=Path("predictions.csv"), help="the CSV to write (default: predictions.csv)")
    a("--top-k", type=int, default=5, help="how many classes and probabilities per row (default 5)")
    a("--tta", choices=TTA_CHOICES,
      help="test-time views (default: those the stored temperature was fitted with, else none)")
    a("--temperature", type=float, help="divide the logits by this instead of the stored temperature")
    a("--batch-size", type=int, default=256)
    a("--device", help="cuda, cpu, mps; default: the best available")
    a("--no-progress", action="store_true", help="no progress bar")


# --------------------------------------------------------------------------- the inputs

class Images:
    """What to predict: row keys (file names or indices), true labels (None where unknown), and
    `chunks(n)`, which yields uint8 (n, 32, 32, 3) arrays in row order."""

    def __init__(self, key_name: str, keys: list, labels: list, chunks, description: str):
        self.key_name, self.keys, self.labels = key_name, keys, labels
        self._chunks, self.description = chunks, description

    def chunks(self, size: int):
        return self._chunks(size)


def _label_of(relpath: PurePosixPath, classes: list[str]) -> int | None:
    """The class whose name the image's folder has, or None."""
    index = {c: i for i, c in enumerate(classes)}
    return index.get(relpath.parent.name) if len(relpath.parts) > 1 else None


def _decoded_chunks(names: list[str], read, size: int):
    """uint8 arrays of `size` images at a time, decoded from read(i) -> bytes."""
    from ..eval.inference import ImageError, decode_image
    for start in range(0, len(names), size):
        out = []
        for i in range(start, min(start + size, len(names))):
            try:
                out.append(decode_image(read(i), names[i]))
            except ImageError as exc:
                raise InputError(f"{exc}; remove or replace it and run again") from None
        yield np.stack(out)


def folder_images(root: Path, classes: list[str]) -> Images:
    """Every image file under `root` (by suffix), sorted by relative path."""
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.relative_to(root).as_posix())
    rel = [PurePosixPath(p.relative_to(root).as_posix()) for p in files]
    return Images("file", [str(r) for r in rel], [_label_of(r, classes) for r in rel],
                  lambda size: _decoded_chunks([str(r) for r in rel], lambda i: files[i].read_bytes(), size),
                  f"{root}")


def archive_images(path: Path, classes: list[str]) -> Images:
    """Every image member of a .tar/.tar.gz archive, in archive order."""
    names, blobs = [], []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name.lstrip("./"))
                if member.isfile() and name.suffix.lower() in IMAGE_SUFFIXES:
                    names.append(name)
                    blobs.append(tar.extractfile(member).read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{path}: cannot read the archive ({exc}); copy it again") from None
    return Images("file", [str(n) for n in names], [_label_of(n, classes) for n in names],
                  lambda size: _decoded_chunks([str(n) for n in names], lambda i: blobs[i], size), f"{path}")


def dataset_images(name: str, split: str) -> tuple[Images, list[str]]:
    """A dataset split (course_data: reduced with COURSE_FAST=1); "val" is the stratified 10% held out
    of the training split with seed 0, indexed by position in the training split."""
    from ..data.datasets import DataError, course_data
    from ..data.split import train_val_split
    try:
        data = course_data(name, fallback=False, verbose=False)
    except DataError as exc:
        raise InputError(str(exc)) from None
    if split == "test":
        images, labels, index = data.test_images, data.test_labels, np.arange(len(data.test_labels))
    else:
        train_idx, val_idx = train_val_split(data.train_labels, 0.1, seed=0)
        index = val_idx if split == "val" else np.arange(len(data.train_labels))
        images, labels = data.train_images[index], data.train_labels[index]

    def chunks(size):
        for start in range(0, len(images), size):
            yield images[start:start + size]

    return Images("index", [int(i) for i in index], [int(v) for v in labels], chunks,
                  f"{name}:{split}" + (" (reduced mode)" if "reduced" in data.source else "")), list(data.classes)


def gather(source: str, classes: list[str]) -> tuple[Images, list[str]]:
    """(the images `source` names, the class names to report), or InputError saying what is wrong."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = folder_images(path, classes)
    elif path.is_file():
        if not tarfile.is_tarfile(path):
            raise InputError(f"{path} is a file but not a .tar/.tar.gz archive: pass the folder of images or an "
                             "archive of them")
        found = archive_images(path, classes)
    elif match := DATASET_SOURCE.match(source):
        return dataset_images(*match.groups())
    else:
        raise InputError(f"{source}: no such folder or archive, and not a dataset split like cifar10:test")
    if not found.keys:
        raise InputError(f"{source}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found, classes


# --------------------------------------------------------------------------- the table

def rows(images: Images, probs, classes: list[str], k: int) -> tuple[list[str], list[list]]:
    """(header, rows) of the predictions CSV: key, [label, label_name,] pred, pred_name, class_i, prob_i."""
    from ..eval.inference import top_k
    has_labels = any(label is not None for label in images.labels)
    header = [images.key_name] + (["label", "label_name"] if has_labels else []) + ["pred", "pred_name"]
    values, indices = top_k(probs, k)
    header += [f"{kind}_{i + 1}" for i in range(values.shape[1]) for kind in ("class", "prob")]
    out = []
    for key, label, v, c in zip(images.keys, images.labels, values.tolist(), indices.tolist()):
        row = [key]
        if has_labels:
            row += ["", ""] if label is None else [label, classes[label]]
        row += [c[0], classes[c[0]]]
        for p, j in zip(v, c):
            row += [classes[j], f"{p:.6f}"]
        out.append(row)
    return header, out


def write_csv(path: Path, header: list[str], table: list[list]) -> None:
    """The table as CSV, written atomically."""
    from ..atomic import atomic_write
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)


def summary(images: Images, probs, num_classes: int) -> str | None:
    """Accuracy and macro-F1 over the images whose label is known (helpers.eval.metrics), or None."""
    from ..eval.metrics import accuracy, macro_f1
    known = [i for i, label in enumerate(images.labels) if label is not None]
    if not known:
        return None
    truth = np.array([images.labels[i] for i in known])
    pred = probs.argmax(1).numpy()[known]
    part = "" if len(known) == len(images.labels) else f" of the {len(known):,} with a label"
    return (f"accuracy {accuracy(truth, pred):.4f}, macro-F1 {macro_f1(truth, pred, num_classes):.4f}"
            f"{part}")


# --------------------------------------------------------------------------- the command

def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..models.checkpoint import CheckpointError
    from ..eval.inference import parse_tta
    from ..eval.predictor import Predictor
    if args.top_k < 1:
        print("[predict] --top-k must be at least 1", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, tta=args.tta,
                                              temperature=args.temperature, batch_size=args.batch_size)
    except CheckpointError as exc:
        print(f"[predict] cannot use {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    classes = predictor.classes or []
    try:
        images, named = gather(args.source, classes)
        if len(named) == len(classes):
            classes = named  # a dataset's own names beat the checkpoint's "0", "1", ...
        bar = tqdm(total=len(images.keys), unit="img", desc="predict", disable=args.no_progress, file=sys.stderr)
        parts = []
        with bar:
            for chunk in images.chunks(args.batch_size):
                parts.append(predictor.probabilities(chunk))
                bar.update(len(chunk))
    except InputError as exc:
        print(f"[predict] {exc}", file=sys.stderr)
        return 2
    probs = torch.cat(parts)
    fitted = (predictor.info.get("calibration") or {}).get("tta")
    if args.temperature is None and fitted is not None and parse_tta(fitted) != predictor.tta:
        print(f"[predict] note: the stored temperature was fitted with test-time views: {fitted}; "
              f"these predictions use {predictor.tta or 'none'}", file=sys.stderr)
    header, table = rows(images, probs, classes, args.top_k)
    write_csv(args.out, header, table)
    seconds = time.perf_counter() - start
    print(f"[predict] {predictor.name} on {len(table):,} images of {images.description}: temperature "
          f"{predictor.temperature:.3f}, test-time views: {predictor.tta or 'none'}, {predictor.device}, "
          f"{seconds:.1f} s")
    if text := summary(images, probs, len(classes)):
        print(f"[predict] {text}")
    print(f"[predict] wrote {args.out}")
    return 0
