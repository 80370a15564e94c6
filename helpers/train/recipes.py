"""Recipe defaults in one place: the general training settings and where each model departs from them.

`fit` fills what a run leaves open from GENERAL (model-agnostic, so a notebook's `fit` call means
the same whatever the network); `python -m helpers train` fills it from `settings_for(model)`,
the model's recipe. The Hydra configs in conf/ leave these values open (null) for the same reason:
this module is the only place they are written.
"""
from __future__ import annotations

# Peak learning rate per optimizer, when a run gives none.
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}

# Warmup as a fraction of all steps when none is given (OneCycleLR's pct_start is 0.3).
DEFAULT_WARMUP = {"onecycle": 0.3, "cosine": 0.05, "linear": 0.2, "constant": 0.0}

# The general recipe. lr is SGD's (the optimizer named here); another optimizer gets DEFAULT_LR.
GENERAL = {"epochs": 20, "batch_size": 512, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
           "weight_decay": 5e-4, "norm_bias_lr_scale": 1.0, "schedule": "onecycle", "warmup": None,
           "label_smoothing": 0.0, "tta": False, "crop_padding": 4}
GENERAL_DEFAULTS = GENERAL  # the name the train command used

# Per-model departures from GENERAL. FastNet's are an airbench-style recipe (arXiv 2404.00498)
# restated for a mean loss: large batch, high lr with BatchNorm biases 64x faster, label smoothing
# 0.2, a triangular schedule, flip+translate test-time augmentation.
MODEL_DEFAULTS = {
    "mlp": {"lr": 0.05},
    "fiveconv": {"lr": 0.05},
    "fiveconv_bn": {},
    "simple_cnn": {"lr": 0.05},
    "resnet18": {"epochs": 30, "lr": 0.2, "label_smoothing": 0.1},
    "se_resnet": {"epochs": 30, "lr": 0.2, "label_smoothing": 0.1},
    "fastnet": {"epochs": 10, "lr": 1.5, "momentum": 0.85, "weight_decay": 1.3e-3, "norm_bias_lr_scale": 64.0,
                "label_smoothing": 0.2, "schedule": "linear", "warmup": 0.23, "tta": "translate",
                "batch_size": 1024, "crop_padding": 2},
    "transfer_resnet18": {"epochs": 5, "lr": 0.01},
}

# Reduced mode (COURSE_FAST=1) on the command line: seconds on a CPU for small models.
REDUCED_MAX_EPOCHS = 2
REDUCED_MAX_BATCH = 128   # small batches, so that two epochs still learn
FAST_PER_CLASS = 50       # training and test images per class the command line keeps


def settings_for(model: str | None, **given) -> dict:
    """GENERAL updated with the model's departures and then with the `given` values that are not None."""
    out = {**GENERAL, **MODEL_DEFAULTS.get(model or "", {})}
    out.update({k: v for k, v in given.items() if v is not None})
    return out
