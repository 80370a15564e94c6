"""A data loader that keeps a whole split on the training device as one uint8 tensor.

Each batch is gathered, cropped, flipped, normalized and cut out with a few tensor operations
on that device: no worker processes, no per-image Python, and no host synchronization per batch
(the shuffle order is made on the device, and the number of batches is known in advance).
The same code runs on the CPU, where it is still far faster than per-image PIL transforms.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import augment

# Published CIFAR-10 training-split statistics, a fallback when none are given.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class GpuLoader:
    """Batches of (normalized float images (N, 3, H, W), int64 labels) from data held on `device`.

    train=True shuffles with a seeded order and applies crop-after-padding, flips and cutout;
    train=False yields the split in order, unaugmented. `set_epoch(e)` (or iterating again)
    moves to the next epoch's order; the same seed and epoch always give the same batches.
    """

    def __init__(self, images, labels, *, batch_size: int = 512, device=None, mean=CIFAR10_MEAN,
                 std=CIFAR10_STD, train: bool = True, crop_padding: int = 4, flip: bool = True,
                 cutout: int = 0, shuffle: bool | None = None, drop_last: bool = False, seed: int = 0,
                 channels_last: bool | None = None, dtype: torch.dtype = torch.float32):
        images = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {tuple(images.shape)} {images.dtype}")
        labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long()
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        # Stored NCHW, padded once for training so every batch is a single gather.
        self.image_size = tuple(images.shape[1:3])
        pixels = images.to(self.device).permute(0, 3, 1, 2)
        pad = crop_padding if train else 0
        self.pixels = torch.nn.functional.pad(pixels, (pad,) * 4).contiguous() if pad else pixels.contiguous()
        self.labels = labels.to(self.device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.batch_size = batch_size
        self.train = train
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.cutout = cutout if train else 0
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = (self.device.type == "cuda") if channels_last is None else channels_last
        self.dtype = dtype
        self.epoch = 0
        self._next_epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images yielded per epoch (fewer than the split when drop_last cuts the last batch)."""
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch `epoch`'s shuffle and augmentation."""
        self._next_epoch = epoch

    def _generator(self, epoch: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        return gen

    def __iter__(self):
        self.epoch = self._next_epoch
        self._next_epoch += 1
        gen = self._generator(self.epoch)
        n = len(self.labels)
        order = (torch.randperm(n, device=self.device, generator=gen) if self.shuffle
                 else torch.arange(n, device=self.device))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self._make_batch(idx, gen), self.labels[idx]

    def _make_batch(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.crop_padding or self.flip:
            x = augment.crop_flip_gather(self.pixels, idx, self.image_size, self.crop_padding,
                                         0.5 if self.flip else 0.0, gen)
        else:
            x = self.pixels[idx]
        x = augment.to_normalized_float(x, self.mean, self.std, self.dtype, self.channels_last)
        if self.cutout:
            x = augment.cutout(x, self.cutout, gen)
        return x
