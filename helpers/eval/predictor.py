"""`Predictor`: a checkpoint's model with what inference needs (mean/std, class names, temperature,
test-time views, device, autocast rule), used by `python -m helpers predict`, `calibrate` and `serve`."""
from __future__ import annotations

from pathlib import Path

import torch

from ..models import count_parameters
from ..models.checkpoint import CheckpointError, check_mean_std, load_checkpoint, rebuild_model
from ..settings import pick_device
from .explain import grad_cam
from .inference import (
    INPUT_SIZE, checkpoint_classes, checkpoint_dataset, checkpoint_temperature, eval_mode, model_device, normalize,
    parse_tta, predict_logits, probabilities, recorded_accuracy,
)


class Predictor:
    """A trained model with what inference needs: mean/std, class names, temperature, test-time
    views, device and autocast rule. Build it with `Predictor.from_checkpoint(path)`."""

    def __init__(self, model: torch.nn.Module, *, mean=None, std=None, classes=None, temperature=None,
                 tta=False, device=None, amp=None, batch_size: int = 256, name: str | None = None,
                 info: dict | None = None):
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.mean, self.std = mean, std
        self.temperature = float(temperature) if temperature else 1.0
        self.tta = parse_tta(tta)
        self.amp = amp
        self.batch_size = batch_size
        self.name = name or type(model).__name__
        self.info = dict(info or {})
        self.classes = list(classes) if classes is not None else None

    @classmethod
    def from_checkpoint(cls, source, *, device=None, tta=None, temperature=None, amp=None,
                        batch_size: int = 256) -> "Predictor":
        """Rebuild the checkpoint's model (weights-only loading; CheckpointError says why it cannot).
        `tta` None takes the views the temperature was fitted with (none when uncalibrated);
        `temperature` None takes the stored one (1 when there is none)."""
        path = None if isinstance(source, dict) else Path(source)
        ckpt = source if isinstance(source, dict) else load_checkpoint(path)
        model = rebuild_model(ckpt)
        if problem := check_mean_std(ckpt.get("mean"), ckpt.get("std")):
            raise CheckpointError(f"the checkpoint's {problem}")
        calibration = ckpt.get("calibration") if isinstance(ckpt.get("calibration"), dict) else {}
        if tta is None:
            tta = calibration.get("tta", False)
        stored_t = checkpoint_temperature(ckpt)
        num_classes = _num_outputs(model)
        if num_classes is None:
            raise CheckpointError(f"the model {ckpt['model']['name']!r} does not give one score per class for a "
                                  f"{INPUT_SIZE}x{INPUT_SIZE} RGB image, so it cannot classify images here")
        info = {"parameters": count_parameters(model), "checkpoint": str(path) if path else None,
                "dataset": checkpoint_dataset(ckpt), "calibration": calibration or None,
                **recorded_accuracy(ckpt, path)}
        return cls(model, mean=ckpt.get("mean"), std=ckpt.get("std"),
                   classes=checkpoint_classes(ckpt, num_classes),
                   temperature=stored_t if temperature is None else temperature, tta=tta, device=device,
                   amp=amp, batch_size=batch_size, name=(ckpt.get("model") or {}).get("name"), info=info)

    def logits(self, images, progress=None) -> torch.Tensor:
        """float32 CPU logits (N, C) of uint8 images (N, 32, 32, 3)."""
        return predict_logits(self.model, images, batch_size=self.batch_size, tta=self.tta, mean=self.mean,
                              std=self.std, amp=self.amp, progress=progress)

    def probabilities(self, images, progress=None) -> torch.Tensor:
        """Calibrated class probabilities (N, C): softmax(logits / temperature)."""
        return probabilities(self.logits(images, progress), self.temperature)

    def heatmaps(self, images, targets=None, layer=None) -> torch.Tensor | None:
        """Grad-CAM maps (N, 32, 32) in [0, 1] for `targets` (default: the predicted classes), at
        `layer` (default: the last feature map, see `cam_layer`); None for a model without one."""
        layer = layer or cam_layer(self.model)
        if layer is None:
            return None
        x = normalize(images, self.mean, self.std, self.device)
        return grad_cam(self.model, layer, x, target=targets)


def _num_outputs(model: torch.nn.Module) -> int | None:
    """The number of logits of a 32x32 RGB image (None when the model fails on one)."""
    try:
        with eval_mode(model), torch.no_grad():
            out = model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=model_device(model)))
    except Exception:
        return None
    return int(out.shape[1]) if out.ndim == 2 else None


def cam_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module whose output is the model's last spatial feature map (4-D, larger than 1x1), found
    by one forward pass of a blank image: Grad-CAM's usual layer. None when there is none (an MLP)."""
    found = []

    def note(module, _inputs, output):
        if torch.is_tensor(output) and output.ndim == 4 and output.shape[-1] * output.shape[-2] > 1:
            found.append(module)

    hooks = [m.register_forward_hook(note) for m in model.modules() if m is not model]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=model_device(model)))
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    return found[-1] if found else None
