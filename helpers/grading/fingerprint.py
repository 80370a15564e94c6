"""Architecture fingerprints: "the same model" decided by structure, not by name.

A fingerprint is the list of a network's leaf layers in the order its forward pass calls them,
each as (kind, width):

- convolutions ("conv", out channels; "conv1x1" for a pointwise one), linear layers ("linear", out features), normalization
  ("norm", channels: BatchNorm, GroupNorm, LayerNorm, InstanceNorm);
- activations ("act", None: ReLU, GELU, SiLU, ... count as one kind, so swapping one for
  another does not make a new design), local pooling ("pool", None: max or average) and global
  pooling ("globalpool", None: adaptive max or average);
- layers that do nothing at inference or only reshape (Identity, Dropout, stochastic depth,
  Flatten) are left out, and so is an activation right after another; any other leaf is recorded
  by its class name with width None;
- every other weight (an nn.Parameter of 2+ dimensions that no listed layer owns: a hand-written
  conv, F.conv2d on a module's own parameter) is recorded where it is first used, as a conv for 3+
  dimensions and ("linear", out) for a matrix.

The order comes from one input's forward pass (forward hooks on the listed layers, a torch
function mode for the other weights; on the meta device for a model built there, so nothing is
allocated); a model whose forward fails falls back to the order its layers are registered in.

Two fingerprints `matches` when they have the same kinds in the same order and every width is
within `tolerance` (25%) of the reference's, or when their weighted layers (conv and linear) are
the reference's in the same order within the same tolerance: a ResNet-18 written out as a
`layers` description matches the registry's `resnet18`, a FastNet with 20% wider blocks, an extra
activation or pooling, its BatchNorms moved or removed, or rewritten with functional calls matches
`fastnet`; a network with a weighted layer more or less does not.

`to_wire` / `from_wire` turn a fingerprint into JSON-able lists and back, with limits, for the
score worker's output.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

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
_WEIGHTED = ("conv", "conv1x1", "linear")
_SKIP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten,
         nn.Unflatten)


def layer_entry(module: nn.Module) -> tuple[str, int | None] | None:
    """(kind, width) of one leaf module, or None for a layer the fingerprint leaves out."""
    if isinstance(module, _SKIP) or type(module).__name__ == "DropPath":
        return None
    if isinstance(module, _CONV):
        return (_conv_kind(module.kernel_size), int(module.out_channels))
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


def _conv_kind(kernel_size) -> str:
    """"conv1x1" for a pointwise convolution (it only mixes channels: a projection), else "conv"."""
    return "conv1x1" if all(int(k) == 1 for k in kernel_size) else "conv"


def weight_entry(param: torch.Tensor) -> tuple[str, int] | None:
    """("conv" or "conv1x1", out) for a weight of 3+ dimensions, ("linear", out) for a matrix, None
    otherwise."""
    if param.dim() >= 3:
        return (_conv_kind(param.shape[2:]), int(param.shape[0]))
    if param.dim() == 2:
        return ("linear", int(param.shape[0]))
    return None


def _leaves(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


def _known(module: nn.Module) -> bool:
    """True for a leaf whose layer entry says what it is (its weights are not listed one by one)."""
    entry = layer_entry(module)
    return entry is None or entry[1] is not None or entry[0] in ("act", "pool", "globalpool")


class _WeightUses(TorchFunctionMode):
    """Records, in call order, each weight (an nn.Parameter of 2+ dimensions) the first time a torch
    function receives it, unless a known layer owns it: a hand-written conv is still a conv."""

    def __init__(self, events: list, owned: set[int]):
        super().__init__()
        self.events, self.seen = events, set(owned)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for arg in (*args, *kwargs.values()):
            for value in (arg if isinstance(arg, (list, tuple)) else (arg,)):
                if isinstance(value, nn.Parameter) and id(value) not in self.seen:
                    self.seen.add(id(value))
                    if weight_entry(value) is not None:
                        self.events.append(weight_entry(value))
        return func(*args, **kwargs)


def _trace(model: nn.Module, x: torch.Tensor) -> list:
    """One forward pass of `x`: the known leaves as their layer entries and every other weight as
    "conv"/"linear", in the order they are used."""
    events: list = []
    leaves = _leaves(model)
    owned = {id(p) for m in leaves if _known(m) for p in m.parameters()}
    hooks = [m.register_forward_hook(lambda mod, _i, _o: events.append(layer_entry(mod)))
             for m in leaves if _known(m)]
    try:
        with torch.no_grad(), _WeightUses(events, owned):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return events


def _registered(model: nn.Module) -> list:
    """The fallback for a model that cannot run: known leaves and other weights in registration order."""
    events = []
    for module in model.modules():
        if not list(module.children()) and _known(module):
            events.append(layer_entry(module))
        else:
            events += [weight_entry(p) for p in module.parameters(recurse=False)]
    return events


def fingerprint(model: nn.Module, input_shape=(1, 3, 32, 32)) -> list[tuple[str, int | None]]:
    """The model's fingerprint: its layers in the order one forward pass uses them (see the module
    docstring). Runs one input of `input_shape` (zeros, in eval mode, without gradients) on the
    device of the model's parameters; the model's training flag is restored afterwards."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        events = _trace(model.eval(), torch.zeros(input_shape, device=device))
    except Exception:  # noqa: BLE001 - a model that cannot run: its registration order instead
        events = _registered(model)
    finally:
        model.train(was_training)
    out: list[tuple[str, int | None]] = []
    for entry in events:
        if entry is not None and not (entry == ("act", None) and out and out[-1] == entry):
            out.append(entry)  # an activation right after another adds nothing: one entry for both
    return out


def _weighted(fp) -> list[tuple[str, int]]:
    """The conv and linear entries of a fingerprint, in their order."""
    return [(kind, width) for kind, width in fp if kind in _WEIGHTED and width is not None]


def matches(a, b, tolerance: float = TOLERANCE) -> bool:
    """True when fingerprint `a` is fingerprint `b` (the reference) up to widths: the same kinds in
    the same order, and every width within `tolerance` of b's (|wa - wb| <= tolerance * wb); or when
    a's weighted layers (conv, linear) are b's in the same order, within the same tolerance
    (activations, pooling and normalization added, moved or removed do not make a new design)."""
    wa, wb = _weighted(a), _weighted(b)
    if wb and _same_widths(wa, wb, tolerance):
        return True
    return _same_widths(list(a), list(b), tolerance)


def _same_widths(a, b, tolerance: float) -> bool:
    """The same kinds pairwise, each width within `tolerance` of b's (None only with None)."""
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
