"""`python -m helpers demo`: the course's main job on whatever data this machine has.

For now: find or fetch CIFAR-10 (falling back to the generated dataset, and saying so), build
the decoded cache, print a summary with the training split's channel statistics, and save a
grid of sample images.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .config import PROJECT_ROOT
from .data import course_data
from .split import channel_mean_std, stratified_subset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "synthetic"])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "demo", help="output folder")


def run(args: argparse.Namespace) -> int:
    from .plots import image_grid, save_figure  # matplotlib only when needed
    start = time.perf_counter()
    data = course_data(args.dataset)
    print(data.summary())
    mean, std = channel_mean_std(data.train_images)
    print("training-split channel mean:", " ".join(f"{m:.4f}" for m in mean),
          "| std:", " ".join(f"{s:.4f}" for s in std))
    picks = stratified_subset(data.train_labels, 4, seed=0)[:40]  # a few of every class
    fig = image_grid(data.train_images[picks], data.train_labels[picks], data.classes, n=len(picks))
    path = save_figure(fig, Path(args.out) / f"{data.name}-samples.png")
    print(f"sample grid: {path}")
    print(f"demo finished in {time.perf_counter() - start:.1f} s")
    return 0
