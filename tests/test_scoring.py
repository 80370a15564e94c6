"""Out-of-kernel scoring: a good checkpoint scores what predict() measures, every hostile one scores 0
with its reason and runs nothing, a hung worker is killed, and the tiers' boundaries are exact."""
import json
import math
import os
import pickle
import time

import pytest
import torch
from torch import nn

from helpers.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, rebuild_model, save_checkpoint
from helpers.data import course_data
from helpers.evaluate import predict
from helpers.grading import score, score_worker
from helpers.grading.challenge import load_or_train, save_challenge_checkpoint
from helpers.grading.score import score_checkpoint, score_checkpoints
from helpers.grading.tiers import DEFAULT_TIERS, Tier, TierTable, load_tiers, tier_fraction
from helpers.models import build_model

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


@pytest.fixture(autouse=True)
def reduced_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")  # the worker inherits it: a 1,000-image test split
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("COURSE_SCORE_TEST_SLEEP", raising=False)


def small_mlp(num_classes=10):
    torch.manual_seed(0)
    return build_model("mlp", num_classes=num_classes, hidden=(32,))


class Payload:
    """Unpickling this would create `marker`: the scorer must never do it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def graded_data():
    """The data the grader scores 'synthetic' on here (reduced mode): a model must record training on it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_FAST", "1")
        return course_data("synthetic", verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One good checkpoint and the hostile ones, each in its own file."""
    d = tmp_path_factory.mktemp("ckpts")
    model = small_mlp()
    good = save_challenge_checkpoint(d / "good.pt", model, history=[{"epoch": 1, "val_acc": 0.1}],
                                     mean=MEAN, std=STD, dataset=graded_data())
    raw = good.read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    marker = d / "PAYLOAD_RAN"
    state = model.state_dict()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "model": {"name": "mlp", "kwargs": {}},
                "state_dict": state, "payload": Payload(marker)}, d / "code.pt")
    with open(d / "code.pkl", "wb") as f:
        pickle.dump({"state_dict": Payload(marker)}, f)
    nan_state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    save_checkpoint(d / "nan.pt", model, state_dict=nan_state, mean=MEAN, std=STD)
    save_checkpoint(d / "wrong_arch.pt", model, state_dict=build_model("simple_cnn").state_dict(), mean=MEAN, std=STD)
    save_checkpoint(d / "classes100.pt", small_mlp(100), mean=MEAN, std=STD)
    save_checkpoint(d / "bad_mean.pt", model, mean=[0.5, 0.5], std=STD)
    save_checkpoint(d / "pixel_units.pt", model, mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7])
    save_checkpoint(d / "no_spec.pt", nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), mean=MEAN, std=STD)
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "model": {"name": "nosuchnet", "kwargs": {}},
                "state_dict": state, "mean": MEAN, "std": STD}, d / "unknown.pt")
    torch.save(state, d / "bare.pt")
    os.symlink(good, d / "link.pt")
    return d


# ----------------------------------------------------------------------------- in a fresh process

def test_good_checkpoint_scores_what_predict_measures(files):
    table = TierTable("accuracy", (Tier(0.5, 1.0), Tier(0.0, 0.4)))
    result = score_checkpoint(files / "good.pt", dataset="synthetic", max_points=10, tiers=table, student="ann")
    data = course_data("synthetic", verbose=False)
    ckpt = load_checkpoint(files / "good.pt")
    logits = predict(rebuild_model(ckpt), data.test_images, mean=ckpt["mean"], std=ckpt["std"])
    expected = float((logits.argmax(1).numpy() == data.test_labels).mean())
    assert result["status"] == "ok", result["reason"]
    assert result["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert result["images"] == len(data.test_labels) == 1000
    fraction, _ = tier_fraction(expected, table)
    assert (result["fraction"], result["points"], result["max_points"]) == (fraction, fraction * 10, 10.0)
    assert 0 <= result["macro_f1"] <= 1 and result["student"] == "ann" and result["model"] == "mlp"


def test_one_process_scores_all_of_a_students_checkpoints(files):
    """A student's parts are scored in one worker; each keeps its own result, hostile ones too."""
    parts = [{"path": files / name, "dataset": "synthetic", "max_points": 5, "tiers": None}
             for name in ("good.pt", "code.pt", "missing.pt", "classes100.pt")]
    good, code, missing, classes100 = score_checkpoints(parts, student="ann")
    alone = score_checkpoint(files / "good.pt", dataset="synthetic", max_points=5, student="ann")
    assert good["status"] == "ok" and good["accuracy"] == alone["accuracy"]
    assert code["points"] == 0 and "refused" in code["reason"]
    assert missing["points"] == 0 and "checkpoint missing" in missing["reason"]
    assert classes100["points"] == 0 and "wrong number of classes" in classes100["reason"]
    assert not (files / "PAYLOAD_RAN").exists()


def test_pickle_with_code_is_refused_in_the_worker_and_runs_nothing(files):
    result = score_checkpoint(files / "code.pt", dataset="synthetic", max_points=10)
    assert (result["status"], result["points"]) == ("zero", 0.0)
    assert "refused: the checkpoint contains Python objects other than tensors" in result["reason"]
    assert "nothing from it was run" in result["reason"]
    assert not (files / "PAYLOAD_RAN").exists()


def test_a_hung_worker_is_killed_and_scores_zero(files, monkeypatch):
    monkeypatch.setenv("COURSE_SCORE_TEST_SLEEP", "60")
    start = time.perf_counter()
    result = score_checkpoint(files / "good.pt", dataset="synthetic", max_points=10, timeout=1.5)
    assert time.perf_counter() - start < 20
    assert result["status"] == "zero" and result["points"] == 0
    assert "timed out after 1.5 s" in result["reason"]


def test_missing_checkpoint_scores_zero_without_a_process(tmp_path):
    result = score_checkpoint(tmp_path / "challenge_model.pt", max_points=10)
    assert result["points"] == 0 and result["seconds"] < 1
    assert "checkpoint missing: challenge_model.pt not found in the submission" in result["reason"]


# ----------------------------------------------------------------------------- the worker's checks

@pytest.mark.parametrize("name, reason", [
    ("truncated.pt", "checkpoint truncated or corrupt"),
    ("code.pt", "refused: the checkpoint contains Python objects other than tensors (possible code)"),
    ("code.pkl", "refused: the checkpoint contains Python objects other than tensors (possible code)"),
    ("nan.pt", "weights contain NaN"),
    ("wrong_arch.pt", "wrong architecture"),
    ("classes100.pt", "wrong number of classes: the model outputs 100 classes, the test set has 10"),
    ("bad_mean.pt", "mean/std malformed: the mean must be 3 numbers"),
    ("pixel_units.pt", "mean/std malformed: expected [0, 1] pixel units"),
    ("no_spec.pt", "does not say which model it holds"),
    ("unknown.pt", "unknown model name 'nosuchnet'"),
    ("bare.pt", "not a course checkpoint"),
    ("link.pt", "refused: link.pt is a symbolic link"),
    ("absent.pt", "checkpoint missing: absent.pt not found in the submission"),
])
def test_each_hostile_checkpoint_scores_zero_with_its_reason(files, name, reason):
    result = score.evaluate_checkpoint(files / name, "synthetic")
    assert result["status"] == "zero" and result["accuracy"] is None
    assert reason in result["reason"], result["reason"]
    assert "\n" not in result["reason"]
    assert not (files / "PAYLOAD_RAN").exists()


def test_missing_data_is_the_graders_error_and_synthetic_is_announced(files, tmp_path, monkeypatch):
    from helpers.config import data_dir
    cache = data_dir() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache").symlink_to(cache)  # the generated dataset's cache, but no CIFAR-10
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.delenv("COURSE_CIFAR10", raising=False)
    assert score.evaluate_checkpoint(files / "good.pt", "cifar10")["status"] == "error"
    fallback = score.evaluate_checkpoint(files / "good.pt", "cifar10", allow_synthetic=True)
    assert fallback["status"] == "ok"
    assert "scored on the generated 'synthetic' dataset: cifar10 is not available here" in fallback["reason"]


def test_worker_prints_only_json_on_stdout(files, tmp_path, capsys):
    """The worker gets images only (no labels) and prints one JSON line of predictions per checkpoint."""
    import numpy as np
    images = course_data("synthetic", verbose=False).test_images[:50]
    np.save(tmp_path / "test.npy", images)
    args = [str(files / "nan.pt"), str(files / "good.pt"), "--images", str(tmp_path / "test.npy"), "--classes", "10"]
    assert score_worker.main(args) == 0
    nan, good = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert nan["status"] == "zero" and "NaN" in nan["reason"] and nan["n"] == 0
    assert good["status"] == "ok" and good["n"] == 50
    assert set(good) == {"status", "reason", "model", "n", "pred", "fingerprint", "trained_on"}
    assert good["fingerprint"] == [["linear", 32], ["act", None], ["linear", 10]]  # the mlp's Flatten is left out
    assert good["trained_on"]["name"] == "synthetic" and len(good["trained_on"]["sha256"]) == 64


# ----------------------------------------------------------------------------- the notebook's side

def test_save_refuses_models_the_grader_cannot_rebuild(tmp_path):
    with pytest.raises(ValueError, match="build_model"):
        save_challenge_checkpoint(tmp_path / "m.pt", nn.Linear(3, 10), history=[], mean=MEAN, std=STD, dataset="cifar10")
    from helpers.models import register_model

    @register_model("test_scoring_custom")
    class Custom(nn.Linear):
        def __init__(self):
            super().__init__(3, 10)

    with pytest.raises(ValueError, match="not in helpers.models"):
        save_challenge_checkpoint(tmp_path / "m.pt", build_model("test_scoring_custom"), history=[], mean=MEAN,
                                  std=STD, dataset="cifar10")
    with pytest.raises(ValueError, match="3 numbers"):
        save_challenge_checkpoint(tmp_path / "m.pt", small_mlp(), history=[], mean=[0.5], std=STD, dataset="cifar10")
    assert not (tmp_path / "m.pt").exists()


def test_load_or_train_never_trains_under_autograde(files, tmp_path, monkeypatch):
    calls = []

    def train():
        calls.append(1)
        return small_mlp(), [{"epoch": 1}]

    model, history = load_or_train(files / "good.pt", train)
    assert calls == [1] and history == [{"epoch": 1}]
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    model, history = load_or_train(files / "good.pt", train)
    assert calls == [1] and history[0]["val_acc"] == 0.1 and isinstance(model, nn.Module)
    with pytest.raises(FileNotFoundError, match="challenge_model.pt"):
        load_or_train(tmp_path / "challenge_model.pt", train)
    assert calls == [1]


# ----------------------------------------------------------------------------- tiers

@pytest.mark.parametrize("value, fraction", [
    (0.95, 1.0), (0.8000001, 1.0), (0.80, 0.9), (8000 / 10000, 0.9), (0.75, 0.9), (0.70, 0.9), (7000 / 10000, 0.9),
    (0.6999, 0.8), (0.65, 0.8), (0.6499, 0.7), (0.60, 0.7), (0.55, 0.6), (0.50, 0.6), (0.4999, 0.0), (0.0, 0.0),
    (math.nan, 0.0), (None, 0.0),
])
def test_cifar10_tier_boundaries(value, fraction):
    assert tier_fraction(value, DEFAULT_TIERS["cifar10"])[0] == fraction


@pytest.mark.parametrize("value, fraction", [
    (0.85, 1.0), (0.70, 1.0), (0.6999, 0.9), (0.65, 0.9), (0.60, 0.8), (0.55, 0.7), (0.50, 0.6), (0.4999, 0.5),
    (0.40, 0.5), (0.3999, 0.0),
])
def test_cifar100_tier_boundaries(value, fraction):
    assert tier_fraction(value, DEFAULT_TIERS["cifar100"])[0] == fraction


def test_tier_text_names_the_band():
    assert tier_fraction(0.73, DEFAULT_TIERS["cifar10"])[1] == "0.7300 >= 0.7: 90%"
    assert "below the lowest tier" in tier_fraction(0.3, DEFAULT_TIERS["cifar10"])[1]


def test_tiers_file_overrides_one_dataset_and_rejects_nonsense(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_TIERS", raising=False)
    tiers = tmp_path / "ta-only" / "tiers.json"
    tiers.parent.mkdir()
    tiers.write_text(json.dumps(
        {"cifar10": {"metric": "accuracy", "tiers": [{"at_least": 0.3, "fraction": 0.5}, {"above": 0.9, "fraction": 1}]}}))
    tables = load_tiers(tiers)
    assert tables["cifar100"] == DEFAULT_TIERS["cifar100"]
    assert [tier_fraction(v, tables["cifar10"])[0] for v in (0.9, 0.91, 0.3, 0.29)] == [0.5, 1.0, 0.5, 0.0]
    monkeypatch.setenv("COURSE_TIERS", str(tiers))  # the environment variable names the same kind of file
    assert load_tiers() == tables
    monkeypatch.delenv("COURSE_TIERS")
    tiers.write_text(json.dumps({"cifar10": {"tiers": [{"above": 80, "fraction": 1}]}}))
    with pytest.raises(ValueError, match="not a number in"):
        load_tiers(tiers)
    with pytest.raises(ValueError, match="not found"):
        load_tiers(tmp_path / "elsewhere.json")
    # a folder (the old course-root argument) is never searched for grading_tiers.json
    (tmp_path / "grading_tiers.json").write_text(json.dumps({"cifar10": {"tiers": [{"at_least": 0, "fraction": 1}]}}))
    assert load_tiers(tmp_path) == DEFAULT_TIERS and load_tiers() == DEFAULT_TIERS
