"""`python -m helpers calibrate`: fit a temperature on the validation split and store it in the checkpoint.

    python -m helpers calibrate out/r18/checkpoint.pt [--dataset cifar10] [--tta flip]

The validation split is the one training held out: `val_fraction` (default 0.1) of every class of
the training split, drawn with the seed the checkpoint's config records (helpers.data.split.
train_val_split, as helpers.train.make_loaders does). The temperature T minimizes the NLL of
softmax(logits / T) there (helpers.eval.evaluate.temperature_scale); it is stored with the test-time
views it was fitted with and the figures before and after, in the checkpoint's "calibration"
field (the class names go in "classes"), by rewriting the file atomically. `predict` and `serve`
use it from then on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import dataset_names
from ..eval.inference import TTA_CHOICES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoint", type=Path, help="the checkpoint to calibrate (rewritten in place unless --out is given)")
    a("--dataset", choices=dataset_names(),
      help="the data the model was trained on (default: what the checkpoint records, else cifar10)")
    a("--data-path", type=Path, help="image-folder directory or .tar.gz of the dataset")
    a("--val-fraction", type=float, default=0.1, help="the validation share training held out (default 0.1)")
    a("--seed", type=int, help="the split's seed (default: the one the checkpoint's config records, else 0)")
    a("--tta", choices=TTA_CHOICES, default="none",
      help="the test-time views to calibrate (and later predict) with (default: none)")
    a("--out", type=Path, help="write the calibrated checkpoint here instead of rewriting the input")
    a("--batch-size", type=int, default=256)
    a("--device", help="cuda, cpu, mps; default: the best available")


def training_data(ckpt: dict, name: str, path=None):
    """(the data the model was trained on, a note): course_data(name) in this run's mode or, in reduced
    mode, the smaller subset `python -m helpers train` trains on; the one whose digest matches the
    training split the checkpoint records, else (no record) the command line's in reduced mode."""
    from ..models.checkpoint import split_digest
    from ..settings import fast_mode
    from ..data.datasets import course_data
    from ..train.recipes import FAST_PER_CLASS
    kwargs = {"fallback": False, "verbose": False, **({"path": path} if path else {})}
    data = course_data(name, **kwargs)
    candidates = [data]
    if fast_mode():  # what `python -m helpers train` trains on in reduced mode
        candidates.insert(0, course_data(name, reduced_per_class=(FAST_PER_CLASS, FAST_PER_CLASS), **kwargs))
    digest = ckpt["dataset"].get("sha256") if isinstance(ckpt.get("dataset"), dict) else None
    if not isinstance(digest, str):
        return candidates[0], "the checkpoint records no training-split digest, so the split is not confirmed"
    for candidate in candidates:
        if split_digest(candidate.train_images, candidate.train_labels) == digest:
            return candidate, "the training split the checkpoint records"
    return data, ("WARNING: not the training split the checkpoint records, so the validation images may have "
                  "been trained on; pass the --dataset/--data-path and COURSE_FAST setting it was trained with")


def run(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F

    from ..atomic import atomic_write
    from ..models.checkpoint import CheckpointError, load_checkpoint
    from ..data.datasets import DataError
    from ..eval.evaluate import temperature_scale
    from ..eval.inference import checkpoint_dataset, probabilities
    from ..eval.predictor import Predictor
    from ..eval.metrics import expected_calibration_error
    from ..data.split import train_val_split

    try:
        ckpt = load_checkpoint(args.checkpoint)
        predictor = Predictor.from_checkpoint(ckpt, device=args.device, tta=args.tta, temperature=1.0,
                                              batch_size=args.batch_size)
    except CheckpointError as exc:
        print(f"[calibrate] cannot use {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    name = args.dataset or checkpoint_dataset(ckpt) or "cifar10"
    try:
        data, note = training_data(ckpt, name, args.data_path)
    except DataError as exc:
        print(f"[calibrate] {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int((ckpt.get("config") or {}).get("seed") or 0)
    try:
        _, val_idx = train_val_split(data.train_labels, args.val_fraction, seed)
    except ValueError as exc:
        print(f"[calibrate] {exc}", file=sys.stderr)
        return 2
    labels = torch.as_tensor(data.train_labels[val_idx]).long()
    logits = predictor.logits(data.train_images[val_idx])
    if logits.shape[1] != data.num_classes:
        print(f"[calibrate] the model has {logits.shape[1]} outputs but {name} has {data.num_classes} classes: "
              "pass the --dataset it was trained on", file=sys.stderr)
        return 2
    t = temperature_scale(logits, labels)
    before, after = probabilities(logits), probabilities(logits, t)
    record = {"temperature": t, "tta": args.tta, "dataset": name, "images": int(len(val_idx)),
              "split": f"validation: {args.val_fraction:g} of the training split, seed {seed}",
              "nll_before": float(F.cross_entropy(logits, labels)),
              "nll_after": float(F.cross_entropy(logits / t, labels)),
              "ece_before": expected_calibration_error(before, labels),
              "ece_after": expected_calibration_error(after, labels)}
    ckpt["calibration"] = record
    ckpt["classes"] = list(data.classes)
    out = args.out or args.checkpoint
    try:
        with atomic_write(out, "wb") as f:
            torch.save(ckpt, f)
        load_checkpoint(out)  # it must read back as a course checkpoint
    except (OSError, CheckpointError) as exc:
        print(f"[calibrate] could not write {out}: {exc}", file=sys.stderr)
        return 1
    print(f"[calibrate] {predictor.name} on {len(val_idx):,} validation images of {name} ({note})")
    print(f"[calibrate] temperature {t:.4f} (test-time views: {args.tta}): NLL {record['nll_before']:.4f} -> "
          f"{record['nll_after']:.4f}, ECE {record['ece_before']:.4f} -> {record['ece_after']:.4f}")
    print(f"[calibrate] stored in {out}")
    return 0
