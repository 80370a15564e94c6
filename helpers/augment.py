"""Batched augmentation on tensors, with no per-image Python work: it runs where the data is.

Crop and flip work on uint8 NHWC batches (cheap to move and index); cutout works on normalized
NCHW floats (filling with 0, the per-channel mean). Every random choice takes an explicit
`torch.Generator` on the batch's device, so a seed reproduces the same batches. MixUp and
CutMix come from torchvision.transforms.v2, which already does them well on batches.
"""
from __future__ import annotations

import torch


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad each (N, H, W, C) image with zeros by `padding` and take a random HxW window of it."""
    if padding <= 0:
        return x
    n, h, w, _ = x.shape
    padded = torch.nn.functional.pad(x, (0, 0, padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows, cols]  # (N, H, W, C)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each (N, H, W, C) image left-right with probability `p`."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < p
    return torch.where(flip[:, None, None, None], x.flip(2), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a `size`x`size` square at a random centre of each (N, C, H, W) image (may be clipped)."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w, (n, 1, 1), device=x.device, generator=generator)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    half = size // 2
    inside = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    return x.masked_fill(inside[:, None], 0.0)


def to_normalized_float(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                        dtype: torch.dtype = torch.float32, channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, H, W, C) -> normalized float (N, C, H, W), optionally in channels_last memory."""
    out = x.permute(0, 3, 1, 2).to(dtype).div_(255.0).sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalized float (N, C, H, W) back to uint8 (N, H, W, C) for display."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)


def mix_transform(num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
    """torchvision.transforms.v2 MixUp/CutMix (one chosen at random per batch when both are on).

    Returns None when both alphas are 0. Called as `images, soft_targets = t(images, labels)`.
    """
    from torchvision.transforms import v2
    choices = []
    if mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    if not choices:
        return None
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
