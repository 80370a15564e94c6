"""Per-student grading time of nbgrader autograde and of the hidden-test harness, side by side.

For each assignment: a temporary course with N solution students, one `nbgrader autograde` run
(sandboxed kernels, the visible checks) and one harness run (`python -m helpers grade`'s block
part: a fresh trusted process and a sandboxed worker per student). Prints seconds per student of
each and their ratio (target: harness <= 1.5x autograde). Reduced mode and the generated dataset
unless the environment says otherwise.

    python benchmarks/harness_time.py [--students 3] [--assignments 01_data,04_training]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def time_assignment(a: str, n: int) -> tuple[float, float]:
    """(autograde seconds, harness seconds) per student for n solution students of assignment a."""
    from helpers.grading import course
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course"
        students = course.solution_class(root, a, n)
        t0 = time.perf_counter()
        course.autograde(root, a, students)
        autograde_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = course.grade_blocks(root, a, students)
        harness_s = time.perf_counter() - t0
        lost = [r for r in result["rows"] if r["points"] < r["max_points"]]
        if lost:
            raise SystemExit(f"{a}: the solution lost points in the harness: {lost[:3]}")
    return autograde_s / n, harness_s / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--assignments", help="comma-separated (default: every assignment with hidden tests)")
    args = parser.parse_args()
    os.environ.setdefault("COURSE_FAST", "1")
    os.environ.setdefault("COURSE_OFFLINE", "1")
    from helpers.data import course_data
    from helpers.grading import course
    from helpers.grading.harness.grade import has_hidden_tests
    names = args.assignments.split(",") if args.assignments else [a for a in course.assignments() if has_hidden_tests(a)]
    dataset = course_data("cifar10", verbose=False).name
    print(f"{args.students} solution students per assignment on {dataset} (reduced mode: {os.environ['COURSE_FAST']}), "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    totals = [0.0, 0.0]
    for a in names:
        auto, harness = time_assignment(a, args.students)
        totals[0] += auto
        totals[1] += harness
        print(f"{a:<16} autograde {auto:5.1f} s/student | harness {harness:5.1f} s/student | ratio {harness / auto:.2f}x")
    print(f"all: autograde {totals[0]:.1f} s/student, harness {totals[1]:.1f} s/student, "
          f"harness/autograde = {totals[1] / totals[0]:.2f}x")


if __name__ == "__main__":
    main()
