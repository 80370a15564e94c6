"""`TrainConfig`: the one description of a training run, as nested dataclasses of plain values.

`fit(model, train, val, config)` trains from it, records it (completed: every default filled in,
the optimizer's real settings, what the loaders and device did) in the checkpoint and the run's
outputs, and logs it to MLflow flattened ("optim.lr"). Fields left None mean "the recipe's value"
(helpers.train.recipes); `complete` fills them. The command line composes the same dataclass from the
YAML in conf/ with Hydra (a structured config), so a key or type that is not here is refused.
Only the standard library here: it imports on a machine without Hydra, OmegaConf or MLflow.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .recipes import DEFAULT_LR, DEFAULT_WARMUP, GENERAL
from .schedules import SCHEDULES

SCHEDULE_NAMES = tuple(SCHEDULES)  # the schedules' registry
TTA_CHOICES = ("off", "flip", "translate")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")


class ConfigError(ValueError):
    """A setting that does not exist or has the wrong type or value; the message names it and says what fits."""


@dataclass
class DataConfig:
    """What the model trains on (the command line loads it; fit records what its loaders hold)."""
    name: Optional[str] = None                  # cifar10, cifar100 or synthetic (None: not known to fit)
    path: Optional[str] = None                  # an image folder or .tar.gz instead of the default source
    batch_size: Optional[int] = None            # None: the recipe's (helpers.train.recipes)
    val_fraction: float = 0.1
    num_classes: Optional[int] = None           # None: the model's last Linear layer
    mean: Optional[List[float]] = None          # training-split channel statistics (recorded)
    std: Optional[List[float]] = None
    fingerprint: Optional[Dict[str, Any]] = None  # dataset_fingerprint(data): the checkpoint's "dataset" field


@dataclass
class ModelConfig:
    """The registry model (helpers.models.build_model(name, **kwargs))."""
    name: Optional[str] = None
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """The optimizer, built by helpers.train.make_optimizer (or read back from the one fit was given)."""
    name: str = "sgd"                           # sgd (Nesterov momentum), adam or adamw
    lr: Optional[float] = None                  # peak learning rate; None: the recipe's (SGD) or DEFAULT_LR
    momentum: Optional[float] = None            # SGD only
    nesterov: bool = True
    weight_decay: Optional[float] = None
    norm_bias_lr_scale: Optional[float] = None  # > 1: BatchNorm biases learn this much faster (FastNet)


@dataclass
class ScheduleConfig:
    """How long to train and the learning-rate schedule (helpers.train.schedules)."""
    name: Optional[str] = None                  # onecycle, cosine, linear or constant
    epochs: Optional[int] = None
    warmup: Optional[float] = None              # fraction of all steps; None: the schedule's default


@dataclass
class AugmentConfig:
    """Training-time augmentation (the loader's crops, flips, cutout; fit's MixUp/CutMix) and test-time."""
    crop_padding: Optional[int] = None
    flip: bool = True
    cutout: int = 0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    tta: Optional[str] = None                   # off, flip or translate (validation and test predictions)


@dataclass
class RegularizationConfig:
    """Label smoothing, gradient clipping, a weight average, early stopping."""
    label_smoothing: Optional[float] = None
    grad_clip: Optional[float] = None
    ema: Optional[float] = None                 # decay of an exponential moving average of the weights
    early_stopping: Optional[int] = None        # patience in epochs on validation accuracy
    min_delta: float = 0.0


@dataclass
class PrecisionConfig:
    """Where and in what precision the steps run."""
    device: Optional[str] = None                # None: the loader's device, else the best available
    amp: str = "auto"                           # auto (bf16, else fp16, on CUDA; off elsewhere), bf16, fp16, off
    channels_last: Optional[bool] = None        # None: on CUDA
    compile: bool = False


@dataclass
class CheckpointConfig:
    """Per-epoch checkpoint and exact resume."""
    path: Optional[str] = None
    resume: Optional[str] = None


@dataclass
class TrackingConfig:
    """MLflow tracking (helpers.train.tracking); MLFLOW_TRACKING_URI, when set, wins over uri and root."""
    enabled: bool = False
    uri: Optional[str] = None                   # a tracking server or database URI
    root: Optional[str] = None                  # folder of the local store (mlflow.db, mlartifacts/)
    experiment: Optional[str] = None            # None: the run's name


@dataclass
class TrainConfig:
    """Everything that decides a training run. Sections: data, model, optim, schedule, augment,
    regularization, precision, checkpoint, tracking; and the run's name, seed, output folder and
    the notebook recipe it came from (the checkpoint's "recipe" field)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    name: Optional[str] = None
    seed: int = 0
    out: Optional[str] = None
    recipe: Optional[Dict[str, Any]] = None


# fit's keyword arguments and the setting each one is.
KEYWORDS = {
    "epochs": "schedule.epochs", "optimizer": "optim.name", "lr": "optim.lr", "momentum": "optim.momentum",
    "nesterov": "optim.nesterov", "weight_decay": "optim.weight_decay",
    "norm_bias_lr_scale": "optim.norm_bias_lr_scale", "schedule": "schedule.name", "warmup": "schedule.warmup",
    "label_smoothing": "regularization.label_smoothing", "grad_clip": "regularization.grad_clip",
    "mixup_alpha": "augment.mixup_alpha", "cutmix_alpha": "augment.cutmix_alpha",
    "early_stopping": "regularization.early_stopping", "min_delta": "regularization.min_delta",
    "ema": "regularization.ema", "tta": "augment.tta", "device": "precision.device", "amp": "precision.amp",
    "channels_last": "precision.channels_last", "compile": "precision.compile", "seed": "seed",
    "checkpoint": "checkpoint.path", "resume": "checkpoint.resume", "num_classes": "data.num_classes",
}


# --------------------------------------------------------------------------- keys and values

def _fields(cls) -> dict:
    """{name: type} of a config dataclass, its annotations evaluated."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def valid_keys(cls=TrainConfig, prefix: str = "") -> dict:
    """{"optim.lr": type, ...}: every dotted setting of a config dataclass, sections included."""
    out = {}
    for name, kind in _fields(cls).items():
        out[prefix + name] = kind
        if dataclasses.is_dataclass(kind):
            out.update(valid_keys(kind, f"{prefix}{name}."))
    return out


def suggest(key: str, candidates) -> str:
    """' (did you mean 'x'?)' for the nearest candidate, or '': the whole key first, then its last
    part against the candidates' last parts ("optim.lrr" -> "optim.lr", "lr" -> "optim.lr")."""
    candidates = list(candidates)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:
        section, _, tail = key.rpartition(".")
        tails = {}
        for c in sorted(candidates, key=lambda c: c.rpartition(".")[0] != section):  # same section first
            tails.setdefault(c.rsplit(".", 1)[-1], c)
        close = [tails[t] for t in difflib.get_close_matches(tail, list(tails), n=1, cutoff=0.6)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key_error(key: str) -> ConfigError:
    """The error for a setting that does not exist: the nearest valid one and its section's keys."""
    keys = valid_keys()
    section = key.rpartition(".")[0]
    siblings = [k.rsplit(".", 1)[-1] for k in keys if k.rpartition(".")[0] == section]
    where = f"{section} has: {', '.join(siblings)}" if siblings and section else \
        f"sections and settings: {', '.join(k for k in keys if '.' not in k)}"
    return ConfigError(f"{key!r} is not a setting{suggest(key, keys)}; {where}")


def _unwrap(kind) -> tuple:
    """(the type inside Optional[...], whether None is allowed)."""
    if typing.get_origin(kind) is typing.Union and type(None) in typing.get_args(kind):
        return next(a for a in typing.get_args(kind) if a is not type(None)), True
    return kind, False


def _type_name(kind) -> str:
    base, optional = _unwrap(kind)
    name = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(base)
    name = name or ("a mapping" if typing.get_origin(base) is dict else "a list" if typing.get_origin(base) is list
                    else getattr(base, "__name__", str(base)))
    return name + (" or null" if optional else "")


def check_value(key: str, value, kind=None):
    """`value` for setting `key`, converted where that is lossless (an int for a float), else ConfigError."""
    kind = kind or valid_keys().get(key)
    if kind is None:
        raise unknown_key_error(key)
    base, optional = _unwrap(kind)
    if value is None:
        if optional:
            return None
    elif base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif base in (int, str, bool) and type(value) is base:
        return value
    elif typing.get_origin(base) is dict and isinstance(value, dict):
        return value
    elif typing.get_origin(base) is list and isinstance(value, (list, tuple)):
        return list(value)
    elif base is Any:
        return value
    raise ConfigError(f"{key} must be {_type_name(kind)}, got {value!r}")


def get(config: TrainConfig, key: str):
    """The value of dotted setting `key`."""
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def set_value(config: TrainConfig, key: str, value) -> None:
    """Set dotted setting `key` (checked: an unknown key or a wrong type is a ConfigError)."""
    value = check_value(key, value)
    section, _, name = key.rpartition(".")
    setattr(get(config, section) if section else config, name, value)


# --------------------------------------------------------------------------- building

def _plain(value):
    """fit's keyword values as config values: paths as text, tta/amp spelled as words."""
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def from_keywords(settings: dict, config: TrainConfig | None = None) -> TrainConfig:
    """A copy of `config` (default: a fresh one) with fit's keyword arguments set, e.g.
    from_keywords({"epochs": 3, "lr": 0.2}). An unknown keyword is a TypeError naming the nearest."""
    config = copy.deepcopy(config) if config is not None else TrainConfig()
    for name, value in settings.items():
        if name not in KEYWORDS:
            close = difflib.get_close_matches(name, list(KEYWORDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"fit() got an unexpected keyword argument {name!r}{hint}; "
                            f"valid ones: {', '.join(KEYWORDS)}, or a TrainConfig")
        key = KEYWORDS[name]
        if name == "tta":
            value = {False: "off", None: "off", True: "flip"}.get(value, value) if isinstance(value, (bool, type(None))) \
                else value
        elif name == "amp":
            value = {None: "auto", True: "auto", False: "off"}.get(value, value) if isinstance(value, (bool, type(None))) \
                else value
        set_value(config, key, _plain(value))
    return config


def from_dict(data: dict) -> TrainConfig:
    """The TrainConfig that `to_dict` gave (as read from a checkpoint or metrics.json); keys are checked."""
    return _build(TrainConfig, data, "")


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping, got {data!r}")
    kinds = _fields(cls)
    values = {}
    for name, value in data.items():
        if name not in kinds:
            raise unknown_key_error(prefix + name)
        kind = kinds[name]
        values[name] = (_build(kind, value, f"{prefix}{name}.") if dataclasses.is_dataclass(kind)
                        else check_value(prefix + name, value, kind))
    return cls(**values)


def to_dict(config: TrainConfig) -> dict:
    """The config as nested plain dicts (JSON-able, checkpoint-safe)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def flatten(config: TrainConfig | dict, prefix: str = "") -> dict:
    """{"optim.lr": 0.1, ...}: one entry per setting; mappings and lists of values stay whole."""
    data = to_dict(config) if dataclasses.is_dataclass(config) else config
    out = {}
    for name, value in data.items():
        kind = valid_keys().get(prefix + name)
        if isinstance(value, dict) and kind is not None and dataclasses.is_dataclass(kind):
            out.update(flatten(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


# --------------------------------------------------------------------------- completing and checking

def complete(config: TrainConfig, recipe: dict = GENERAL) -> TrainConfig:
    """A copy of `config` with every setting left None that a recipe decides filled from `recipe`
    (helpers.train.recipes.GENERAL or settings_for(model)). The recipe's lr, momentum and bias scale are
    for its optimizer (SGD): another optimizer gets DEFAULT_LR; its warmup is for its schedule."""
    c = copy.deepcopy(config)
    same_optimizer = c.optim.name == recipe.get("optimizer", "sgd")
    if c.optim.lr is None:
        c.optim.lr = float(recipe["lr"] if same_optimizer else DEFAULT_LR.get(c.optim.name, recipe["lr"]))
    if c.optim.momentum is None:
        c.optim.momentum = float(recipe["momentum"])
    if c.optim.weight_decay is None:
        c.optim.weight_decay = float(recipe["weight_decay"])
    if c.optim.norm_bias_lr_scale is None:
        c.optim.norm_bias_lr_scale = float(recipe["norm_bias_lr_scale"] if same_optimizer else 1.0)
    recipe_schedule = c.schedule.name is None or c.schedule.name == recipe["schedule"]
    if c.schedule.name is None:
        c.schedule.name = recipe["schedule"]
    if c.schedule.warmup is None:
        warmup = recipe.get("warmup") if recipe_schedule else None
        c.schedule.warmup = float(DEFAULT_WARMUP.get(c.schedule.name, 0.0) if warmup is None else warmup)
    if c.schedule.epochs is None:
        c.schedule.epochs = int(recipe["epochs"])
    if c.regularization.label_smoothing is None:
        c.regularization.label_smoothing = float(recipe["label_smoothing"])
    if c.augment.tta is None:
        tta = recipe["tta"]
        c.augment.tta = {False: "off", True: "flip"}.get(tta, tta) if isinstance(tta, bool) else str(tta)
    if c.augment.crop_padding is None:
        c.augment.crop_padding = int(recipe["crop_padding"])
    if c.data.batch_size is None:
        c.data.batch_size = int(recipe["batch_size"])
    return c


def check(config: TrainConfig) -> None:
    """ConfigError naming the first setting whose value cannot work (after `complete`)."""
    def need(ok, key, what):
        if not ok:
            raise ConfigError(f"{key} must be {what}, got {get(config, key)!r}")

    def choice(key, choices):
        value = get(config, key)
        if value not in choices:
            hint = suggest(str(value), choices)
            raise ConfigError(f"unknown {key} {value!r}{hint}; choose one of: {', '.join(choices)}")

    need(config.schedule.epochs is not None and config.schedule.epochs >= 1, "schedule.epochs", "at least 1")
    choice("schedule.name", SCHEDULE_NAMES)
    choice("augment.tta", TTA_CHOICES)
    choice("precision.amp", AMP_CHOICES)
    need(config.optim.lr is None or config.optim.lr > 0, "optim.lr", "a number > 0")
    need(config.schedule.warmup is None or 0 <= config.schedule.warmup <= 1, "schedule.warmup", "a fraction in [0, 1]")
    need(config.regularization.ema is None or 0 < config.regularization.ema < 1, "regularization.ema",
         "null or a decay in (0, 1), e.g. 0.999")
    need(config.regularization.early_stopping is None or config.regularization.early_stopping >= 1,
         "regularization.early_stopping", "null or a patience >= 1")
    need(0 <= config.data.val_fraction < 1, "data.val_fraction", "a fraction in [0, 1)")


def optim_config_of(optimizer) -> OptimConfig:
    """The settings of an optimizer object as an OptimConfig (what fit records when it is handed one):
    its type, group 0's peak lr, momentum, Nesterov and weight decay, and a second group's lr ratio
    (make_optimizer's BatchNorm-bias group)."""
    groups = optimizer.param_groups
    first = groups[0]
    lr = float(first.get("initial_lr", first["lr"]))
    scale = 1.0
    if len(groups) > 1 and lr > 0:
        scale = float(groups[1].get("initial_lr", groups[1]["lr"])) / lr
    return OptimConfig(name=type(optimizer).__name__.lower(), lr=lr,
                       momentum=float(first.get("momentum", first.get("betas", (0.0,))[0])),
                       nesterov=bool(first.get("nesterov", False)),
                       weight_decay=float(first.get("weight_decay", 0.0)), norm_bias_lr_scale=scale)


# --------------------------------------------------------------------------- command-line overrides

def check_override(text: str, groups: dict) -> None:
    """ConfigError for a Hydra override `key=value` whose key is no setting or whose value has the
    wrong type, naming the nearest valid key; `groups`: {group: [options]} of conf/. Sweeps
    (a,b,c) are checked value by value; Hydra's own functions (range(...)) and hydra.* keys pass."""
    key, sep, value = text.lstrip("+~").partition("=")
    key = key.strip()
    if not sep or key.startswith("hydra") or "(" in value:
        return
    if key in groups:
        for option in _sweep_values(value):
            if option not in groups[key] and option != "null":
                raise ConfigError(f"{key}={option}: no such {key} config{suggest(option, groups[key])}; "
                                  f"choose one of: {', '.join(groups[key])}")
        return
    keys = valid_keys()
    if key not in keys:
        if get_origin_dict(keys.get(key.rpartition(".")[0])):
            return  # an entry of a mapping, e.g. model.kwargs.dropout=0.2
        raise unknown_key_error(key)
    kind = keys[key]
    if dataclasses.is_dataclass(kind):
        raise ConfigError(f"{key} is a section; set one of its settings, e.g. {key}.{next(iter(_fields(kind)))}=...")
    for item in _sweep_values(value):
        check_value(key, _parse(item, kind), kind)


def get_origin_dict(kind) -> bool:
    """True when `kind` is a mapping type (optionally Optional)."""
    return kind is not None and typing.get_origin(_unwrap(kind)[0]) is dict


def _sweep_values(value: str) -> list[str]:
    """The values of a sweep 'a,b,c' (one value without commas; brackets and quotes kept whole)."""
    if value[:1] in "[{'\"":
        return [value]
    return [v.strip() for v in value.split(",")] if "," in value else [value.strip()]


def _parse(text: str, kind):
    """A command-line value read as Hydra reads it, just enough to check its type."""
    low = text.lower()
    if low in ("null", "none", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    base = _unwrap(kind)[0]
    if base is str:
        return text.strip("'\"")
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return [] if text[:1] == "[" else {}  # Hydra's own list syntax: the kind is what matters
    return text
