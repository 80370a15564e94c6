"""The contract between the 06_challenge notebook and the TAs' scoring, in one place.

The notebook saves the student's model with `save_challenge_checkpoint` into the assignment
folder under CHECKPOINT_NAME (CIFAR-10) and CIFAR100_CHECKPOINT_NAME (the CIFAR-100 part).
`python -m helpers grade 06_challenge` scores those files outside the student's kernel and
writes the points into the manually graded task cells SCORE_CELL and CIFAR100_SCORE_CELL.
During autograde (NBGRADER_EXECUTION set) `load_or_train` loads the checkpoint instead of
training, so autograde takes seconds and never retrains.
"""
from __future__ import annotations

import math
from pathlib import Path

ASSIGNMENT = "06_challenge"
CHECKPOINT_NAME = "challenge_model.pt"
CIFAR100_CHECKPOINT_NAME = "cifar100_model.pt"
SCORE_CELL = "model-score"
CIFAR100_SCORE_CELL = "cifar100-score"

# score cell grade_id -> (checkpoint file in the assignment folder, dataset it is tested on)
SCORED_PARTS = {
    SCORE_CELL: (CHECKPOINT_NAME, "cifar10"),
    CIFAR100_SCORE_CELL: (CIFAR100_CHECKPOINT_NAME, "cifar100"),
}

WARN_MB = 90  # nbgrader's release/submit/collect refuse files over 100 MB
ALLOWED_PACKAGE = "helpers."  # only models defined in the course's package can be rebuilt by the grader


def task_cell_metadata(grade_id: str, points: float) -> dict:
    """The nbgrader metadata of a manually graded task cell (a markdown cell) that receives a score."""
    return {"nbgrader": {"grade": False, "solution": False, "locked": True, "task": True,
                         "grade_id": grade_id, "points": float(points), "schema_version": 3}}


def check_mean_std(mean, std) -> str | None:
    """Why a checkpoint's normalization is unusable, or None when it is fine.

    Both absent (the model takes pixels in [0, 1]) or both three numbers in [0, 1] pixel units,
    finite, with std > 0.
    """
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        return f"mean/std malformed: only the {'std' if mean is None else 'mean'} is given; give both or neither"
    for label, values in (("mean", mean), ("std", std)):
        if not isinstance(values, (list, tuple)) or len(values) != 3:
            return f"mean/std malformed: the {label} must be 3 numbers (one per colour channel), got {values!r}"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            return f"mean/std malformed: the {label} holds a value that is not a finite number: {values!r}"
    if not all(0 <= m <= 1 for m in mean) or not all(0 < s <= 1 for s in std):
        return (f"mean/std malformed: expected [0, 1] pixel units with std > 0 (e.g. mean 0.49, std 0.25), "
                f"got mean {[round(m, 4) for m in mean]}, std {[round(s, 4) for s in std]}")
    return None


def _dataset_name(dataset) -> str:
    """'cifar10', 'cifar100' or 'synthetic' from a name or an ImageData."""
    name = getattr(dataset, "name", dataset)
    if not isinstance(name, str):
        raise TypeError(f"dataset must be a name ('cifar10', 'cifar100') or the ImageData trained on, got {dataset!r}")
    return name.lower().replace("-", "")


def _check_registry_model(model) -> dict:
    """The model's registry spec; ValueError explaining what to do when the grader could not rebuild it."""
    from ..models import model_names, model_spec
    from ..models.registry import _REGISTRY
    try:
        spec = model_spec(model)
    except ValueError:
        raise ValueError(
            f"this {type(getattr(model, '_orig_mod', model)).__name__} was not built with "
            "helpers.models.build_model, so the grader cannot rebuild it from the checkpoint. Build your model "
            f"with build_model(name, **kwargs) (names: {', '.join(model_names())}) and train that.") from None
    module = getattr(_REGISTRY.get(spec["name"]), "__module__", "")
    if not module.startswith(ALLOWED_PACKAGE):
        raise ValueError(
            f"model {spec['name']!r} is registered in {module or 'your notebook'}, not in helpers.models: the "
            "grader runs none of your code, so it can only rebuild the course's models. Use one of "
            f"{', '.join(n for n in model_names() if getattr(_REGISTRY[n], '__module__', '').startswith(ALLOWED_PACKAGE))} "
            "with the constructor arguments of your choice.")
    return spec


def save_challenge_checkpoint(path, model, *, history, mean, std, dataset) -> Path:
    """Save the challenge model for grading: weights, registry spec, mean/std and history; returns the path.

    Refuses (ValueError) a model the grader cannot rebuild, unusable mean/std, or NaN/inf weights,
    each with what to do; prints a warning when the file is near nbgrader's 100 MB limit.
    """
    from ..checkpoint import has_nonfinite, save_checkpoint
    spec = _check_registry_model(model)
    mean = None if mean is None else [float(v) for v in _flat(mean)]
    std = None if std is None else [float(v) for v in _flat(std)]
    if problem := check_mean_std(mean, std):
        raise ValueError(problem.replace("mean/std malformed: ", "cannot save: ") +
                         " (pass the mean and std that helpers.train.make_loaders returned)")
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    if bad := has_nonfinite(inner.state_dict()):
        raise ValueError(f"cannot save: the weights contain NaN or inf ({bad[0]}, ...): training diverged; "
                         "retrain with a lower learning rate. The grader would score this model 0.")
    path = save_checkpoint(path, model, history=list(history or []), mean=mean, std=std,
                           extra={"dataset": _dataset_name(dataset), "spec": spec})
    size_mb = path.stat().st_size / 1e6
    if size_mb > WARN_MB:
        print(f"WARNING: {path.name} is {size_mb:.0f} MB; nbgrader refuses files over 100 MB, so this submission "
              "may not be collected. Use a smaller model (fewer channels or blocks).")
    else:
        print(f"saved {path} ({size_mb:.1f} MB, model {spec['name']!r})")
    return path


def _flat(values) -> list:
    """A flat list of numbers from a list, tuple, array or tensor."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().flatten().tolist()
    elif hasattr(values, "tolist"):
        values = values.tolist()
    return list(values) if isinstance(values, (list, tuple)) else [values]


def load_or_train(path, train_fn, *, reuse: bool = False):
    """The notebook's training cell: `(model, history)` from `train_fn()`, or from the checkpoint.

    Under autograde or validate (NBGRADER_EXECUTION set) nothing trains: the checkpoint at
    `path` is loaded (weights only) and a missing file raises FileNotFoundError saying why.
    With `reuse=True` a student's earlier checkpoint is loaded too instead of training again.
    """
    from ..checkpoint import load_checkpoint, rebuild_model
    from ..config import autograding
    from ..history import History
    path = Path(path)
    if autograding() or (reuse and path.is_file()):
        if not path.is_file():
            raise FileNotFoundError(
                f"NBGRADER_EXECUTION is set (autograde/validate), so training is skipped and the model is loaded "
                f"from {path.name}, but that file is not in {path.absolute().parent}. Run the notebook to the save cell "
                f"and submit {path.name} with the notebook.")
        ckpt = load_checkpoint(path)
        model = rebuild_model(ckpt)
        why = "autograde" if autograding() else "reuse=True"
        print(f"[helpers] {why}: loaded {path.name} instead of training ({len(ckpt.get('history') or [])} epochs)")
        return model, History(ckpt.get("history") or [])
    result = train_fn()
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError("train_fn must return (model, history), e.g. `return model, fit(model, train, val, ...)`")
    return result
