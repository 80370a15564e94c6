"""An exponential moving average (EMA) of a model's weights, for evaluation.

ema = decay * ema + (1 - decay) * weights after every optimizer step; the averaged weights are
usually a little better than the last ones. Written here rather than with
torch.optim.swa_utils.AveragedModel, whose update reads a device counter on the host (one
synchronization per step). BatchNorm's running statistics are averaged as well; integer buffers
(batch counters) are copied.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of `model` (in `.module`) that follows its weights with `update(model)`.

    For the first steps the effective decay is min(decay, (1 + n) / (10 + n)), so the average
    is not dominated by the random initial weights in short runs.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, e.g. 0.999, got {decay}")
        self.decay = decay
        self.updates = 0  # a Python int: reading it never waits for the GPU
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._cache = None  # (model, pairs): the tensors to average, looked up once

    def _pairs(self, model: nn.Module):
        """(average, current) tensors: parameters and floating buffers, then the other buffers."""
        if self._cache is not None and self._cache[0] is model:
            return self._cache[1]
        mine = dict(self.module.state_dict(keep_vars=True))
        floats, others = [], []
        for name, value in model.state_dict(keep_vars=True).items():
            pair = (mine[name], value)  # updated under no_grad, so no detach needed
            (floats if value.dtype.is_floating_point else others).append(pair)
        self._cache = (model, (floats, others))
        return floats, others

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights (call after optimizer.step())."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floats, others = self._pairs(model)
        if floats:
            averages, currents = zip(*floats)
            torch._foreach_lerp_(list(averages), list(currents), 1.0 - decay)
        for average, current in others:
            average.copy_(current)

    def state_dict(self) -> dict:
        """The averaged weights and the update count (tensors and an int: checkpoint-safe)."""
        return {"state_dict": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (for resuming a run)."""
        self.module.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])
