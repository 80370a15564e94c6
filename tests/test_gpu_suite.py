"""benchmarks/gpu_suite.py: its dry run runs every part on the CPU and writes a complete report; a
part stopped at its cap or failing is recorded as such and the suite goes on; notebooks are read as
plain Python."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite  # noqa: E402

# Figures each part must report as numbers in the dry run.
NUMERIC = {
    "fastnet": ["runs", "accuracy_mean", "accuracy_std", "seconds_mean", "seconds_std", "warmup_seconds",
                "fit_seconds_mean"],
    "fastnet_compile": ["runs", "accuracy_mean", "accuracy_std", "seconds_mean", "seconds_std", "warmup_seconds"],
    "pipelines": ["conventional_s_per_epoch", "fit_s_per_epoch", "ratio", "rounds"],
    "resnet18": ["epochs", "final_accuracy", "final_accuracy_flip_tta", "wall_seconds", "train_seconds", "target"],
    "notebook_04": ["code_cells", "cells_run", "cells_seconds", "epochs", "train_seconds", "test_accuracy"],
    "notebook_06": ["code_cells", "cells_run", "cells_seconds", "epochs", "train_seconds", "val_accuracy"],
    "scoring": ["seconds", "in_process_seconds", "accuracy", "macro_f1", "images"],
}


def _run(tmp_path: Path, *args: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CIFAR10", "COURSE_CIFAR100", "COURSE_FAST")}
    env.update(COURSE_DATA_DIR=str(tmp_path / "data"), COURSE_OFFLINE="1", MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    out = tmp_path / "suite"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--out", str(out), *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "gpu_suite.json").read_text())
    return result, report


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gpu_suite")
    result, report = _run(tmp_path, "--dry-run")
    return result, report, tmp_path / "suite"


def test_dry_run_runs_every_part_ok_with_numeric_figures(dry_run):
    result, report, _ = dry_run
    assert report["dry_run"] is True
    assert [row["part"] for row in report["parts"]] == gpu_suite.PART_NAMES
    assert [row["group"] for row in report["parts"]] == [1, 1, 2, 3, 4, 4, 5]
    for row in report["parts"]:
        assert row["status"] == "ok", (row["part"], row["error"], row["notes"])
        assert row["error"] is None
        assert _is_number(row["seconds"]) and row["seconds"] <= row["cap_seconds"] + 15
        for key in NUMERIC[row["part"]]:
            assert _is_number(row["figures"].get(key)), (row["part"], key, row["figures"].get(key))
    by = {row["part"]: row["figures"] for row in report["parts"]}
    assert by["fastnet"]["runs"] == 2 and by["fastnet_compile"]["compile"] is True
    for part in ("notebook_04", "notebook_06"):
        assert by[part]["cells_run"] == by[part]["code_cells"], by[part]
        assert by[part]["full_mode"] is False  # the dry run is reduced mode; the GPU run is full mode
    assert by["notebook_06"]["checkpoints"].startswith("challenge_model.pt")
    assert by["scoring"]["checkpoint"] == "the 06 notebook's challenge_model.pt"
    assert by["scoring"]["path"].startswith(("sandbox", "in-process"))
    assert report["total_seconds"] < 180, "the dry run must stay under 3 minutes"


def test_dry_run_reports_the_machine_and_ends_with_the_headline(dry_run):
    result, report, out = dry_run
    machine = report["machine"]
    for key in ("date_utc", "host", "cpu_count", "python", "torch", "torchvision", "device"):
        assert machine[key], key
    assert machine["device"] == "cpu" and machine["gpu"] is None
    last = result.stdout.strip().splitlines()[-1]
    assert last == report["headline"] and last.startswith("HEADLINE gpu_suite DRY RUN")
    table = (out / "gpu_suite.md").read_text()
    assert "| # | part | status | seconds (cap) | figure | value |" in table and machine["torch"] in table
    for name in gpu_suite.PART_NAMES:
        assert f"| {name} | ok |" in table
        assert (out / "logs" / f"{name}.log").is_file()
    assert not (out / "work").exists(), "checkpoints and notebook folders are removed unless --keep-work"


def test_a_part_past_its_cap_is_stopped_and_recorded(tmp_path):
    result, report = _run(tmp_path, "--dry-run", "--parts", "notebook_06", "--cap", "notebook_06=3", timeout=120)
    (row,) = report["parts"]
    assert row["part"] == "notebook_06" and row["status"] == "timeout", row
    assert "cap of 3 s" in row["error"] and row["seconds"] < 20
    assert "notebook 06 timeout" in result.stdout.strip().splitlines()[-1]


def test_a_failing_part_is_recorded_and_the_suite_goes_on(tmp_path):
    result, report = _run(tmp_path, "--parts", "fastnet", "pipelines", "--device", "nosuchdevice", "--budget", "120",
                          timeout=120)
    assert [row["part"] for row in report["parts"]] == ["fastnet", "pipelines"]
    for row in report["parts"]:
        assert row["status"] == "error" and "nosuchdevice" in row["error"], row
    assert result.stdout.strip().splitlines()[-1].startswith("HEADLINE gpu_suite")


def test_notebook_cells_are_plain_python(tmp_path):
    cell = lambda source, **meta: {"cell_type": "code", "source": source,  # noqa: E731
                                   "metadata": {"nbgrader": meta} if meta else {}}
    nb = {"cells": [
        {"cell_type": "markdown", "source": "# title"},
        cell(["%matplotlib inline\n", "x = 1\n", "if x:\n", "    !ls\n"]),
        cell("%%time\ny = 2"),
        cell("def f():\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION", grade_id="f-answer"),
        cell("data100 = helpers.course_data('cifar100')", grade_id="data-cifar100"),
        cell("print(history100)"),
    ]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    cells = gpu_suite.notebook_cells(path, run_cifar100=False)
    assert [c["index"] for c in cells] == [1, 2, 3, 4, 5]
    assert [bool(c["skip"]) for c in cells] == [False, True, False, True, True]
    namespace = {}
    exec(cells[0]["source"], namespace)  # the magic and the shell line are gone, the block still parses
    exec(cells[2]["source"], namespace)  # the solution between its markers runs as written
    assert namespace["x"] == 1 and namespace["f"]() == 3
    assert cells[2]["id"] == "f-answer"
    assert not any(c["skip"] for c in gpu_suite.notebook_cells(path, run_cifar100=True)[2:])


def test_cap_option_is_checked():
    assert gpu_suite.parse_args(["--cap", "scoring=12"]).cap == [("scoring", 12.0)]
    with pytest.raises(SystemExit):
        gpu_suite.parse_args(["--cap", "nosuchpart=12"])
