"""Run a trained model over a dataset: batched prediction with optional test-time augmentation,
temperature scaling and the most confident mistakes.

Grad-CAM and FGSM live in `helpers.eval.explain`; they are reachable from here as well
(`helpers.eval.evaluate.grad_cam`), so notebooks can import everything about a trained model from
one place. The forward passes, normalization and test-time views are helpers.eval.inference's (the
one inference path); this module keeps the names the notebooks import.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import precision as _amp
from .inference import as_tensor, normalize, predict_logits, tta_views
from .inference import eval_mode, model_device  # noqa: F401  (public here too: notebooks import them)


def to_model_input(images, mean=None, std=None, device=None) -> torch.Tensor:
    """A batch as the float NCHW tensor a model takes (helpers.eval.inference.normalize).

    uint8 images (N, H, W, C), NumPy or torch, are scaled to [0, 1] and normalized with
    mean/std; float images are taken as already normalized NCHW and only moved to `device`.
    """
    return normalize(images, mean, std, device)


def autocast(device: torch.device, amp=None):
    """The course's autocast rule (helpers.precision.amp_dtype): bf16 (else fp16) on CUDA, plain fp32 elsewhere."""
    return _amp.autocast(device, _amp.amp_dtype(device, amp))


def predict(model, images, labels=None, batch_size: int = 512, device=None, tta=False,
            mean=None, std=None, amp=None):
    """Logits of `model` on every image, as a float32 CPU tensor (N, C).

    `images`: uint8 (N, 32, 32, 3), normalized here with `mean`/`std`, or a float tensor
    (N, 3, 32, 32) already normalized. `tta`: False, True/"flip" (average the logits of the
    image and its mirror) or "translate" (also one-pixel shifts, zero padded). With `labels`
    it returns (logits, accuracy). The model goes to `device` if one is given, else stays
    where it is; its train/eval modes are restored afterwards. `amp`: autocast as in training
    (None: bf16, else fp16, on CUDA; fp32 on the CPU; False: fp32 everywhere). The work is done
    by helpers.eval.inference.predict_logits, the path every prediction in the course takes.
    """
    logits = predict_logits(model, images, batch_size=batch_size, device=device, tta=tta, mean=mean, std=std,
                            amp=amp)
    if labels is None:
        return logits
    labels = as_tensor(labels).long()
    acc = (logits.argmax(1) == labels).float().mean().item() if len(labels) else 0.0
    return logits, acc


def temperature_scale(logits, labels, max_iter: int = 50) -> float:
    """The temperature T > 0 minimizing the NLL of softmax(logits / T) on held-out data.

    Fit on validation logits, never test ones; T > 1 softens an over-confident model. T is
    found as exp(log T) so it stays positive, with L-BFGS since there is a single parameter.
    """
    logits, labels = as_tensor(logits).float(), as_tensor(labels).long()
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
    conf, pred = as_tensor(logits).float().softmax(dim=1).max(dim=1)
    wrong = torch.nonzero(pred != as_tensor(labels).long()).flatten()
    order = torch.argsort(conf[wrong], descending=True, stable=True)[:k]
    return wrong[order].numpy()


def __getattr__(name: str):
    """Grad-CAM and FGSM are defined in helpers.eval.explain; import them from there on first use."""
    if name in ("grad_cam", "fgsm_attack", "fgsm_accuracy"):
        from . import explain
        return getattr(explain, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
