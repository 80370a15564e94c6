"""Transfer learning from torchvision's ImageNet ResNet-18, with a new head for CIFAR.

The pretrained weights need a download (about 45 MB, cached under torch hub's directory). Offline,
the model warns and continues from random initialisation, so notebooks and CI still run.
torchvision's stem downsamples by 4 before the first stage, so a 32x32 image reaches the last
stage as 1x1; `upsample=224` (or even 64-128) resizes the inputs and usually transfers much
better, at a matching cost in compute. Pretrained weights expect ImageNet normalization.
"""
from __future__ import annotations

import socket
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

FREEZE_MODES = ("head", "last_stage", "none")
DOWNLOAD_TIMEOUT_S = 20  # per network operation: an offline machine fails fast instead of hanging


def _imagenet_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with ImageNet weights (downloads them unless cached)."""
    import torchvision  # imported here: it takes seconds, and only this model needs it
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.DEFAULT)
    finally:
        socket.setdefaulttimeout(old_timeout)


@register_model("transfer_resnet18")
class TransferResNet18(nn.Module):
    """torchvision ResNet-18 (ImageNet weights when available) with a new Linear(512, num_classes).

    `freeze` picks what trains: "head" (fc only), "last_stage" (layer4 + fc) or "none" (all).
    Frozen layers still update BatchNorm running statistics in train mode.
    """

    def __init__(self, num_classes: int = 10, freeze: str = "head", pretrained: bool = True,
                 upsample: int | None = None):
        super().__init__()
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
        self.pretrained_loaded = False
        backbone = None
        if pretrained:
            try:
                backbone = _imagenet_resnet18()
                self.pretrained_loaded = True
            except Exception as exc:  # offline, proxy, corrupt cache: all mean "no weights"
                warnings.warn(
                    f"pretrained weights could not be downloaded ({type(exc).__name__}: {exc}); "
                    "continuing from random initialisation",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if backbone is None:
            import torchvision
            backbone = torchvision.models.resnet18(weights=None)
        backbone.fc = nn.Linear(backbone.fc.in_features, num_classes)
        self.backbone = backbone
        self.upsample = upsample
        self.set_freeze(freeze)

    def set_freeze(self, freeze: str) -> None:
        """Set which parameters train (see the class docstring); usable mid-training to unfreeze."""
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
        self.freeze = freeze
        trainable = {"head": ["fc"], "last_stage": ["layer4", "fc"], "none": None}[freeze]
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(trainable is None or name.split(".")[0] in trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, size=(self.upsample, self.upsample), mode="bilinear",
                              align_corners=False)
        return self.backbone(x)
