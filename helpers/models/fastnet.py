"""FastNet: the course's fast reference network for the speed target (94% on CIFAR-10 in seconds).

Ideas from the published speed runs (airbench, arXiv 2404.00498), written for this course:
- a first convolution over 2x2 patches whose filters *whiten* the patches (decorrelate them and
  scale each direction to unit variance), set from training data by `init_whitening` and frozen;
  each filter is used with both signs so the following GELU keeps all the information;
- then a small, wide CNN: three blocks conv-pool-BN-GELU-conv-BN-GELU (64/256/256 channels),
  a global max pool and a linear head whose logits are scaled down (a fixed temperature);
- BatchNorm with the scale frozen at 1 (only the shift learns) and a high momentum, so running
  statistics keep up during runs of only a few hundred steps.
It runs in fp32 on the CPU and with channels_last + bf16 autocast on a GPU.
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _batch_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    """BatchNorm whose scale stays 1 (frozen) and whose shift is learned."""
    bn = nn.BatchNorm2d(channels, momentum=momentum)
    bn.weight.requires_grad_(False)
    return bn


class ConvBlock(nn.Module):
    """conv3x3 -> max-pool 2x2 -> BN -> GELU -> conv3x3 -> BN -> GELU (pooling first saves work)."""

    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = _batch_norm(out_channels, bn_momentum)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = _batch_norm(out_channels, bn_momentum)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


@register_model("fastnet")
class FastNet(nn.Module):
    """Patch-whitening stem + three ConvBlocks + global max pool + scaled linear head:
    1,972,792 parameters by default, 1,971,352 trainable (whitening filters and BN scales are
    frozen).

    With the default 2x2 whitening the map shrinks 32 -> 31 (no padding) -> 15 -> 7 -> 3 -> 1.
    Call `init_whitening(model, train_images)` once before training; until then the frozen stem
    holds random filters.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256),
                 whiten_kernel: int = 2, logit_scale: float = 1 / 9, bn_momentum: float = 0.4):
        super().__init__()
        whiten_channels = 2 * 3 * whiten_kernel * whiten_kernel  # every eigen-filter, both signs
        self.whiten = nn.Conv2d(3, whiten_channels, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)                 # set from data, never trained
        self.act = nn.GELU()
        blocks = []
        in_channels = whiten_channels
        for width in widths:
            blocks.append(ConvBlock(in_channels, width, bn_momentum))
            in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(in_channels, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act(self.whiten(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.head(x) * self.logit_scale


@torch.no_grad()
def init_whitening(model: FastNet, images: torch.Tensor, eps: float = 5e-4) -> FastNet:
    """Set FastNet's first convolution to whiten k x k patches of `images` (N, 3, H, W float,
    normalized as in training) and freeze its weights.

    Filters are the eigenvectors of the patch covariance divided by sqrt(eigenvalue + eps),
    each used with both signs; the bias subtracts the patch mean, so the output on these images
    has (about) zero mean and identity covariance. The bias stays trainable.
    """
    conv = model.whiten
    k = conv.kernel_size[0]
    # (N, 3*k*k, L) -> (N*L, 3*k*k); unfold orders features (channel, row, col), as conv weights.
    patches = torch.nn.functional.unfold(images.to(conv.weight.device).double(), kernel_size=k)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    mean = patches.mean(dim=0)
    centered = patches - mean
    covariance = centered.T @ centered / (len(centered) - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending; vectors are columns
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]
    filters = torch.cat([filters, -filters])                         # (2*3*k*k, 3*k*k)
    conv.weight.copy_(filters.reshape(conv.weight.shape).to(conv.weight.dtype))
    conv.bias.copy_((-filters @ mean).to(conv.bias.dtype))
    conv.weight.requires_grad_(False)
    return model
