"""Small model utilities shared by notebooks and checks."""
from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once); only those with requires_grad if trainable_only."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
