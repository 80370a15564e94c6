"""`python -m helpers train`: train a registry model, test it, and write what a person needs.

    python -m helpers train --dataset cifar10 --model resnet18 --epochs 30 --out out/r18

writes checkpoint.pt (weights-only, rebuildable), history.json, metrics.json (test accuracy,
macro-F1, per-class precision/recall/F1, the data actually used) and curves.png into --out.
With COURSE_FAST=1 it trains on 100 images per class of the reduced subset for at most 2 epochs
of batches of at most 128, and tests on the reduced test split: seconds on a CPU for small models.
"""
from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import numpy as np

from .atomic import write_json
from .config import PROJECT_ROOT, fast_mode, seed_everything

# Per-model defaults where the general ones are not good. FastNet's are an airbench-style recipe
# (arXiv 2404.00498) restated for a mean loss: large batch, high lr with BatchNorm biases 64x faster,
# label smoothing 0.2, a triangular schedule, flip+translate test-time augmentation.
GENERAL_DEFAULTS = {"epochs": 20, "lr": 0.1, "label_smoothing": 0.0, "schedule": "onecycle", "warmup": None,
                    "tta": False, "momentum": 0.9, "weight_decay": 5e-4, "norm_bias_lr_scale": 1.0,
                    "batch_size": 512, "crop_padding": 4}
MODEL_DEFAULTS = {
    "mlp": {"lr": 0.05},
    "fiveconv": {"lr": 0.05},
    "simple_cnn": {"lr": 0.05},
    "resnet18": {"epochs": 30, "lr": 0.2, "label_smoothing": 0.1},
    "se_resnet": {"epochs": 30, "lr": 0.2, "label_smoothing": 0.1},
    "fastnet": {"epochs": 10, "lr": 1.5, "momentum": 0.85, "weight_decay": 1.3e-3, "norm_bias_lr_scale": 64.0,
                "label_smoothing": 0.2, "schedule": "linear", "warmup": 0.23, "tta": "translate",
                "batch_size": 1024, "crop_padding": 2},
    "transfer_resnet18": {"epochs": 5, "lr": 0.01},
}


FAST_PER_CLASS = 50  # training and test images per class in reduced mode (COURSE_FAST=1)


def settings_for(model: str, **given) -> dict:
    """The general defaults, updated with the model's and then with the `given` ones that are not None."""
    out = {**GENERAL_DEFAULTS, **MODEL_DEFAULTS.get(model, {})}
    out.update({k: v for k, v in given.items() if v is not None})
    return out


def _model_arg(text: str) -> tuple[str, object]:
    """'key=value' -> (key, value), the value read as a Python literal when it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--dataset", default="cifar10", choices=["cifar10", "cifar100", "synthetic"])
    a("--model", default="resnet18",
      help="a registry name: " + ", ".join(sorted(MODEL_DEFAULTS)) + " (default resnet18)")
    a("--epochs", type=int, help="default: per model (e.g. resnet18 30, fastnet 10); at most 2 with COURSE_FAST=1")
    a("--batch-size", type=int, help="default: 512 (fastnet 1024)")
    a("--lr", type=float, help="peak learning rate; default: per model")
    a("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    a("--momentum", type=float, help="SGD momentum; default 0.9 (fastnet 0.85)")
    a("--schedule", choices=["onecycle", "cosine", "linear", "constant"], help="default: onecycle (fastnet linear)")
    a("--warmup", type=float, help="warmup as a fraction of all steps; default per schedule")
    a("--label-smoothing", type=float, help="default: per model (0, resnets 0.1, fastnet 0.2)")
    a("--weight-decay", type=float, help="default 5e-4 (fastnet 1.3e-3)")
    a("--grad-clip", type=float, help="clip the gradient norm to this value")
    a("--mixup", type=float, default=0.0, help="MixUp alpha (0 = off)")
    a("--cutmix", type=float, default=0.0, help="CutMix alpha (0 = off)")
    a("--cutout", type=int, default=0, help="cutout square size in pixels (0 = off)")
    a("--ema", type=float, help="evaluate an exponential moving average of the weights with this decay")
    a("--tta", nargs="?", const="flip", choices=["flip", "translate"], help="test-time augmentation")
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


def run(args: argparse.Namespace) -> int:
    from .data import ImageData, course_data
    from .evaluate import predict
    from .metrics import classification_report, macro_f1
    from .models import build_model, count_parameters
    from .plots import plot_history, save_figure
    from .split import stratified_subset, train_val_split
    from .train import TrainingError, fit, init_from_data, make_loaders, make_optimizer

    start = time.perf_counter()
    out = Path(args.out) if args.out else PROJECT_ROOT / "out" / f"{args.dataset}-{args.model}"
    s = settings_for(args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                     schedule=args.schedule, warmup=args.warmup, label_smoothing=args.label_smoothing,
                     weight_decay=args.weight_decay, tta=args.tta)
    if fast_mode():  # seconds on a CPU: few epochs, and small batches so that they still learn
        s["epochs"] = min(s["epochs"], 2)
        s["batch_size"] = min(s["batch_size"], 128)
    data = course_data(args.dataset, **({"path": args.data_path} if args.data_path else {}))
    if fast_mode():  # a further cut for the command line, so that even a ResNet-18 finishes on a CPU
        keep = stratified_subset(data.train_labels, FAST_PER_CLASS, seed=0)
        test = stratified_subset(data.test_labels, FAST_PER_CLASS, seed=0)
        data = ImageData(data.name, data.classes, data.train_images[keep], data.train_labels[keep],
                         data.test_images[test], data.test_labels[test], source=data.source, notes=data.notes)
    kwargs = {"num_classes": data.num_classes, **dict(args.model_arg)}
    seed_everything(args.seed)  # the initial weights come from --seed too: the same seed, the same run
    try:
        model = build_model(args.model, **kwargs)
    except (ValueError, TypeError) as exc:
        print(f"[train] {exc}")
        return 2
    train, val, mean, std = make_loaders(data, batch_size=s["batch_size"], val_fraction=args.val_fraction,
                                         seed=args.seed, device=args.device, crop_padding=s["crop_padding"],
                                         cutout=args.cutout)
    # FastNet's whitening layer is set from training-split images (never validation ones)
    train_part = (train_val_split(data.train_labels, args.val_fraction, args.seed)[0] if args.val_fraction > 0
                  else np.arange(len(data.train_labels)))
    init_from_data(model, data.train_images[train_part[:5000]], mean, std)
    optimizer = make_optimizer(model, args.optimizer, s["lr"], s["momentum"], True, s["weight_decay"],
                               s["norm_bias_lr_scale"])
    print(f"[train] {args.model} ({count_parameters(model):,} parameters) on {data.name}: "
          f"{len(train.labels):,} train / {len(val.labels) if val is not None else 0:,} val images, "
          f"{s['epochs']} epochs, batch {s['batch_size']}, lr {s['lr']}, device {train.device}")
    out.mkdir(parents=True, exist_ok=True)
    try:
        history = fit(model, train, val, epochs=s["epochs"], optimizer=optimizer, schedule=s["schedule"],
                      warmup=s["warmup"], label_smoothing=s["label_smoothing"], grad_clip=args.grad_clip,
                      mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, early_stopping=args.early_stopping,
                      ema=args.ema, tta=s["tta"], amp=False if args.no_amp else None, compile=args.compile,
                      seed=args.seed, progress=not args.no_progress, checkpoint=out / "checkpoint.pt",
                      resume=args.resume, num_classes=data.num_classes)
    except TrainingError as exc:
        print(f"[train] stopped: {exc}")
        return 1
    train_seconds = time.perf_counter() - start

    logits, accuracy = predict(model, data.test_images, data.test_labels, batch_size=s["batch_size"], tta=s["tta"],
                               mean=mean, std=std)
    predicted = logits.argmax(1).numpy()
    report = classification_report(data.test_labels, predicted, data.classes)
    metrics = {
        "dataset": args.dataset, "source_dataset": data.name, "source": data.source, "notes": list(data.notes),
        "reduced_mode": fast_mode(), "model": args.model, "model_kwargs": kwargs,
        "parameters": count_parameters(model), "epochs": len(history), "train_images": int(len(train.labels)),
        "test_images": int(len(data.test_labels)),
        "accuracy": accuracy, "macro_f1": macro_f1(data.test_labels, predicted, data.num_classes),
        "best_val_acc": history.best_val_acc, "seconds": train_seconds, "settings": s,
        "per_class": {c: report[c] for c in data.classes},
    }
    history.save_json(out / "history.json")
    write_json(out / "metrics.json", metrics)
    save_figure(plot_history(history), out / "curves.png")

    used = data.name + (" (reduced mode)" if fast_mode() else "")
    print(f"[train] {args.model} on {used}: test accuracy {accuracy:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
          f"after {len(history)} epochs ({train_seconds:.1f} s)")
    for name in ("checkpoint.pt", "history.json", "metrics.json", "curves.png"):
        print(f"  {out / name}")
    return 0
