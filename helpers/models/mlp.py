"""The course's baseline: a multilayer perceptron on flattened 32x32 RGB images."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


@register_model("mlp")
class MLP(nn.Module):
    """Flatten (N, 3, 32, 32) to 3072 features, then Linear+ReLU layers: 563,082 parameters.

    3072*128+128 + 128*256+256 + 256*512+512 + 512*10+10 = 563,082.
    """

    def __init__(self, num_classes: int = 10, hidden: tuple[int, ...] = (128, 256, 512)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = 3 * 32 * 32
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
