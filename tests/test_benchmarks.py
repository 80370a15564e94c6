"""The README's benchmark commands run (in reduced form) and end with their headline line."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CIFAR10",)}
    env.update(COURSE_DATA_DIR=str(tmp_path / "data"), COURSE_OFFLINE="1", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_data_speed_prints_both_rates_and_the_ratio(tmp_path):
    last = _run("data_speed.py", "--images", "2000", "--epochs", "1", tmp_path=tmp_path)
    assert "conventional" in last and "resident" in last and last.rstrip().endswith("x")


def test_train_speed_cpu_mode_prints_its_headline(tmp_path):
    last = _run("train_speed.py", "--device", "cpu", "--rounds", "2", "--images", "600", tmp_path=tmp_path)
    assert "x" in last and "s/epoch" in last, last


def test_harness_time_prints_both_and_the_ratio(tmp_path):
    last = _run("harness_time.py", "--students", "1", "--assignments", "01_data", tmp_path=tmp_path)
    assert last.startswith("all: autograde") and last.rstrip().endswith("x"), last
