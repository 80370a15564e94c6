"""`python -m helpers train` with Hydra: composing conf/ into a TrainConfig, clear errors for typos
and wrong types, a reduced run whose MLflow params are its saved config, and a multirun sweep."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("hydra")
pytest.importorskip("mlflow")

from helpers import cli, recipes  # noqa: E402
from helpers.config import PROJECT_ROOT  # noqa: E402
from helpers.train_cli import compose_config  # noqa: E402
from helpers.train_config import ConfigError, complete, flatten, from_dict  # noqa: E402


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CIFAR10", "COURSE_CIFAR100", "MLFLOW_TRACKING_URI")}
    env.update(COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_DATA_DIR=str(tmp_path / "data"), OMP_NUM_THREADS="1",
               MPLBACKEND="Agg", PYTHONPATH=str(PROJECT_ROOT))
    return env


def _train(tmp_path, *args):
    result = subprocess.run([sys.executable, "-m", "helpers", "train", *args, "--no-progress"], cwd=tmp_path,
                            env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _yaml(path):
    from omegaconf import OmegaConf
    return from_dict(OmegaConf.to_container(OmegaConf.load(path)))


def test_compose_the_issue_example():
    config = compose_config(["experiment=fastnet", "optim.lr=0.2", "data=cifar100"])
    assert (config.name, config.model.name, config.data.name, config.optim.lr) == ("fastnet", "fastnet", "cifar100", 0.2)
    assert config.tracking.enabled and config.out.startswith(str(PROJECT_ROOT / "out" / "runs" / "fastnet"))
    full = complete(config, recipes.settings_for("fastnet"))  # the rest is FastNet's recipe
    assert (full.optim.lr, full.optim.momentum, full.schedule.name) == (0.2, 0.85, "linear")


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "'optim.lrr' is not a setting (did you mean 'optim.lr'?)"),
    ("optim.lr=fast", "optim.lr must be a number or null, got 'fast'"),
    ("experiment=fastnett", "no such experiment config (did you mean 'fastnet'?)"),
    ("seed=0,1", "add -m"),
])
def test_typos_and_wrong_types_name_the_key(override, message, capsys):
    assert cli.main(["train", override]) == 2
    assert message in capsys.readouterr().out
    with pytest.raises(ConfigError):
        compose_config([override])


def test_reduced_run_logs_its_saved_config_to_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient
    from helpers.tracking import _param_value
    out = tmp_path / "run"
    printed = _train(tmp_path, "experiment=fiveconv_bn", "data=synthetic", "schedule.epochs=2", f"out={out}",
                     f"tracking.root={tmp_path}")
    assert "MLflow run" in printed
    assert {"checkpoint.pt", "config.yaml", "curves.png", "history.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    saved = _yaml(out / "config.yaml")
    assert saved.model.name == "fiveconv_bn" and saved.schedule.epochs == 2 and saved.data.fingerprint["reduced"]
    assert from_dict(json.loads((out / "metrics.json").read_text())["config"]) == saved

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("fiveconv_bn").experiment_id])
    assert run.data.params == {k: _param_value(v) for k, v in flatten(saved).items()}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
    assert {"train_loss", "train_acc", "lr", "images_per_s", "test_accuracy"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint.pt", "history.json", "metrics.json", "curves.png", "config.yaml",
            "confusion_matrix.png"} <= artifacts
    assert run.info.status == "FINISHED"


def test_multirun_sweeps_on_one_machine(tmp_path):
    sweep = tmp_path / "sweep"
    _train(tmp_path, "-m", "model=mlp", "data=synthetic", "schedule.epochs=1", "seed=0,1", f"hydra.sweep.dir={sweep}",
           f"tracking.root={tmp_path}")
    seeds = sorted(_yaml(sweep / job / "config.yaml").seed for job in ("0", "1"))
    assert seeds == [0, 1] and all((sweep / job / "checkpoint.pt").is_file() for job in ("0", "1"))
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mlp").experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
