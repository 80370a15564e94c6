"""Score a student's checkpoint in a fresh process with a time limit, and map it to points.

`score_checkpoint` runs `python -m helpers.grading.score_worker <checkpoint> --json` in a new
process (its own session, started from the project root so nothing in the submission folder
can shadow a module), kills the whole process group when it runs past `timeout`, reads the
JSON result and turns the metric into points with the tiers. Every failure is 0 points with a
one-line reason; only "error" (the grader could not work, e.g. no test data) is not a score.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..config import PROJECT_ROOT
from .tiers import DEFAULT_TIERS, TierTable, tier_fraction

DEFAULT_TIMEOUT = 120


def _result(student, dataset, max_points, **fields) -> dict:
    """A result row with every key present (None where unknown)."""
    row = {"student": student, "dataset": dataset, "status": "zero", "accuracy": None, "macro_f1": None,
           "model": None, "images": 0, "tier": "", "fraction": 0.0, "points": 0.0,
           "max_points": float(max_points), "reason": "", "seconds": 0.0}
    row.update(fields)
    return row


def run_workers(items: list[tuple[Path, str]], *, timeout: float = DEFAULT_TIMEOUT, allow_synthetic: bool = False,
                device: str | None = None) -> list[dict]:
    """The worker's JSON result for each (checkpoint, dataset), from ONE fresh process (torch is
    imported once per student), or a status "zero" dict saying why there is none.

    The process gets `timeout` seconds per checkpoint; results printed before a timeout stand.
    """
    cmd = [sys.executable, "-m", "helpers.grading.score_worker", *(str(Path(p).absolute()) for p, _ in items)]
    for _, dataset in items:
        cmd += ["--dataset", dataset]
    cmd.append("--json")
    if allow_synthetic:
        cmd.append("--allow-synthetic")
    if device:
        cmd += ["--device", device]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.pop("NBGRADER_EXECUTION", None)
    limit = timeout * len(items)
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
        missing = None
    except subprocess.TimeoutExpired:
        stdout, stderr = _kill_group(proc)
        missing = {"status": "zero", "reason": f"timed out after {limit:g} s"}
    results = []
    for line in (stdout or "").strip().splitlines():
        if line.startswith("{"):
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                break
    if missing is None:
        last = ((stderr or "").strip().splitlines() or ["no output"])[-1][:200]
        missing = {"status": "zero", "reason": f"the scoring process failed (exit code {proc.returncode}): {last}"}
    return (results + [dict(missing) for _ in items])[:len(items)]


def run_worker(path, dataset: str = "cifar10", *, timeout: float = DEFAULT_TIMEOUT, allow_synthetic: bool = False,
               device: str | None = None) -> dict:
    """The worker's JSON result for one checkpoint (see run_workers)."""
    return run_workers([(Path(path), dataset)], timeout=timeout, allow_synthetic=allow_synthetic, device=device)[0]


def _kill_group(proc: subprocess.Popen) -> tuple[str, str]:
    """Kill a worker and anything it started (it runs in its own session); its output so far."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    return proc.communicate()


def points_for(result: dict, table: TierTable, max_points: float) -> tuple[float, float, str]:
    """(fraction, points, tier text) of a worker result under a tier table; 0 unless status is ok."""
    if result.get("status") != "ok":
        return 0.0, 0.0, ""
    fraction, text = tier_fraction(result.get(table.metric), table)
    return fraction, round(fraction * max_points, 4), f"{table.metric} {text}"


def score_checkpoint(path, *, dataset: str = "cifar10", max_points: float = 1.0, tiers: TierTable | None = None,
                     timeout: float = DEFAULT_TIMEOUT, allow_synthetic: bool = False, student: str = "",
                     device: str | None = None) -> dict:
    """Score one checkpoint: {student, dataset, status, accuracy, macro_f1, tier, fraction, points,
    max_points, reason, seconds, model, images}. Never raises for a bad submission."""
    part = {"path": path, "dataset": dataset, "max_points": max_points, "tiers": tiers}
    return score_checkpoints([part], timeout=timeout, allow_synthetic=allow_synthetic, student=student,
                             device=device)[0]


def score_checkpoints(parts: list[dict], *, timeout: float = DEFAULT_TIMEOUT, allow_synthetic: bool = False,
                      student: str = "", device: str | None = None) -> list[dict]:
    """Score one student's checkpoints (each part: path, dataset, max_points, tiers) in one fresh
    process; a result row per part, as score_checkpoint gives. Never raises for a bad submission."""
    start = time.perf_counter()
    raws: list[dict | None] = []
    todo = []
    for part in parts:
        path = Path(part["path"])
        if not path.exists() and not path.is_symlink():  # no process needed to say so
            raws.append({"status": "zero", "reason": f"checkpoint missing: {path.name} not found in the submission"})
        else:
            raws.append(None)
            todo.append((path, part["dataset"]))
    if todo:
        found = iter(run_workers(todo, timeout=timeout, allow_synthetic=allow_synthetic, device=device))
        raws = [raw if raw is not None else next(found) for raw in raws]
    seconds = round((time.perf_counter() - start) / len(parts), 2)
    return [_points_row(raw, part, student, seconds) for raw, part in zip(raws, parts)]


def _points_row(raw: dict, part: dict, student: str, seconds: float) -> dict:
    """A worker result turned into points and a one-line reason under the part's tiers."""
    dataset, max_points = part["dataset"], part["max_points"]
    table = part.get("tiers") or DEFAULT_TIERS.get(dataset, DEFAULT_TIERS["cifar10"])
    fraction, points, tier = points_for(raw, table, max_points)
    reason = raw.get("reason", "")
    if raw.get("status") == "ok":
        reason = f"{tier} -> {points:g}/{max_points:g} points; {reason}"
    elif raw.get("status") != "error":
        reason = f"0/{max_points:g} points: {reason}"
    known = {k: raw[k] for k in ("status", "accuracy", "macro_f1", "model", "images") if k in raw}
    return _result(student, dataset, max_points, **known, tier=tier, fraction=fraction, points=points,
                   reason=reason, seconds=seconds)
