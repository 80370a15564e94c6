"""Per-student grading time of 06_challenge: `nbgrader autograde` plus the out-of-kernel scoring.

Builds a temporary course with N simulated students (each the solution notebook with the
checkpoints it saves), autogrades them in one run, scores them with `python -m helpers grade`,
and prints the seconds per student of each step. Reduced mode and the generated dataset unless
the environment says otherwise.

    python benchmarks/grading_time.py [--students 6]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

A = "06_challenge"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_FAST", "1")
    os.environ.setdefault("COURSE_OFFLINE", "1")
    from helpers.cli import main as helpers_cli
    from helpers.data import course_data
    from helpers.grading import course, simulate

    data = course_data("cifar10", verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = course.make_course_dir(Path(tmp) / "course", [A])
        course.generate_release(root, A)
        release = simulate.read(root / "release" / A / f"{A}.ipynb")
        source = simulate.read(root / "source" / A / f"{A}.ipynb")
        students = [f"student{i:03d}" for i in range(args.students)]
        for student in students:
            folder = course.submit(root, student, A, {f"{A}.ipynb": simulate.solution(release, source)})
            simulate.write_work_files(A, folder)
        t0 = time.perf_counter()
        course.autograde(root, A, students)
        autograde_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        argv = ["grade", A, "--course-root", str(root)] + (["--allow-synthetic"] if data.name == "synthetic" else [])
        helpers_cli(argv)
        score_s = time.perf_counter() - t0
    n = len(students)
    print(f"{n} students of {A} on {data.name} (reduced mode: {os.environ['COURSE_FAST']}), {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}")
    print(f"autograde {autograde_s / n:.1f} s/student | scoring {score_s / n:.1f} s/student | "
          f"total {(autograde_s + score_s) / n:.1f} s/student")


if __name__ == "__main__":
    main()
