"""The course's helpers: data, models, fast training, evaluation, grading, and the command line.

    helpers/settings.py   environment variables, run mode (reduced or full), device, seeding
    helpers/data/         datasets, image folders, generated data, splits, GPU loader, augmentation
    helpers/models/       the model registry, the course's networks, checkpoints (the model file)
    helpers/eval/         metrics, predictions and inference, explanations, plots
    helpers/train/        TrainConfig, the fit loop, its state, schedules, EMA, recipes, tracking
    helpers/commands/     `python -m helpers <command>` (helpers/cli.py lists them)
    helpers/grading/      nbgrader hooks, the sandbox, hidden-test harness, scoring (TAs only)

Imports go one way, down this list's order of layers (settings, data, models, eval, train, the
commands, grading); tests/test_layout.py checks it. Notebooks, the command line and the tests all
call this package, so each thing is written once. Jupyter-only pieces (nbgrader, ipywidgets) are
imported lazily, so `helpers` imports and trains on a bare GPU machine with only torch installed.
Old module names (helpers.metrics, helpers.train_config, ...) still import: see helpers/moved.py.
"""
__version__ = "0.1.0"

from . import moved as _moved  # noqa: E402

_moved.install()

from .settings import autograding, data_dir, fast_mode, pick_device, seed_everything  # noqa: E402
from .data import DataError, ImageData, course_data, load_dataset  # noqa: E402
from .data.export import export_image_folder  # noqa: E402
from .labelling import LabellingTool, export_splits, make_sample_folder  # noqa: E402
from .data.loader import GpuLoader  # noqa: E402
from .data.split import channel_mean_std, stratified_subset, train_val_split  # noqa: E402
