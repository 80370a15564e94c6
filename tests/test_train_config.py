"""TrainConfig: fit records exactly what ran (an optimizer it is handed included), resumes to
bit-identical weights, still takes notebooks' keyword arguments, and one module holds the recipes.
Tiny: a small CNN on 320 generated images, one thread, CPU."""
import dataclasses
import json

import pytest
import torch
from torch import nn

from helpers import recipes
from helpers.checkpoint import load_checkpoint
from helpers.data import ImageData, load_dataset
from helpers.models import build_model
from helpers.train import fit, make_loaders, make_optimizer, resolve_config
from helpers.train_config import (
    ConfigError, TrainConfig, check_override, complete, flatten, from_dict, from_keywords, to_dict,
)
from helpers.train_state import EarlyStopping


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    data = load_dataset("synthetic", root=tmp_path_factory.mktemp("data"), synthetic_size=(400, 100), seed=0)
    small = ImageData(data.name, data.classes, data.train_images[:320], data.train_labels[:320],
                      data.test_images, data.test_labels)
    train, val, _, _ = make_loaders(small, batch_size=64, val_fraction=0.2, device="cpu")
    return train, val


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10))


# ----------------------------------------------------------------------------- the recorded-config bug

def test_a_handed_optimizer_is_recorded_with_its_real_settings(loaders, tmp_path):
    """FastNet's recipe as the command line builds it: momentum 0.85, weight decay 1.3e-3, BatchNorm
    biases at 64x the lr; the checkpoint must say so, not fit's defaults (0.9, 5e-4)."""
    train, val = loaders
    fast = recipes.MODEL_DEFAULTS["fastnet"]
    model = tiny_cnn()
    opt = make_optimizer(model, "sgd", fast["lr"], fast["momentum"], True, fast["weight_decay"],
                         fast["norm_bias_lr_scale"])
    history = fit(model, train, val, epochs=1, optimizer=opt, schedule="linear", warmup=fast["warmup"],
                  progress=False, checkpoint=tmp_path / "c.pt")
    recorded = load_checkpoint(tmp_path / "c.pt")["config"]
    assert recorded["optim"] == {"name": "sgd", "lr": fast["lr"], "momentum": fast["momentum"], "nesterov": True,
                                 "weight_decay": fast["weight_decay"],
                                 "norm_bias_lr_scale": fast["norm_bias_lr_scale"]}
    assert from_dict(recorded) == history.config  # the checkpoint holds the config that ran, whole
    # and the recorded config rebuilds the same optimizer
    again = from_dict(recorded).optim
    twin = make_optimizer(tiny_cnn(), again.name, again.lr, again.momentum, again.nesterov, again.weight_decay,
                          again.norm_bias_lr_scale)
    assert len(opt.param_groups) == len(twin.param_groups) == 2
    for mine, theirs in zip(opt.param_groups, twin.param_groups):
        assert mine["initial_lr"] == pytest.approx(theirs["lr"], rel=1e-12)
        assert all(mine[k] == theirs[k] for k in ("momentum", "nesterov", "weight_decay"))


def test_the_fastnet_recipe_round_trips_through_the_command_line(tmp_path, monkeypatch):
    """`python -m helpers train --model fastnet` records FastNet's optimizer settings exactly (a narrow
    FastNet, so it trains in seconds)."""
    from helpers import cli
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    assert cli.main(["train", "--dataset", "synthetic", "--model", "fastnet", "--model-arg", "widths=(8, 16, 16)",
                     "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress",
                     "--no-track"]) == 0
    ckpt = load_checkpoint(tmp_path / "out" / "checkpoint.pt")
    fast = recipes.MODEL_DEFAULTS["fastnet"]
    optim = ckpt["config"]["optim"]
    assert (optim["lr"], optim["momentum"], optim["weight_decay"], optim["norm_bias_lr_scale"]) == \
           (fast["lr"], fast["momentum"], fast["weight_decay"], fast["norm_bias_lr_scale"])
    assert ckpt["config"]["schedule"]["name"] == "linear" and ckpt["config"]["augment"]["tta"] == "translate"
    assert ckpt["dataset"]["name"] == "synthetic" and ckpt["dataset"]["sha256"] == ckpt["config"]["data"]["fingerprint"]["sha256"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["config"] == ckpt["config"]


# ----------------------------------------------------------------------------- resume

from test_train import Interrupting  # noqa: E402  (a loader that stops like a killed kernel)


@pytest.mark.parametrize("options", [dict(ema=0.8, mixup_alpha=0.2), dict(early_stopping=5, label_smoothing=0.1)])
def test_resume_gives_bit_identical_weights(loaders, tmp_path, options):
    train, val = loaders
    config = from_keywords(dict(epochs=3, lr=0.1, seed=1, **options))
    straight = tiny_cnn()
    history = fit(straight, train, val, config, progress=False)

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cnn(), Interrupting(train, at=2), val, config, checkpoint=tmp_path / "run.pt", progress=False)
    assert load_checkpoint(tmp_path / "run.pt")["epoch"] == 2
    resumed = tiny_cnn()
    torch.manual_seed(123)  # resuming must not depend on the state of the random generators
    history2 = fit(resumed, train, val, config, resume=tmp_path / "run.pt", progress=False)

    assert [r["epoch"] for r in history2] == [1, 2, 3]
    assert [r["val_acc"] for r in history2] == [r["val_acc"] for r in history]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_train_state_round_trips_in_memory(loaders):
    from helpers.train import _start
    train, val = loaders
    config = resolve_config(tiny_cnn(), train, val, epochs=2, ema=0.9, early_stopping=2)
    state = _start(tiny_cnn(), config, None, len(train))
    state.end_epoch({"epoch": 1, "val_acc": 0.5})
    saved = state.state_dict()
    other = _start(tiny_cnn(), config, None, len(train))
    other.load_state_dict(saved)
    assert other.epoch == 1 and other.stopper.best == 0.5 and other.ema.updates == state.ema.updates


# ----------------------------------------------------------------------------- keyword arguments

def test_keyword_fit_still_works_and_folds_into_the_config(loaders):
    train, val = loaders
    history = fit(tiny_cnn(), train, val, epochs=1, optimizer="adamw", lr=3e-3, weight_decay=0.05,
                  schedule="cosine", tta=True, amp=None, progress=False)
    c = history.config
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay, c.schedule.name) == ("adamw", 3e-3, 0.05, "cosine")
    assert c.schedule.warmup == recipes.DEFAULT_WARMUP["cosine"] and c.augment.tta == "flip"
    assert c.precision.amp == "off" and c.precision.device == "cpu" and c.data.batch_size == 64
    # the same run from a TrainConfig
    again = fit(tiny_cnn(), train, val, c, progress=False)
    assert [r["val_acc"] for r in again] == [r["val_acc"] for r in history] and again.config == c


def test_fit_defaults_are_the_general_recipe(loaders):
    train, val = loaders
    c = fit(tiny_cnn(), train, val, epochs=1, progress=False).config
    g = recipes.GENERAL
    assert (c.optim.lr, c.optim.momentum, c.optim.weight_decay, c.schedule.name) == \
           (g["lr"], g["momentum"], g["weight_decay"], g["schedule"])
    assert c.regularization.label_smoothing == g["label_smoothing"] and c.augment.crop_padding == 4


def test_bad_keywords_and_values_say_what_fits(loaders):
    train, val = loaders
    with pytest.raises(TypeError, match="did you mean 'lr'"):
        fit(tiny_cnn(), train, val, epochs=1, lrr=0.1)
    with pytest.raises(TypeError, match="epochs"):
        fit(tiny_cnn(), train, val)
    with pytest.raises(ConfigError, match="schedule.epochs must be at least 1"):
        fit(tiny_cnn(), train, val, epochs=0)
    with pytest.raises(ConfigError, match="unknown schedule.name 'cosin' \\(did you mean 'cosine'\\?\\)"):
        fit(tiny_cnn(), train, val, epochs=1, schedule="cosin")
    with pytest.raises(ConfigError, match="optim.lr must be a number or null, got 'fast'"):
        fit(tiny_cnn(), train, val, epochs=1, lr="fast")


# ----------------------------------------------------------------------------- the config itself

def test_recipes_complete_a_config_per_model():
    fast = complete(TrainConfig(model=dataclasses.replace(TrainConfig().model, name="fastnet")),
                    recipes.settings_for("fastnet"))
    assert (fast.optim.momentum, fast.data.batch_size, fast.schedule.warmup, fast.augment.tta) == \
           (0.85, 1024, 0.23, "translate")
    # the recipe's warmup belongs to its schedule; its lr to SGD
    other = complete(from_keywords({"schedule": "cosine", "optimizer": "adam"}), recipes.settings_for("fastnet"))
    assert other.schedule.warmup == recipes.DEFAULT_WARMUP["cosine"] and other.optim.lr == recipes.DEFAULT_LR["adam"]


def test_dict_round_trip_and_flat_keys():
    config = complete(from_keywords({"epochs": 3, "ema": 0.99}))
    assert from_dict(to_dict(config)) == config
    flat = flatten(config)
    assert flat["optim.lr"] == 0.1 and flat["regularization.ema"] == 0.99 and flat["model.kwargs"] == {}
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        from_dict({"optim": {"lrr": 0.1}})


def test_override_checks_name_the_nearest_key():
    groups = {"data": ["cifar10", "cifar100"], "experiment": ["fastnet"]}
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        check_override("optim.lrr=0.1", groups)
    with pytest.raises(ConfigError, match="schedule.epochs must be an integer"):
        check_override("schedule.epochs=1.5", groups)
    with pytest.raises(ConfigError, match="did you mean 'fastnet'"):
        check_override("experiment=fastnett", groups)
    for fine in ("optim.lr=0.1,0.2", "seed=0,1", "data=cifar100", "model.kwargs.dropout=0.2", "hydra.job.name=x"):
        check_override(fine, groups)


def test_early_stopping_counts_epochs_without_a_gain():
    stopper = EarlyStopping(2, min_delta=0.01)
    assert [stopper.step(v) for v in (0.5, 0.505, 0.52, 0.52, 0.51)] == [False, False, False, False, True]
    assert stopper.best == 0.52


def test_the_recipe_numbers_are_written_once():
    """lr 0.1, weight decay 5e-4 and FastNet's recipe live in helpers/train/recipes.py only."""
    from helpers.config import PROJECT_ROOT
    for name in ("train/loop.py", "commands/train.py", "train/config.py", "train/schedules.py"):
        text = (PROJECT_ROOT / "helpers" / name).read_text()
        for number in ("5e-4", "1.3e-3", "0.85", "1024", "0.23"):
            assert number not in text, (name, number)
    for path in (PROJECT_ROOT / "conf").rglob("*.yaml"):
        assert not any(f": {n}" in path.read_text() for n in ("1.5", "0.85", "5e-4", "0.0005", "1024")), path
