"""Images per second of the GPU-resident loader against torchvision's per-image pipeline.

Both read the same CIFAR-10 training images (or the generated dataset when CIFAR-10 is not
available) and apply the same augmentation: crop 32 after padding 4, horizontal flip, normalize.
They run side by side in one process; the last line prints both rates and their ratio.

    python benchmarks/data_speed.py [--data PATH] [--images 20000] [--epochs 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from helpers.settings import pick_device
from helpers.data import DataError, load_dataset
from helpers.data.loader import CIFAR10_MEAN, CIFAR10_STD, GpuLoader

from conventional import conventional_loader  # beside this script: the shared baseline


def rate_conventional(images, labels, epochs: int, batch_size: int, workers: int) -> float:
    loader = conventional_loader(images, labels, CIFAR10_MEAN, CIFAR10_STD, batch_size=batch_size, workers=workers,
                                 persistent_workers=workers > 0)
    next(iter(loader))  # start the workers before timing
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for x, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - start)


def rate_resident(images, labels, epochs: int, batch_size: int, device: torch.device) -> float:
    loader = GpuLoader(images, labels, batch_size=batch_size, device=device, crop_padding=4, flip=True)
    next(iter(loader))  # warm up (allocations, kernels)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for x, _ in loader:
            n += len(x)
    sync()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CIFAR-10 image folder or .tar.gz (default: $COURSE_CIFAR10, then data/)")
    parser.add_argument("--images", type=int, default=20_000, help="training images to use")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the conventional pipeline")
    parser.add_argument("--device", default=None, help="device of the resident loader (default: best available)")
    args = parser.parse_args()
    try:
        data = load_dataset("cifar10", args.data, download=False, verbose=True)
    except DataError as exc:
        print(f"CIFAR-10 not found ({str(exc).splitlines()[0]}); using the generated dataset")
        data = load_dataset("synthetic", synthetic_size=(max(args.images, 10_000), 1_000))
    images = np.ascontiguousarray(data.train_images[: args.images])
    labels = data.train_labels[: args.images]
    device = pick_device(args.device)
    print(f"{len(labels):,} {data.name} images, batch {args.batch_size}, {args.epochs} epochs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, resident loader on {device}")
    conventional = rate_conventional(images, labels, args.epochs, args.batch_size, args.workers)
    resident = rate_resident(images, labels, args.epochs, args.batch_size, device)
    print(f"conventional (PIL transforms, DataLoader, {args.workers} workers): {conventional:,.0f} images/s")
    print(f"resident loader ({device}): {resident:,.0f} images/s")
    print(f"conventional {conventional:,.0f} img/s | resident {resident:,.0f} img/s | ratio {resident / conventional:.1f}x")


if __name__ == "__main__":
    main()
