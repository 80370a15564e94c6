"""`make demo` runs `python -m helpers demo`; it must work offline on a fresh data folder."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_calls_the_demo_command():
    makefile = (ROOT / "Makefile").read_text()
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "-m helpers demo" in demo_recipe


def test_demo_runs_offline_and_saves_a_sample_grid(tmp_path):
    env = dict(os.environ, COURSE_DATA_DIR=str(tmp_path / "data"), COURSE_OFFLINE="1", COURSE_FAST="1",
               MPLBACKEND="Agg")
    env.pop("COURSE_CIFAR10", None)
    out = subprocess.run([sys.executable, "-m", "helpers", "demo", "--out", str(tmp_path / "out")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "synthetic" in out.stdout and "not available" in out.stdout  # says which data it used
    assert "training-split channel mean" in out.stdout
    assert (tmp_path / "out" / "synthetic-samples.png").stat().st_size > 10_000
    assert list((tmp_path / "data" / "cache").glob("synthetic-*.npz"))
