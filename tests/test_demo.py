"""`make demo` runs `python -m helpers demo`: the course loop, offline, on a fresh data folder, with the
students going through nbgrader's exchange (the commands themselves are run in test_exchange.py)."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_calls_the_demo_command():
    makefile = (ROOT / "Makefile").read_text()
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "-m helpers demo" in demo_recipe


def test_demo_runs_the_course_loop_offline(tmp_path):
    """One assignment through release, the exchange, simulated students, autograde, feedback and export
    (the rest is covered assignment by assignment in test_roundtrip.py and test_simulated_class.py)."""
    env = dict(os.environ, COURSE_DATA_DIR=str(tmp_path / "data"), COURSE_OFFLINE="1", COURSE_FAST="1",
               MPLBACKEND="Agg", COURSE_EXCHANGE=str(tmp_path / "a-real-class"))  # must not be used
    env.pop("COURSE_CIFAR10", None)
    out = subprocess.run([sys.executable, "-m", "helpers", "demo", "--assignments", "01_data",
                          "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "this demo uses: synthetic" in out.stdout and "not available" in out.stdout  # says which data
    assert "training-split channel mean" in out.stdout
    assert (tmp_path / "out" / "synthetic-samples.png").stat().st_size > 10_000
    table = {m.group(1): m.group(2) for m in re.finditer(r"^(ada|ben|cy|gus)\s+(\S+)$", out.stdout, re.M)}
    assert table == {"ada": "12/16", "ben": "0/16", "cy": "10/16", "gus": "0/16"}, out.stdout[-2000:]
    assert "runs sandboxed by" in out.stdout and "nothing outside his sandbox changed" in out.stdout
    assert (tmp_path / "out" / "reports" / "grades.csv").is_file()

    # the students' path through nbgrader's exchange, each command printed as its shell line
    lines = [line.strip() for line in out.stdout.splitlines()]
    for line in ["$ nbgrader generate_assignment 01_data --force", "$ nbgrader release_assignment 01_data --force",
                 "[ada] $ nbgrader list", "released: 01_data",
                 "$ nbgrader collect 01_data --update --ExchangeCollect.check_owner=False",
                 "submitted/: ada, ben, cy, gus", "$ nbgrader autograde 01_data --force",
                 "$ nbgrader generate_feedback 01_data --force", "$ nbgrader release_feedback 01_data"]:
        assert line in lines, f"{line!r} not printed"
    for student in ("ada", "ben", "cy", "gus"):
        for line in (f"[{student}] $ nbgrader fetch_assignment 01_data",
                     f"[{student}] $ nbgrader submit 01_data --student {student}",
                     f"[{student}] $ nbgrader fetch_feedback 01_data"):
            assert line in lines, f"{line!r} not printed"
    assert lines.index("[ada] $ nbgrader fetch_assignment 01_data") < lines.index(
        "[ada] $ nbgrader submit 01_data --student ada") < lines.index("$ nbgrader collect 01_data --update "
                                                                      "--ExchangeCollect.check_owner=False")
    homes = tmp_path / "out" / "students"
    exchange = tmp_path / "out" / "course" / "exchange" / "cifar10-course"
    assert sorted(p.name for p in (exchange / "outbound").iterdir()) == ["01_data"]
    assert not (tmp_path / "a-real-class").exists()  # $COURSE_EXCHANGE is never the demo's
    for student in ("ada", "ben", "cy", "gus"):
        assert (homes / student / ".jupyter" / "nbgrader_config.py").is_file()
        assert (tmp_path / "out" / "course" / "submitted" / student / "01_data" / "submission_secret.txt").is_file()
        pages = list((homes / student / "01_data" / "feedback").glob("*/01_data.html"))
        assert len(pages) == 1, f"{student} fetched no feedback"
    assert "feedback fetched: 4 pages" in out.stdout


def test_the_closing_table_tells_a_working_course_from_a_broken_one(tmp_path, capsys):
    """The demo ends with expected vs got per simulated student; one row off makes it say so (and fail)."""
    import csv

    from helpers.demo import STUDENTS, closing_table
    got = {"ada": 30, "ben": 0, "cy": 15, "dee": 0, "eve": 0, "fay": 30, "gus": 0}  # 2/3 CIFAR-10, 1/3 CIFAR-100

    def table(points, **kwargs):
        path = tmp_path / "grades.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, ["student", "part", "points", "max_points"])
            w.writeheader()
            for student, p in points.items():
                w.writerow({"student": student, "part": "cifar10", "points": p * 2 / 3, "max_points": 20})
                w.writerow({"student": student, "part": "cifar100", "points": p / 3, "max_points": 10})
        return closing_table(path, **kwargs)

    assert table(got, changed=[], payload_ran=False)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == list(STUDENTS) and all(line.endswith("yes") for line in lines[1:])
    assert not table({**got, "ada": 12}, changed=[], payload_ran=False)  # the solution below the top tier
    assert not table({**got, "cy": 30}, changed=[], payload_ran=False)   # one epoch as good as five
    assert not table(got, changed=[], payload_ran=True)                  # eve's pickle ran
    assert not table({**got, "eve": 30}, changed=[], payload_ran=False)  # her hostile file was scored
    assert not table(got, changed=["helpers/metrics.py"], payload_ran=False)
    assert "ada" in capsys.readouterr().out
