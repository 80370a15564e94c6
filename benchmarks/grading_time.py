"""Per-student grading time of 06_challenge, sandboxed and not, side by side in one run.

Builds a temporary course with N simulated students (each the solution notebook with the
checkpoints it saves), autogrades them in one run and scores them with `python -m helpers grade`,
once with COURSE_SANDBOX=off (the trusted local opt-out: the time before the sandbox) and once
in the sandbox, and prints the seconds per student of each step and the sandbox's overhead.
Reduced mode and the generated dataset unless the environment says otherwise.

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


def grade_class(n: int, sandboxed: bool) -> tuple[float, float]:
    """(autograde seconds, scoring seconds) per student for a fresh course of n solution students."""
    from helpers.cli import main as helpers_cli
    from helpers.data import course_data
    from helpers.grading import course

    os.environ["COURSE_SANDBOX"] = "on" if sandboxed else "off"
    data = course_data("cifar10", verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course"
        students = course.solution_class(root, A, n)
        t0 = time.perf_counter()
        course.autograde(root, A, students)
        autograde_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        argv = ["grade", A, "--course-root", str(root)] + (["--allow-synthetic"] if data.name == "synthetic" else [])
        helpers_cli(argv)
        score_s = time.perf_counter() - t0
    return autograde_s / n, score_s / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_FAST", "1")
    os.environ.setdefault("COURSE_OFFLINE", "1")
    from helpers.data import course_data
    name = course_data("cifar10", verbose=False).name
    plain = grade_class(args.students, sandboxed=False)
    boxed = grade_class(args.students, sandboxed=True)
    print(f"{args.students} students of {A} on {name} (reduced mode: {os.environ['COURSE_FAST']}), "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    for label, (auto, score) in (("no sandbox", plain), ("sandbox", boxed)):
        print(f"{label:>10}: autograde {auto:.1f} s/student | scoring {score:.1f} s/student | "
              f"total {auto + score:.1f} s/student")
    print(f"sandbox overhead: {(sum(boxed) / sum(plain) - 1) * 100:+.0f}% per student "
          f"(sandbox/no sandbox = {sum(boxed) / sum(plain):.2f}x)")


if __name__ == "__main__":
    main()
