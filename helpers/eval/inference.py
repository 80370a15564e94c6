"""The one inference path: every piece of code that runs a trained model on images goes through here.

Normalization with the checkpoint's recorded mean/std (and its inverse), the test-time views,
the autocast rule of `helpers.precision.amp_dtype`, batched logits and temperature-scaled
probabilities. `helpers.eval.evaluate.predict`, Grad-CAM and FGSM (`helpers.eval.explain`), the grading
scorer, `python -m helpers predict`/`calibrate`/`serve` and validation during training all call
these functions, so a change here changes them all alike. `decode_image` turns an image
file of any size or format Pillow reads into the model's 32x32 RGB input; `Predictor`
(helpers.eval.predictor) bundles a checkpoint's model with what these functions need.
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.normalize import as_tensor, channel_stats, denormalize, normalize, normalize_pixels  # noqa: F401
from ..precision import amp_dtype, autocast

INPUT_SIZE = 32  # the course's models take 32x32 RGB images
TTA_CHOICES = ("none", "flip", "translate")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------------------- tensors and modes

@contextmanager
def eval_mode(model: torch.nn.Module):
    """Put every submodule in eval mode for the block, then give each back its own mode
    (so a deliberately frozen BatchNorm inside a training model stays frozen)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for an empty model)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


# --------------------------------------------------------------------------- test-time views

def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the image content by (dy, dx) pixels, filling the uncovered border with zeros."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def tta_views(x: torch.Tensor, tta) -> list[torch.Tensor]:
    """The views whose logits are averaged: the image, its mirror, and with tta="translate"
    every one-pixel shift (up, down, left, right) of both. tta: False/None/"none", True/"flip"
    or "translate"."""
    tta = parse_tta(tta)
    if not tta:
        return [x]
    views = [x, x.flip(-1)]
    if tta == "translate":
        views += [_shift(v, dy, dx) for v in views[:2] for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    return views


def parse_tta(tta):
    """False, "flip" or "translate" from the spellings the course accepts (True means "flip")."""
    if tta in (False, None, "none", "off", ""):
        return False
    if tta in (True, "flip"):
        return "flip"
    if tta == "translate":
        return tta
    raise ValueError(f"tta must be False, True, 'flip' or 'translate', got {tta!r}")


# --------------------------------------------------------------------------- forward passes

def forward(model: torch.nn.Module, x: torch.Tensor, tta=False, amp=None) -> torch.Tensor:
    """float32 logits of a normalized batch `x` (on the model's device), averaged over the
    test-time views, under autocast when `helpers.precision.amp_dtype(x.device, amp)` says so (bf16,
    else fp16, on CUDA; fp32 elsewhere). `amp` may also be a torch.dtype. The caller chooses
    eval mode and no_grad."""
    dtype = amp if isinstance(amp, torch.dtype) else amp_dtype(x.device, amp)
    views = tta_views(x, tta)
    with autocast(x.device, dtype):
        return sum(model(v).float() for v in views) / len(views)


def predict_logits(model: torch.nn.Module, images, *, batch_size: int = 512, device=None, tta=False,
                   mean=None, std=None, amp=None, progress=None) -> torch.Tensor:
    """Logits of `model` on every image, as a float32 CPU tensor (N, C).

    `images`: uint8 (N, H, W, 3) normalized here with `mean`/`std`, or a float tensor (N, 3, H, W)
    already normalized. The model goes to `device` if one is given, else stays where it is; its
    train/eval modes are restored afterwards. `progress`: a callable given the number of images
    done after each batch (a tqdm bar's `update`).
    """
    if device is not None:
        model.to(device)
    device = model_device(model)
    dtype = amp if isinstance(amp, torch.dtype) else amp_dtype(device, amp)
    parse_tta(tta)  # a bad value fails before any work
    outputs = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalize(images[start:start + batch_size], mean, std, device)
            outputs.append(forward(model, x, tta, dtype))  # stays on the device: one copy at the end
            if progress is not None:
                progress(len(x))
    return torch.cat(outputs).cpu() if outputs else torch.zeros(0, 0)


def probabilities(logits, temperature: float | None = None) -> torch.Tensor:
    """softmax(logits / T) as float32 on the CPU; T = 1 when `temperature` is None."""
    logits = as_tensor(logits).float()
    return (logits / float(temperature or 1.0)).softmax(dim=1)


def top_k(probs, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, class indices) of the k most probable classes of each row, most probable first."""
    probs = as_tensor(probs).float()
    return probs.topk(min(int(k), probs.shape[1]), dim=1)


# --------------------------------------------------------------------------- images from files

class ImageError(ValueError):
    """An uploaded or listed file is not an image the model can take; the message says why and
    `reason` which kind of problem it is: "empty", "not_image", "too_large" or "corrupt"."""

    def __init__(self, message: str, reason: str = "corrupt"):
        super().__init__(message)
        self.reason = reason


def decode_image(data: bytes, name: str = "image", size: int = INPUT_SIZE, max_side: int | None = None) -> np.ndarray:
    """One image file's bytes as uint8 (size, size, 3): any format Pillow reads, the first frame of
    an animation, transparency composited on white, the centre square cropped and resized with
    Pillow's antialiasing. An image already size x size is taken as it is (pixel for pixel).
    ImageError names the file when it is empty, not an image, larger than `max_side` on a side,
    or cannot be decoded."""
    from PIL import Image, UnidentifiedImageError
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)", "empty")
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(f"{name} has too many pixels to open safely; scale it down first", "too_large") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)",
                         "not_image") from None
    except Exception as exc:  # Pillow raises many types for broken headers
        raise ImageError(f"{name} cannot be read as an image ({type(exc).__name__})", "not_image") from None
    with im:
        width, height = im.size
        if max_side is not None and (width > max_side or height > max_side):
            raise ImageError(f"{name} is {width}x{height} pixels, over the {max_side}x{max_side} limit; "
                             "scale it down first", "too_large")
        try:
            im.seek(0)
            if "A" in im.getbands() or "transparency" in im.info:
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            im = im.convert("RGB")
            if im.size != (size, size):
                side = min(im.size)
                left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
                im = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
            return np.asarray(im, dtype=np.uint8).copy()
        except ImageError:
            raise
        except Exception as exc:  # truncated data, a decoder error
            raise ImageError(f"{name} cannot be decoded ({type(exc).__name__}: {str(exc)[:100]})") from None


# --------------------------------------------------------------------------- what a checkpoint records

def checkpoint_temperature(ckpt: dict) -> float | None:
    """The temperature `python -m helpers calibrate` stored in the checkpoint, or None."""
    record = ckpt.get("calibration")
    value = record.get("temperature") if isinstance(record, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def checkpoint_classes(ckpt: dict, num_classes: int) -> list[str]:
    """Class names for a checkpoint's outputs: the ones calibrate stored, else those of the dataset it
    records (CIFAR-10, the generated one), else "0", "1", ..."""
    from ..data.synthetic import CLASSES as SYNTHETIC_CLASSES
    stored = ckpt.get("classes")
    if isinstance(stored, (list, tuple)) and len(stored) == num_classes and all(isinstance(c, str) for c in stored):
        return list(stored)
    known = {"cifar10": CIFAR10_CLASSES, "synthetic": SYNTHETIC_CLASSES}.get(checkpoint_dataset(ckpt) or "")
    if known is not None and len(known) == num_classes:
        return list(known)
    return [str(i) for i in range(num_classes)]


def checkpoint_dataset(ckpt: dict) -> str | None:
    """The name of the dataset a checkpoint says it was trained on (its "dataset" record, else the one
    calibrate used, else the challenge's extra field), or None when it does not say."""
    for field, key in (("dataset", "name"), ("calibration", "dataset"), ("extra", "dataset")):
        record = ckpt.get(field)
        name = record.get(key) if isinstance(record, dict) else None
        if isinstance(name, str) and name:
            return name
    return None


def recorded_accuracy(ckpt: dict, path=None) -> dict:
    """{"accuracy", "accuracy_source"}: the test accuracy in a metrics.json beside the checkpoint (written by
    `python -m helpers train`), else the best validation accuracy in its history, else None."""
    if path is not None:
        metrics = Path(path).with_name("metrics.json")
        try:
            value = json.loads(metrics.read_text()).get("accuracy")
            if isinstance(value, (int, float)):
                return {"accuracy": float(value), "accuracy_source": f"test accuracy in {metrics.name}"}
        except (OSError, ValueError, AttributeError):
            pass
    values = [row.get("val_acc") for row in ckpt.get("history") or [] if isinstance(row, dict)]
    values = [v for v in values if isinstance(v, (int, float))]
    if values:
        return {"accuracy": float(max(values)),
                "accuracy_source": "best validation accuracy in the checkpoint's history"}
    return {"accuracy": None, "accuracy_source": None}
