"""Checkpoint scoring from inputs the kernel cannot touch: the worker runs `python -I` in the sandbox on a
private copy of the bytes the grader hashed, sees images but no labels, and its output is validated;
test sets are checked against pinned digests; bombs, links, devices and FIFOs are refused with a reason;
tiers come only from a TA-named file; identical checkpoints are reported; the integrity check sees changes."""
import json
import os
import sqlite3
import threading
import time
import zipfile

import numpy as np
import pytest
import torch

from helpers.checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, check_archive
from helpers.grading import sandbox, score, score_worker, testsets
from helpers.grading.challenge import save_challenge_checkpoint
from helpers.grading.cli import _identical_checkpoints
from helpers.grading.integrity import IntegrityError, check, compare, snapshot
from helpers.grading.score import MALFORMED, collect_checkpoint, score_checkpoint, validate_line, worker_command
from helpers.grading.tiers import DEFAULT_TIERS, load_tiers
from helpers.models import build_model

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
needs_bwrap = pytest.mark.skipif(not os.access("/usr/bin/bwrap", os.X_OK), reason="bubblewrap not installed")


@pytest.fixture(autouse=True)
def reduced_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.delenv("COURSE_SANDBOX", raising=False)
    monkeypatch.delenv("COURSE_SCORE_TEST_SLEEP", raising=False)
    monkeypatch.delenv("COURSE_TESTSET_SHA256", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("good") / "challenge_model.pt"
    from helpers.data import course_data
    with pytest.MonkeyPatch.context() as mp:  # the data the grader scores 'synthetic' on here (reduced mode)
        mp.setenv("COURSE_FAST", "1")
        data = course_data("synthetic", verbose=False)
    return save_challenge_checkpoint(path, build_model("mlp", num_classes=10, hidden=(32,)), history=[],
                                     mean=MEAN, std=STD, dataset=data)


@pytest.fixture
def clean_score(good):
    """The in-process reference score of the good checkpoint (no sandbox)."""
    return score.evaluate_checkpoint(good, "synthetic")


def pinned_reduced_split():
    """The reduced-mode synthetic test split, generated afresh (no cache)."""
    from helpers.data import course_data
    data = course_data("synthetic", verbose=False, use_cache=False)
    return data.test_images, data.test_labels


def spec_checkpoint(path, name, kwargs):
    """A tiny checkpoint whose model description asks for `name(**kwargs)` (no weights)."""
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "model": {"name": name, "kwargs": kwargs},
                "state_dict": {}, "mean": MEAN, "std": STD}, path)
    return path


# ----------------------------------------------------------------------------- the sandboxed worker

@needs_bwrap
def test_good_checkpoint_is_scored_in_the_sandbox_with_python_isolated(good, clean_score, monkeypatch):
    seen = []
    real_run = score._run

    def spy(cmd, **kwargs):
        seen.append(cmd)
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(score, "_run", spy)
    result = score_checkpoint(good, dataset="synthetic", max_points=10, student="ann")
    assert result["status"] == "ok", result["reason"]
    assert result["accuracy"] == clean_score["accuracy"] and result["macro_f1"] == clean_score["macro_f1"]
    assert result["sha256"] and len(result["sha256"]) == 64
    (cmd,) = seen
    assert os.path.basename(cmd[0]) == "bwrap" and "--unshare-net" in cmd and "--clearenv" in cmd
    python = cmd.index("-I")
    assert cmd[python + 1] == "-c" and "sys.path.insert(0" in cmd[python + 2]
    assert str(good.parent) not in " ".join(cmd)  # the student's folder is never bound: a private copy is


@needs_bwrap
def test_sitecustomize_pth_and_pythonpath_in_writable_places_change_nothing(good, clean_score, tmp_path,
                                                                            monkeypatch):
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "EVIL_RAN"
    forged = json.dumps({"status": "ok", "reason": "", "model": "mlp", "accuracy": 1.0, "macro_f1": 1.0})
    code = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x'); print({forged!r}, flush=True)\n"
    for folder in (evil, good.parent):  # on PYTHONPATH, and beside the checkpoint in the submission
        (folder / "sitecustomize.py").write_text(code)
        (folder / "usercustomize.py").write_text(code)
        (folder / "evil.pth").write_text(f"import os; os.system('touch {marker}')\n")
    monkeypatch.setenv("PYTHONPATH", str(evil))
    monkeypatch.setenv("PYTHONSTARTUP", str(evil / "sitecustomize.py"))
    try:
        result = score_checkpoint(good, dataset="synthetic", max_points=10)
    finally:
        for name in ("sitecustomize.py", "usercustomize.py", "evil.pth"):
            (good.parent / name).unlink()
    assert result["status"] == "ok" and result["accuracy"] == clean_score["accuracy"]
    assert not marker.exists()


@needs_bwrap
def test_a_forged_result_printed_in_place_of_the_real_one_is_rejected(good, monkeypatch):
    forged = json.dumps({"status": "ok", "accuracy": 1.0, "macro_f1": 1.0, "reason": "forged", "model": "mlp"})
    escaped = repr(forged).replace("{", "{{").replace("}", "}}")
    monkeypatch.setattr(score, "BOOTSTRAP", "print(" + escaped + ") # {root!r}")
    result = score_checkpoint(good, dataset="synthetic", max_points=10)
    assert result["points"] == 0 and MALFORMED in result["reason"]


def test_worker_lines_are_validated_and_earn_only_what_their_predictions_earn():
    ts = testsets.verified_testset("synthetic")
    n = len(ts.labels)

    def line(preds, **extra):
        import base64
        blob = base64.b64encode(np.asarray(preds, "<u2").tobytes()).decode()
        fields = {"status": "ok", "reason": "", "model": "mlp", "n": len(preds), "pred": blob,
                  "fingerprint": [["linear", 10]], "trained_on": None, **extra}
        return json.dumps(fields)

    for bad in ("not json", "[]", json.dumps({"status": "ok", "accuracy": 1.0, "reason": ""}),
                line([0] * (n - 1)), line([10] * n), line([0] * n)[:-5] + "\"}", "{" * 100_000,
                line([0] * n, fingerprint=None), line([0] * n, fingerprint=[["linear", "10"]]),
                line([0] * n, trained_on={"name": "synthetic", "sha256": "not hex"})):
        assert validate_line(bad, ts)["reason"] == MALFORMED
    # even a line claiming perfect metrics only earns what its predictions earn: one class everywhere
    raw = validate_line(line([0] * n, accuracy=1.0, macro_f1=1.0), ts)
    row = score.metrics_row(raw, ts)
    assert row["accuracy"] == pytest.approx(float(np.mean(ts.labels == 0))) and row["accuracy"] < 0.2


# ----------------------------------------------------------------------------- refused inputs

def test_meta_device_bombs_are_refused_fast_before_any_allocation(tmp_path):
    wide = spec_checkpoint(tmp_path / "wide.pt", "fastnet", {"widths": [1_000_000, 256, 256]})
    assert wide.stat().st_size < 5_000
    start = time.perf_counter()
    result = score_worker.predict_checkpoint(wide, np.zeros((4, 32, 32, 3), np.uint8), 10)
    assert time.perf_counter() - start < 10
    assert result["status"] == "zero" and "parameters, over the challenge's 20,000,000" in result["reason"]
    tall = spec_checkpoint(tmp_path / "tall.pt", "transfer_resnet18", {"upsample": 20_000})
    start = time.perf_counter()
    result = score_worker.predict_checkpoint(tall, np.zeros((4, 32, 32, 3), np.uint8), 10)
    assert time.perf_counter() - start < 20
    assert result["status"] == "zero" and "GiB of activations" in result["reason"], result["reason"]


def test_zip_bombs_are_refused_on_both_sides(tmp_path):
    bomb = tmp_path / "challenge_model.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data/0", "w") as member:
            chunk = bytes(2**24)
            for _ in range(13):  # 218 MB of zeros, a few hundred KB compressed
                member.write(chunk)
        z.writestr("archive/data.pkl", b"x")
    assert bomb.stat().st_size < 3_000_000
    data, digest, reason = collect_checkpoint(bomb)
    assert data is None and "unpacks to 218 MB, over the 200 MB limit" in reason and len(digest) == 64
    with pytest.raises(CheckpointError, match="unpacks to"):
        check_archive(bomb)
    result = score_worker.predict_checkpoint(bomb, np.zeros((2, 32, 32, 3), np.uint8), 10)
    assert result["status"] == "zero" and "refused" in result["reason"] and "unpacks to" in result["reason"]
    ratio = tmp_path / "ratio.pt"
    with zipfile.ZipFile(ratio, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data/0", bytes(8 * 2**20))
    with pytest.raises(CheckpointError, match="compressed .* times"):
        check_archive(ratio)


@pytest.mark.parametrize("target, words", [("/dev/zero", "symbolic link"), ("/etc/passwd", "symbolic link")])
def test_symlinks_to_devices_and_system_files_are_refused_with_a_reason(tmp_path, target, words):
    link = tmp_path / "challenge_model.pt"
    link.symlink_to(target)
    start = time.perf_counter()
    result = score_checkpoint(link, dataset="synthetic", max_points=10)
    assert time.perf_counter() - start < 5
    assert result["points"] == 0 and f"refused: challenge_model.pt is a {words}" in result["reason"]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "challenge_model.pt"
    os.mkfifo(fifo)
    box = {}
    thread = threading.Thread(target=lambda: box.update(r=score_checkpoint(fifo, dataset="synthetic")), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "reading the FIFO blocked"
    assert box["r"]["points"] == 0 and "not a regular file" in box["r"]["reason"]


# ----------------------------------------------------------------------------- inputs the grader trusts

def test_a_tiers_file_in_the_course_root_is_ignored(tmp_path, monkeypatch):
    import inspect
    from helpers.grading import cli
    monkeypatch.delenv("COURSE_TIERS", raising=False)
    (tmp_path / "grading_tiers.json").write_text('{"cifar10": {"tiers": [{"at_least": 0.0, "fraction": 1.0}]}}')
    assert load_tiers(tmp_path) == DEFAULT_TIERS
    source = inspect.getsource(cli._part_tables)
    assert "load_tiers(opts.tiers)" in source and "load_tiers(root)" not in source
    assert cli.score_parser().parse_args(["06_challenge", "--tiers", "/ta/tiers.json"]).tiers == "/ta/tiers.json"


def test_reduced_tiers_are_asked_for_and_refused_on_a_full_test_set(tmp_path, monkeypatch):
    """--reduced-tiers (the demo and tests) applies reduced-mode tables, labelled as such; grading against a
    full test set refuses it, and the course's tiers stay the default even with COURSE_FAST set."""
    from types import SimpleNamespace

    from helpers.grading import cli
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.delenv("COURSE_TIERS", raising=False)
    parts = [{"cell": "score-cifar10", "dataset": "cifar10", "tiers_key": "cifar10", "max_points": 20}]
    opts = cli.score_parser().parse_args(["06_challenge", "--reduced-tiers"])
    reduced = SimpleNamespace(name="cifar10", reduced=True, labels=np.zeros(3000))
    table = cli._part_tables(tmp_path, parts, {"cifar10": reduced}, opts)["score-cifar10"]
    assert "reduced-mode" in table.label and table != DEFAULT_TIERS["cifar10"]
    full = SimpleNamespace(name="cifar10", reduced=False, labels=np.zeros(10_000))
    with pytest.raises(cli.UsageError, match="real grading run"):
        cli._part_tables(tmp_path, parts, {"cifar10": full}, opts)
    plain = cli.score_parser().parse_args(["06_challenge"])
    assert cli._part_tables(tmp_path, parts, {"cifar10": reduced}, plain)["score-cifar10"] == DEFAULT_TIERS["cifar10"]


def test_a_relabelled_cache_does_not_change_the_score(good, clean_score, tmp_path, monkeypatch):
    from helpers.data import load_dataset
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    load_dataset("synthetic")  # writes the cache
    (cache,) = (tmp_path / "cache").glob("synthetic-*.npz")
    with np.load(cache) as z:
        arrays = dict(z)
    arrays["test_labels"] = (arrays["test_labels"] + 1) % 10  # every label wrong
    with open(cache, "wb") as f:
        np.savez(f, **arrays)
    monkeypatch.setattr(testsets, "_MEMO", {})
    assert testsets.verified_testset("synthetic").digest == testsets.testset_digest(*pinned_reduced_split())
    result = score.evaluate_checkpoint(good, "synthetic")
    assert result["accuracy"] == clean_score["accuracy"]


def test_an_unpinned_test_set_stops_grading_unless_the_ta_pins_it(monkeypatch):
    monkeypatch.setattr(testsets, "_PINNED_TABLE", [])
    with pytest.raises(testsets.TestSetError, match="does not match any pinned digest.*COURSE_TESTSET_SHA256="):
        testsets.load_verified("synthetic")
    digest = testsets.testset_digest(*pinned_reduced_split())
    monkeypatch.setenv("COURSE_TESTSET_SHA256", digest)
    assert testsets.load_verified("synthetic").verified.startswith("pinned by the TA")


def test_identical_checkpoints_across_students_are_reported():
    rows = [{"student": "ann", "sha256": "a" * 64, "checkpoint": "challenge_model.pt", "dataset": "cifar10"},
            {"student": "bob", "sha256": "a" * 64, "checkpoint": "challenge_model.pt", "dataset": "cifar10"},
            {"student": "cy", "sha256": "b" * 64, "checkpoint": "challenge_model.pt", "dataset": "cifar10"},
            {"student": "cy", "sha256": None, "checkpoint": "cifar100_model.pt", "dataset": "cifar100"}]
    found = _identical_checkpoints(rows)
    assert sorted(f.student for f in found) == ["ann", "bob"]
    assert "identical checkpoint" in found[0].reason and "bob" in found[0].reason


def test_the_integrity_check_detects_a_modified_file_config_schema_or_test_set(tmp_path):
    pkg, course = tmp_path / "helpers", tmp_path / "course"
    pkg.mkdir()
    course.mkdir()
    (pkg / "__init__.py").write_text("x = 1\n")
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    db = course / "gradebook.db"
    sqlite3.connect(db).execute("CREATE TABLE grade (id INTEGER, score REAL)").connection.commit()
    url = f"sqlite:///{db}"
    before = snapshot(course, url, {"synthetic": "d1"}, package_dir=pkg)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO grade VALUES (1, 2.0)")  # scores may change
    con.commit()
    assert compare(before, snapshot(course, url, {"synthetic": "d1"}, package_dir=pkg)) == []
    (pkg / "__init__.py").write_text("x = 2\n")
    (pkg / "evil.py").write_text("")
    (course / "nbgrader_config.py").write_text("c = get_config()\nc.X = 1\n")
    con.execute("CREATE TRIGGER t AFTER INSERT ON grade BEGIN SELECT 1; END")
    con.commit()
    changed = compare(before, snapshot(course, url, {"synthetic": "d2"}, package_dir=pkg))
    assert [line.split(":")[0] + ":" + line.split(":")[1].split("(")[0].strip() for line in changed] == [
        "modified:gradebook schema", "modified:helpers/__init__.py", "added:helpers/evil.py",
        "modified:nbgrader_config.py", "modified:test set synthetic"]
    with pytest.raises(IntegrityError, match="INTEGRITY CHECK FAILED"):
        check(before, snapshot(course, url, {"synthetic": "d1"}, package_dir=pkg))


# ----------------------------------------------------------------------------- the GPU on a farm

@needs_bwrap
def test_the_scoring_bind_list_includes_the_gpu_device_nodes(monkeypatch):
    monkeypatch.setattr(sandbox, "gpu_device_nodes", lambda: ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"])
    cmd = worker_command(["0/challenge_model.pt"], ["/tmp/x/data/0.npy"], [10], workdir="/tmp/score",
                         submission="/tmp/x/submission", data_dir="/tmp/x/data", device=None, sandbox=True)
    joined = " ".join(cmd)
    for node in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"):
        assert f"--dev-bind {node} {node}" in joined
    assert "--ro-bind /tmp/x/data /tmp/x/data" in joined and "labels" not in joined
