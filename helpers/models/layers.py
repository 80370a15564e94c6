"""`LayerStack`: a network described by a JSON-able list of layers, for students' own designs.

A checkpoint of a class written in a notebook cannot be rebuilt without that notebook's code.
A description like the one below can: it is stored in the checkpoint's spec and rebuilt by the
registry in a fresh process, with no student code run.

    layers = [
        {"type": "conv", "out": 64}, {"type": "bn"}, {"type": "relu"},
        {"type": "residual", "out": 128, "stride": 2},           # a BasicBlock
        {"type": "se", "reduction": 8},
        {"type": "maxpool", "kernel": 2}, {"type": "dropout", "p": 0.1},
        {"type": "globalpool"}, {"type": "linear", "out": 10},
    ]
    model = build_model("layers", layers=layers)
"""
from __future__ import annotations

from torch import nn

from .registry import register_model
from .resnet import BasicBlock, SEBlock

LAYER_TYPES = ("conv", "bn", "relu", "gelu", "maxpool", "avgpool", "dropout", "residual", "se",
               "globalpool", "flatten", "linear")


def _build_layer(spec: dict, channels: int, features: int | None) -> tuple[nn.Module, int, int | None]:
    """One layer from its description, given the incoming channels (or flat features)."""
    kind = spec.get("type")
    args = {k: v for k, v in spec.items() if k != "type"}
    if kind == "conv":
        k = args.get("kernel", 3)
        layer = nn.Conv2d(channels, args["out"], k, stride=args.get("stride", 1),
                          padding=args.get("padding", k // 2), bias=args.get("bias", True))
        return layer, args["out"], None
    if kind == "bn":
        return nn.BatchNorm2d(channels), channels, None
    if kind == "relu":
        return nn.ReLU(), channels, features
    if kind == "gelu":
        return nn.GELU(), channels, features
    if kind in ("maxpool", "avgpool"):
        pool = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
        return pool(args.get("kernel", 2)), channels, None
    if kind == "dropout":
        return nn.Dropout(args.get("p", 0.5)), channels, features
    if kind == "residual":
        return BasicBlock(channels, args["out"], stride=args.get("stride", 1)), args["out"], None
    if kind == "se":
        return SEBlock(channels, args.get("reduction", 16)), channels, None
    if kind == "globalpool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels, channels
    if kind == "flatten":
        size = args.get("size")  # spatial size at this point, e.g. 4 for a 4x4 map
        if size is None:
            raise ValueError("a 'flatten' layer needs 'size' (the spatial size of the map), e.g. {'type': 'flatten', 'size': 4}")
        return nn.Flatten(), channels, channels * size * size
    if kind == "linear":
        if features is None:
            raise ValueError("a 'linear' layer must follow 'globalpool' or 'flatten'")
        return nn.Linear(features, args["out"]), channels, args["out"]
    raise ValueError(f"unknown layer type {kind!r}; valid types: {', '.join(LAYER_TYPES)}")


@register_model("layers")
class LayerStack(nn.Sequential):
    """A sequential network built from a list of layer descriptions (see the module docstring)."""

    def __init__(self, layers: list[dict], in_channels: int = 3):
        modules, channels, features = [], in_channels, None
        for i, spec in enumerate(layers):
            try:
                module, channels, features = _build_layer(dict(spec), channels, features)
            except (KeyError, TypeError) as exc:
                raise ValueError(f"layer {i} {spec}: missing or wrong argument ({exc})") from None
            modules.append(module)
        super().__init__(*modules)
