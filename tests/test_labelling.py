"""The labelling tool: autosave that survives a killed kernel, resume, undo, skip, keys, unreadable
and vanished files, stratified splits, the image-folder round trip and the `label` command."""
import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from helpers.data import load_dataset
from helpers.export import ExportError, export_image_folder
from helpers.labelling import (LabelError, LabellingTool, LabelSession, class_keys, export_splits, handle_key,
                               key_action, load_labelled_splits, make_sample_folder, read_labels, split_sizes)
from helpers.synthetic import CLASSES

REPO = Path(__file__).resolve().parent.parent
TWO = ["disk", "square"]


@pytest.fixture
def sample(tmp_path):
    """Eight unlabelled 32x32 PNGs (four disks, four squares) and their answer key."""
    folder = tmp_path / "imgs"
    return folder, make_sample_folder(folder, n_per_class=4, classes=TWO, seed=0)


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


# ----------------------------------------------------------------------------- keys

def test_number_keys_cover_ten_classes_and_letters_only_two():
    ten = [f"c{i}" for i in range(10)]
    keys = class_keys(ten)
    assert [keys[k] for k in "1234567890"] == ten
    assert "a" not in keys
    assert key_action("0", ten) == ("label", "c9")
    assert key_action("A", TWO) == ("label", "disk") and key_action("b", TWO) == ("label", "square")
    assert key_action("2", TWO) == ("label", "square")
    assert key_action("a", ["x", "y", "z"]) is None  # letters only for exactly two classes
    assert set(class_keys([f"c{i}" for i in range(12)]).values()) == set(ten)  # keys for the first ten
    assert key_action("Backspace", TWO) == ("undo", None)
    assert key_action("z", TWO, ctrl=True) == ("undo", None)
    assert key_action("a", TWO, ctrl=True) is None  # Ctrl+A is the browser's
    assert key_action("s", TWO) == ("skip", None) and key_action("n", TWO) == ("next_unlabelled", None)
    assert key_action("ArrowRight", TWO) == ("next", None) and key_action("q", TWO) is None


def test_keys_drive_the_session(sample):
    folder, truth = sample
    s = LabelSession(folder, TWO, verbose=False)
    first = s.current
    assert handle_key(s, "a") == "label" and s.labels[first] == "disk"
    assert handle_key(s, "B") == "label"
    assert handle_key(s, "Backspace") == "undo" and s.n_labelled == 1
    assert handle_key(s, "x") is None
    assert read_labels(folder / "labels.csv") == {first: "disk"}


# ----------------------------------------------------------------------------- session

def test_label_undo_skip_and_next_unlabelled(sample):
    folder, truth = sample
    s = LabelSession(folder, TWO, verbose=False)
    files = s.files
    assert len(files) == 8 and s.progress == "0/8 labelled" and s.cursor == 0
    s.label("disk")
    assert s.cursor == 1 and read_labels(s.labels_csv) == {files[0]: "disk"}
    s.label(1)  # by index
    assert s.labels[files[1]] == "square" and s.progress == "2/8 labelled"
    assert s.undo() == files[1]
    assert s.cursor == 1 and files[1] not in s.labels and read_labels(s.labels_csv) == {files[0]: "disk"}
    s.skip()
    assert s.cursor == 2 and s.progress == "1/8 labelled, 1 skipped"
    assert s.undo() == files[1] and s.cursor == 1 and not s.skipped  # undo takes a skip back too
    s.go(0)
    s.label("square")  # relabel; undo restores the old label
    assert s.labels[files[0]] == "square"
    s.undo()
    assert s.labels[files[0]] == "disk" and read_labels(s.labels_csv)[files[0]] == "disk"
    s.go(1)
    s.skip()
    for _ in range(6):
        s.label("disk")
    assert s.current == files[1] and s.progress == "7/8 labelled, 1 skipped"  # the skipped one comes last
    s.label("square")
    assert s.done and s.progress == "8/8 labelled"
    assert s.undo() == files[1] and not s.done
    s.go(5)
    assert s.next_unlabelled() == 1  # wraps round
    with pytest.raises(LabelError, match="not one of the classes"):
        s.label("cat")
    assert s.undo() is not None
    while s.undo() is not None:
        pass
    assert s.n_labelled == 0 and read_labels(s.labels_csv) == {}


def test_reopening_resumes_at_first_unlabelled(sample):
    folder, _ = sample
    s = LabelSession(folder, TWO, verbose=False)
    for _ in range(3):
        s.label("disk")
    s.go(4)
    s.label("square")
    again = LabelSession(folder, TWO, verbose=False)
    assert again.cursor == 3 and again.current == s.files[3]
    assert again.labels == s.labels and again.progress == "4/8 labelled"


def test_classes_and_folder_are_checked(tmp_path, sample):
    folder, _ = sample
    for bad, msg in ((["a"], "at least two"), (["a", "a"], "given twice"), (["a", "x/y"], "cannot be used")):
        with pytest.raises(LabelError, match=msg):
            LabelSession(folder, bad, verbose=False)
    assert LabelSession(folder, "disk, square", verbose=False).classes == TWO
    with pytest.raises(LabelError, match="no such folder.*make_sample_folder"):
        LabelSession(tmp_path / "nope", TWO)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelError, match="no images found"):
        LabelSession(tmp_path / "empty", TWO)
    (folder / "labels.csv").write_text("file;class\nx;y\n")
    with pytest.raises(LabelError, match="header 'path,label'"):
        LabelSession(folder, TWO)


def test_unreadable_files_are_listed_and_skipped(sample, capsys):
    folder, _ = sample
    (folder / "sub" / "deeper").mkdir(parents=True)
    Image.new("RGB", (64, 48), "red").save(folder / "sub" / "deeper" / "photo.jpg")  # found recursively
    Image.new("RGBA", (20, 20)).save(folder / "sub" / "alpha.webp")
    Image.new("L", (40, 40)).save(folder / "sub" / "grey.bmp")
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    png = (folder / "img_000.png").read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    (folder / "notes.txt").write_text("not an image, not reported")
    (folder / ".hidden.png").write_bytes(b"ignored")
    s = LabelSession(folder, TWO)
    out = capsys.readouterr().out
    assert set(s.unreadable) == {"broken.jpg", "empty.png", "cut.png"}
    assert "3 files are not readable" in out and "broken.jpg" in out
    assert {"sub/deeper/photo.jpg", "sub/alpha.webp", "sub/grey.bmp"} <= set(s.files) and len(s.files) == 11
    assert not any(p in s.files for p in s.unreadable)


def test_labels_of_vanished_files_are_reported_and_kept(sample, capsys):
    folder, truth = sample
    s = LabelSession(folder, TWO, verbose=False)
    for p in s.files:
        s.go(p)
        s.label(truth[p])
    gone = sorted(s.files)[2:4]
    for p in gone:
        (folder / p).unlink()
    again = LabelSession(folder, TWO)
    out = capsys.readouterr().out
    assert again.missing == gone and "2 labels in labels.csv are for files no longer" in out
    assert all(p in out for p in gone) and again.progress == "6/6 labelled"
    again.go(0)
    again.label("square")  # a later save keeps the vanished files' rows
    assert set(gone) <= set(read_labels(again.labels_csv))


# ----------------------------------------------------------------------------- a killed kernel

CHILD = textwrap.dedent("""
    import sys, time
    from helpers.labelling import LabelSession
    s = LabelSession(sys.argv[1], ["disk", "square"], verbose=False)
    n = int(sys.argv[2])
    for i in range(10**6):
        if n and i == n:
            time.sleep(60)  # the parent kills us here, between labels
        if s.done:  # everything labelled: go round again, relabelling
            s.go(i % len(s.files))
        s.label(i % 2)
        print(i + 1, flush=True)
""")


def run_child(folder, n):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(n)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_labels_survive_kill_9_between_labels(sample):
    folder, _ = sample
    child = run_child(folder, 5)
    try:
        acknowledged = [int(child.stdout.readline()) for _ in range(5)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert acknowledged == [1, 2, 3, 4, 5]
    rows = csv_rows(folder / "labels.csv")
    assert rows[0] == ["path", "label"] and len(rows) == 6
    s = LabelSession(folder, TWO, verbose=False)
    assert s.n_labelled == 5 and s.cursor == 5 and [s.labels[p] for p in s.files[:5]] == TWO * 2 + TWO[:1]


def test_labels_csv_parses_after_kill_9_while_labelling(tmp_path):
    folder = tmp_path / "many"
    make_sample_folder(folder, n_per_class=40, classes=TWO)
    child = run_child(folder, 0)  # labels as fast as it can, relabelling round and round
    try:
        seen = 0
        while seen < 200:
            seen = int(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    s = LabelSession(folder, TWO, verbose=False)  # leftover temporary files (hidden) are ignored
    rows = csv_rows(folder / "labels.csv")
    assert rows[0] == ["path", "label"] and all(len(r) == 2 and r[1] in TWO for r in rows[1:])
    assert s.n_labelled == len(rows) - 1 == 80


# ----------------------------------------------------------------------------- the widget

def test_widget_buttons_and_keys(sample):
    pytest.importorskip("ipywidgets")
    folder, _ = sample
    png = (folder / "img_000.png").read_bytes()
    Image.open(io.BytesIO(png)).convert("RGB").resize((300, 300)).save(folder / "a_trunc.jpg")
    data = (folder / "a_trunc.jpg").read_bytes()
    (folder / "a_trunc.jpg").write_bytes(data[: len(data) // 2])  # passes the scan, fails to decode
    tool = LabellingTool(folder, TWO, verbose=False)
    box = tool.widget
    assert box is tool.widget and "a_trunc.jpg" in tool.unreadable and len(tool.session.files) == 8
    assert "0/8 labelled" in tool._header.value and bytes(tool._image.value).startswith(b"\x89PNG")
    tool._class_buttons[1].click()
    assert tool.key("a") == "label" and tool.progress == "2/8 labelled"
    assert "2/8 labelled" in tool._header.value and "saved to labels.csv" in tool._status.value
    tool._controls[0].click()  # undo
    assert tool.progress == "1/8 labelled" and tool._class_buttons[0].button_style == ""
    assert read_labels(folder / "labels.csv") == {tool.session.files[0]: "square"}


# ----------------------------------------------------------------------------- splits and export

def test_split_sizes_stay_within_one_image_of_the_ratios():
    rng = np.random.default_rng(0)
    for n in range(60):
        r = rng.dirichlet([1, 1, 1])
        sizes = split_sizes(n, r)
        assert sum(sizes) == n and all(abs(s - f * n) < 1 for s, f in zip(sizes, r))
    assert split_sizes(7, (0.7, 0.15, 0.15)) == [5, 1, 1]


def test_export_splits_is_stratified_and_seeded(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    counts = {"a": 23, "b": 11, "c": 5, "d": 1}
    labels = {}
    for c, n in counts.items():
        for i in range(n):
            (folder / f"{c}{i}.png").write_bytes(b"")  # without image_folder only the names matter
            labels[f"{c}{i}.png"] = c
    with open(folder / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], *labels.items(), ["gone.png", "a"]])
    for ratios in ((0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.5, 0.0, 0.5)):
        result = export_splits(folder / "labels.csv", ratios=ratios, seed=3, verbose=False)
        rows = csv_rows(folder / "splits.csv")
        assert rows[0] == ["path", "label", "split"] and len(rows) - 1 == sum(counts.values())
        assert sorted(r[0] for r in rows[1:]) == sorted(labels) and result.skipped == ["gone.png"]
        assert all(labels[p] == c for p, c, _ in rows[1:])
        for c, n in counts.items():
            for split, r in zip(("train", "val", "test"), ratios):
                got = sum(1 for _, cc, s in rows[1:] if cc == c and s == split)
                assert abs(got - r * n) < 1, (c, split, got, r * n)
    first = csv_rows(export_splits(folder / "labels.csv", "s1.csv", seed=1, verbose=False).path)
    assert csv_rows(export_splits(folder / "labels.csv", "s1b.csv", seed=1, verbose=False).path) == first
    assert csv_rows(export_splits(folder / "labels.csv", "s2.csv", seed=2, verbose=False).path) != first
    with pytest.raises(LabelError, match="sum to 1"):
        export_splits(folder / "labels.csv", ratios=(0.7, 0.2, 0.2))


def label_everything(folder, classes, truth):
    s = LabelSession(folder, classes, verbose=False)
    for p in s.files:
        s.go(p)
        s.label(truth[p])
    return s


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_image_folder_round_trip_through_load_dataset(tmp_path):
    folder = tmp_path / "shapes"
    truth = make_sample_folder(folder, n_per_class=7, classes=CLASSES, seed=1)
    label_everything(folder, CLASSES, truth)
    tree = tmp_path / "tree"
    result = export_splits(folder / "labels.csv", image_folder=tree, verbose=False)
    assert all(per == {"train": 5, "val": 1, "test": 1} for per in result.counts.values())
    data = load_dataset("cifar10", path=tree, use_cache=False, download=False)
    assert data.classes == sorted(CLASSES)
    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("test", data.test_images, data.test_labels)):
        rows = sorted((c, p) for p, c, s in result.rows if s == split)  # the reader's order: class, name
        assert [data.classes[i] for i in labels] == [c for c, _ in rows]
        assert np.array_equal(images, np.stack([pixels(folder / p) for _, p in rows]))
    splits, classes = load_labelled_splits(tree)
    assert classes == sorted(CLASSES) and len(splits["val"][1]) == 10
    assert np.array_equal(splits["train"][0], data.train_images)


def test_image_folder_rerun_updates_and_refuses_other_data(tmp_path, sample):
    folder, truth = sample
    (folder / "big.jpg").write_bytes(b"")  # unreadable: never labelled, never exported
    Image.new("RGB", (80, 40), (200, 10, 10)).save(folder / "wide.png")
    truth = {**truth, "wide.png": "square"}
    s = label_everything(folder, TWO, truth)
    tree = tmp_path / "tree"
    export_splits(folder / "labels.csv", image_folder=tree, verbose=False)
    assert pixels(next(tree.rglob("wide.png"))).shape == (32, 32, 3)  # centre-cropped, resized to 32x32
    before = {p: p.stat().st_mtime_ns for p in tree.rglob("*")}
    export_splits(folder / "labels.csv", image_folder=tree, verbose=False)
    assert {p: p.stat().st_mtime_ns for p in tree.rglob("*")} == before  # rerun: nothing rewritten
    s.go("wide.png")
    s.label("disk")  # relabelled: the old copy must leave square/
    export_splits(folder / "labels.csv", image_folder=tree, verbose=False)
    assert [p.parent.name for p in tree.rglob("wide.png")] == ["disk"]
    export_image_folder(load_dataset("synthetic", synthetic_size=(20, 10), use_cache=False), tmp_path / "other",
                        verbose=False)
    with pytest.raises(ExportError, match="already holds the exported dataset 'synthetic'"):
        export_splits(folder / "labels.csv", image_folder=tmp_path / "other", verbose=False)


# ----------------------------------------------------------------------------- the command

def test_label_cli_dry_run_writes_a_valid_notebook(sample, capsys, monkeypatch):
    from helpers.cli import main as helpers_cli
    folder, _ = sample
    assert helpers_cli(["label", str(folder), "--classes", "disk,square", "--dry-run", "--no-browser"]) == 0
    out = capsys.readouterr().out
    notebook = folder.parent / "label_imgs.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    command = out.split("would run: ", 1)[1]
    assert "jupyter lab label_imgs.ipynb" in command and "--no-browser" in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    monkeypatch.chdir(notebook.parent)  # the notebook's cell opens the tool on the folder
    scope = {}
    exec(nb.cells[1].source, scope)
    assert scope["tool"].session.folder.resolve() == folder.resolve() and scope["tool"].session.classes == TWO
    stamp = notebook.stat().st_mtime_ns
    assert helpers_cli(["label", str(folder), "--classes", "disk,square", "--dry-run"]) == 0
    assert notebook.stat().st_mtime_ns == stamp and "using the existing" in capsys.readouterr().out
    assert helpers_cli(["label", str(folder), "--classes", "disk,square,ring", "--dry-run"]) == 0  # ours: rewritten
    assert nbformat.read(notebook, as_version=4).metadata["helpers_label"]["classes"] == TWO + ["ring"]
    other = folder.parent / "mine.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), other)
    with pytest.raises(SystemExit, match="not written by"):
        helpers_cli(["label", str(folder), "--classes", "a,b", "--notebook", str(other), "--dry-run"])
    assert helpers_cli(["label", str(folder.parent / "nope"), "--classes", "a,b", "--dry-run"]) == 2
    assert "add --sample" in capsys.readouterr().err
    assert helpers_cli(["label", str(folder.parent / "practice"), "--classes", "ring,plus", "--sample", "--dry-run"]) == 0
    assert len(list((folder.parent / "practice").glob("*.png"))) == 20


def test_sample_folder_is_reproducible(tmp_path):
    a = make_sample_folder(tmp_path / "s", n_per_class=3, classes=["ring", "plus", "disk"], seed=5)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir()}
    assert make_sample_folder(tmp_path / "s", n_per_class=3, classes=["ring", "plus", "disk"], seed=5) == a
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir()} == stamps
    assert sorted(a.values()) == sorted(["ring", "plus", "disk"] * 3)
    with pytest.raises(ValueError, match="distinct names"):
        make_sample_folder(tmp_path / "t", classes=["cat", "dog"])


def test_a_two_class_labelled_folder_loads_as_a_dataset(tmp_path):
    """load_dataset("folder", path) takes any number of classes (the CIFAR names insist on 10 or 100)."""
    folder = tmp_path / "imgs"
    truth = make_sample_folder(folder, n_per_class=10, classes=TWO, seed=0)
    label_everything(folder, TWO, truth)
    tree = tmp_path / "tree"
    export_splits(folder / "labels.csv", image_folder=tree, verbose=False)
    data = load_dataset("folder", path=tree)
    assert data.name == "folder" and data.classes == sorted(TWO) and data.num_classes == 2
    assert len(data.train_labels) + len(data.test_labels) + len(load_labelled_splits(tree)[0]["val"][1]) == len(truth)
    with pytest.raises(ValueError, match="give path="):
        load_dataset("folder")
