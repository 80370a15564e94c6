"""Run a trained model over a dataset: batched prediction with optional test-time augmentation,
temperature scaling and the most confident mistakes.

Grad-CAM and FGSM live in `helpers.explain`; they are reachable from here as well
(`helpers.evaluate.grad_cam`), so notebooks can import everything about a trained model from
one place.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F


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


def _tensor(x) -> torch.Tensor:
    """A detached CPU tensor from a tensor, array or list (copied: never warns on read-only arrays)."""
    return x.detach().cpu() if torch.is_tensor(x) else torch.from_numpy(np.array(x))


def _stats(values, device) -> torch.Tensor | None:
    """Per-channel mean or std (a 3-tuple in [0, 1] pixel units) as a (1, C, 1, 1) tensor."""
    if values is None:
        return None
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def to_model_input(images, mean=None, std=None, device=None) -> torch.Tensor:
    """A batch as the float NCHW tensor a model takes.

    uint8 images (N, H, W, C), NumPy or torch, are scaled to [0, 1] and normalized with
    mean/std; float images are taken as already normalized NCHW and only moved to `device`.
    """
    if isinstance(images, np.ndarray):
        # np.array copies: a read-only (memory-mapped) array would make torch warn on stderr
        images = torch.from_numpy(np.array(images))
    images = torch.as_tensor(images).to(device)
    if images.dtype != torch.uint8:
        return images.float()
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.permute(0, 3, 1, 2)
    x = images.float().div_(255)
    if mean is not None and std is not None:
        x = (x - _stats(mean, x.device)) / _stats(std, x.device)
    return x.contiguous()


def autocast(device: torch.device):
    """bf16 autocast on CUDA (fast, no loss scaling needed), plain fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the image content by (dy, dx) pixels, filling the uncovered border with zeros."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def _tta_views(x: torch.Tensor, tta) -> list[torch.Tensor]:
    """The views whose logits are averaged: the image, its mirror, and with tta="translate"
    every one-pixel shift (up, down, left, right) of both."""
    if not tta:
        return [x]
    if tta not in (True, "flip", "translate"):
        raise ValueError(f"tta must be False, True, 'flip' or 'translate', got {tta!r}")
    views = [x, x.flip(-1)]
    if tta == "translate":
        views += [_shift(v, dy, dx) for v in views[:2] for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    return views


def predict(model, images, labels=None, batch_size: int = 512, device=None, tta=False,
            mean=None, std=None):
    """Logits of `model` on every image, as a float32 CPU tensor (N, C).

    `images`: uint8 (N, 32, 32, 3), normalized here with `mean`/`std`, or a float tensor
    (N, 3, 32, 32) already normalized. `tta`: False, True/"flip" (average the logits of the
    image and its mirror) or "translate" (also one-pixel shifts, zero padded). With `labels`
    it returns (logits, accuracy). The model goes to `device` if one is given, else stays
    where it is; its train/eval modes are restored afterwards.
    """
    if device is not None:
        model.to(device)
    device = model_device(model)
    outputs = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_model_input(images[start:start + batch_size], mean, std, device)
            with autocast(device):
                views = _tta_views(x, tta)
                logits = sum(model(v).float() for v in views) / len(views)
            outputs.append(logits)  # stays on the device: one copy to the CPU at the end
    logits = torch.cat(outputs).cpu() if outputs else torch.zeros(0, 0)
    if labels is None:
        return logits
    labels = _tensor(labels).long()
    acc = (logits.argmax(1) == labels).float().mean().item() if len(labels) else 0.0
    return logits, acc


def temperature_scale(logits, labels, max_iter: int = 50) -> float:
    """The temperature T > 0 minimizing the NLL of softmax(logits / T) on held-out data.

    Fit on validation logits, never test ones; T > 1 softens an over-confident model. T is
    found as exp(log T) so it stays positive, with L-BFGS since there is a single parameter.
    """
    logits, labels = _tensor(logits).float(), _tensor(labels).long()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(log_t.detach().exp())


def misclassified(logits, labels, k: int = 16) -> np.ndarray:
    """Indices of the k wrong predictions made with the highest confidence, most confident first."""
    conf, pred = _tensor(logits).float().softmax(dim=1).max(dim=1)
    wrong = torch.nonzero(pred != _tensor(labels).long()).flatten()
    order = torch.argsort(conf[wrong], descending=True, stable=True)[:k]
    return wrong[order].numpy()


def __getattr__(name: str):
    """Grad-CAM and FGSM are defined in helpers.explain; import them from there on first use."""
    if name in ("grad_cam", "fgsm_attack", "fgsm_accuracy"):
        from . import explain
        return getattr(explain, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
