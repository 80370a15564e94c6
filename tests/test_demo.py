"""`make demo` runs `python -m helpers demo`: the course loop, offline, on a fresh data folder."""
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
    """One assignment through release, simulated students, autograde and export (the rest is
    covered assignment by assignment in test_roundtrip.py and test_simulated_class.py)."""
    env = dict(os.environ, COURSE_DATA_DIR=str(tmp_path / "data"), COURSE_OFFLINE="1", COURSE_FAST="1",
               MPLBACKEND="Agg")
    env.pop("COURSE_CIFAR10", None)
    out = subprocess.run([sys.executable, "-m", "helpers", "demo", "--assignments", "01_data",
                          "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "this demo uses: synthetic" in out.stdout and "not available" in out.stdout  # says which data
    assert "training-split channel mean" in out.stdout
    assert (tmp_path / "out" / "synthetic-samples.png").stat().st_size > 10_000
    table = {m.group(1): m.group(2) for m in re.finditer(r"^(ada|ben|cy|gus)\s+(\S+)$", out.stdout, re.M)}
    assert table == {"ada": "10/14", "ben": "0/14", "cy": "8/14", "gus": "0/14"}, out.stdout[-2000:]
    assert "runs sandboxed by" in out.stdout and "nothing outside his sandbox changed" in out.stdout
    assert (tmp_path / "out" / "reports" / "grades.csv").is_file()
