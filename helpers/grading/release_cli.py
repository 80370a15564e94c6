"""`python -m helpers release | check-release | student-bundle`: the instructor's commands.

release/ is only ever what `nbgrader generate_assignment` makes of source/ (`release` rebuilds it,
`check-release` fails when it is stale); `student-bundle` writes what a student gets: the release
notebooks and a wheel of helpers without the TA-only grading code, refused if a solution or a
hidden test would slip in. The work itself is in helpers/grading/course.py.
"""
from __future__ import annotations

import argparse
import sys

from ..settings import PROJECT_ROOT, env
from . import course


def _root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=str(PROJECT_ROOT), help="the repository root (default: %(default)s)")


class Release:
    """`release [ASSIGNMENT ...]`: rebuild release/ from source/ with nbgrader."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("assignments", nargs="*", help="only these assignments (default: all)")
        _root(parser)

    @staticmethod
    def run(args) -> int:
        for path in course.regenerate_release(args.root, args.assignments or None):
            print(f"wrote {path}")
        return 0


class CheckRelease:
    """`check-release`: exit 1, listing the files, when release/ is not what nbgrader makes of source/."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _root(parser)

    @staticmethod
    def run(args) -> int:
        diffs = course.release_differences(args.root)
        if diffs:
            print("release/ differs from `nbgrader generate_assignment` of source/ in:")
            print("\n".join(f"  {d}" for d in diffs))
            print("run: python -m helpers release")
            return 1
        print("release/ is up to date")
        return 0


class StudentBundle:
    """`student-bundle`: dist/cifar10-course-student/ and its .tar.gz."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", help=f"the folder to write (default: <root>/dist/{course.BUNDLE_NAME}; "
                                          "<out>.tar.gz beside it)")
        parser.add_argument("--exchange", help="the exchange path students are given (default: the course config's, "
                                               f"${course.EXCHANGE_ENV} or <root>/exchange)")
        _root(parser)

    @staticmethod
    def run(args) -> int:
        try:
            out = course.build_bundle(args.out, args.root, args.exchange)
        except course.NbgraderError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {out}/ and {out}.tar.gz:")
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            print(f"  {path.relative_to(out)}")
        exchange = args.exchange or str(course.exchange_root(args.root))
        print(f"its nbgrader_config.py gives students the exchange {exchange}"
              + ("" if args.exchange or env(course.EXCHANGE_ENV) else
                 f" (this course folder's own: for a farm, set ${course.EXCHANGE_ENV} or pass --exchange)"))
        return 0
