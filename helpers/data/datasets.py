"""`load_dataset`: CIFAR-10, CIFAR-100 or the generated dataset as uint8 arrays, decoded once and cached.

Sources are tried in this order, and the one used is reported:
1. the `path` argument (an image-folder directory or .tar.gz);
2. `$COURSE_CIFAR10` / `$COURSE_CIFAR100` (the same kinds of path);
3. a previous torchvision download in the data folder;
4. a torchvision download (checksummed by torchvision).
Caches live in the data folder, keyed by dataset and source, written under a temporary name and
renamed, so an interrupted build never leaves a half-written cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..settings import data_dir, env, offline
from .imagefolder import DataError, read_image_folder
from .synthetic import CLASSES as SYNTHETIC_CLASSES, make_synthetic

DATASETS = {
    # name: (environment variable, torchvision class, folder torchvision writes, number of classes)
    "cifar10": ("COURSE_CIFAR10", "CIFAR10", "cifar-10-batches-py", 10),
    "cifar100": ("COURSE_CIFAR100", "CIFAR100", "cifar-100-python", 100),
}
CACHE_VERSION = 1


def dataset_names() -> list[str]:
    """The datasets load_dataset knows by name (the commands' --dataset choices)."""
    return [*DATASETS, "synthetic"]


@dataclass
class ImageData:
    """Train and test splits as uint8 images (N, 32, 32, 3) and int64 labels, with class names."""
    name: str
    classes: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> str:
        """A few lines a person can read: sizes, classes, per-class counts and the source."""
        tr = np.bincount(self.train_labels, minlength=self.num_classes)
        te = np.bincount(self.test_labels, minlength=self.num_classes)
        lines = [f"{self.name}: {len(self.train_labels):,} train + {len(self.test_labels):,} test images, "
                 f"{self.train_images.shape[1]}x{self.train_images.shape[2]}x{self.train_images.shape[3]} uint8, "
                 f"{self.num_classes} classes",
                 f"source: {self.source}",
                 f"per class (train/test): min {tr.min()}/{te.min()}, max {tr.max()}/{te.max()}"]
        if self.num_classes <= 20:
            lines += [f"  {i:>3} {c:<12} {tr[i]:>6} {te[i]:>6}" for i, c in enumerate(self.classes)]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- cache

def _cache_key_for_path(path: Path) -> str:
    """Identify a source file or folder by its resolved path, size and modification time."""
    path = path.resolve()
    st = path.stat()
    return hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


def _save_cache(path: Path, data: ImageData) -> None:
    """Write the arrays atomically: a temporary file in the same folder, then a rename."""
    meta = json.dumps({"version": CACHE_VERSION, "name": data.name, "classes": data.classes, "source": data.source})
    try:
        with atomic_write(path, "wb") as f:
            np.savez(f, meta=np.array(meta), train_images=data.train_images, train_labels=data.train_labels,
                     test_images=data.test_images, test_labels=data.test_labels)
    except OSError as exc:  # a read-only data folder (the grading sandbox): the data is fine, just not cached
        print(f"[helpers] {data.name}: not cached ({path.parent} is not writable: {exc.strerror or exc})",
              file=sys.stderr)


def _load_cache(path: Path, name: str) -> ImageData | None:
    """The cached dataset, or None when the cache is absent, stale or unreadable (it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != CACHE_VERSION or meta.get("name") != name:
                return None
            return ImageData(name, list(meta["classes"]), z["train_images"], z["train_labels"],
                             z["test_images"], z["test_labels"], source=meta["source"] + f" (cached in {path})")
    except Exception:
        return None


# ----------------------------------------------------------------------------- sources

def _from_image_folder(name: str, path: Path, expected_classes: int) -> ImageData:
    splits, classes = read_image_folder(path)
    if len(classes) != expected_classes:
        raise DataError(f"{path}: found {len(classes)} class folders, {name} has {expected_classes}. "
                        f"Point {DATASETS[name][0]} at the {name} archive.")
    (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
    return ImageData(name, classes, xtr, ytr, xte, yte, source=f"image folder {path}")


def _from_torchvision(name: str, root: Path, download: bool) -> ImageData:
    import torchvision.datasets as tvd  # imported here: only this source needs it
    cls = getattr(tvd, DATASETS[name][1])
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=download)
    how = "torchvision download" if download else "previous torchvision download"
    return ImageData(name, list(train.classes), np.ascontiguousarray(train.data), np.asarray(train.targets, np.int64),
                     np.ascontiguousarray(test.data), np.asarray(test.targets, np.int64), source=f"{how} in {root}")


def _load_synthetic(n_train: int, n_test: int, seed: int, root: Path, use_cache: bool) -> ImageData:
    cache = root / "cache" / f"synthetic-{n_train}-{n_test}-seed{seed}.npz"
    if use_cache and (data := _load_cache(cache, "synthetic")) is not None:
        return data
    xtr, ytr, xte, yte = make_synthetic(n_train, n_test, seed)
    data = ImageData("synthetic", list(SYNTHETIC_CLASSES), xtr, ytr, xte, yte,
                     source=f"generated by helpers.data.synthetic (seed {seed})")
    if use_cache:
        _save_cache(cache, data)
    return data


def load_dataset(name: str = "cifar10", path: str | os.PathLike | None = None, *, download: bool = True,
                 root: str | os.PathLike | None = None, use_cache: bool = True, verbose: bool = False,
                 synthetic_size: tuple[int, int] = (10_000, 2_000), seed: int = 0) -> ImageData:
    """Load `cifar10`, `cifar100` or `synthetic` as uint8 arrays, decoding once and caching; or
    `folder`: your own image folder at `path` (`<path>/{train,test}/<class>/*`, any number of classes,
    e.g. one written by helpers.export_image_folder or labelling.export_splits).

    `path` names an image-folder directory or .tar.gz; without it the environment variable, an
    earlier download and a torchvision download are tried in turn. Offline with no data, one
    `DataError` lists everything that was tried and how to fix it.
    """
    name = name.lower().replace("-", "")
    root = Path(root).expanduser() if root else data_dir()
    say = print if verbose else (lambda *a, **k: None)
    if name == "folder":
        if path is None:
            raise ValueError("load_dataset('folder') reads your own images: give path=<a folder holding "
                             "train/<class>/ and test/<class>/>")
        splits, classes = read_image_folder(Path(path).expanduser())
        (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
        return ImageData("folder", classes, xtr, ytr, xte, yte, source=f"image folder {path}")
    if name == "synthetic":
        data = _load_synthetic(*synthetic_size, seed, root, use_cache)
        say(f"[helpers] {name}: {data.source}")
        return data
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: cifar10, cifar100, synthetic")
    env_var, _, tv_folder, n_classes = DATASETS[name]

    candidates: list[tuple[str, Path]] = []
    if path is not None:
        candidates.append(("the path argument", Path(path).expanduser()))
    tried = []
    if env(env_var):
        candidates.append((f"${env_var}", Path(env(env_var)).expanduser()))
    elif path is None:
        tried.append(f"${env_var}: not set (it may name an image-folder directory or .tar.gz)")
    for label, src in candidates:
        if not src.exists():
            tried.append(f"{label}: {src} does not exist")
            continue
        cache = root / "cache" / f"{name}-folder-{_cache_key_for_path(src)}.npz"
        if use_cache and (data := _load_cache(cache, name)) is not None:
            say(f"[helpers] {name}: {data.source}")
            return data
        t0 = time.perf_counter()
        data = _from_image_folder(name, src, n_classes)  # bad data raises here, naming the file
        data.source = f"{label} = {data.source.removeprefix('image folder ')}"
        if use_cache:
            _save_cache(cache, data)
        say(f"[helpers] {name}: decoded {src} in {time.perf_counter() - t0:.1f} s; cached in {cache}")
        return data

    tv_cache = root / "cache" / f"{name}-torchvision.npz"
    if use_cache and (data := _load_cache(tv_cache, name)) is not None:
        say(f"[helpers] {name}: {data.source}")
        return data
    if use_cache and tv_cache.exists():
        tried.append(f"cached copy of a download: {tv_cache} is unreadable or stale")
    for attempt_download in ([False, True] if download else [False]):
        if not attempt_download and not (root / tv_folder).is_dir():
            tried.append(f"previous download: {root / tv_folder} not found")
            continue
        try:
            data = _from_torchvision(name, root, attempt_download)
        except Exception as exc:  # offline, checksum mismatch, broken files
            why = " ".join(str(exc).split()) or "no message"
            tried.append(f"{'torchvision download' if attempt_download else 'previous download'} into {root}: "
                         f"{type(exc).__name__}: {why}")
            continue
        if use_cache:
            _save_cache(tv_cache, data)
        say(f"[helpers] {name}: {data.source}")
        return data
    online = "connect to the internet and retry"
    if not download:
        why = "COURSE_OFFLINE=1" if offline() else "download=False"
        tried.append(f"torchvision download: not attempted ({why})")
        online = "unset COURSE_OFFLINE and retry online" if offline() else "retry online with download=True"
    raise DataError(
        f"could not load {name}. Tried, in order:\n  - " + "\n  - ".join(tried) +
        f"\nFix: {online}, or set {env_var} to an image-folder directory or "
        f".tar.gz (<root>/train/<class>/<image>, <root>/test/<class>/<image>), or pass path=..., "
        f"or use load_dataset('synthetic') to work offline.")



# Images per class kept in reduced mode (COURSE_FAST=1): (train, test). CIFAR-100 keeps 100 + 30: with
# 40 + 10 its macro-F1 was mostly noise (benchmarks/challenge_reference.py --reduced; grading/tiers.py).
REDUCED_PER_CLASS = {"cifar10": (300, 100), "synthetic": (300, 100), "cifar100": (100, 30)}


def course_data(name: str = "cifar10", *, fallback: bool = True, verbose: bool = True,
                reduced_per_class: tuple[int, int] | None = None, **kwargs) -> ImageData:
    """The dataset a notebook or the CLI works on, in the size the run mode asks for.

    Loads `name` (downloads unless `$COURSE_OFFLINE=1`); when it cannot be had and `fallback` is
    on, says so and uses the generated dataset instead, so notebooks run anywhere. With
    `COURSE_FAST=1` both splits shrink to a stratified subset: `reduced_per_class` (train, test)
    images of every class, default REDUCED_PER_CLASS. This is the one place reduced mode cuts data.
    """
    from ..settings import fast_mode
    kwargs.setdefault("download", not offline())
    try:
        data = load_dataset(name, verbose=verbose, **kwargs)
    except DataError as exc:
        if not fallback or name == "synthetic":
            raise
        n_classes = DATASETS.get(name, (None, None, None, 10))[3]
        note = (f"{name} is not available here, so this run uses the generated 'synthetic' dataset "
                f"(10 classes of shapes) instead. To use {name}, see the README's data section.")
        if n_classes != 10:
            note += f" Note: synthetic has 10 classes, {name} has {n_classes}."
        if verbose:  # the whole story: every source tried, why each failed, how to fix it
            print(f"[helpers] {note}")
            print("\n".join(f"[helpers]   {line}" for line in str(exc).splitlines()))
        data = load_dataset("synthetic", verbose=verbose)
        data.notes.append(note)
    if fast_mode():
        data = reduced(data, per_class=reduced_per_class, note="reduced mode (COURSE_FAST=1): a stratified subset",
                       always=True)
        if verbose:
            print(f"[helpers] reduced mode: {len(data.train_labels)} train / {len(data.test_labels)} test images")
    return data


def reduced(data: ImageData, *, test: bool = True, note: str = "reduced mode: a stratified subset",
            always: bool = False, per_class: tuple[int, int] | None = None) -> ImageData:
    """The reduced-mode subset of `data`: `per_class` (train, test) images of every class (default
    REDUCED_PER_CLASS), drawn stratified (seed 0) from the training split and, with `test`, from the
    test split. Unless `always`, data that is already that small (COURSE_FAST=1 made it so) comes
    back as it is."""
    from .split import stratified_subset
    per_train, per_test = per_class or REDUCED_PER_CLASS.get(data.name, (300, 100))

    def small(labels, per_class):
        return np.bincount(np.asarray(labels), minlength=1).max(initial=0) <= per_class

    if not always and small(data.train_labels, per_train) and (not test or small(data.test_labels, per_test)):
        return data
    tr = stratified_subset(data.train_labels, per_train, seed=0)
    te = stratified_subset(data.test_labels, per_test, seed=0) if test else np.arange(len(data.test_labels))
    return ImageData(data.name, data.classes, data.train_images[tr], data.train_labels[tr],
                     data.test_images[te], data.test_labels[te],
                     source=data.source + ("" if data.source.endswith("[reduced mode]") else " [reduced mode]"),
                     notes=data.notes + [note])
