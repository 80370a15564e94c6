"""`export_splits`: a stratified train/val/test split of labels.csv, as splits.csv and an image folder.

Each class is split on its own, so every split keeps the class balance: per class, each split
gets its ratio of the images to within one image (largest remainders), in an order drawn from a
seeded generator. With `image_folder`, the images are also written, 32x32 as the course reads them.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .session import LabelError, read_labels

SPLITS = ("train", "val", "test")


def split_sizes(n: int, ratios) -> list[int]:
    """Split `n` items in `ratios`: each size within one of its exact share, the sizes summing to n."""
    exact = np.asarray(ratios, dtype=np.float64) * n
    sizes = np.floor(exact).astype(int)
    order = np.argsort(-(exact - sizes), kind="stable")  # largest remainders first; ties go to train
    sizes[order[: n - sizes.sum()]] += 1
    return sizes.tolist()


@dataclass
class Splits:
    """What export_splits wrote: rows (path, label, split), counts per class and split, and where."""
    path: Path
    rows: list[tuple[str, str, str]]
    counts: dict[str, dict[str, int]]
    image_folder: Path | None = None
    skipped: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'class':<16}" + "".join(f"{s:>7}" for s in SPLITS)]
        for c, per in self.counts.items():
            lines.append(f"{c:<16}" + "".join(f"{per[s]:>7}" for s in SPLITS))
        return "\n".join(lines)

    def __str__(self):
        return f"{self.path}: {len(self.rows)} images\n{self.table()}"


def _check_ratios(ratios) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or min(r) < 0 or abs(sum(r) - 1.0) > 1e-6:
        raise LabelError(f"ratios must be three non-negative numbers (train, val, test) that sum to 1, got {ratios}.")
    return r


def export_splits(labels_csv, out_csv="splits.csv", ratios=(0.7, 0.15, 0.15), seed: int = 0,
                  image_folder=None, *, folder=None, verbose: bool = True) -> Splits:
    """Write `out_csv` (path,label,split): a stratified train/val/test split of the labelled images.

    A relative `out_csv` goes next to labels_csv; `folder` (default: labels_csv's folder) holds the
    images. With `image_folder`, also write `<image_folder>/{train,val,test}/<class>/<name>.png`:
    `read_image_folder`/`load_dataset` read train/ and test/; val/ is read by `load_labelled_splits`.
    """
    labels_csv = Path(labels_csv).expanduser()
    if not labels_csv.is_file():
        raise LabelError(f"{labels_csv}: no labels file. Label some images with LabellingTool first, or pass "
                         "the labels.csv it wrote.")
    folder = Path(folder).expanduser() if folder is not None else labels_csv.parent
    out_csv = Path(out_csv).expanduser()
    out_csv = out_csv if out_csv.is_absolute() else labels_csv.parent / out_csv
    ratios = _check_ratios(ratios)
    labels = read_labels(labels_csv)
    gone = sorted(p for p in labels if not (folder / p).is_file())
    labels = {p: c for p, c in labels.items() if p not in gone}
    if not labels:
        raise LabelError(f"{labels_csv}: no labels for files present in {folder}. Label some images first.")
    rng = np.random.default_rng(seed)
    rows, counts = [], {}
    for cls in sorted(set(labels.values())):
        paths = sorted(p for p, c in labels.items() if c == cls)
        order = rng.permutation(len(paths))
        sizes = split_sizes(len(paths), ratios)
        bounds = np.cumsum([0] + sizes)
        for s, split in enumerate(SPLITS):
            rows += [(paths[i], cls, split) for i in order[bounds[s]:bounds[s + 1]]]
        counts[cls] = dict(zip(SPLITS, sizes))
    rows.sort()
    with atomic_write(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    result = Splits(out_csv, rows, counts, skipped=gone)
    if image_folder is not None:
        result.image_folder = _write_image_folder(rows, folder, Path(image_folder).expanduser(), labels_csv)
    if verbose:
        print(f"[labelling] wrote {result}")
        if gone:
            print(f"[labelling] {len(gone)} labelled files are no longer in {folder} and were left out: "
                  f"{', '.join(gone[:5])}{', ...' if len(gone) > 5 else ''}")
        empty = [f"{c} ({s})" for c, per in counts.items() for s, r in zip(SPLITS, ratios) if r > 0 and per[s] == 0]
        if empty:
            print(f"[labelling] some classes have no images in a split: {', '.join(empty)}. Label more images "
                  "of those classes (the image-folder reader needs every class in train and test).")
        if result.image_folder is not None:
            print(f"[labelling] image folder {result.image_folder}: read it with "
                  f"load_labelled_splits('{result.image_folder}')")
    return result


def _target_names(rows) -> dict[str, str]:
    """{source path: '<split>/<class>/<name>.png'}: the file's stem, or its whole name when stems clash."""
    def name(p, whole):
        q = Path(p)
        base = "__".join(q.parent.parts + ((q.name.replace(".", "_"),) if whole else (q.stem,)))
        return base + ".png"
    first = {p: f"{split}/{cls}/{name(p, False)}" for p, cls, split in rows}
    clash = {t for t, n in Counter(first.values()).items() if n > 1}
    return {p: (f"{split}/{cls}/{name(p, True)}" if first[p] in clash else first[p]) for p, cls, split in rows}


def _write_image_folder(rows, folder: Path, root: Path, labels_csv: Path) -> Path:
    from ..data.export import content_sha256, write_tree
    from ..eval.inference import decode_image  # the decoding `python -m helpers predict` uses: same pixels
    targets = _target_names(rows)
    items = {}
    for p, _, _ in rows:
        items[targets[p]] = decode_image((folder / p).read_bytes(), name=str(folder / p), size=32)
    classes = sorted({c for _, c, _ in rows})
    counts = {s: {c: sum(1 for _, cc, ss in rows if cc == c and ss == s) for c in classes} for s in SPLITS}
    sha = {}
    for s in SPLITS:
        keys = sorted(k for k in items if k.startswith(s + "/"))
        sha[s] = content_sha256(np.stack([items[k] for k in keys]) if keys else np.zeros((0, 32, 32, 3), np.uint8),
                                [classes.index(k.split("/")[1]) for k in keys])
    manifest = {
        "written_by": "helpers.labelling.export_splits",
        "dataset": f"labelled:{folder.resolve().name}",
        "source": str(labels_csv.resolve()),
        "layout": "<split>/<class>/<name>.png, 32x32 RGB; train/ and test/ read by helpers.data.imagefolder, "
                  "all three by helpers.labelling.load_labelled_splits",
        "classes": classes,
        "counts": counts,
        "sha256": sha,
        "files": sorted(items),
    }
    write_tree(root, items, manifest, identity=("written_by", "source"), update=True)
    return root


def load_labelled_splits(image_folder):
    """{split: (images uint8 (N, 32, 32, 3), labels int64)} and the class names of an export_splits tree
    (val/ included, which the course's image-folder reader leaves out)."""
    from ..data.imagefolder import _decode_one
    root = Path(image_folder).expanduser()
    found = {s: sorted(p.relative_to(root / s).as_posix().split("/") for p in (root / s).rglob("*.png"))
             for s in SPLITS if (root / s).is_dir()}
    classes = sorted({parts[0] for entries in found.values() for parts in entries})
    if not classes:
        raise LabelError(f"{root}: no <split>/<class>/<name>.png images. Write them with "
                         "export_splits(..., image_folder=PATH) first.")
    out = {}
    for s in SPLITS:
        entries = found.get(s, [])
        images = [_decode_one(str(root / s / "/".join(e)), (root / s / "/".join(e)).read_bytes()) for e in entries]
        out[s] = (np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8),
                  np.array([classes.index(e[0]) for e in entries], dtype=np.int64))
    return out, classes
