"""A small CIFAR-shaped dataset the course generates itself, for tests and offline demos.

Ten classes of 32x32 RGB shapes (disk, ring, square, ...) in random colours, positions and sizes,
with noise. Every shape is left-right symmetric, so horizontal flips keep the label, and colour
carries no class information, so a model must learn shape: a small CNN gets well above chance
in seconds on a CPU. Deterministic from a seed.
"""
from __future__ import annotations

import numpy as np

CLASSES = ["disk", "ring", "square", "frame", "plus", "hstripes", "vstripes", "checker", "diamond", "triangle"]


def _masks(label: np.ndarray, cx, cy, r, phase) -> np.ndarray:
    """Boolean (N, 32, 32) foreground masks of each image's class shape."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    r = r[:, None, None]
    dist = np.sqrt(dx**2 + dy**2)
    box = np.maximum(np.abs(dx), np.abs(dy))
    shapes = [
        dist < r,
        np.abs(dist - r) < 1.6,
        box < r,
        np.abs(box - r) < 1.2,
        ((np.abs(dx) < 2) & (np.abs(dy) < r)) | ((np.abs(dy) < 2) & (np.abs(dx) < r)),
        np.sin(yy[None] * (2 * np.pi / 6) + phase[:, None, None]) > 0,
        np.sin(np.abs(dx) * (2 * np.pi / 6) + phase[:, None, None]) > 0,
        ((np.floor((np.abs(dx) + 0.5) / 4) + np.floor((yy[None] + 64) / 4)) % 2) == 0,
        np.abs(dx) + np.abs(dy) < r,
        (dy > -r) & (dy < r) & (np.abs(dx) < (dy + r) / 2),
    ]
    out = np.zeros((len(label), 32, 32), dtype=bool)
    for c, mask in enumerate(shapes):
        rows = label == c
        out[rows] = np.broadcast_to(mask, out.shape)[rows]
    return out


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (n, 32, 32, 3) uint8 and balanced int64 labels, the same for the same seed."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    rng.shuffle(labels)
    cx = rng.uniform(11, 21, n).astype(np.float32)
    cy = rng.uniform(11, 21, n).astype(np.float32)
    r = rng.uniform(6, 10, n).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    mask = _masks(labels, cx, cy, r, phase)[..., None]
    fg = rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
    bg = rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
    # Keep foreground and background apart in brightness so the shape stays visible.
    too_close = np.abs(fg.mean(-1, keepdims=True) - bg.mean(-1, keepdims=True)) < 0.25
    fg = np.where(too_close, 1.0 - bg, fg)
    images = np.where(mask, fg, bg) + rng.normal(0, 0.08, (n, 32, 32, 3)).astype(np.float32)
    images = np.clip(images * 255 + 0.5, 0, 255).astype(np.uint8)
    return images, labels


def make_synthetic(n_train: int = 10_000, n_test: int = 2_000, seed: int = 0):
    """Train and test splits drawn from independent seeds: (x_train, y_train, x_test, y_test)."""
    x_train, y_train = generate(n_train, seed)
    x_test, y_test = generate(n_test, seed + 1_000_003)
    return x_train, y_train, x_test, y_test
