"""Learning-rate schedules as plain functions of the step, returning a multiplier of the peak lr.

Every schedule with a warmup rises linearly during the first `warmup` steps and reaches 1.0 at
step `warmup`; after that (step s, progress p = (s - warmup) / (total - warmup)):

    onecycle  starts at 1/25 (like OneCycleLR's div_factor), then cosine from 1 to 0 at the end
    cosine    starts at 0, then 0.5 * (1 + cos(pi * p)): 1 -> 0.5 halfway -> 0 at the end
    linear    starts at 0, then 1 - p: 1 -> 0.5 halfway -> 0 at the end (the speed runs' choice)
    constant  starts at 0, then 1 throughout

`make_scheduler` wraps one of them in a torch LambdaLR that is stepped once per optimizer step.
Being plain functions, they plot in a notebook with `[cosine(s, 100, 10) for s in range(101)]`.
"""
from __future__ import annotations

import math

import torch

from .recipes import DEFAULT_WARMUP  # noqa: F401  (re-exported: the schedules' default warmups)

ONECYCLE_START = 1 / 25  # OneCycleLR begins at max_lr / div_factor, with div_factor = 25


def _warmup(step: int, warmup: int, start: float) -> float:
    """Linear from `start` at step 0 to 1.0 at step `warmup`."""
    return start + (1.0 - start) * step / warmup


def _progress(step: int, total: int, warmup: int) -> float:
    """How far the decay phase has gone, from 0.0 (end of warmup) to 1.0 (step `total`)."""
    return min(1.0, (step - warmup) / max(1, total - warmup))


def onecycle(step: int, total: int, warmup: int = 0) -> float:
    """Warm up from 1/25 to 1, then anneal to 0 along a half cosine (OneCycle's shape)."""
    if step < warmup:
        return _warmup(step, warmup, ONECYCLE_START)
    return 0.5 * (1.0 + math.cos(math.pi * _progress(step, total, warmup)))


def cosine(step: int, total: int, warmup: int = 0) -> float:
    """Warm up from 0 to 1, then cosine decay to 0 at step `total`."""
    if step < warmup:
        return _warmup(step, warmup, 0.0)
    return 0.5 * (1.0 + math.cos(math.pi * _progress(step, total, warmup)))


def linear(step: int, total: int, warmup: int = 0) -> float:
    """Warm up from 0 to 1, then decay linearly to 0 at step `total` (a triangle)."""
    if step < warmup:
        return _warmup(step, warmup, 0.0)
    return 1.0 - _progress(step, total, warmup)


def constant(step: int, total: int, warmup: int = 0) -> float:
    """Warm up from 0 to 1, then hold 1."""
    if step < warmup:
        return _warmup(step, warmup, 0.0)
    return 1.0


SCHEDULES = {"onecycle": onecycle, "cosine": cosine, "linear": linear, "constant": constant}


def multiplier(name: str, step: int, total: int, warmup: int = 0) -> float:
    """The multiplier of schedule `name` at `step`; an unknown name lists the valid ones."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    return SCHEDULES[name](step, total, warmup)


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, total_steps: int,
                   warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following schedule `name` over `total_steps` optimizer steps.

    Its state_dict holds only numbers, so it can be saved in a weights-only checkpoint.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    warmup_steps = max(0, min(int(warmup_steps), total_steps))
    fn = SCHEDULES[name]

    def lr_lambda(step: int) -> float:
        return fn(step, total_steps, warmup_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
