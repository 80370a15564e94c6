"""`python -m helpers train`: train a registry model, test it, and write what a person needs.

Say what to train with Hydra overrides of the configs in conf/, or with the flags below; both
become one TrainConfig (helpers.train.config):

    python -m helpers train experiment=fastnet optim.lr=0.2 data=cifar100
    python -m helpers train -m optim.lr=0.1,0.2 seed=0,1          # a sweep: one run per combination
    python -m helpers train --dataset cifar10 --model resnet18 --epochs 30 --out out/r18

Each run writes checkpoint.pt (weights-only, rebuildable, with the complete config), history.json,
metrics.json (test accuracy, macro-F1, per-class precision/recall/F1, the data used, the config)
and curves.png into its output folder (Hydra runs also config.yaml, the complete config), and logs
params, per-epoch metrics and those files to MLflow (helpers.train.tracking; --no-track or
tracking.enabled=false to skip). With COURSE_FAST=1 it trains on 50 images per class of the
reduced subset for at most 2 epochs of batches of at most 128, and tests on the reduced test
split: seconds on a CPU for small models.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_json
from ..data import dataset_names
from ..eval.inference import TTA_CHOICES
from ..models import model_names
from ..settings import PROJECT_ROOT, fast_mode, seed_everything
from ..train.config import ConfigError, TrainConfig, check_override, complete, from_dict, to_dict
from ..train.recipes import (  # noqa: F401  (GENERAL_DEFAULTS, MODEL_DEFAULTS, settings_for: their old home)
    DEFAULT_LR, DEFAULT_WARMUP, FAST_PER_CLASS, GENERAL_DEFAULTS, MODEL_DEFAULTS, REDUCED_MAX_BATCH,
    REDUCED_MAX_EPOCHS, settings_for,
)
from ..train.schedules import SCHEDULES

CONF_DIR = PROJECT_ROOT / "conf"
GROUPS = ("data", "model", "optim", "schedule", "augment", "experiment")


def _model_arg(text: str) -> tuple[str, object]:
    """'key=value' -> (key, value), the value read as a Python literal when it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


class _Overrides(argparse.Action):
    """Collects the key=value overrides; any other word goes back to argparse as unrecognized, so
    a mistyped flag is reported with its value (`unrecognized arguments: --learning-rate 0.1`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [v for v in values if "=" in v])
        other = [v for v in values if "=" not in v]
        if other:
            vars(namespace).setdefault(argparse._UNRECOGNIZED_ARGS_ATTR, []).extend(other)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    g, fast = GENERAL_DEFAULTS, MODEL_DEFAULTS["fastnet"]
    a("overrides", nargs="*", action=_Overrides, metavar="KEY=VALUE",
      help="Hydra overrides of conf/config.yaml, e.g. experiment=fastnet optim.lr=0.2 data=cifar100 "
           "(groups: " + ", ".join(GROUPS) + "); use them or the flags below")
    a("-m", "--multirun", action="store_true", help="sweep: one run per combination of comma-separated values")
    a("--print-config", action="store_true", help="print the complete config this would train with, and stop")
    a("--no-track", action="store_true", help="do not log the run to MLflow")
    a("--dataset", default="cifar10", choices=dataset_names())
    a("--model", default="resnet18", choices=sorted(model_names()), metavar="MODEL",
      help="a registry name: " + ", ".join(sorted(model_names())) + " (default resnet18)")
    a("--epochs", type=int, help=f"default: per model (e.g. resnet18 {MODEL_DEFAULTS['resnet18']['epochs']}, fastnet "
      f"{fast['epochs']}); at most {REDUCED_MAX_EPOCHS} with COURSE_FAST=1")
    a("--batch-size", type=int, help=f"default: {g['batch_size']} (fastnet {fast['batch_size']})")
    a("--lr", type=float, help="peak learning rate; default: per model")
    a("--optimizer", default=g["optimizer"], choices=list(DEFAULT_LR))
    a("--momentum", type=float, help=f"SGD momentum; default {g['momentum']} (fastnet {fast['momentum']})")
    a("--schedule", choices=list(SCHEDULES), help=f"default: {g['schedule']} (fastnet {fast['schedule']})")
    a("--warmup", type=float, help="warmup as a fraction of all steps; default per schedule")
    a("--label-smoothing", type=float, help=f"default: per model ({g['label_smoothing']}, resnets "
      f"{MODEL_DEFAULTS['resnet18']['label_smoothing']}, fastnet {fast['label_smoothing']})")
    a("--weight-decay", type=float, help=f"default {g['weight_decay']} (fastnet {fast['weight_decay']})")
    a("--grad-clip", type=float, help="clip the gradient norm to this value")
    a("--mixup", type=float, default=0.0, help="MixUp alpha (0 = off)")
    a("--cutmix", type=float, default=0.0, help="CutMix alpha (0 = off)")
    a("--cutout", type=int, default=0, help="cutout square size in pixels (0 = off)")
    a("--ema", type=float, help="evaluate an exponential moving average of the weights with this decay")
    a("--tta", nargs="?", const="flip", choices=[c for c in TTA_CHOICES if c != "none"], help="test-time augmentation")
    a("--early-stopping", type=int, help="stop after this many epochs without a val accuracy gain")
    a("--val-fraction", type=float, default=0.1)
    a("--seed", type=int, default=0)
    a("--device", help="cuda, cpu, mps; default: the best available")
    a("--no-amp", action="store_true", help="train in fp32 on CUDA too")
    a("--compile", action="store_true", help="torch.compile the model")
    a("--no-progress", action="store_true", help="no progress bar")
    a("--resume", type=Path, help="continue from a checkpoint.pt written by an interrupted run")
    a("--out", type=Path, help="output folder; default out/<dataset>-<model>")
    a("--data-path", type=Path, help="image-folder directory or .tar.gz of the dataset")
    a("--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE",
      help="extra model constructor argument, e.g. --model-arg dropout=0.2 (repeatable)")


# Flags that go with overrides too (they say how to run, not what to train).
RUN_FLAGS = ("overrides", "multirun", "print_config", "no_track", "no_progress", "command", "_run")


def run(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    try:
        if args.overrides or args.multirun:
            parser = argparse.ArgumentParser()
            add_arguments(parser)
            defaults = vars(parser.parse_args([]))
            flags = [k for k, v in vars(args).items() if k not in RUN_FLAGS and v != defaults.get(k)]
            if flags:
                raise ConfigError("give either Hydra overrides (key=value) or flags, not both: "
                                  + ", ".join("--" + f.replace("_", "-") for f in flags)
                                  + " (as overrides: e.g. schedule.epochs=2, optim.lr=0.1, out=PATH)")
            overrides = list(args.overrides) + (["tracking.enabled=false"] if args.no_track else [])
            if args.multirun:
                return multirun(overrides, progress=progress)
            config = compose_config(overrides)
            return run_config(config, progress=progress, save_yaml=True, show_only=args.print_config)
        return run_config(config_from_flags(args), progress=progress, show_only=args.print_config)
    except ConfigError as exc:
        print(f"[train] {exc}")
        return 2


def config_from_flags(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe (None where the model's recipe decides)."""
    c = TrainConfig(name=args.model, seed=args.seed)
    c.data.name, c.data.batch_size, c.data.val_fraction = args.dataset, args.batch_size, args.val_fraction
    c.data.path = str(args.data_path) if args.data_path else None
    c.model.name, c.model.kwargs = args.model, dict(args.model_arg)
    c.optim.name, c.optim.lr, c.optim.momentum, c.optim.weight_decay = (args.optimizer, args.lr, args.momentum,
                                                                        args.weight_decay)
    c.schedule.name, c.schedule.epochs, c.schedule.warmup = args.schedule, args.epochs, args.warmup
    c.augment.cutout, c.augment.mixup_alpha, c.augment.cutmix_alpha = args.cutout, args.mixup, args.cutmix
    c.augment.tta = args.tta
    r = c.regularization
    r.label_smoothing, r.grad_clip, r.ema, r.early_stopping = (args.label_smoothing, args.grad_clip, args.ema,
                                                               args.early_stopping)
    c.precision.device, c.precision.amp, c.precision.compile = args.device, "off" if args.no_amp else "auto", args.compile
    c.checkpoint.resume = str(args.resume) if args.resume else None
    out = Path(args.out) if args.out else PROJECT_ROOT / "out" / f"{args.dataset}-{args.model}"
    c.out, c.tracking.root, c.tracking.enabled = str(out), str(out.parent), not args.no_track
    return c


# --------------------------------------------------------------------------- Hydra

def config_groups() -> dict:
    """{group: [option, ...]} of the YAML configs in conf/."""
    return {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in GROUPS}


def _hydra():
    """Hydra and OmegaConf, or a ConfigError saying how to get them (flags work without them)."""
    try:
        import hydra
        from hydra.core.config_store import ConfigStore
        from omegaconf import OmegaConf
    except ImportError:
        raise ConfigError("key=value overrides need Hydra: pip install hydra-core (or train with flags: "
                          "--model NAME --epochs N ...)") from None
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)  # the structured schema
    return hydra, OmegaConf


def _check_overrides(overrides: list[str], multirun: bool) -> list[str]:
    """The overrides, checked (ConfigError naming the nearest valid key); an entry of a mapping
    (model.kwargs.dropout=0.2) gets Hydra's '++' (add or replace)."""
    groups, checked = config_groups(), []
    for text in overrides:
        check_override(text, groups)
        key, _, value = text.partition("=")
        if not multirun and "," in value and value[:1] not in "[{'\"" and "(" not in value:
            raise ConfigError(f"{text} is a sweep over several values: add -m to run one job per value")
        if key.startswith(("model.kwargs.", "recipe.")):
            text = "++" + text
        checked.append(text)
    return checked


def to_train_config(cfg) -> TrainConfig:
    """A composed Hydra config (DictConfig) as a TrainConfig, its keys and types checked again."""
    from omegaconf import OmegaConf
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    return from_dict(data)


def compose_config(overrides: list[str]) -> TrainConfig:
    """conf/config.yaml with `overrides` composed by Hydra into a TrainConfig; an unknown key, group
    option or a wrong type is a ConfigError naming the nearest valid one."""
    overrides = _check_overrides(overrides, multirun=False)
    hydra, _ = _hydra()
    try:
        with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
            cfg = hydra.compose(config_name="config", overrides=list(overrides))
    except Exception as exc:  # Hydra's and OmegaConf's errors, as one plain message
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"the configs in {CONF_DIR} do not compose with {' '.join(overrides)}: {exc}{cause}") from None
    config = to_train_config(cfg)
    if config.out is None:
        config.out = str(PROJECT_ROOT / "out" / "runs" / str(config.name) / time.strftime("%Y-%m-%d_%H-%M-%S"))
        config.tracking.root = config.tracking.root or str(PROJECT_ROOT / "out")
    config.tracking.root = config.tracking.root or str(Path(config.out).parent)
    return config


def multirun(overrides: list[str], *, progress: bool = True) -> int:
    """A Hydra multirun through Hydra's own application entry point (its sweeper and launcher, so
    hydra/launcher=submitit_slurm works too): one run per combination, each in its own folder
    under hydra.sweep.dir (default out/multirun/<time>/<job number>)."""
    overrides = _check_overrides(overrides, multirun=True)
    hydra, _ = _hydra()
    from hydra.core.hydra_config import HydraConfig
    codes = []

    def job(cfg) -> int:
        config = to_train_config(cfg)
        config.out = HydraConfig.get().runtime.output_dir
        config.tracking.root = config.tracking.root or str(PROJECT_ROOT / "out")
        codes.append(run_config(config, progress=progress, save_yaml=True))
        return codes[-1]

    app = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(job)
    extra = [] if any(o.startswith("hydra.sweep.dir=") for o in overrides) else [
        f"hydra.sweep.dir={PROJECT_ROOT / 'out' / 'multirun' / time.strftime('%Y-%m-%d_%H-%M-%S')}"]
    argv = sys.argv
    sys.argv = [argv[0], "--multirun", *overrides, *extra]
    try:
        app()
    except SystemExit as exc:  # Hydra exits on its own errors, after printing them
        if exc.code:
            return int(exc.code) if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    print(f"[train] multirun: {len(codes)} runs, {sum(c == 0 for c in codes)} finished")
    return 0 if codes and all(c == 0 for c in codes) else 1


def config_yaml(config: TrainConfig) -> str:
    """The complete config as YAML (JSON where OmegaConf is missing: YAML reads it too)."""
    try:
        from omegaconf import OmegaConf
    except ImportError:
        return json.dumps(to_dict(config), indent=2) + "\n"
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(config)))


# --------------------------------------------------------------------------- one run

def run_config(config: TrainConfig, *, progress: bool = True, save_yaml: bool = False, show_only: bool = False) -> int:
    """Train, test and write one run's files as `config` says (the model's recipe fills what it leaves
    open; reduced mode caps epochs and batch size); returns the exit code."""
    from ..models.checkpoint import dataset_fingerprint
    from ..data.datasets import course_data
    from ..eval.evaluate import predict
    from ..eval.metrics import classification_report, confusion_matrix, macro_f1
    from ..models import build_model, count_parameters
    from ..eval.plots import plot_confusion_matrix, plot_history, save_figure
    from ..data.split import train_val_split
    from ..train.tracking import NoTracker, Tracker
    from ..train.loop import TrainingError, fit, init_from_data, make_loaders, resolve_config

    start = time.perf_counter()
    config = complete(config, settings_for(config.model.name))
    if fast_mode():  # seconds on a CPU: few epochs, and small batches so that they still learn
        config.schedule.epochs = min(config.schedule.epochs, REDUCED_MAX_EPOCHS)
        config.data.batch_size = min(config.data.batch_size, REDUCED_MAX_BATCH)
    if show_only:
        print(config_yaml(config), end="")
        return 0
    out = Path(config.out)
    config.checkpoint.path = str(out / "checkpoint.pt")
    # reduced mode: FAST_PER_CLASS images per class, so that even a ResNet-18 finishes on a CPU
    data = course_data(config.data.name, reduced_per_class=(FAST_PER_CLASS, FAST_PER_CLASS),
                       **({"path": config.data.path} if config.data.path else {}))
    config.data.fingerprint, config.data.num_classes = dataset_fingerprint(data), data.num_classes
    kwargs = {"num_classes": data.num_classes, **config.model.kwargs}
    seed_everything(config.seed)  # the initial weights come from the seed too: the same seed, the same run
    try:
        model = build_model(config.model.name, **kwargs)
    except (ValueError, TypeError) as exc:
        print(f"[train] {exc}")
        return 2
    a = config.augment
    train, val, mean, std = make_loaders(data, batch_size=config.data.batch_size, val_fraction=config.data.val_fraction,
                                         seed=config.seed, device=config.precision.device,
                                         crop_padding=a.crop_padding, flip=a.flip, cutout=a.cutout)
    # FastNet's whitening layer is set from training-split images (never validation ones)
    train_part = (train_val_split(data.train_labels, config.data.val_fraction, config.seed)[0]
                  if config.data.val_fraction > 0 else np.arange(len(data.train_labels)))
    init_from_data(model, data.train_images[train_part[:5000]], mean, std)
    config = resolve_config(model, train, val, config)  # what fit will record: the same config
    print(f"[train] {config.model.name} ({count_parameters(model):,} parameters) on {data.name}: "
          f"{len(train.labels):,} train / {len(val.labels) if val is not None else 0:,} val images, "
          f"{config.schedule.epochs} epochs, batch {config.data.batch_size}, lr {config.optim.lr}, "
          f"device {train.device}")
    out.mkdir(parents=True, exist_ok=True)
    if save_yaml:
        with atomic_write(out / "config.yaml", "w") as f:
            f.write(config_yaml(config))
    tracker = Tracker().start(config, run_name=f"{config.name}/{out.name}") if config.tracking.enabled else NoTracker()
    try:
        history = fit(model, train, val, config, progress=progress, track=tracker)
    except TrainingError as exc:
        tracker.end("FAILED")
        print(f"[train] stopped: {exc}")
        return 1
    except BaseException:
        tracker.end("KILLED")
        raise
    train_seconds = time.perf_counter() - start

    tta = False if a.tta == "off" else a.tta
    logits, accuracy = predict(model, data.test_images, data.test_labels, batch_size=config.data.batch_size, tta=tta,
                               mean=mean, std=std)
    predicted = logits.argmax(1).numpy()
    report = classification_report(data.test_labels, predicted, data.classes)
    settings = {"epochs": config.schedule.epochs, "lr": config.optim.lr, "label_smoothing":
                config.regularization.label_smoothing, "schedule": config.schedule.name, "warmup": config.schedule.warmup,
                "tta": tta, "momentum": config.optim.momentum, "weight_decay": config.optim.weight_decay,
                "norm_bias_lr_scale": config.optim.norm_bias_lr_scale, "batch_size": config.data.batch_size,
                "crop_padding": a.crop_padding}
    metrics = {
        "dataset": config.data.name, "source_dataset": data.name, "source": data.source, "notes": list(data.notes),
        "reduced_mode": fast_mode(), "model": config.model.name, "model_kwargs": kwargs,
        "parameters": count_parameters(model), "epochs": len(history), "train_images": int(len(train.labels)),
        "test_images": int(len(data.test_labels)),
        "accuracy": accuracy, "macro_f1": macro_f1(data.test_labels, predicted, data.num_classes),
        "best_val_acc": history.best_val_acc, "seconds": train_seconds, "settings": settings,
        "config": to_dict(config), "per_class": {c: report[c] for c in data.classes},
    }
    history.save_json(out / "history.json")
    write_json(out / "metrics.json", metrics)
    save_figure(plot_history(history), out / "curves.png")
    if tracker.enabled:
        tracker.log_metrics({"test_accuracy": accuracy, "test_macro_f1": metrics["macro_f1"]}, step=len(history))
        tracker.log_artifacts([out / "metrics.json", out / "curves.png", out / "config.yaml"])
        with tempfile.TemporaryDirectory() as tmp:  # the confusion matrix goes to MLflow only
            cm = confusion_matrix(data.test_labels, predicted, data.num_classes)
            tracker.log_artifact(save_figure(plot_confusion_matrix(cm, data.classes if data.num_classes <= 20 else None),
                                             Path(tmp) / "confusion_matrix.png"))
        tracker.end("FINISHED")

    used = data.name + (" (reduced mode)" if fast_mode() else "")
    print(f"[train] {config.model.name} on {used}: test accuracy {accuracy:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
          f"after {len(history)} epochs ({train_seconds:.1f} s)")
    for name in ("checkpoint.pt", "history.json", "metrics.json", "curves.png") + (("config.yaml",) if save_yaml else ()):
        print(f"  {out / name}")
    if tracker.run_id is not None:
        print(f"  MLflow run {tracker.run_id} in {tracker.uri}")
    return 0
