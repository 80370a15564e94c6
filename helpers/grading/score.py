"""Score a student's checkpoints in the sandbox, from bytes the grader hashed, against labels it keeps.

`score_checkpoints` (one student, all parts):
1. collects each checkpoint on the trusted side: `check_regular_file` (symbolic links, devices,
   FIFOs and files over the cap are refused with a reason, never followed or read), opened with
   O_NOFOLLOW, read once, SHA-256 hashed, its zip directory checked (`check_archive`: no zip
   bombs), and exactly those bytes copied into a private folder (a 0700 temp folder of the TA's);
2. loads each test set verified against its pinned digest (`testsets.verified_testset`) and
   writes only the IMAGES to a private .npy, bound read-only into the sandbox; the labels
   never leave this process;
3. runs `score_worker` inside the sandbox (`sandbox.sandbox_command`: bubblewrap, uid 65534,
   no network, read-only environment, GPU device nodes bound) with `python -I` and a two-line
   bootstrap that puts the read-only project root on sys.path (see score_worker), under a
   `Watchdog` (memory cap, `timeout` seconds per checkpoint). With COURSE_SANDBOX=off (a trusted
   local run only) the same command runs without bubblewrap, in a private temp folder;
4. validates what the worker printed (one JSON line per checkpoint with a prediction per test
   image, classes in range, the model's architecture fingerprint and the checkpoint's record of
   its training data; anything else is 0 points, "the scoring process returned malformed
   output") and computes accuracy and macro-F1 itself, then points from the tiers;
5. assesses the work (`assess`): a model trained on other data than the training split of the
   data it is graded on (the checkpoint's recorded SHA-256 against the verified one,
   `testsets.VerifiedTestSet.train_digest`), or whose checkpoint does not record it, scores 0
   with "trained on <name> <hash>, but this assignment is graded on <name> <hash>: retrain ...";
   a model whose architecture matches a handed-out or zoo design (challenge.match_reference)
   keeps at most challenge.CAP_FRACTION of the points, and its reason names the design.
Every failure is 0 points with a one-line reason; only "error" (the grader could not work, e.g.
no test data) is not a score. Each row carries the checkpoint's `sha256`, and `matches` (the
design a capped model matches, else "").
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..settings import PROJECT_ROOT, passed_through
from .fingerprint import from_wire
from .tiers import DEFAULT_TIERS, TierTable, tier_fraction

DEFAULT_TIMEOUT = 120
MAX_STDOUT_BYTES = 8 * 2**20     # the worker's results: ~27 KB per 10,000 images
MAX_STDERR_BYTES = 64 * 2**10    # kept for the failure reason (its last line)
MALFORMED = "the scoring process returned malformed output"
SANDBOX_WORKDIR = "/tmp/score"   # the worker's private tmpfs inside the sandbox

# Runs inside the sandbox with `python -I`: sys.path gets the read-only project root (holding only
# helpers/ there) and nothing from the environment, the current folder or the user's site.
BOOTSTRAP = ("import sys; sys.path.insert(0, {root!r}); "
             "from helpers.grading.score_worker import main; sys.exit(main(sys.argv[1:]))")


def _result(student, dataset, max_points, **fields) -> dict:
    """A result row with every key present (None where unknown)."""
    row = {"student": student, "dataset": dataset, "status": "zero", "accuracy": None, "macro_f1": None,
           "model": None, "images": 0, "tier": "", "fraction": 0.0, "points": 0.0,
           "max_points": float(max_points), "reason": "", "seconds": 0.0, "sha256": None, "matches": ""}
    row.update(fields)
    return row


# ----------------------------------------------------------------------------- collection

def collect_checkpoint(path) -> tuple[bytes | None, str | None, str]:
    """(bytes, sha256, "") of a submitted checkpoint, or (None, None, reason) when it is refused.

    Never follows a link and never opens a device or FIFO (lstat first, then O_NOFOLLOW |
    O_NONBLOCK and an fstat of what was opened); the zip directory is checked before any copy.
    """
    from ..models.checkpoint import CheckpointError, check_archive
    from .sandbox import Refused, check_regular_file
    from .score_worker import MAX_BYTES
    path = Path(path)
    try:
        check_regular_file(path, MAX_BYTES)
    except FileNotFoundError:
        return None, None, f"checkpoint missing: {path.name} not found in the submission"
    except Refused as exc:
        return None, None, f"refused: {exc}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return None, None, f"refused: {path.name} could not be opened ({exc.strerror})"
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            return None, None, f"refused: {path.name} is not a regular file under {MAX_BYTES / 1e6:.0f} MB"
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        return None, None, f"refused: {path.name} grew past {MAX_BYTES / 1e6:.0f} MB while it was read"
    try:
        check_archive(data)
    except CheckpointError as exc:
        return None, hashlib.sha256(data).hexdigest(), str(exc)
    return data, hashlib.sha256(data).hexdigest(), ""


# ----------------------------------------------------------------------------- the worker

def _reader(stream, cap: int, keep_tail: bool, sink: list, over: threading.Event) -> None:
    """Drain `stream` into sink (bytes), keeping at most `cap` (the head, or the tail); flag overflow."""
    buf = bytearray()
    while chunk := stream.read(65536):
        buf += chunk
        if len(buf) > cap:
            if keep_tail:
                del buf[:len(buf) - cap]
            else:
                over.set()
                del buf[cap:]
    sink.append(bytes(buf))


def worker_command(checkpoints: list[str], image_files: list[str], classes: list[int], *, workdir: str,
                   submission: str | None, data_dir: str, device: str | None, sandbox: bool) -> list[str]:
    """The command that runs the score worker (in bubblewrap unless `sandbox` is False)."""
    argv = [sys.executable, "-I", "-c", BOOTSTRAP.format(root=str(PROJECT_ROOT)), *checkpoints]
    for image_file, n in zip(image_files, classes):
        argv += ["--images", image_file, "--classes", str(n)]
    if device:
        argv += ["--device", device]
    if not sandbox:
        return argv
    from .sandbox import base_env, sandbox_command
    extra = {}
    extra.update(passed_through(["COURSE_SCORE_TEST_SLEEP"]))  # the test hook travels explicitly
    return sandbox_command(argv, workdir=workdir, submission=submission, readonly=[data_dir],
                           env=base_env(extra), gpu=True)


def _run(cmd: list[str], *, cwd: str, env: dict | None, seconds: float) -> tuple[str, str, str | None, int]:
    """(stdout, stderr, why it was stopped or None, exit code) of one supervised worker process."""
    from .sandbox import LIMITS, Watchdog, kill_tree
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out, err, over = [], [], threading.Event()
    readers = [threading.Thread(target=_reader, args=(proc.stdout, MAX_STDOUT_BYTES, False, out, over), daemon=True),
               threading.Thread(target=_reader, args=(proc.stderr, MAX_STDERR_BYTES, True, err, threading.Event()),
                                daemon=True)]
    for t in readers:
        t.start()
    watchdog = Watchdog(proc.pid, memory_bytes=LIMITS.memory_bytes, seconds=seconds)
    watchdog.start()
    stopped, started = None, time.monotonic()
    try:
        while proc.poll() is None:
            if over.is_set():
                kill_tree(proc.pid)
                stopped = f"printed more than {MAX_STDOUT_BYTES // 2**20} MB; stopped"
            elif time.monotonic() - started > seconds + 30:  # backstop, should the watchdog miss it
                kill_tree(proc.pid)
            time.sleep(0.05)
    finally:
        watchdog.stop()
        if proc.poll() is None:
            kill_tree(proc.pid)
        proc.wait()
        for t in readers:
            t.join(timeout=5)
    if watchdog.reason:
        stopped = (f"timed out after {seconds:g} s" if watchdog.reason.startswith("ran longer")
                   else watchdog.reason)
    decode = lambda parts: (parts[0] if parts else b"").decode("utf-8", "replace")  # noqa: E731
    return decode(out), decode(err), stopped, proc.returncode


def run_workers(items: list[tuple[bytes, str, object]], *, timeout: float = DEFAULT_TIMEOUT,
                device: str | None = None) -> list[dict]:
    """The validated result of each (checkpoint bytes, file name, VerifiedTestSet), from ONE sandboxed
    process (torch is imported once per student): {status, reason, model, predictions} or a status
    "zero" dict saying why there is none. `timeout` seconds per checkpoint; results printed before
    a timeout stand."""
    from .sandbox import sandbox_disabled
    sandbox = not sandbox_disabled()
    tmp = Path(tempfile.mkdtemp(prefix="course-score-"))  # 0700: the TA's only
    try:
        sub, data = tmp / "submission", tmp / "data"
        sub.mkdir()
        data.mkdir()
        names, image_files, classes, files = [], [], [], {}
        for i, (raw, name, testset) in enumerate(items):
            (sub / str(i)).mkdir()
            (sub / str(i) / name).write_bytes(raw)
            names.append(f"{i}/{name}")
            if testset.digest not in files:
                files[testset.digest] = data / f"{len(files)}.npy"
                np.save(files[testset.digest], testset.images, allow_pickle=False)
            image_files.append(str(files[testset.digest]))
            classes.append(testset.num_classes)
        if sandbox:
            workdir, cwd, env = SANDBOX_WORKDIR, str(tmp), None
        else:  # trusted local run: the same worker and bootstrap, in a private copy, no bubblewrap
            shutil.copytree(sub, tmp / "work")
            workdir = cwd = str(tmp / "work")
            env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
        cmd = worker_command(names, image_files, classes, workdir=workdir, submission=str(sub),
                             data_dir=str(data), device=device, sandbox=sandbox)
        limit = timeout * len(items)
        stdout, stderr, stopped, code = _run(cmd, cwd=cwd, env=env, seconds=limit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]  # not a C library's stray print
    results = [validate_line(line, testset) for line, (_, _, testset) in zip(lines, items)]
    if stopped:
        missing = {"status": "zero", "reason": stopped}
    elif len(lines) < len(items):
        last = (stderr.strip().splitlines() or ["no output"])[-1][:200]
        missing = {"status": "zero", "reason": f"the scoring process failed (exit code {code}): {last}"}
    else:
        missing = {"status": "zero", "reason": MALFORMED}
    return (results + [dict(missing) for _ in items])[:len(items)]


def validate_line(line: str, testset) -> dict:
    """One worker line checked: {status, reason, model, predictions}; MALFORMED unless it is
    well-formed JSON with a prediction (an integer class in range) for every test image."""
    bad = {"status": "zero", "reason": MALFORMED, "model": None, "predictions": None}
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return bad
    if not isinstance(raw, dict) or raw.get("status") not in ("ok", "zero") or not isinstance(raw.get("reason"), str):
        return bad
    model = raw.get("model") if isinstance(raw.get("model"), str) else None
    if raw["status"] == "zero":
        reason = " ".join(raw["reason"].split())[:400] or "the checkpoint could not be scored"
        return {"status": "zero", "reason": reason, "model": model, "predictions": None}
    n = len(testset.labels)
    try:
        blob = base64.b64decode(raw.get("pred", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        return bad
    if raw.get("n") != n or len(blob) != 2 * n:
        return bad
    preds = np.frombuffer(blob, dtype="<u2").astype(np.int64)
    if preds.size and int(preds.max()) >= testset.num_classes:
        return bad
    fingerprint = from_wire(raw.get("fingerprint"))
    trained_on = raw.get("trained_on")
    if fingerprint is None or not (trained_on is None or _trained_on_ok(trained_on)):
        return bad
    return {"status": "ok", "reason": "", "model": model, "predictions": preds, "fingerprint": fingerprint,
            "trained_on": trained_on}


def _trained_on_ok(record) -> bool:
    """The shape score_worker.trained_on_record gives: name, sha256 (64 hex or None), images, reduced."""
    if not isinstance(record, dict) or set(record) != {"name", "sha256", "images", "reduced"}:
        return False
    name, digest, images = record["name"], record["sha256"], record["images"]
    return ((name is None or (isinstance(name, str) and len(name) <= 40))
            and (digest is None or (isinstance(digest, str) and len(digest) == 64
                                    and all(c in "0123456789abcdef" for c in digest)))
            and (images is None or (type(images) is int and images >= 0))
            and isinstance(record["reduced"], bool))


def metrics_row(raw: dict, testset) -> dict:
    """A validated worker line turned into {status, accuracy, macro_f1, reason, model, dataset, images},
    the metrics computed here from the labels the grader holds."""
    from ..eval.metrics import accuracy, macro_f1
    if "predictions" not in raw:
        raw = validate_line(json.dumps(raw), testset)
    out = {"status": raw["status"], "accuracy": None, "macro_f1": None, "model": raw.get("model"),
           "dataset": testset.asked, "images": 0, "reason": raw["reason"],
           "fingerprint": raw.get("fingerprint"), "trained_on": raw.get("trained_on")}
    if raw["status"] == "ok":
        preds = raw["predictions"]
        out.update(accuracy=accuracy(testset.labels, preds),
                   macro_f1=macro_f1(testset.labels, preds, num_classes=testset.num_classes),
                   images=int(len(preds)))
        out["reason"] = "; ".join(filter(None, [
            f"{out['model']} on the {testset.name} test split ({out['images']} images)", testset.note]))
    return out


def points_for(result: dict, table: TierTable, max_points: float) -> tuple[float, float, str]:
    """(fraction, points, tier text) of a worker result under a tier table; 0 unless status is ok."""
    if result.get("status") != "ok":
        return 0.0, 0.0, ""
    fraction, text = tier_fraction(result.get(table.metric), table)
    return fraction, round(fraction * max_points, 4), f"{table.metric} {text}"


def assess(result: dict, testset) -> tuple[str | None, str | None]:
    """(why the work scores 0, or None; the handed-out or zoo design it matches, or None) of a scored
    result: the checkpoint must record training on the training split the grader holds for this
    test set, and its architecture is compared with the designs the course hands out."""
    from .challenge import dataset_problem, match_reference
    if result.get("status") != "ok" or testset is None:
        return None, None
    if problem := dataset_problem(result.get("trained_on"), testset):
        return problem, None
    fingerprint = result.get("fingerprint")
    return None, (match_reference(fingerprint, testset.num_classes) if fingerprint is not None else None)


def score_checkpoint(path, *, dataset: str = "cifar10", max_points: float = 1.0, tiers: TierTable | None = None,
                     timeout: float = DEFAULT_TIMEOUT, allow_synthetic: bool = False, student: str = "",
                     device: str | None = None) -> dict:
    """Score one checkpoint: {student, dataset, status, accuracy, macro_f1, tier, fraction, points,
    max_points, reason, seconds, model, images, sha256}. Never raises for a bad submission."""
    part = {"path": path, "dataset": dataset, "max_points": max_points, "tiers": tiers}
    return score_checkpoints([part], timeout=timeout, allow_synthetic=allow_synthetic, student=student,
                             device=device)[0]


def score_checkpoints(parts: list[dict], *, timeout: float = DEFAULT_TIMEOUT, allow_synthetic: bool = False,
                      student: str = "", device: str | None = None) -> list[dict]:
    """Score one student's checkpoints (each part: path, dataset, max_points, tiers) in one sandboxed
    process; a result row per part, as score_checkpoint gives. Never raises for a bad submission
    (a test set that is unavailable or fails its digest raises: that is the grader's to fix)."""
    from ..data.imagefolder import DataError
    from .testsets import TestSetError, verified_testset
    start = time.perf_counter()
    raws: list[dict | None] = []
    digests, testsets, todo = [], [], []
    for part in parts:
        data, digest, reason = collect_checkpoint(part["path"])
        digests.append(digest)
        if data is None:  # no process needed to say so
            raws.append({"status": "zero", "reason": reason})
            testsets.append(None)
            continue
        try:
            testset = verified_testset(part["dataset"], allow_synthetic=allow_synthetic)
        except (DataError, TestSetError) as exc:
            raws.append({"status": "error", "reason": f"test data unavailable or not trusted: {exc}"})
            testsets.append(None)
            continue
        testsets.append(testset)
        raws.append(None)
        todo.append((data, Path(part["path"]).name, testset))
    if todo:
        found = iter(run_workers(todo, timeout=timeout, device=device))
        raws = [raw if raw is not None else next(found) for raw in raws]
    seconds = round((time.perf_counter() - start) / len(parts), 2)
    rows = []
    for raw, part, testset, digest in zip(raws, parts, testsets, digests):
        if testset is not None:
            raw = metrics_row(raw, testset)
        rows.append(_points_row(raw, part, student, seconds, digest, testset))
    return rows


def _points_row(raw: dict, part: dict, student: str, seconds: float, digest: str | None,
                testset=None) -> dict:
    """A result turned into points and a one-line reason under the part's tiers, after `assess`."""
    from .challenge import CAP_FRACTION, cap_reason
    dataset, max_points = part["dataset"], part["max_points"]
    table = part.get("tiers") or DEFAULT_TIERS.get(dataset, DEFAULT_TIERS["cifar10"])
    problem, matched = assess(raw, testset)
    if problem:  # not a model of this data: 0 points; what it measured is said, not scored
        measured = f" (it measured {table.metric} {raw[table.metric]:.4f} on the test split)" \
            if isinstance(raw.get(table.metric), float) else ""
        raw = {**raw, "status": "zero", "accuracy": None, "macro_f1": None, "reason": f"{problem}{measured}"}
    fraction, points, tier = points_for(raw, table, max_points)
    reason = raw.get("reason", "")
    if matched:
        fraction = min(fraction, CAP_FRACTION)
        points = round(fraction * max_points, 4)
        tier = f"{tier}; {cap_reason(matched)}"
    if table.label:
        tier = f"{tier} [{table.label}]"
    if raw.get("status") == "ok":
        reason = f"{tier} -> {points:g}/{max_points:g} points; {reason}"
    elif raw.get("status") != "error":
        reason = f"0/{max_points:g} points: {reason}"
    known = {k: raw[k] for k in ("status", "accuracy", "macro_f1", "model", "images") if k in raw}
    return _result(student, dataset, max_points, **known, tier=tier, fraction=fraction, points=points,
                   reason=reason, seconds=seconds, sha256=digest, matches=matched or "")


def evaluate_checkpoint(path, dataset: str = "cifar10", *, allow_synthetic: bool = False, device=None) -> dict:
    """Score one checkpoint in this process (no sandbox; tests and trusted local use): the verified
    test set, the worker's prediction and the grader's metrics. {status, accuracy, macro_f1,
    reason, model, dataset, images}; status "error" when the grader has no trusted test data."""
    from ..data.imagefolder import DataError
    from .testsets import TestSetError, verified_testset
    try:
        testset = verified_testset(dataset, allow_synthetic=allow_synthetic)
    except (DataError, TestSetError) as exc:
        return {"status": "error", "accuracy": None, "macro_f1": None, "model": None, "dataset": dataset,
                "images": 0, "reason": f"test data unavailable: {str(exc).splitlines()[0]} (set $COURSE_CIFAR10/"
                                       "$COURSE_CIFAR100, or pass --allow-synthetic for a demo)"}
    from .score_worker import encode_result, predict_checkpoint
    raw = predict_checkpoint(path, testset.images, testset.num_classes, device)
    return metrics_row(json.loads(encode_result(raw)), testset)
