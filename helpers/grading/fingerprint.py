"""Architecture fingerprints: "the same model" decided by structure, not by name.

A fingerprint is the list of a network's leaf layers in the order its forward pass calls them,
each as (kind, width):

- convolutions ("conv", out channels), linear layers ("linear", out features), normalization
  ("norm", channels: BatchNorm, GroupNorm, LayerNorm, InstanceNorm);
- activations ("act", None: ReLU, GELU, SiLU, ... count as one kind, so swapping one for
  another does not make a new design), local pooling ("pool", None: max or average) and global
  pooling ("globalpool", None: adaptive max or average);
- layers that do nothing at inference or only reshape (Identity, Dropout, stochastic depth,
  Flatten) are left out, and so is an activation right after another; any other leaf is recorded
  by its class name with width None.

The order comes from forward hooks on one input (on the meta device for a model built there,
so nothing is allocated); a model whose forward fails falls back to the order its leaves are
registered in. Two fingerprints `matches` when they have the same kinds in the same order and
every width is within `tolerance` (25%) of the reference's: a ResNet-18 written out as a `layers`
description matches the registry's `resnet18`, a FastNet with 20% wider blocks matches `fastnet`,
a network with a layer more or less does not.

`to_wire` / `from_wire` turn a fingerprint into JSON-able lists and back, with limits, for the
score worker's output.
"""
from __future__ import annotations

import torch
from torch import nn

TOLERANCE = 0.25
MAX_ENTRIES = 10_000  # a fingerprint longer than this comes from no model under the parameter cap
MAX_KIND_CHARS = 40

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_ACT = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Hardswish,
        nn.Hardtanh, nn.PReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)
_GLOBAL_POOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_SKIP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten,
         nn.Unflatten)


def layer_entry(module: nn.Module) -> tuple[str, int | None] | None:
    """(kind, width) of one leaf module, or None for a layer the fingerprint leaves out."""
    if isinstance(module, _SKIP) or type(module).__name__ == "DropPath":
        return None
    if isinstance(module, _CONV):
        return ("conv", int(module.out_channels))
    if isinstance(module, nn.Linear):
        return ("linear", int(module.out_features))
    if isinstance(module, _NORM):
        return ("norm", int(module.num_features))
    if isinstance(module, nn.GroupNorm):
        return ("norm", int(module.num_channels))
    if isinstance(module, nn.LayerNorm):
        return ("norm", int(module.normalized_shape[0]) if module.normalized_shape else None)
    if isinstance(module, _ACT):
        return ("act", None)
    if isinstance(module, _GLOBAL_POOL):
        return ("globalpool", None)
    if isinstance(module, _POOL):
        return ("pool", None)
    return (type(module).__name__.lower()[:MAX_KIND_CHARS], None)


def _leaves(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


def fingerprint(model: nn.Module, input_shape=(1, 3, 32, 32)) -> list[tuple[str, int | None]]:
    """The model's fingerprint: its leaf layers in the order one forward pass calls them (see the
    module docstring). Runs one input of `input_shape` (zeros, in eval mode, without gradients) on
    the device of the model's parameters; the model's training flag is restored afterwards."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: calls.append(mod)) for m in _leaves(model)]
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(input_shape, device=device))
    except Exception:  # noqa: BLE001 - a model that cannot run: its registration order instead
        calls = _leaves(model)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out: list[tuple[str, int | None]] = []
    for entry in (layer_entry(m) for m in calls):
        if entry is not None and not (entry == ("act", None) and out and out[-1] == entry):
            out.append(entry)  # an activation right after another adds nothing: one entry for both
    return out


def matches(a, b, tolerance: float = TOLERANCE) -> bool:
    """True when fingerprint `a` is fingerprint `b` (the reference) up to widths: the same kinds in
    the same order, and every width within `tolerance` of b's (|wa - wb| <= tolerance * wb)."""
    if len(a) != len(b):
        return False
    for (kind_a, width_a), (kind_b, width_b) in zip(a, b):
        if kind_a != kind_b:
            return False
        if width_a is None or width_b is None:
            if width_a != width_b:
                return False
        elif abs(width_a - width_b) > tolerance * width_b:
            return False
    return True


def to_wire(fp) -> list[list]:
    """A fingerprint as JSON-able [[kind, width], ...]."""
    return [[kind, width] for kind, width in fp]


def from_wire(raw) -> list[tuple[str, int | None]] | None:
    """The fingerprint a JSON value describes, or None when it is not one (wrong types, a kind that
    is not a short string, a width that is not a non-negative int, more than MAX_ENTRIES entries)."""
    if not isinstance(raw, list) or len(raw) > MAX_ENTRIES:
        return None
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2):
            return None
        kind, width = item
        if not (isinstance(kind, str) and 0 < len(kind) <= MAX_KIND_CHARS):
            return None
        if width is not None and not (type(width) is int and 0 <= width < 2**31):
            return None
        out.append((kind, width))
    return out


def describe(fp, limit: int = 12) -> str:
    """A short text of a fingerprint, e.g. 'conv64 norm64 act conv128 ... linear10 (23 layers)'."""
    words = [f"{kind}{'' if width is None else width}" for kind, width in fp]
    shown = " ".join(words[:limit]) + (" ..." if len(words) > limit else "")
    return f"{shown} ({len(words)} layers)"
