"""Training: one TrainConfig describes a run, `fit` runs it over a TrainState.

    config.py     TrainConfig (data, model, optimizer, schedule, ..., seed) and its checks
    recipes.py    the default settings, general and per model (the only place they are written)
    loop.py       fit, make_loaders, make_optimizer, evaluate_loader: the training loop
    state.py      TrainState (model, EMA, optimizer, scheduler, history, best) and EarlyStopping
    schedules.py  learning-rate schedules (one-cycle, cosine, linear, constant, with warmup)
    ema.py        an exponential moving average of the weights
    history.py    per-epoch metrics, saved as JSON
    progress.py   the progress bar and live curves in a notebook or a terminal
    tracking.py   MLflow logging of params, per-epoch metrics and files

Mixed precision rules (helpers/precision.py) and checkpoints (helpers/models/checkpoint.py) sit
lower down: inference and grading use them without training.
"""
from .config import ConfigError, TrainConfig  # noqa: F401
from .loop import (  # noqa: F401  (helpers.train was one module; its names stay here)
    TrainingError, _start, _train_epoch, evaluate_loader, fit, init_from_data, make_loaders, make_optimizer,
    resolve_config,
)
from .recipes import DEFAULT_LR  # noqa: F401
from .state import EarlyStopping, TrainState  # noqa: F401
