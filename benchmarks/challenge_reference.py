"""Reference runs of the 06 challenge, to calibrate its tiers on a GPU.

Trains, on the full training split in full mode, the designs the tiers must tell apart, and scores
each on the test split exactly as the grader does (one plain prediction per image, accuracy and
macro-F1, the tier, the 60% cap for a handed-out or zoo design):

- `solution`: the source notebook's own design (challenge_recipe / cifar100_recipe, full mode);
  the top tier is meant to be reachable by it, so it must land there;
- `fastnet`: the recipe the notebook hands out (its speed recipe), capped at 60%;
- `resnet18`: the zoo ResNet-18 with the notebook's recipe (20 epochs for CIFAR-10, 30 for
  CIFAR-100), capped at 60%.
Training goes through the notebook's own `train_recipe` (its read-only `recipe-given` cell, run
from source/), so the numbers are those a student's run gets.

    PYTHONPATH=. python benchmarks/challenge_reference.py                  # CUDA, CIFAR-10 and CIFAR-100
    PYTHONPATH=. python benchmarks/challenge_reference.py --datasets cifar10 --designs solution fastnet
    PYTHONPATH=. python benchmarks/challenge_reference.py --dry-run       # tiny, checks the script (CPU: ~1 min)
    PYTHONPATH=. python benchmarks/challenge_reference.py --reduced       # reduced-mode tiers, CPU: ~3 min

--reduced measures what the reduced-mode tiers (grading/tiers.py REDUCED_TIERS) are set from: in
reduced mode (COURSE_FAST=1) on the generated data and on CIFAR-10/100 where their archives are
set, the source solution's reduced recipe and the same recipe stopped after one epoch
(`one_epoch`), over seeds 0, 1, 2, scored under the reduced tables.

Data: $COURSE_CIFAR10 / $COURSE_CIFAR100 (image-folder archives) or a torchvision download; full
mode needs CUDA unless --allow-cpu. --dry-run uses the generated dataset in reduced mode, 6 training
and 4 test images per class, 1 epoch and batches of 32: its numbers mean nothing. One line per
design, then one JSON line per design (the last lines), and --out writes them to a file.
State the GPU, the command and the date with any figure taken from here.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

DESIGNS = ("solution", "one_epoch", "fastnet", "resnet18")
RESNET18_EPOCHS = {"cifar10": 20, "cifar100": 30}  # the notebook's text: 15-30 epochs; about 30 for CIFAR-100


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=["cifar10", "cifar100", "synthetic"],
                   help="default: cifar10 cifar100 (--reduced: synthetic, and cifar10/cifar100 when their archives are set)")
    p.add_argument("--designs", nargs="+", choices=DESIGNS,
                   help="default: solution fastnet resnet18 (--reduced: solution one_epoch)")
    p.add_argument("--seeds", nargs="+", type=int, help="recipe seeds (default: 0; --reduced: 0 1 2)")
    p.add_argument("--reduced", action="store_true", help="reduced mode on the CPU, scored under the reduced-mode tiers")
    p.add_argument("--device", default=None, help="default: CUDA when available")
    p.add_argument("--dry-run", action="store_true", help="tiny, on the generated dataset (checks the script)")
    p.add_argument("--allow-cpu", action="store_true", help="run full mode without a GPU (hours)")
    p.add_argument("--out", type=Path, help="also write the JSON lines here")
    return p.parse_args(argv)


def recipes(dataset: str, reduced: bool = False) -> tuple[dict, dict]:
    """({design: recipe} for `dataset`, the source solution's in this mode; the given cell's namespace)."""
    from helpers.grading.challenge import HANDED_OUT_RECIPES, given_namespace, run_mode
    with run_mode(reduced):
        ns = given_namespace(answers=("challenge_recipe-answer", "cifar100_recipe-answer"))
        solution = ns["cifar100_recipe" if dataset == "cifar100" else "challenge_recipe"]()
    return {"solution": solution, "one_epoch": {**solution, "epochs": 1}, "fastnet": dict(HANDED_OUT_RECIPES["fastnet"]),
            "resnet18": {**HANDED_OUT_RECIPES["resnet18"], "epochs": RESNET18_EPOCHS.get(dataset, 20)}}, ns


def tiny(data):
    """The dry run's data: 6 training (5 to train on, 1 to validate) and 4 test images per class."""
    from helpers.data import ImageData
    from helpers.data.split import stratified_subset
    tr = stratified_subset(data.train_labels, 6, seed=0)
    te = stratified_subset(data.test_labels, 4, seed=0)
    return ImageData(data.name, data.classes, data.train_images[tr], data.train_labels[tr], data.test_images[te],
                     data.test_labels[te], source=data.source + " [dry run]")


def run_design(design: str, recipe: dict, data, ns: dict, dry_run: bool, part: str = "cifar10",
               reduced: bool = False) -> dict:
    """Train one design and score it as the grader does (the `part`'s table: the course's, or the
    reduced-mode one for the data the test set is)."""
    import torch

    from helpers.eval.evaluate import predict
    from helpers.grading.challenge import CAP_FRACTION, match_reference
    from helpers.grading.fingerprint import fingerprint
    from helpers.grading.tiers import DEFAULT_TIERS, reduced_tiers, tier_fraction
    from helpers.eval.metrics import accuracy, macro_f1
    if dry_run:
        recipe = {**recipe, "epochs": 1, "batch_size": 32}
    full = ns["complete_recipe"](recipe)
    start = time.perf_counter()
    model, history, mean, std = ns["train_recipe"](full, data, progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    preds = predict(model, data.test_images, mean=mean, std=std).argmax(1).numpy()
    table = reduced_tiers(part, data.name) if reduced else DEFAULT_TIERS[part]
    acc = accuracy(data.test_labels, preds)
    f1 = macro_f1(data.test_labels, preds, num_classes=data.num_classes)
    fraction, tier = tier_fraction(acc if table.metric == "accuracy" else f1, table)
    matched = match_reference(fingerprint(model), data.num_classes)
    return {"dataset": data.name, "design": design, "seed": full["seed"], "model": full["model"]["name"],
            "parameters": sum(p.numel() for p in model.parameters()), "epochs": full["epochs"],
            "seconds": round(seconds, 1), "accuracy": round(acc, 4), "macro_f1": round(f1, 4),
            "val_acc": round(float(history[-1]["val_acc"]), 4) if history else None, "tier": tier,
            "fraction": fraction, "matches": matched or "",
            "fraction_after_cap": min(fraction, CAP_FRACTION) if matched else fraction}


def _default_datasets(reduced: bool) -> list[str]:
    """Full mode: both CIFARs. Reduced: the generated data, and each CIFAR whose archive is set."""
    if not reduced:
        return ["cifar10", "cifar100"]
    return ["synthetic"] + [d for d in ("cifar10", "cifar100") if os.environ.get(f"COURSE_{d.upper()}")]


def main(argv=None) -> int:
    args = parse_args(argv)
    reduced = args.reduced
    if args.dry_run or reduced:
        os.environ["COURSE_FAST"] = "1"
        os.environ["COURSE_OFFLINE"] = "1"
    else:
        os.environ["COURSE_FAST"] = "0"
    import torch

    from helpers.settings import pick_device
    from helpers.data import course_data
    device = pick_device(args.device)
    if not (args.dry_run or reduced) and device.type != "cuda" and not args.allow_cpu:
        print("error: full mode needs a CUDA GPU (or --allow-cpu, which takes hours); use --dry-run to check the "
              "script on the CPU", file=sys.stderr)
        return 2
    mode = "DRY RUN (tiny, meaningless numbers)" if args.dry_run else "reduced mode" if reduced else "full mode"
    print(f"challenge reference runs: {mode} on "
          f"{torch.cuda.get_device_name(0) if device.type == 'cuda' else platform.processor() or 'CPU'}, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}", flush=True)
    rows = []
    for dataset in args.datasets or _default_datasets(reduced):
        part = "cifar100" if dataset == "cifar100" else "cifar10"
        data = course_data(dataset, fallback=args.dry_run, verbose=False)
        if args.dry_run:
            data = tiny(data)
        elif data.name != dataset:
            raise SystemExit(f"error: {dataset} is not available (set $COURSE_{dataset.upper()})")
        designs, ns = recipes(dataset, reduced)
        chosen = args.designs or (["solution", "one_epoch"] if reduced else ["solution", "fastnet", "resnet18"])
        for design, seed in itertools.product(chosen, args.seeds or ([0, 1, 2] if reduced else [0])):
            row = run_design(design, {**designs[design], "seed": seed}, data, ns, args.dry_run, part, reduced)
            rows.append(row)
            cap = f" -> {row['fraction_after_cap']:.0%} ({row['matches']})" if row["matches"] else ""
            print(f"{row['dataset']:<9} {design:<9} seed {seed} {row['model']:<8} {row['parameters']:>11,} params "
                  f"{row['epochs']:>3} ep {row['seconds']:>7.1f} s  acc {row['accuracy']:.4f}  "
                  f"macro-F1 {row['macro_f1']:.4f}  {row['tier']}{cap}", flush=True)
    lines = [json.dumps(row) for row in rows]
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
