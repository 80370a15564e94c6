"""export_image_folder: an ImageData written as an image folder reads back with identical pixels and
labels, a rerun writes nothing, and a folder holding another dataset is refused."""
import json

import numpy as np
import pytest

from helpers.data import ImageData, load_dataset
from helpers.export import MANIFEST, MARKER, ExportError, content_sha256, export_image_folder
from helpers.synthetic import CLASSES, make_synthetic


def synthetic(n_train=40, n_test=20, seed=0, name="synthetic", classes=CLASSES):
    xtr, ytr, xte, yte = make_synthetic(n_train, n_test, seed)
    return ImageData(name, list(classes), xtr, ytr, xte, yte, source=f"make_synthetic seed {seed}")


def snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


def reader_order(images, labels, classes):
    """The reader's order: class folders alphabetically, then file names (zero-padded index order)."""
    names = np.array(classes)[labels]
    order = np.lexsort((np.arange(len(labels)), names))
    return images[order], names[order]


def test_round_trip_gives_identical_pixels_and_labels(tmp_path):
    data = synthetic()
    result = export_image_folder(data, tmp_path / "out", verbose=False)
    assert result.written == 60 and result.kept == 0
    assert (tmp_path / "out/train/disk").is_dir() and not (tmp_path / MARKER).exists()
    back = load_dataset("cifar10", path=tmp_path / "out", use_cache=False, download=False)
    assert back.classes == sorted(CLASSES)
    for split in ("train", "test"):
        images, names = reader_order(getattr(data, f"{split}_images"), getattr(data, f"{split}_labels"), data.classes)
        assert np.array_equal(getattr(back, f"{split}_images"), images)
        assert list(np.array(back.classes)[getattr(back, f"{split}_labels")]) == list(names)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["dataset"] == "synthetic" and manifest["classes"] == list(CLASSES)
    per_class = np.bincount(data.train_labels, minlength=10)
    assert manifest["counts"]["train"] == {c: int(n) for c, n in zip(CLASSES, per_class)}
    assert manifest["sha256"]["test"] == content_sha256(data.test_images, data.test_labels)
    assert manifest["source"] == data.source


def test_sorted_classes_keep_their_label_numbers(tmp_path):
    """CIFAR's class lists are alphabetical, so a subset reads back with the very same labels."""
    data = synthetic(30, 10, seed=4, name="cifar10", classes=sorted(CLASSES))
    keep = np.flatnonzero(data.train_labels < 10)[::2]  # a subset, as `reduced` makes
    data = ImageData("cifar10", data.classes, data.train_images[keep], data.train_labels[keep],
                     data.test_images, data.test_labels, source="a subset")
    export_image_folder(data, tmp_path / "c", verbose=False)
    back = load_dataset("cifar10", path=tmp_path / "c", use_cache=False, download=False)
    order = np.lexsort((np.arange(len(keep)), data.train_labels))
    assert np.array_equal(back.train_labels, data.train_labels[order])
    assert np.array_equal(back.train_images, data.train_images[order])


def test_rerun_writes_nothing_and_finishes_an_interrupted_export(tmp_path):
    data = synthetic()
    root = tmp_path / "out"
    export_image_folder(data, root, verbose=False)
    before = snapshot(root)
    again = export_image_folder(data, root, verbose=False)
    assert (again.written, again.kept) == (0, 60) and snapshot(root) == before
    data.source = "the same pixels, loaded another way"  # provenance alone is no reason to rewrite
    assert export_image_folder(data, root, verbose=False).written == 0 and snapshot(root) == before
    # An export killed part way: the marker is there, the manifest and some files are not.
    (root / MARKER).write_text((root / MANIFEST).read_text())
    (root / MANIFEST).unlink()
    for p in sorted(root.rglob("*.png"))[:3]:
        p.unlink()
    sorted(root.rglob("*.png"))[5].write_bytes(b"half a fi")
    done = export_image_folder(data, root, verbose=False)
    assert (done.written, done.kept) == (4, 56) and (root / MANIFEST).is_file() and not (root / MARKER).exists()


def test_a_folder_holding_another_dataset_is_refused(tmp_path):
    root = tmp_path / "raw"
    export_image_folder(synthetic(), root, verbose=False)
    before = snapshot(root)
    others = {"another name": synthetic(name="cifar10"),
              "other content": synthetic(seed=1),
              "other classes": synthetic(classes=[c.upper() for c in CLASSES])}
    for why, other in others.items():
        with pytest.raises(ExportError) as info:
            export_image_folder(other, root, verbose=False)
        msg = str(info.value)
        assert "already holds the exported dataset 'synthetic' (10 classes" in msg, why
        assert "you asked to write" in msg and "empty folder" in msg and f"delete {root}" in msg, why
    assert snapshot(root) == before  # nothing was written


def test_images_the_export_did_not_write_are_refused(tmp_path):
    root = tmp_path / "raw"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "1.png").write_bytes(b"x")
    with pytest.raises(ExportError, match=r"holds 1 images under train/val/test/ but no manifest\.json"):
        export_image_folder(synthetic(), root, verbose=False)
    (root / "train" / "cat" / "1.png").unlink()
    export_image_folder(synthetic(), root, verbose=False)
    (root / "test" / "disk" / "stray.png").write_bytes(b"x")
    with pytest.raises(ExportError, match="did not write.*stray.png"):
        export_image_folder(synthetic(), root, verbose=False)


def test_data_the_reader_cannot_take_is_refused(tmp_path):
    big = synthetic()
    big.train_images = np.zeros((len(big.train_labels), 64, 64, 3), np.uint8)
    with pytest.raises(ExportError, match=r"\(N, 32, 32, 3\)"):
        export_image_folder(big, tmp_path / "a", verbose=False)
    with pytest.raises(ExportError, match="cannot be folder names"):
        export_image_folder(synthetic(classes=["a/b"] + list(CLASSES[1:])), tmp_path / "b", verbose=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
