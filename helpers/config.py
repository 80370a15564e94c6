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


def full_on_cpu() -> bool:
    """True when `COURSE_FULL_ON_CPU=1`: training cells train fully even without a GPU (hours)."""
    return os.environ.get("COURSE_FULL_ON_CPU", "0").strip().lower() not in ("", "0", "false", "no")


class TrainingMode:
    """How the notebooks' training cells train here (see `training_mode`).

    `reduced`: train the small model on a stratified subset for few epochs; `reason`: why, one of
    "COURSE_FAST=1", "autograde", "no GPU" ("" when training fully); `device`: the device used.
    """

    def __init__(self, reduced: bool, reason: str, device: torch.device):
        self.reduced, self.reason, self.device = reduced, reason, device

    def __repr__(self) -> str:
        return f"TrainingMode(reduced={self.reduced}, reason={self.reason!r}, device={str(self.device)!r})"

    def pick(self, full, reduced):
        """`reduced` in reduced mode, else `full`: e.g. `epochs = MODE.pick(16, 3)`."""
        return reduced if self.reduced else full

    def announce(self, images: int, epochs: int | str, minutes: float, full: str = "") -> str:
        """Print (and return) one line when there is no GPU: what this cell trains instead and how
        to train fully; `full` describes the full run (e.g. "45,000 images, 16 epochs, hours on a CPU").
        Silent with a GPU, in COURSE_FAST=1 (asked for) and under autograde (the cell says so itself)."""
        if self.reason == "no GPU":
            line = (f"no GPU: this cell trains in reduced mode ({images:,} images, {epochs} epochs, "
                    f"~{max(1, round(minutes))} min); set COURSE_FULL_ON_CPU=1 (e.g. `%env COURSE_FULL_ON_CPU=1`, "
                    f"then run the notebook again from the setup cell) to train fully"
                    + (f" ({full})" if full else ""))
        elif self.device.type == "cpu" and not self.reduced:
            line = ("no GPU, but COURSE_FULL_ON_CPU=1: this cell trains fully on the CPU"
                    + (f" ({full})" if full else ""))
        else:
            return ""
        print(line)
        return line


def training_mode(device: str | torch.device | None = None) -> TrainingMode:
    """Whether the notebooks' long training cells train fully or in reduced mode, in one place:
    reduced with COURSE_FAST=1, under autograde, and without a GPU (CUDA or Apple's MPS) unless
    COURSE_FULL_ON_CPU=1; fully otherwise. `device`: the one the cell trains on (default:
    `pick_device()`)."""
    device = pick_device(device)
    if fast_mode():
        return TrainingMode(True, "COURSE_FAST=1", device)
    if autograding():
        return TrainingMode(True, "autograde", device)
    if device.type == "cpu" and not full_on_cpu():
        return TrainingMode(True, "no GPU", device)
    return TrainingMode(False, "", device)
