"""helpers.inference, the one inference path, and the commands on it: `python -m helpers predict`
(folder, archive, dataset split: one row per image, in input order) and `calibrate` (a temperature
stored in the checkpoint and used afterwards)."""
import csv
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import augment, cli, evaluate, inference
from helpers.checkpoint import dataset_fingerprint, load_checkpoint, rebuild_model, save_checkpoint
from helpers.grading import score_worker
from helpers.eval.inference import ImageError, decode_image
from helpers.eval.predictor import Predictor

# A small CNN of the registry's "layers" kind (rebuildable from its checkpoint, with a feature map for Grad-CAM).
LAYERS = [{"type": "conv", "out": 16}, {"type": "bn"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
          {"type": "conv", "out": 32}, {"type": "bn"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
          {"type": "conv", "out": 32}, {"type": "bn"}, {"type": "relu"}, {"type": "globalpool"},
          {"type": "linear", "out": 10}]


def train_small_checkpoint(path, epochs: int = 3):
    """A checkpoint of a small CNN trained for seconds on the reduced generated dataset (well above
    chance), recording mean/std, the training data and seed 0; returns (path, data)."""
    from helpers.config import seed_everything
    from helpers.data import course_data
    from helpers.loader import GpuLoader
    from helpers.models import build_model
    from helpers.split import channel_mean_std, train_val_split
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_FAST", "1")
        data = course_data("synthetic", verbose=False)
    train_idx, _ = train_val_split(data.train_labels, 0.1, seed=0)
    mean, std = channel_mean_std(data.train_images[train_idx])
    seed_everything(0)
    model = build_model("layers", layers=LAYERS)
    loader = GpuLoader(data.train_images[train_idx], data.train_labels[train_idx], batch_size=64, mean=mean,
                       std=std, crop_padding=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    save_checkpoint(path, model, mean=mean, std=std, dataset=dataset_fingerprint(data), config={"seed": 0})
    return path, data


def write_images(folder, data, count=6):
    """Test images as files under `folder`: 32x32 PNGs in class folders, a larger JPEG, an RGBA PNG and
    a file in a folder that names no class; returns their paths relative to `folder`, sorted."""
    classes = data.classes
    written = []
    for i in range(count):
        label = int(data.test_labels[i])
        rel = f"{classes[label]}/img{i:02d}.png"
        (folder / classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.test_images[i]).save(folder / rel)
        written.append(rel)
    big = Image.fromarray(data.test_images[count]).resize((96, 64))
    (folder / "misc").mkdir(exist_ok=True)
    big.save(folder / "misc" / "wide.jpg", quality=95)
    rgba = Image.fromarray(data.test_images[count + 1]).convert("RGBA")
    rgba.save(folder / "misc" / "alpha.png")
    (folder / "misc" / "notes.txt").write_text("not an image, and not listed")
    written += ["misc/alpha.png", "misc/wide.jpg"]
    return sorted(written)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path, data = train_small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt")
    return path, data


@pytest.fixture(autouse=True)
def reduced(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_OFFLINE", "1")


# --------------------------------------------------------------------------- the inference path

def test_evaluate_predict_and_the_inference_path_agree(trained):
    path, data = trained
    ckpt = load_checkpoint(path)
    model = rebuild_model(ckpt)
    images = data.test_images[:300]
    for tta in (False, "flip", "translate"):
        old = evaluate.predict(model, images, batch_size=128, tta=tta, mean=ckpt["mean"], std=ckpt["std"])
        new = inference.predict_logits(model, images, batch_size=128, tta=tta, mean=ckpt["mean"], std=ckpt["std"])
        assert torch.equal(old, new), tta
    predictor = Predictor.from_checkpoint(path, tta="flip")
    torch.testing.assert_close(predictor.logits(images),
                               evaluate.predict(model, images, tta="flip", mean=ckpt["mean"], std=ckpt["std"]))
    _, accuracy = evaluate.predict(model, data.test_images, data.test_labels, mean=ckpt["mean"], std=ckpt["std"])
    assert accuracy > 0.4  # well above chance (0.1): the figures below compare a real model
    # the scorer's forward pass is the same path
    result = score_worker.predict_checkpoint(path, data.test_images, 10)
    assert result["status"] == "ok"
    want = inference.predict_logits(model, data.test_images, mean=ckpt["mean"], std=ckpt["std"]).argmax(1)
    np.testing.assert_array_equal(result["predictions"], want.numpy())


def test_forward_is_predict_on_a_normalized_batch_and_normalization_inverts():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    x = inference.normalize(images, mean, std)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(evaluate.to_model_input(images, mean, std), x)
    with torch.no_grad():
        torch.testing.assert_close(inference.forward(model, x, tta="flip"),
                                   inference.predict_logits(model, images, tta="flip", mean=mean, std=std))
    assert augment.denormalize is inference.denormalize  # one definition (and one deny rule covers both)
    assert torch.equal(inference.denormalize(x, mean, std), torch.from_numpy(images))
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(inference.probabilities(logits, temperature=2.0), (logits / 2).softmax(1))
    with pytest.raises(ValueError, match="tta"):
        inference.predict_logits(model, images, tta="rotate")


def test_decode_image_any_size_and_format_and_says_what_is_wrong():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    assert np.array_equal(decode_image(png.getvalue()), pixels)  # 32x32 is taken pixel for pixel
    wide = io.BytesIO()
    Image.new("RGB", (300, 100), (10, 200, 30)).save(wide, format="WEBP")
    out = decode_image(wide.getvalue())
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and abs(int(out[..., 1].mean()) - 200) < 10
    clear = io.BytesIO()
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(clear, format="PNG")
    assert decode_image(clear.getvalue()).min() == 255  # transparency on white
    for data, reason in ((b"", "empty"), (b"hello, not an image", "not_image"), (png.getvalue()[:60], "corrupt")):
        with pytest.raises(ImageError) as caught:
            decode_image(data, "upload.png")
        assert caught.value.reason == reason and "upload.png" in str(caught.value)
    tall = io.BytesIO()
    Image.new("L", (2, 5000)).save(tall, format="PNG")
    with pytest.raises(ImageError, match="over the 4096x4096 limit") as caught:
        decode_image(tall.getvalue(), "tall.png", max_side=4096)
    assert caught.value.reason == "too_large"


# --------------------------------------------------------------------------- predict

def check_rows(rows, expected_keys, key, predictor, images, data):
    """One row per image in the expected order, the predictions and probabilities the Predictor gives."""
    assert [r[key] for r in rows] == expected_keys
    probs = predictor.probabilities(images)
    top = probs.topk(5, dim=1)
    for row, values, indices in zip(rows, top.values.tolist(), top.indices.tolist()):
        assert int(row["pred"]) == indices[0] and row["pred_name"] == data.classes[indices[0]]
        assert [row[f"class_{i}"] for i in range(1, 6)] == [data.classes[j] for j in indices]
        assert [float(row[f"prob_{i}"]) for i in range(1, 6)] == pytest.approx(values, abs=1e-6)


def test_predict_an_image_folder_one_row_per_image_in_path_order(trained, tmp_path, capsys):
    path, data = trained
    folder = tmp_path / "photos"
    rel = write_images(folder, data)
    out = tmp_path / "predictions.csv"
    assert cli.main(["predict", str(path), str(folder), "--out", str(out), "--no-progress"]) == 0
    rows = read_csv(out)
    images = np.stack([decode_image((folder / r).read_bytes()) for r in rel])
    check_rows(rows, rel, "file", Predictor.from_checkpoint(path), images, data)
    labelled = [r for r in rows if r["label"] != ""]
    assert len(labelled) == 6 and all(r["label_name"] == r["file"].split("/")[0] for r in labelled)
    said = capsys.readouterr().out
    assert "accuracy" in said and "macro-F1" in said and "of the 6 with a label" in said and str(out) in said


def test_predict_a_tar_gz_keeps_the_archive_order(trained, tmp_path):
    path, data = trained
    folder = tmp_path / "photos"
    rel = write_images(folder, data)
    order = list(reversed(rel))  # not sorted: the rows must follow the archive
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for r in order:
            tar.add(folder / r, arcname=f"photos/{r}")
    out = tmp_path / "from_tar.csv"
    assert cli.main(["predict", str(path), str(archive), "--out", str(out), "--no-progress", "--top-k", "5"]) == 0
    images = np.stack([decode_image((folder / r).read_bytes()) for r in order])
    check_rows(read_csv(out), [f"photos/{r}" for r in order], "file", Predictor.from_checkpoint(path), images, data)


def test_predict_a_dataset_split_reports_what_evaluate_measures(trained, tmp_path, capsys):
    path, data = trained
    out = tmp_path / "test.csv"
    assert cli.main(["predict", str(path), "synthetic:test", "--out", str(out), "--no-progress"]) == 0
    rows = read_csv(out)
    assert [int(r["index"]) for r in rows] == list(range(len(data.test_labels)))
    assert [int(r["label"]) for r in rows] == data.test_labels.tolist()
    ckpt = load_checkpoint(path)
    _, accuracy = evaluate.predict(rebuild_model(ckpt), data.test_images, data.test_labels, mean=ckpt["mean"],
                                   std=ckpt["std"])
    predicted = np.array([int(r["pred"]) for r in rows])
    assert (predicted == data.test_labels).mean() == pytest.approx(accuracy, abs=1e-6)  # predict: float32
    assert f"accuracy {accuracy:.4f}" in capsys.readouterr().out


def test_predict_says_what_is_wrong(trained, tmp_path, capsys):
    path, _ = trained
    assert cli.main(["predict", str(tmp_path / "missing.pt"), "synthetic:test", "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["predict", str(path), str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "no such folder or archive" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(path), str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "no image files" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    assert cli.main(["predict", str(path), str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "broken.png" in capsys.readouterr().err


# --------------------------------------------------------------------------- calibrate

def test_calibrate_stores_the_temperature_and_predict_uses_it(trained, tmp_path, capsys):
    path, data = trained
    copy = tmp_path / "calibrated.pt"
    copy.write_bytes(path.read_bytes())
    assert cli.main(["calibrate", str(copy)]) == 0
    said = capsys.readouterr().out
    assert "temperature" in said and "the training split the checkpoint records" in said
    ckpt = load_checkpoint(copy)
    record = ckpt["calibration"]
    from helpers.split import train_val_split
    _, val_idx = train_val_split(data.train_labels, 0.1, seed=0)
    logits = Predictor.from_checkpoint(path).logits(data.train_images[val_idx])
    assert record["temperature"] == pytest.approx(evaluate.temperature_scale(logits, data.train_labels[val_idx]))
    assert record["images"] == len(val_idx) and record["tta"] == "none" and record["nll_after"] <= record["nll_before"]
    assert ckpt["classes"] == data.classes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibrated.pt"]  # written atomically, nothing left over
    predictor = Predictor.from_checkpoint(copy)
    assert predictor.temperature == pytest.approx(record["temperature"])
    out = tmp_path / "calibrated.csv"
    assert cli.main(["predict", str(copy), "synthetic:test", "--out", str(out), "--no-progress"]) == 0
    first = read_csv(out)[0]
    want = inference.probabilities(Predictor.from_checkpoint(path).logits(data.test_images[:1]),
                                   record["temperature"]).max().item()
    assert float(first["prob_1"]) == pytest.approx(want, abs=1e-6)
    before = load_checkpoint(path)["state_dict"]
    assert all(torch.equal(before[k], v) for k, v in ckpt["state_dict"].items())  # the weights are untouched
