"""Looking inside a trained model: Grad-CAM heatmaps and FGSM adversarial examples.

Both need gradients with respect to the input or an inner activation, so they run with
autograd on (even when called under `torch.no_grad()`), in fp32, with the model in eval mode;
they never touch the parameters' `.grad` and restore the model's train/eval modes afterwards.
Normalization, eval mode and the forward passes come from helpers.eval.inference (the one inference path).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .inference import as_tensor, eval_mode, forward, model_device, normalize, normalize_pixels


# ------------------------------------------------------------------------------ FGSM

def _pixel_units(x: torch.Tensor, mean=None, std=None):
    """(scale, low, high) per channel: one pixel unit in normalized units, and the normalized
    values of pixel 0 and 1. Without mean/std, x is taken to be in [0, 1] pixel units."""
    shape = (1, x.shape[1], 1, 1)
    low = normalize_pixels(torch.zeros(shape, dtype=x.dtype, device=x.device), mean, std)
    high = normalize_pixels(torch.ones(shape, dtype=x.dtype, device=x.device), mean, std)
    return high - low, low, high


def _loss_gradient_sign(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(d loss / d x) for cross-entropy: the direction in which every pixel hurts most."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)  # not .backward(): parameter grads stay untouched
    return grad.sign()


def _step(x, sign, eps: float, units) -> torch.Tensor:
    """x moved by eps pixel units along `sign`, then clipped to the valid pixel range."""
    if eps == 0:
        return x.clone()
    scale, low, high = units
    return torch.minimum(torch.maximum(x + eps * scale * sign, low), high)


def fgsm_attack(model, x: torch.Tensor, y, eps: float, mean=None, std=None) -> torch.Tensor:
    """Fast Gradient Sign Method: x + eps * sign(grad of the loss), for normalized inputs x.

    `eps` is in pixel units ([0, 1] scale, e.g. 8/255); `mean`/`std` (3-tuples in the same
    units) convert it to the normalized space and clip the result to valid pixels.
    """
    device = model_device(model)
    x, y = x.to(device), as_tensor(y).long().to(device)
    with eval_mode(model):
        sign = _loss_gradient_sign(model, x, y)
    return _step(x.detach(), sign, eps, _pixel_units(x, mean, std))


def fgsm_accuracy(model, x, y, epsilons, mean=None, std=None, batch_size: int = 256) -> list[float]:
    """Accuracy under FGSM for each eps in `epsilons` (pixel units); eps = 0 is clean accuracy.

    `x` is normalized float NCHW, or uint8 NHWC normalized here with mean/std. The gradient
    is computed once per batch and reused for every eps.
    """
    device = model_device(model)
    y = as_tensor(y).long()
    correct = [0] * len(epsilons)
    with eval_mode(model):
        for start in range(0, len(y), batch_size):
            xb = normalize(x[start:start + batch_size], mean, std, device)
            yb = y[start:start + batch_size].to(device)
            sign = _loss_gradient_sign(model, xb, yb)
            units = _pixel_units(xb, mean, std)
            with torch.no_grad():
                for i, eps in enumerate(epsilons):
                    pred = forward(model, _step(xb, sign, eps, units), amp=False).argmax(dim=1)
                    correct[i] += int((pred == yb).sum())
    return [c / max(len(y), 1) for c in correct]


# -------------------------------------------------------------------------- Grad-CAM

def grad_cam(model, layer, x: torch.Tensor, target=None) -> torch.Tensor:
    """Grad-CAM heatmaps (N, H, W) in [0, 1] at the input's size, for normalized inputs x.

    `layer` is a module of `model` (or its name, e.g. "layer4"), usually the last conv
    block. Its activations are weighted by the spatially averaged gradient of the target
    logit (`target`: None = the predicted class, an int, or one class per image), summed over
    channels and passed through ReLU. The gradient is caught by a hook on the layer's output
    tensor, which also works when an in-place ReLU follows the layer.
    """
    if isinstance(layer, str):
        layer = model.get_submodule(layer)
    saved = {}

    def keep_activation(module, inputs, output):
        saved["activation"] = output.detach().clone()  # clone: a later in-place op may change it
        output.register_hook(lambda grad: saved.__setitem__("gradient", grad.detach()))

    handle = layer.register_forward_hook(keep_activation)
    try:
        with eval_mode(model), torch.enable_grad():
            x = x.detach().to(model_device(model)).float().requires_grad_(True)
            logits = model(x)
            if target is None:
                target = logits.argmax(dim=1)
            target = torch.as_tensor(target, device=logits.device).long().expand(len(x))
            score = logits.gather(1, target[:, None]).sum()
            torch.autograd.grad(score, x)  # fires the tensor hook; parameter grads untouched
    finally:
        handle.remove()
    if "gradient" not in saved:
        raise RuntimeError("the layer's output did not take part in computing the logits")
    weights = saved["gradient"].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * saved["activation"]).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cam.amin(dim=(1, 2), keepdim=True)
    high = cam.amax(dim=(1, 2), keepdim=True)
    cam = (cam - low) / (high - low).clamp_min(1e-12)  # a flat map becomes all zeros
    return cam.detach().float().cpu()
