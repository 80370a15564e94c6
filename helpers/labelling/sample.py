"""`make_sample_folder`: a small unlabelled folder of images to practise labelling on, made offline.

The images are the course's generated shapes (helpers.data.synthetic), shuffled, with names that do
not give the class away; the true classes are returned so a notebook can check agreement.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..data.synthetic import CLASSES, generate


def make_sample_folder(path, n_per_class: int = 10, classes=("disk", "square"), seed: int = 0) -> dict[str, str]:
    """Write `n_per_class` 32x32 PNGs of each shape class into `path`; returns {file name: true class}.

    `classes` are names from helpers.data.synthetic.CLASSES. The same arguments give the same files, so
    calling it again (e.g. after a kernel restart) rewrites nothing and returns the same answer key.
    """
    from ..data.export import png_bytes
    classes = list(classes)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or len(set(classes)) != len(classes) or n_per_class < 1:
        raise ValueError(f"classes must be distinct names from {CLASSES} and n_per_class >= 1; got classes={classes}, "
                         f"n_per_class={n_per_class}.")
    # Draw generously from the generator, then keep the first n_per_class images of each wanted class.
    pool_size = max(40, 3 * n_per_class * len(CLASSES))
    images, labels = generate(pool_size, seed)
    picks = np.concatenate([np.flatnonzero(labels == CLASSES.index(c))[:n_per_class] for c in classes])
    picks = np.random.default_rng(seed).permutation(picks)
    root = Path(path).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for k, i in enumerate(picks):
        name = f"img_{k:03d}.png"
        data = png_bytes(images[i])
        target = root / name
        if not (target.is_file() and target.read_bytes() == data):
            with atomic_write(target, "wb") as f:
                f.write(data)
        truth[name] = CLASSES[labels[i]]
    return truth
