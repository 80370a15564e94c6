"""A name -> constructor registry, so a checkpoint can say which model it holds and rebuild it.

`build_model("resnet18", num_classes=100)` builds a model and records
`model._course_spec = {"name": "resnet18", "kwargs": {"num_classes": 100}}`; saving that dict
beside the weights lets a fresh process call `build_model(spec["name"], **spec["kwargs"])`
and `load_state_dict` the tensors, without unpickling any code.
"""
from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any, Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator: register a model class (or function returning a module) under `name`."""

    def decorator(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        old = _REGISTRY.get(name)
        # Re-running a notebook cell redefines the same class: allow that, refuse real clashes.
        if old is not None and _qualified(old) != _qualified(constructor):
            raise ValueError(f"model name {name!r} is already registered to {_qualified(old)}")
        _REGISTRY[name] = constructor
        return constructor

    return decorator


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def model_names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def _accepted_arguments(constructor: Callable) -> str:
    """The constructor's arguments with defaults, e.g. 'num_classes=10, hidden=(128, 256, 512)'."""
    parts = []
    for p in inspect.signature(constructor).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts) or "no arguments"


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as `name` with `kwargs`, and record both on it for checkpoints."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; valid names: {', '.join(model_names())}")
    constructor = _REGISTRY[name]
    try:
        inspect.signature(constructor).bind(**kwargs)
    except TypeError as exc:
        raise TypeError(
            f"model {name!r} cannot be built with arguments {sorted(kwargs)} ({exc}); "
            f"it accepts: {_accepted_arguments(constructor)}"
        ) from None
    model = constructor(**kwargs)
    model._course_spec = {"name": name, "kwargs": copy.deepcopy(kwargs)}
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The {"name", "kwargs"} a model was built with; sees through torch.compile, DataParallel."""
    for candidate in (model, getattr(model, "_orig_mod", None), getattr(model, "module", None)):
        spec = getattr(candidate, "_course_spec", None)
        if spec is not None:
            return copy.deepcopy(spec)
    raise ValueError(
        f"{type(model).__name__} has no model spec: it was not made by helpers.models.build_model; "
        f"build it with build_model(name, **kwargs) (names: {', '.join(model_names())}) "
        "so a checkpoint can rebuild it"
    )
