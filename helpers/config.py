"""Run-wide settings: reduced mode, paths, device choice and seeding, in one place."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def fast_mode() -> bool:
    """True when `COURSE_FAST=1`: everything that trains uses a small subset and few epochs."""
    return os.environ.get("COURSE_FAST", "0").strip().lower() not in ("", "0", "false", "no")


def autograding() -> bool:
    """True inside `nbgrader autograde`/`validate`, which set `NBGRADER_EXECUTION` in the kernel."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def data_dir() -> Path:
    """Where datasets and caches live: `$COURSE_DATA_DIR`, else `data/` beside the package."""
    env = os.environ.get("COURSE_DATA_DIR")
    path = Path(env).expanduser() if env else PROJECT_ROOT / "data"
    return path


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the one asked for, else CUDA, then Apple's MPS, then the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) from one number; returns a CPU generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def by_mode(full, fast):
    """`fast` in reduced mode (COURSE_FAST=1), else `full`: e.g. `epochs = by_mode(30, 2)`."""
    return fast if fast_mode() else full
