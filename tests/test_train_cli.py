"""`python -m helpers train` end to end in reduced mode, offline (so on the generated dataset),
and its refusal of unknown options."""
import json
import os
import subprocess
import sys

import pytest

from helpers import cli
from helpers.checkpoint import rebuild_model
from helpers.config import PROJECT_ROOT


def test_train_command_writes_its_four_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CIFAR10", "COURSE_CIFAR100")}
    env.update(COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_DATA_DIR=str(tmp_path / "data"),
               OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONPATH=str(PROJECT_ROOT))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "train", "--dataset", "cifar10", "--model", "fiveconv_bn",
         "--epochs", "2", "--out", str(out), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "synthetic" in result.stdout and "test accuracy" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "history.json", "metrics.json"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "per_class", "source_dataset", "dataset", "epochs"} <= set(metrics)
    assert metrics["source_dataset"] == "synthetic" and metrics["dataset"] == "cifar10"
    assert metrics["reduced_mode"] is True and metrics["epochs"] == 2
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert set(metrics["per_class"]["disk"]) == {"precision", "recall", "f1", "support"}
    assert len(json.loads((out / "history.json").read_text())) == 2
    assert rebuild_model(out / "checkpoint.pt").classifier[-1].out_features == 10


def test_unknown_option_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--epochs", "1", "--learning-rate", "0.1"])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert "unrecognized arguments: --learning-rate 0.1" in err
    assert "valid options:" in err and "--lr" in err and "--batch-size" in err
