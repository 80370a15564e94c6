"""fit() on the CPU: it learns, its options run, it resumes exactly, and it fails with clear errors.

Small and seeded: a tiny CNN on a subset of the generated dataset, one thread (the test machines
are shared, and oversubscribed threads are slower than one)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers import schedules
from helpers.data import ImageData, load_dataset
from helpers.history import History
from helpers.models import build_model
from helpers.train import TrainingError, evaluate_loader, fit, make_loaders


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset("synthetic", root=tmp_path_factory.mktemp("data"), synthetic_size=(2000, 200), seed=0)


def subset(data, n):
    """The first n training images as a new ImageData (the generated labels are shuffled)."""
    return ImageData(data.name, data.classes, data.train_images[:n], data.train_labels[:n],
                     data.test_images, data.test_labels)


def tiny_cnn(num_classes=10):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, num_classes))


@pytest.fixture(scope="module")
def small_loaders(data):
    train, val, _, _ = make_loaders(subset(data, 320), batch_size=64, val_fraction=0.2, device="cpu")
    return train, val


# ----------------------------------------------------------------------------- learning

def test_fit_learns_the_generated_dataset(data):
    train, val, mean, std = make_loaders(data, batch_size=64, val_fraction=0.2, device="cpu", crop_padding=2)
    history = fit(tiny_cnn(), train, val, epochs=6, lr=0.4, label_smoothing=0.1, progress=False)
    assert isinstance(history, History) and len(history) == 6
    assert set(history.last) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                                 "images_per_s"}
    assert history.best_val_acc > 0.6, f"val accuracy {history.best_val_acc:.2f}; chance is 0.10"
    assert history.last["lr"] < 1e-3  # onecycle ends near 0
    assert all(row["images_per_s"] > 0 and row["seconds"] > 0 for row in history)


def test_make_loaders_split_and_statistics(data):
    train, val, mean, std = make_loaders(data, batch_size=100, val_fraction=0.1, seed=3, device="cpu")
    assert len(train.labels) + len(val.labels) == len(data.train_labels)
    assert np.bincount(val.labels.numpy()).tolist() == [20] * 10  # stratified: 10% of each class
    assert train.train and not val.train
    whole, none, _, _ = make_loaders(data, batch_size=100, val_fraction=0.0, device="cpu")
    assert none is None and len(whole.labels) == len(data.train_labels)
    assert len(mean) == len(std) == 3 and all(0 < s < 1 for s in std)


def test_progress_bar_on_and_off(small_loaders, capsys):
    train, val = small_loaders
    fit(tiny_cnn(), train, val, epochs=1, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    fit(tiny_cnn(), train, val, epochs=1, progress=True)
    out = capsys.readouterr()
    assert "epoch 1/1" in out.out + out.err


def test_evaluate_loader_matches_a_manual_count(small_loaders):
    _, val = small_loaders
    model = tiny_cnn().eval()
    loss, acc = evaluate_loader(model, val, "cpu")
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in val)
    assert acc == pytest.approx(correct / len(val.labels)) and math.isfinite(loss)


# ----------------------------------------------------------------------------- history

def test_history_json_round_trip(tmp_path):
    history = History([{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "val_loss": 1.9, "val_acc": 0.3,
                        "lr": 0.1, "seconds": 1.5, "images_per_s": 1000.0},
                       {"epoch": 2, "train_loss": float("nan"), "train_acc": 0.4, "val_loss": 1.5, "val_acc": 0.5,
                        "lr": 0.0, "seconds": 1.4, "images_per_s": 1100.0}])
    path = history.save_json(tmp_path / "h" / "history.json")
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.json"]  # no temporary file left
    loaded = History.load_json(path)
    assert loaded.best_val_acc == 0.5 and loaded.best_epoch == 2 and loaded.last["epoch"] == 2
    assert loaded[0] == history[0] and loaded[1]["train_loss"] is None  # NaN is written as null
    assert History().last is None and History().best_val_acc is None


# ----------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("name, start, mid, end", [
    ("onecycle", 1 / 25, 0.5, 0.0), ("cosine", 0.0, 0.5, 0.0), ("linear", 0.0, 0.5, 0.0), ("constant", 0.0, 1.0, 1.0)])
def test_schedule_documented_values(name, start, mid, end):
    fn = schedules.SCHEDULES[name]
    total, warmup = 110, 10
    assert fn(0, total, warmup) == pytest.approx(start)
    assert fn(5, total, warmup) == pytest.approx((start + 1) / 2)  # linear warmup
    assert fn(warmup, total, warmup) == pytest.approx(1.0)         # the peak at the end of warmup
    assert fn(60, total, warmup) == pytest.approx(mid)             # halfway through the decay
    assert fn(total, total, warmup) == pytest.approx(end, abs=1e-12)


def test_cosine_quarter_point_and_no_warmup():
    assert schedules.cosine(25, 100, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert schedules.linear(0, 100, 0) == 1.0 and schedules.onecycle(0, 100, 0) == 1.0


def test_make_scheduler_drives_the_optimizer():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    sched = schedules.make_scheduler(opt, "linear", total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.0, 0.2, 0.4]) and lrs[6] == pytest.approx(0.2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="onecycle, cosine, linear, constant"):
        schedules.make_scheduler(opt, "step", 10)


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("options", [
    {"label_smoothing": 0.2}, {"mixup_alpha": 0.2}, {"cutmix_alpha": 1.0, "mixup_alpha": 0.2},
    {"ema": 0.9}, {"grad_clip": 1.0}, {"optimizer": "adamw", "lr": 3e-3, "schedule": "cosine"},
    {"schedule": "constant", "tta": True}, {"schedule": "linear", "warmup": 0.5, "nesterov": False}])
def test_options_run(small_loaders, options):
    train, val = small_loaders
    history = fit(tiny_cnn(), train, val, epochs=1, progress=False, **options)
    assert math.isfinite(history.last["train_loss"]) and 0 <= history.last["val_acc"] <= 1


def test_ema_model_ends_with_the_averaged_weights(small_loaders, tmp_path):
    train, val = small_loaders
    model = tiny_cnn()
    history = fit(model, train, val, epochs=2, ema=0.5, progress=False, checkpoint=tmp_path / "c.pt")
    # the reported val accuracy is the EMA's, and the model now holds those weights
    assert evaluate_loader(model, val, "cpu")[1] == pytest.approx(history.last["val_acc"])


def test_early_stopping_stops_on_a_plateau(small_loaders):
    train, val = small_loaders
    # min_delta=1 means no epoch can count as an improvement after the first
    history = fit(tiny_cnn(), train, val, epochs=10, early_stopping=2, min_delta=1.0, progress=False)
    assert len(history) == 3
    with pytest.raises(ValueError, match="val"):
        fit(tiny_cnn(), train, None, epochs=2, early_stopping=2, progress=False)


# ----------------------------------------------------------------------------- resume

class Interrupting:
    """Wraps a loader and raises KeyboardInterrupt when epoch `at` starts (a killed kernel)."""

    def __init__(self, loader, at):
        self.loader, self.at, self.epoch = loader, at, 0

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.loader.set_epoch(epoch)

    def __iter__(self):
        if self.epoch == self.at:
            raise KeyboardInterrupt
        return iter(self.loader)


def test_resume_matches_an_uninterrupted_run(small_loaders, tmp_path):
    train, val = small_loaders
    options = dict(epochs=4, lr=0.1, ema=0.8, mixup_alpha=0.2, progress=False, seed=1)
    straight = tiny_cnn()
    history = fit(straight, train, val, **options)

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cnn(), Interrupting(train, at=2), val, checkpoint=tmp_path / "run.pt", **options)
    resumed = tiny_cnn()
    torch.manual_seed(123)  # resuming must not depend on the state of the random generators
    history2 = fit(resumed, train, val, resume=tmp_path / "run.pt", **options)

    assert [r["epoch"] for r in history2] == [1, 2, 3, 4]
    assert history2.last["val_acc"] == pytest.approx(history.last["val_acc"])
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


# ----------------------------------------------------------------------------- errors

def test_out_of_memory_names_the_batch_size(small_loaders, monkeypatch):
    train, val = small_loaders
    model = tiny_cnn()

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "forward", no_memory)
    with pytest.raises(TrainingError, match="batch_size=64") as info:
        fit(model, train, val, epochs=1, progress=False)
    message = str(info.value)
    assert "smaller batch_size" in message and "empty_cache" in message and "amp=True" in message


def test_nan_loss_gives_a_clear_error(small_loaders):
    train, val = small_loaders
    model = tiny_cnn()
    forward = model.forward
    model.forward = lambda x: forward(x) * float("nan")
    with pytest.raises(TrainingError, match="loss became nan in epoch 1"):
        fit(model, train, val, epochs=2, progress=False)


def test_registry_model_trains_briefly(small_loaders):
    train, val = small_loaders
    torch.manual_seed(0)
    history = fit(build_model("fiveconv_bn"), train, val, epochs=1, progress=False)
    assert math.isfinite(history.last["val_loss"])


def test_live_plot_updates_one_display_in_a_notebook(small_loaders, monkeypatch):
    import IPython.display
    from helpers import progress

    shown = []

    class Handle:
        def update(self, fig):
            shown.append(("update", fig))

    def display(fig, display_id=False):
        shown.append(("display", fig))
        return Handle()

    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    train, val = small_loaders
    fit(tiny_cnn(), train, val, epochs=2, progress=False, live_plot=True)
    assert [kind for kind, _ in shown] == ["display", "update"]
    fit(tiny_cnn(), train, val, epochs=1, progress=False, live_plot=False)
    assert len(shown) == 2


# ----------------------------------------------------------------------------- reruns, run mode, display

def _numbers(history):
    """A history without its timings (seconds, images per second), which differ between runs."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in history]


def test_same_seed_before_building_gives_identical_reruns(small_loaders):
    """What a rerun of a notebook's training cell does: seed, build, fit; twice gives the same numbers,
    however much the random generators were used in between."""
    from helpers.config import seed_everything
    train, val = small_loaders
    runs = []
    for _ in range(2):
        seed_everything(0)
        model = build_model("layers", layers=[{"type": "conv", "out": 8}, {"type": "bn"}, {"type": "relu"},
                                               {"type": "globalpool"}, {"type": "linear", "out": 10}])
        runs.append(_numbers(fit(model, train, val, epochs=2, lr=0.2, seed=0, progress=False)))
        torch.rand(1000)  # whatever ran between the two
    assert runs[0] == runs[1]


def test_train_command_seeds_the_initial_weights(data, tmp_path, monkeypatch):
    """Two runs of `python -m helpers train` with the same --seed in one process: the same history."""
    import json

    from helpers import cli
    from helpers import data as data_module
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setattr(data_module, "course_data", lambda *args, **kwargs: data)  # the small generated set
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        assert cli.main(["train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--seed", "3",
                         "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
        runs.append(_numbers(json.loads((out / "history.json").read_text())))
        torch.rand(1000)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("env, device, reduced, reason", [
    ({"COURSE_FAST": "1"}, "cuda", True, "COURSE_FAST=1"),
    ({"NBGRADER_EXECUTION": "autograde"}, "cuda", True, "autograde"),
    ({}, "cpu", True, "no GPU"),
    ({"COURSE_FULL_ON_CPU": "1"}, "cpu", False, ""),
    ({}, "cuda", False, ""),
])
def test_training_mode_decides_in_one_place(monkeypatch, capsys, env, device, reduced, reason):
    from helpers.config import training_mode
    for var in ("COURSE_FAST", "NBGRADER_EXECUTION", "COURSE_FULL_ON_CPU"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    mode = training_mode(device)
    assert (mode.reduced, mode.reason) == (reduced, reason)
    assert mode.pick(16, 3) == (3 if reduced else 16)
    line = mode.announce(2700, 3, minutes=1, full="45,000 images, 16 epochs")
    assert capsys.readouterr().out == (line + "\n" if line else "")
    if reason == "no GPU":
        assert line.startswith("no GPU: this cell trains in reduced mode (2,700 images, 3 epochs, ~1 min); ")
        assert "COURSE_FULL_ON_CPU=1" in line and "45,000 images" in line
    elif device == "cpu":
        assert "COURSE_FULL_ON_CPU=1" in line  # says that it will take long
    else:
        assert line == ""


class _Handle:
    def __init__(self, log, index):
        self.log, self.index = log, index

    def update(self, obj, **kwargs):
        self.log.append(("update", self.index, obj))


def test_notebook_display_keeps_bar_lines_and_plot_in_order(small_loaders, monkeypatch):
    """In a notebook: the bar, the epoch lines and the curves each get one display slot, made in that
    order and updated in place; when the bar closes its widget is replaced by text."""
    import IPython.display
    from helpers import progress

    log = []

    def display(obj, raw=False, display_id=False):
        log.append(("display", len(log), obj))
        return _Handle(log, len(log) - 1)

    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    train, val = small_loaders
    fit(tiny_cnn(), train, val, epochs=3, live_plot=True)
    made = [(i, obj) for kind, i, obj in log if kind == "display"]
    assert len(made) == 3, log
    (bar_slot, bar), (lines_slot, first_lines), (plot_slot, _) = made
    assert type(bar).__name__ == "TqdmHBox"                       # the widget, while training
    assert set(first_lines) == {"text/plain"} and first_lines["text/plain"].startswith("epoch 1/3")
    updates = [(i, obj) for kind, i, obj in log if kind == "update"]
    assert [i for i, _ in updates] == [lines_slot, plot_slot, lines_slot, plot_slot, bar_slot]
    last_lines = updates[2][1]["text/plain"].splitlines()
    assert [ln.split()[1] for ln in last_lines] == ["1/3", "2/3", "3/3"]
    final_bar = updates[-1][1]
    assert set(final_bar) == {"text/plain"} and "100%|" in final_bar["text/plain"]  # text: no widget state needed
    assert bar.comm is None  # the widget itself is closed
