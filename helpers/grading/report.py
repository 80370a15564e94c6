"""The class report of a scoring run: grades CSV, accuracy histogram, tamper CSV and printed tables."""
from __future__ import annotations

import csv
from pathlib import Path

from .tamper import write_csv

GRADE_FIELDS = ["student", "part", "dataset", "accuracy", "macro_f1", "tier", "points", "max_points",
                "status", "reason", "seconds"]


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None or value == "" else f"{float(value):.{digits}f}"


def write_report(rows: list[dict], out_dir, assignment: str) -> dict:
    """Write grades-<assignment>.csv and grades-<assignment>.png (histogram of the CIFAR-10 accuracies).

    Returns {"csv": path, "histogram": path or None}.
    """
    from ..eval.plots import plot_histogram, save_figure
    out_dir = Path(out_dir)
    csv_path = write_csv(rows, out_dir / f"grades-{assignment}.csv", GRADE_FIELDS)
    main = [r for r in rows if (r.get("part") or "cifar10") == "cifar10"]  # the CIFAR-10 part's rows
    accuracies = [float(r["accuracy"]) for r in main if r.get("accuracy") not in (None, "")]
    unscored = len(main) - len(accuracies)
    fig = plot_histogram(accuracies, bins=20, xlabel="test accuracy", value_range=(0.0, 1.0),
                         title=f"{assignment}: test accuracy of {len(accuracies)} models"
                               + (f" ({unscored} could not be scored)" if unscored else ""))
    histogram = save_figure(fig, out_dir / f"grades-{assignment}.png")
    return {"csv": csv_path, "histogram": histogram}


def read_rows(paths) -> list[dict]:
    """Rows of several grades CSVs (e.g. one per shard), in order."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def print_table(rows: list[dict]) -> None:
    """One line per student and part: accuracy, macro-F1, points and the reason."""
    print(f"{'student':<16} {'part':<8} {'accuracy':>8} {'macroF1':>8} {'points':>11}  reason")
    for r in rows:
        points = f"{float(r['points']):g}/{float(r['max_points']):g}"
        print(f"{str(r['student'])[:16]:<16} {str(r.get('part', ''))[:8]:<8} {_fmt(r.get('accuracy')):>8} "
              f"{_fmt(r.get('macro_f1')):>8} {points:>11}  {str(r.get('reason', ''))[:110]}")


def print_findings(findings) -> None:
    """The tamper report: flagged students, then one line per offending cell line."""
    if not findings:
        print("tamper scan: nothing suspicious found")
        return
    students = sorted({f.student for f in findings})
    print(f"tamper scan: {len(students)} student(s) flagged: {', '.join(students)} (scores are not changed)")
    for f in findings:
        where = f"{f.notebook} [{f.cell}]" + (f" line {f.line}" if f.line else "")
        code = f": {f.code}" if f.code else ""
        print(f"  {f.student}: {where}{code}\n      -> {f.reason}")
