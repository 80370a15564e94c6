"""The course's small convolutional networks: the five-convolution net (with and without
BatchNorm) and a three-convolution CNN. Their exact parameter counts are course specs."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _five_conv_features(batch_norm: bool) -> nn.Sequential:
    """5x5 convolutions 3->8->16->32->64->128 (padding 2; stride 2 on the 2nd and 4th), ReLU,
    then a 2x2 max-pool: 32x32 -> 16 -> 8 -> 4, i.e. 128*4*4 = 2048 features."""
    layers: list[nn.Module] = []
    channels = [3, 8, 16, 32, 64, 128]
    strides = [1, 2, 1, 2, 1]
    for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=5, stride=stride, padding=2))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _five_conv_head(num_classes: int) -> nn.Sequential:
    """Fully connected 2048 -> 120 -> 84 -> num_classes (LeNet-style widths)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 120),
        nn.ReLU(inplace=True),
        nn.Linear(120, 84),
        nn.ReLU(inplace=True),
        nn.Linear(84, num_classes),
    )


@register_model("fiveconv")
class FiveConvNet(nn.Module):
    """The five-convolution network: 529,742 parameters for 10 classes.

    Convolutions 608 + 3,216 + 12,832 + 51,264 + 204,928 = 272,848;
    fully connected 245,880 + 10,164 + 850 = 256,894.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = _five_conv_features(batch_norm=False)
        self.classifier = _five_conv_head(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("fiveconv_bn")
class FiveConvNetBN(nn.Module):
    """The same network with BatchNorm2d after each convolution: 530,238 parameters for 10 classes.

    The convolutions keep their (now redundant) bias so the count is the plain net's plus
    2 per channel: 529,742 + 2 * (8+16+32+64+128) = 530,238.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = _five_conv_features(batch_norm=True)
        self.classifier = _five_conv_head(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("simple_cnn")
class SimpleCNN(nn.Module):
    """Three 3x3 convolutions (32/64/128 channels, padding 1), each followed by ReLU and a 2x2
    max-pool (32 -> 16 -> 8 -> 4), then 2048 -> 512 -> num_classes: 1,147,466 parameters.

    Convolutions 896 + 18,496 + 73,856 = 93,248; head 1,049,088 + 5,130 = 1,054,218.
    Dropout (off by default) adds no parameters.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, 32, 64, 128]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
