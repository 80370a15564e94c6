"""The data layer: sources, caching, bad input, split and statistics."""
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.data import DataError, course_data, load_dataset
from helpers.split import channel_mean_std, stratified_subset, train_val_split

CLASSES = ["cat", "dog", "frog"]


def _write_png(path: Path, rng, size=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_folder(root: Path, per_class=(4, 2), classes=CLASSES, seed=0) -> Path:
    """A tiny dataset in the image-folder layout, wrapped in one top folder like the archives."""
    rng = np.random.default_rng(seed)
    top = root / "tiny"
    for split, n in zip(("train", "test"), per_class):
        for c in classes:
            for i in range(n):
                _write_png(top / split / c / f"{c}_{i:03d}.png", rng)
    return top


def make_tar(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


def _three_class_loader(name, path, tmp_path):
    """load_dataset checks the class count of CIFAR; use a 3-class dataset through the internals."""
    from helpers import data as data_mod
    old = data_mod.DATASETS["cifar10"]
    data_mod.DATASETS["cifar10"] = (old[0], old[1], old[2], 3)
    try:
        return load_dataset("cifar10", path, root=tmp_path / "data", download=False)
    finally:
        data_mod.DATASETS["cifar10"] = old


def test_load_from_folder_and_tar_agree(tmp_path):
    folder = make_folder(tmp_path)
    tar = make_tar(folder, tmp_path / "tiny.tar.gz")
    a = _three_class_loader("cifar10", folder, tmp_path)
    b = _three_class_loader("cifar10", tar, tmp_path)
    assert a.classes == b.classes == CLASSES
    assert a.train_images.shape == (12, 32, 32, 3) and a.train_images.dtype == np.uint8
    assert a.test_images.shape == (6, 32, 32, 3)
    assert np.array_equal(np.bincount(a.train_labels), [4, 4, 4])
    assert np.array_equal(a.train_images, b.train_images) and np.array_equal(a.test_labels, b.test_labels)
    assert "the path argument" in a.source


def test_cache_is_used_and_keyed_by_source(tmp_path):
    folder = make_folder(tmp_path)
    first = _three_class_loader("cifar10", folder, tmp_path)
    caches = list((tmp_path / "data" / "cache").glob("cifar10-folder-*.npz"))
    assert len(caches) == 1
    t0 = time.perf_counter()
    again = _three_class_loader("cifar10", folder, tmp_path)
    assert time.perf_counter() - t0 < 2.0
    assert "cached" in again.source and np.array_equal(first.train_images, again.train_images)
    other = make_folder(tmp_path / "other", seed=1)
    _three_class_loader("cifar10", other, tmp_path)
    assert len(list((tmp_path / "data" / "cache").glob("cifar10-folder-*.npz"))) == 2
    assert not list((tmp_path / "data" / "cache").glob("*.tmp"))


def test_env_variable_is_a_source(tmp_path, monkeypatch):
    folder = make_folder(tmp_path)
    monkeypatch.setenv("COURSE_CIFAR10", str(folder))
    data = _three_class_loader("cifar10", None, tmp_path)
    assert "$COURSE_CIFAR10" in data.source


def test_offline_without_data_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CIFAR10", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path / "data", download=False)
    msg = str(err.value)
    assert "$COURSE_CIFAR10" in msg and "does not exist" in msg and "previous download" in msg
    assert "synthetic" in msg  # says how to work offline


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "missing", root=tmp_path / "data", download=False)
    from helpers.imagefolder import read_folder
    with pytest.raises(DataError, match="folder not found"):
        read_folder(tmp_path / "missing")


def test_truncated_archive_names_the_file_and_leaves_no_cache(tmp_path):
    tar = make_tar(make_folder(tmp_path), tmp_path / "tiny.tar.gz")
    blob = tar.read_bytes()
    tar.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        _three_class_loader("cifar10", tar, tmp_path)
    assert str(tar) in str(err.value)
    assert not list((tmp_path / "data").rglob("*.npz")) and not list((tmp_path / "data").rglob("*.tmp"))


def test_undecodable_image_is_named(tmp_path):
    folder = make_folder(tmp_path)
    bad = folder / "train" / "dog" / "dog_001.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="cannot decode") as err:
        _three_class_loader("cifar10", folder, tmp_path)
    assert "dog_001.png" in str(err.value)
    assert not list((tmp_path / "data").rglob("*.npz"))


def test_wrong_image_size_is_named(tmp_path):
    folder = make_folder(tmp_path)
    _write_png(folder / "test" / "cat" / "cat_big.png", np.random.default_rng(0), size=(40, 30))
    with pytest.raises(DataError, match="40x30, expected 32x32") as err:
        _three_class_loader("cifar10", folder, tmp_path)
    assert "cat_big.png" in str(err.value)


def test_class_missing_from_test_split(tmp_path):
    folder = make_folder(tmp_path)
    for f in (folder / "test" / "frog").iterdir():
        f.unlink()
    (folder / "test" / "frog").rmdir()
    with pytest.raises(DataError, match=r"only in train: \['frog'\]"):
        _three_class_loader("cifar10", folder, tmp_path)


def test_wrong_class_count_for_cifar(tmp_path):
    with pytest.raises(DataError, match="found 3 class folders, cifar10 has 10"):
        load_dataset("cifar10", make_folder(tmp_path), root=tmp_path / "data", download=False)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="cifar10, cifar100, synthetic"):
        load_dataset("mnist")


def test_synthetic_is_deterministic_and_cifar_shaped(tmp_path):
    a = load_dataset("synthetic", root=tmp_path, synthetic_size=(500, 100), seed=3)
    b = load_dataset("synthetic", root=tmp_path, synthetic_size=(500, 100), seed=3, use_cache=False)
    c = load_dataset("synthetic", root=tmp_path, synthetic_size=(500, 100), seed=4, use_cache=False)
    assert a.train_images.shape == (500, 32, 32, 3) and a.train_images.dtype == np.uint8
    assert np.array_equal(a.train_images, b.train_images) and np.array_equal(a.test_labels, b.test_labels)
    assert not np.array_equal(a.train_images, c.train_images)
    assert a.num_classes == 10 and np.bincount(a.train_labels).min() == 50


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """A data folder holding the generated dataset's cache (what course_data falls back to), made once."""
    root = tmp_path_factory.mktemp("data")
    load_dataset("synthetic", root=root)
    return root


def test_course_data_falls_back_and_reduces(synthetic_root, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(synthetic_root))
    monkeypatch.delenv("COURSE_CIFAR10", raising=False)
    monkeypatch.setenv("COURSE_FAST", "1")
    data = course_data("cifar10", download=False, verbose=False)
    assert data.name == "synthetic" and any("not available" in n for n in data.notes)
    assert np.bincount(data.train_labels).tolist() == [300] * 10
    with pytest.raises(DataError):
        course_data("cifar10", download=False, verbose=False, fallback=False)


def test_course_data_says_everything_it_tried(synthetic_root, monkeypatch, capsys):
    """The fallback note is followed by the whole list of sources tried and why each failed."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(synthetic_root))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.delenv("COURSE_CIFAR10", raising=False)
    monkeypatch.delenv("COURSE_FAST", raising=False)
    data = course_data("cifar10")
    out = capsys.readouterr().out.splitlines()
    assert data.name == "synthetic"
    start = next(i for i, line in enumerate(out) if "Tried, in order:" in line)
    tried = [line for line in out[start + 1:] if line.startswith("[helpers]     - ")]
    assert [t.split("- ", 1)[1].split(":")[0] for t in tried] == ["$COURSE_CIFAR10", "previous download",
                                                                  "torchvision download"]
    assert "not set" in tried[0] and str(synthetic_root) in tried[1] and "COURSE_OFFLINE=1" in tried[2]
    assert any(line.startswith("[helpers]   Fix: unset COURSE_OFFLINE") for line in out)


def test_reduced_keeps_a_stratified_subset_once(synthetic_root):
    from helpers.data import REDUCED_PER_CLASS, reduced
    data = load_dataset("synthetic", root=synthetic_root)  # 1,000 + 200 images per class
    per_train, per_test = REDUCED_PER_CLASS["synthetic"]
    small = reduced(data, test=False)
    assert np.bincount(small.train_labels).tolist() == [per_train] * 10
    assert len(small.test_labels) == len(data.test_labels) and "[reduced mode]" in small.source  # test: whole
    assert reduced(small, test=False) is small  # already reduced (as COURSE_FAST=1 makes it): unchanged
    both = reduced(data)
    assert np.bincount(both.test_labels).tolist() == [per_test] * 10


@pytest.mark.parametrize("seed", [0, 1])
def test_train_val_split_properties(seed):
    labels = np.random.default_rng(seed).integers(0, 7, 1000)
    train, val = train_val_split(labels, 0.2, seed=seed)
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    for c in range(7):
        n = (labels == c).sum()
        assert (labels[val] == c).sum() == round(n * 0.2)
    again = train_val_split(labels, 0.2, seed=seed)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(train_val_split(labels, 0.2, seed=seed + 10)[1], val)
    with pytest.raises(ValueError):
        train_val_split(labels, 1.5)


def test_stratified_subset():
    labels = np.repeat(np.arange(5), 20)
    idx = stratified_subset(labels, 7, seed=0)
    assert np.bincount(labels[idx]).tolist() == [7] * 5 and len(set(idx)) == 35


def test_channel_statistics_match_numpy():
    images = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    mean, std = channel_mean_std(images)
    ref = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, ref.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, ref.std(0), atol=1e-6)
