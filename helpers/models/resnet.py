"""Residual networks for 32x32 inputs: the basic block, squeeze-and-excitation, stochastic depth,
ResNet-18 and an SE-ResNet.

Unlike ImageNet ResNets the stem is a single 3x3 convolution with no max-pool, so a 32x32 image
keeps its resolution until the first strided stage (32 -> 16 -> 8 -> 4).
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for whole samples with probability p
    and rescale the kept ones by 1/(1-p); the identity in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class SEBlock(nn.Module):
    """Squeeze-and-excitation: global average pool, a bottleneck MLP (reduction r) and a sigmoid
    give one weight per channel, which rescales the feature map."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))                                  # squeeze: (N, C)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))    # excite: (N, C) in (0, 1)
        return x * s[:, :, None, None]


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU-conv-BN plus a shortcut, then ReLU. The shortcut is the identity, or a
    1x1 conv+BN projection when the stride or the channel count changes.

    Optional extras for SEResNet: an SE block on the residual branch (`se_reduction`) and
    stochastic depth (`drop_path`) applied to the branch before the addition.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 se_reduction: int | None = None, drop_path: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = SEBlock(out_channels, se_reduction) if se_reduction else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.drop_path(self.se(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR ResNet of BasicBlocks: 3x3 stem, stages of `depths[i]` blocks with `widths[i]`
    channels (stride 2 at the start of every stage after the first), global average pool, linear.

    `drop_path` is the stochastic-depth rate of the last block; it rises linearly from 0 at the
    first block, so early (general) features are dropped least.
    """

    def __init__(self, depths: tuple[int, ...], widths: tuple[int, ...], num_classes: int = 10,
                 se_reduction: int | None = None, drop_path: float = 0.0):
        super().__init__()
        if len(depths) != len(widths):
            raise ValueError(f"depths {depths} and widths {widths} must have the same length")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        total = sum(depths)
        index = 0
        in_channels = widths[0]
        stages = []
        for s, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for b in range(depth):
                stride = 2 if s > 0 and b == 0 else 1
                rate = drop_path * index / max(total - 1, 1)
                blocks.append(BasicBlock(in_channels, width, stride, se_reduction, rate))
                in_channels = width
                index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet18")
class ResNet18(ResNet):
    """ResNet-18 for 32x32 images: stages 64/128/256/512 of 2 blocks; 11,173,962 parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__((2, 2, 2, 2), (64, 128, 256, 512), num_classes)


@register_model("se_resnet")
class SEResNet(ResNet):
    """ResNet with an SE block in every BasicBlock and optional stochastic depth; by default the
    ResNet-18 layout, 11,263,042 parameters (SE adds 89,080, 0.8%)."""

    def __init__(self, num_classes: int = 10, depths: tuple[int, ...] = (2, 2, 2, 2),
                 widths: tuple[int, ...] = (64, 128, 256, 512), reduction: int = 16,
                 drop_path: float = 0.0):
        super().__init__(depths, widths, num_classes, se_reduction=reduction, drop_path=drop_path)
