"""Images as a model takes them and back: uint8 (N, H, W, C) to normalized float (N, C, H, W), and back.

The one definition of the course's normalization: training (the loader), inference, Grad-CAM,
FGSM and the notebooks' displays all call these functions.
"""
from __future__ import annotations

import numpy as np
import torch


def as_tensor(x) -> torch.Tensor:
    """A detached CPU tensor from a tensor, array or list (copied: never warns on read-only arrays)."""
    return x.detach().cpu() if torch.is_tensor(x) else torch.from_numpy(np.array(x))


def channel_stats(values, device=None, dtype=torch.float32) -> torch.Tensor | None:
    """Per-channel mean or std (values in [0, 1] pixel units) as a (1, C, 1, 1) tensor; None stays None."""
    if values is None:
        return None
    return torch.as_tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)


def normalize_pixels(x: torch.Tensor, mean=None, std=None) -> torch.Tensor:
    """Float NCHW pixels in [0, 1] -> (x - mean) / std; unchanged without mean/std."""
    if mean is None or std is None:
        return x
    return (x - channel_stats(mean, x.device, x.dtype)) / channel_stats(std, x.device, x.dtype)


def normalize(images, mean=None, std=None, device=None) -> torch.Tensor:
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
    return normalize_pixels(images.float().div_(255), mean, std).contiguous()


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalized float (N, C, H, W) back to uint8 (N, H, W, C) for display."""
    mean, std = channel_stats(mean, x.device), channel_stats(std, x.device)
    return (x.float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
