"""Splits and statistics made before any augmentation: stratified train/validation split,
stratified subsets for reduced mode, and per-channel mean/std of the training split only."""
from __future__ import annotations

import numpy as np


def train_val_split(labels, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): disjoint, covering all samples, `val_fraction` of each class in val.

    Deterministic for a seed; each class contributes round(count * val_fraction) images to val.
    """
    labels = np.asarray(labels)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_subset(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `per_class` samples of every class (for reduced mode)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def channel_mean_std(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std in [0, 1] units of uint8 images (N, H, W, 3), computed in float64.

    Call it on the training split only: statistics that saw validation or test images leak them.
    """
    x = np.asarray(images)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    s = np.zeros(3)
    s2 = np.zeros(3)
    for start in range(0, len(x), 8192):  # chunks keep memory small on 50,000 images
        chunk = x[start:start + 8192].reshape(-1, 3).astype(np.float64) / 255.0
        s += chunk.sum(0)
        s2 += (chunk**2).sum(0)
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)
