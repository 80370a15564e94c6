"""Run-wide settings in one place: the environment variables the course reads, the run mode
(reduced or full), paths, the device and seeding.

`env(name)` is the only place a course setting is read from the environment (tests/test_layout.py
checks it): each variable is declared in VARIABLES with what it does, and asking for an undeclared
one is an error, so a misspelt name cannot silently read nothing. Values are read at each call,
not cached, so `%env COURSE_FAST=1` in a notebook (and a test's monkeypatch) takes effect at once.
The module imports only the standard library at the top (torch and NumPy where they are used), so
the sandbox's launcher can import it without torch.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent

VARIABLES = {
    # run mode and data
    "COURSE_FAST": "1: reduced mode everywhere: stratified subsets and few epochs (tests, the demo, a laptop)",
    "COURSE_FULL_ON_CPU": "1: the notebooks' training cells train fully even without a GPU (hours)",
    "COURSE_DATA_DIR": "where datasets and caches live (default: data/ beside helpers/)",
    "COURSE_OFFLINE": "1: never download a dataset",
    "COURSE_CIFAR10": "CIFAR-10 as an image-folder directory or .tar.gz (<root>/train/<class>/..., test/...)",
    "COURSE_CIFAR100": "CIFAR-100, the same kinds of path",
    "NBGRADER_EXECUTION": "set by nbgrader inside a kernel it runs (autograde, validate)",
    "MLFLOW_TRACKING_URI": "an MLflow server runs are logged to (default: a local store in the run's folder)",
    # grading (TAs)
    "COURSE_TIERS": "a tiers JSON file kept outside the course folder (default: helpers/grading/tiers.py's)",
    "COURSE_TESTSET_SHA256": "digests of the TA's own test sets, comma-separated (testsets.py pins the course's)",
    "COURSE_TRAINSET_SHA256": "digests of the training splits of a TA's own data source, comma-separated",
    "COURSE_EXCHANGE": "the nbgrader exchange folder of a farm (default: the course folder's exchange/)",
    "COURSE_SANDBOX": "off: grade without the sandbox (a trusted local run only, never a class)",
    "COURSE_SANDBOX_MEMORY_MB": "resident memory one sandbox may use (default 8192)",
    "COURSE_CELL_TIMEOUT": "seconds one student cell may run under the hidden-test harness (default 60)",
    "OMP_NUM_THREADS": "CPU threads of a grading worker (default 2)",
    "CUDA_VISIBLE_DEVICES": "the GPUs a grading worker sees (passed into the sandbox when set)",
    "NBGRADER_VALIDATING": "set by nbgrader validate (passed into the sandboxed kernel)",
    "MPLBACKEND": "matplotlib's backend (passed into the sandboxed kernel when set)",
    "COURSE_SCORE_TEST_SLEEP": "tests only: the scoring worker sleeps this many seconds (a hung checkpoint)",
}
FALSE_WORDS = ("", "0", "false", "no", "off")


def env(name: str, default: str | None = None) -> str | None:
    """The value of a declared environment variable (`default` when unset or empty)."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of the course's settings (helpers.settings.VARIABLES): "
                       + ", ".join(sorted(VARIABLES)))
    value = os.environ.get(name)
    return value if value else default


def env_flag(name: str) -> bool:
    """True when a declared variable is set to anything but "", 0, false, no or off."""
    return (env(name) or "").strip().lower() not in FALSE_WORDS


def env_number(name: str, default: float) -> float:
    """A declared variable as a number; `default` when it is unset or not a number."""
    try:
        return float(env(name) or default)
    except ValueError:
        return default


def passed_through(names) -> dict[str, str]:
    """{name: value} of the declared variables among `names` that are set: what a child process
    (a sandboxed kernel, a scoring worker) is handed of the TA's environment, and nothing else."""
    for name in names:
        env(name)  # a declared name, or KeyError
    # set-but-empty values travel too: CUDA_VISIBLE_DEVICES="" means "no GPU", not "unset"
    return {name: os.environ[name] for name in names if name in os.environ}


def fast_mode() -> bool:
    """True when `COURSE_FAST=1`: everything that trains uses a small subset and few epochs."""
    return env_flag("COURSE_FAST")


def autograding() -> bool:
    """True inside `nbgrader autograde`/`validate`, which set `NBGRADER_EXECUTION` in the kernel."""
    return bool(env("NBGRADER_EXECUTION"))


def offline() -> bool:
    """True when `COURSE_OFFLINE=1`: datasets are never downloaded."""
    return env_flag("COURSE_OFFLINE")


def data_dir() -> Path:
    """Where datasets and caches live: `$COURSE_DATA_DIR`, else `data/` beside the package."""
    path = env("COURSE_DATA_DIR")
    return Path(path).expanduser() if path else PROJECT_ROOT / "data"


def full_on_cpu() -> bool:
    """True when `COURSE_FULL_ON_CPU=1`: training cells train fully even without a GPU (hours)."""
    return env_flag("COURSE_FULL_ON_CPU")


def by_mode(full, fast):
    """`fast` in reduced mode (COURSE_FAST=1), else `full`: e.g. `epochs = by_mode(30, 2)`."""
    return fast if fast_mode() else full


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the one asked for, else CUDA, then Apple's MPS, then the CPU."""
    import torch
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
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
