"""Checkpoints: a weights-only round trip, atomic writes, and a plain CheckpointError for every
way a file can be missing, broken, hostile or for another model."""
import errno
import pickle

import pytest
import torch

from helpers import checkpoint
from helpers.checkpoint import (
    CheckpointError, has_nonfinite, load_checkpoint, load_weights, rebuild_model, save_checkpoint,
)
from helpers.history import History
from helpers.models import build_model


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("fiveconv_bn", num_classes=10).eval()


@pytest.fixture
def saved(tmp_path, model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = History([{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": None, "val_acc": None,
                        "lr": 0.1, "seconds": 1.0, "images_per_s": 10.0}])
    path = save_checkpoint(tmp_path / "ckpt.pt", model, optimizer=opt, history=history, epoch=1,
                           config={"lr": 0.1, "out": tmp_path, "sizes": (1, 2)}, mean=(0.5, 0.5, 0.5),
                           std=torch.tensor([0.25, 0.25, 0.25]))
    return path


def test_round_trip_gives_identical_outputs(saved, model):
    rebuilt = rebuild_model(saved)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
    assert not rebuilt.training
    raw = torch.load(saved, weights_only=True)  # plain torch can read it without running code
    assert raw["model"] == {"name": "fiveconv_bn", "kwargs": {"num_classes": 10}}
    assert raw["mean"] == [0.5] * 3 and raw["std"] == [0.25] * 3 and raw["epoch"] == 1
    assert raw["config"]["out"] == str(saved.parent) and raw["history"][0]["lr"] == 0.1
    assert isinstance(raw["helpers_version"], str) and type(raw["torch_version"]) is str


def test_atomic_write_leaves_no_temporary_file(saved):
    assert [p.name for p in saved.parent.iterdir()] == ["ckpt.pt"]


def test_full_disk_keeps_the_previous_checkpoint(saved, model, monkeypatch):
    before = load_checkpoint(saved)["state_dict"]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="not enough disk space") as info:
        save_checkpoint(saved, model)
    assert "previous checkpoint there is unchanged" in str(info.value)
    monkeypatch.undo()
    after = load_checkpoint(saved)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.name for p in saved.parent.iterdir()] == ["ckpt.pt"]


def test_values_that_are_not_plain_are_refused(tmp_path, model):
    with pytest.raises(CheckpointError, match="config"):
        save_checkpoint(tmp_path / "x.pt", model, config={"loss": torch.nn.CrossEntropyLoss()})
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("keep", [0, 0.5, 0.98])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="empty|truncated or corrupt"):
        load_checkpoint(saved)


def test_garbage_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not a model")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)


class CreatesAFile:
    """Unpickling this would call open(target, "w"): code running on load."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_with_code_is_refused_without_running_it(tmp_path, writer):
    target = tmp_path / "created-by-the-checkpoint"
    path = tmp_path / "evil.pt"
    payload = {"format": checkpoint.FORMAT, "state_dict": {}, "trap": CreatesAFile(target)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(CheckpointError, match="refusing to run code from it"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        rebuild_model(path)
    assert not target.exists()


def test_bare_state_dict_and_foreign_files(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="bare state_dict"):
        load_checkpoint(tmp_path / "sd.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a course checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_wrong_architecture(saved):
    ckpt = load_checkpoint(saved)
    ckpt["model"] = {"name": "simple_cnn", "kwargs": {"num_classes": 10}}
    with pytest.raises(CheckpointError, match=r"missing \d+ and unexpected \d+ weight names.*'simple_cnn'"):
        rebuild_model(ckpt)
    with pytest.raises(CheckpointError, match="different architecture than 'resnet18'"):
        load_weights(build_model("resnet18"), saved)


def test_wrong_number_of_classes(tmp_path):
    path = save_checkpoint(tmp_path / "c100.pt", build_model("fiveconv_bn", num_classes=100))
    assert rebuild_model(path).classifier[-1].out_features == 100
    with pytest.raises(CheckpointError) as info:
        rebuild_model(path, num_classes=10)
    assert str(info.value) == "the checkpoint's classifier has 100 outputs but the model was built for 10 classes"


def test_unknown_model_name_and_missing_spec(saved, model):
    ckpt = load_checkpoint(saved)
    ckpt["model"] = {"name": "resnet1000", "kwargs": {}}
    with pytest.raises(CheckpointError, match="'resnet1000' cannot be built"):
        rebuild_model(ckpt)
    ckpt["model"] = None
    with pytest.raises(CheckpointError, match="does not say which model"):
        rebuild_model(ckpt)


def test_nonfinite_weights_are_found(saved):
    ckpt = load_checkpoint(saved)
    assert has_nonfinite(ckpt["state_dict"]) == []
    ckpt["state_dict"]["classifier.5.bias"][0] = float("nan")
    assert has_nonfinite(ckpt["state_dict"]) == ["classifier.5.bias"]
    with pytest.raises(CheckpointError, match="NaN or inf"):
        rebuild_model(ckpt)
    assert rebuild_model(ckpt, allow_nonfinite=True) is not None


def test_compiled_or_wrapped_names_are_accepted(saved, model):
    ckpt = load_checkpoint(saved)
    ckpt["state_dict"] = {"_orig_mod." + k: v for k, v in ckpt["state_dict"].items()}
    rebuilt = rebuild_model(ckpt)
    assert torch.equal(rebuilt.classifier[-1].weight, model.classifier[-1].weight)


def test_recipe_and_training_data_are_recorded(tmp_path, model):
    import numpy as np

    from helpers.checkpoint import dataset_fingerprint, split_digest
    from helpers.data import ImageData
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), np.arange(20) % 10
    data = ImageData("synthetic", [str(i) for i in range(10)], images, labels, images[:4], labels[:4],
                     source="generated [reduced mode]")
    record = dataset_fingerprint(data)
    assert record == {"name": "synthetic", "sha256": split_digest(images, labels), "images": 20, "reduced": True}
    relabelled = labels.copy()
    relabelled[0] = 9
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    digests = {split_digest(images, labels), split_digest(images, relabelled), split_digest(changed, labels),
               split_digest(images[:10], labels[:10])}
    assert len(digests) == 4  # one changed label, one changed pixel value, a subset: each another digest
    assert split_digest(images, labels.astype(np.int32)) == record["sha256"]  # the label dtype does not matter
    recipe = {"model": {"name": "fiveconv_bn", "kwargs": {}}, "epochs": 2, "sizes": (1, 2)}
    path = save_checkpoint(tmp_path / "r.pt", model, recipe=recipe, dataset=record)
    raw = torch.load(path, weights_only=True)
    assert raw["recipe"]["epochs"] == 2 and raw["dataset"] == record
    assert load_checkpoint(save_checkpoint(tmp_path / "old.pt", model))["recipe"] is None  # optional fields
