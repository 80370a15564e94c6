"""The contract between the 06_challenge notebook and the TAs' scoring, in one place.

The notebook saves the student's model with `save_challenge_checkpoint` into the assignment
folder under CHECKPOINT_NAME (CIFAR-10) and CIFAR100_CHECKPOINT_NAME (the CIFAR-100 part).
`python -m helpers grade 06_challenge` scores those files outside the student's kernel and
writes the points into the manually graded task cells SCORE_CELL and CIFAR100_SCORE_CELL.
During autograde (NBGRADER_EXECUTION set) `load_or_train` loads the checkpoint instead of
training, so autograde takes seconds and never retrains.

What the challenge rewards (the rules the grader applies, in one place):
- a checkpoint records the recipe it was trained with and the data it was trained on
  (`helpers.models.checkpoint.dataset_fingerprint`: the name and a SHA-256 of the training split);
  the hidden tests compare the recipe answers with the recorded recipe, and the scoring gives 0
  to a model trained on other data than the data it is graded on;
- a model whose architecture matches a handed-out or ready-made design (HANDED_OUT, then every
  zoo model of `helpers.models`; `helpers.grading.fingerprint`: the same layer kinds in the same
  order, or the same convolutions and linear layers in the same order, every width within 25%) earns at most CAP_FRACTION of the model points, whatever its
  accuracy: the top tiers need the student's own design.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from ..models.checkpoint import check_mean_std  # noqa: F401  (notebooks import it from here)

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
SOURCE_NOTEBOOK = f"source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"  # relative to the project root

# The designs the 06 notebook hands out (its text and DEFAULT_RECIPE), as recipe "model" entries. A
# model that matches one of these, or any zoo model of helpers.models at its default arguments,
# earns at most CAP_FRACTION of the model points. The layers example's last "out" is set to the
# number of classes graded, as the notebook's build_recipe_model does.
CAP_FRACTION = 0.6
SMALL_RESNET_EXAMPLE = {"name": "layers", "kwargs": {"layers": [
    {"type": "conv", "out": 64}, {"type": "bn"}, {"type": "relu"},
    {"type": "residual", "out": 128, "stride": 2}, {"type": "residual", "out": 256, "stride": 2},
    {"type": "residual", "out": 512, "stride": 2}, {"type": "globalpool"}, {"type": "linear", "out": 10}]}}
HANDED_OUT = {
    "the handed-out fastnet": {"name": "fastnet", "kwargs": {}},
    "the handed-out resnet18": {"name": "resnet18", "kwargs": {}},
    "the handed-out small ResNet (the notebook's layers example)": SMALL_RESNET_EXAMPLE,
    "the handed-out default fiveconv_bn": {"name": "fiveconv_bn", "kwargs": {}},
}
# The recipes the notebook prints as starting points (its part 1 text), for the reference benchmark.
HANDED_OUT_RECIPES = {
    "fastnet": {"model": {"name": "fastnet", "kwargs": {}}, "epochs": 10, "batch_size": 1024, "lr": 1.5,
                "momentum": 0.85, "weight_decay": 1.3e-3, "norm_bias_lr_scale": 64.0, "schedule": "linear",
                "warmup": 0.23, "label_smoothing": 0.2, "crop_padding": 2},
    "resnet18": {"model": {"name": "resnet18", "kwargs": {}}, "epochs": 20, "batch_size": 512, "optimizer": "sgd",
                 "lr": 0.2, "schedule": "onecycle", "label_smoothing": 0.1},
}


def task_cell_metadata(grade_id: str, points: float) -> dict:
    """The nbgrader metadata of a manually graded task cell (a markdown cell) that receives a score."""
    return {"nbgrader": {"grade": False, "solution": False, "locked": True, "task": True,
                         "grade_id": grade_id, "points": float(points), "schema_version": 3}}


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


def save_challenge_checkpoint(path, model, *, history, mean, std, dataset, recipe=None) -> Path:
    """Save the challenge model for grading: weights, registry spec, mean/std, history, the recipe it
    was trained with and the data it was trained on; returns the path.

    `dataset` is the ImageData trained on (its name and a SHA-256 of its training split are
    recorded: `helpers.models.checkpoint.dataset_fingerprint`); a bare name is accepted but records no
    digest, and the grader gives such a checkpoint 0 points. `recipe` is the completed recipe dict
    (the notebook's complete_recipe(...)); the hidden tests compare the recipe answers with it.
    Refuses (ValueError) a model the grader cannot rebuild, unusable mean/std, a recipe that is not
    plain data, or NaN/inf weights, each with what to do; prints a warning when the file is near
    nbgrader's 100 MB limit.
    """
    from ..models.checkpoint import CheckpointError, dataset_fingerprint, has_nonfinite, save_checkpoint
    spec = _check_registry_model(model)
    trained_on = (dataset_fingerprint(dataset) if hasattr(dataset, "train_images")
                  else {"name": _dataset_name(dataset)})
    if recipe is not None:
        if not isinstance(recipe, dict):
            raise ValueError(f"cannot save: recipe must be the completed recipe dict, got {type(recipe).__name__}")
        try:
            recipe = json.loads(json.dumps(recipe))
        except (TypeError, ValueError):
            raise ValueError("cannot save: the recipe must hold plain values only (numbers, strings, lists, "
                             "dicts)") from None
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
    try:
        path = save_checkpoint(path, model, history=list(history or []), mean=mean, std=std,
                               extra={"dataset": _dataset_name(dataset), "spec": spec}, recipe=recipe,
                               dataset=trained_on)
    except CheckpointError as exc:
        raise ValueError(f"cannot save: {exc}") from None
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
    from ..models.checkpoint import load_checkpoint, rebuild_model
    from ..settings import autograding
    from ..train.history import History
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


# ----------------------------------------------------------------------------- handed-out designs

def model_for_classes(entry: dict, num_classes: int) -> tuple[str, dict]:
    """(registry name, constructor kwargs) of a recipe "model" entry for `num_classes`, as the
    notebook's build_recipe_model builds it (a layers description gets its last "out" set)."""
    kwargs = json.loads(json.dumps(entry.get("kwargs") or {}))
    if entry["name"] == "layers":
        kwargs["layers"][-1]["out"] = num_classes
        return "layers", kwargs
    return entry["name"], {**kwargs, "num_classes": num_classes}


@functools.lru_cache(maxsize=4)
def reference_fingerprints(num_classes: int) -> tuple[tuple[str, tuple], ...]:
    """((label, fingerprint), ...) of the handed-out designs, then of every zoo model of
    helpers.models at its default arguments, built for `num_classes` on the meta device."""
    import inspect

    import torch

    from ..models import build_model, model_names
    from ..models.registry import _REGISTRY
    from .fingerprint import fingerprint
    entries = list(HANDED_OUT.items())
    for name in model_names():
        constructor = _REGISTRY[name]
        if name == "layers" or not getattr(constructor, "__module__", "").startswith("helpers.models"):
            continue
        if all(e["name"] != name or e.get("kwargs") for _, e in entries):
            entries.append((f"the zoo model {name}", {"name": name, "kwargs": {}}))
    out = []
    for label, entry in entries:
        name, kwargs = model_for_classes(entry, num_classes)
        if "pretrained" in inspect.signature(_REGISTRY[name]).parameters:
            kwargs["pretrained"] = False
        with torch.device("meta"):
            model = build_model(name, **kwargs)
        out.append((label, tuple(fingerprint(model))))
    return tuple(out)


def match_reference(fp, num_classes: int) -> str | None:
    """The label of the first handed-out or zoo design that fingerprint `fp` matches, else None."""
    from .fingerprint import matches
    for label, reference in reference_fingerprints(num_classes):
        if matches(list(fp), list(reference)):
            return label
    return None


def cap_reason(label: str) -> str:
    """The reason a capped model's points say, e.g. 'matches the handed-out fastnet (widths within 25%):
    capped at 60%'."""
    from .fingerprint import TOLERANCE
    return f"matches {label} (widths within {TOLERANCE:.0%}): capped at {CAP_FRACTION:.0%}"


# ----------------------------------------------------------------------------- what a checkpoint records

def checkpoint_record(path) -> dict:
    """The plain fields of a challenge checkpoint, without its weights: {"model", "recipe", "dataset",
    "mean", "std", "extra", "error"}; "error" says why the file could not be read (then the others
    are None). Run where the file may be read (the harness calls it inside the sandbox)."""
    from ..models.checkpoint import CheckpointError, load_checkpoint
    out = dict.fromkeys(("model", "recipe", "dataset", "mean", "std", "extra"))
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        return {**out, "error": str(exc).replace(str(path), Path(path).name)}
    plain = {k: ckpt.get(k) for k in out}
    try:
        return {**json.loads(json.dumps(plain)), "error": None}
    except (TypeError, ValueError):
        return {**out, "error": f"{Path(path).name} holds fields that are not plain data"}


def trained_on_text(record) -> str:
    """'<name> <digest, 12 hex> (<n> training images[, reduced mode])' of a checkpoint's dataset record."""
    record = record if isinstance(record, dict) else {}
    digest = str(record.get("sha256") or "no digest")[:12]
    images = record.get("images")
    count = f"{images:,} training images" if isinstance(images, int) else "size unknown"
    mode = ", reduced mode" if record.get("reduced") else ""
    return f"{record.get('name', 'unknown data')} {digest} ({count}{mode})"


def dataset_problem(record, expected) -> str | None:
    """Why a checkpoint's dataset record does not fit the data graded on, or None when it does.

    `record`: the checkpoint's "dataset" field; `expected`: a testsets.VerifiedTestSet (its
    training-split digest) or a dataset_fingerprint dict."""
    if hasattr(expected, "train_digest"):
        want_digest, want_text, want = expected.train_digest, expected.trained_on(), expected.name
        reduced = expected.reduced
    else:
        want_digest, want_text, want = expected["sha256"], trained_on_text(expected), expected["name"]
        reduced = bool(expected.get("reduced"))
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return ("the checkpoint does not record the data it was trained on (saved by an older version of the "
                "course's helpers, or without the data): run the notebook's training and save cells again, "
                "which record it")
    if record["sha256"] == want_digest:
        return None
    mode = " in reduced mode (COURSE_FAST=1)" if reduced else " in full mode (without COURSE_FAST)"
    return (f"trained on {trained_on_text(record)}, but this assignment is graded on {want_text}: retrain on "
            f"{want}{mode}, i.e. on the data helpers.course_data gives the notebook there, and save again")


# ----------------------------------------------------------------------------- the notebook's code, run here

def notebook_cells(path=None) -> dict:
    """{grade_id: source} of the code cells of the 06 notebook at `path` (default: the source notebook)."""
    from ..settings import PROJECT_ROOT
    nb = json.loads(Path(path or PROJECT_ROOT / SOURCE_NOTEBOOK).read_text(encoding="utf-8"))
    return {(c.get("metadata", {}).get("nbgrader") or {}).get("grade_id", f"cell{i}"): "".join(c["source"])
            for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"}


def given_namespace(path=None, *, answers=()) -> dict:
    """The namespace of the notebook's read-only `recipe-given` cell (complete_recipe, train_recipe,
    build_recipe_model, ...), run here from the notebook at `path` (default: the source), then the
    answer cells `answers` (grade_ids; their solution markers are comments, so the source's
    solutions run as written). Nothing else of the notebook runs (no data is loaded)."""
    import contextlib
    import io

    import numpy as np
    import torch

    import helpers
    from ..settings import by_mode, fast_mode
    cells = notebook_cells(path)
    namespace = {"__name__": "recipe_given", "json": json, "np": np, "torch": torch, "helpers": helpers,
                 "Path": Path, "by_mode": by_mode, "FAST": fast_mode()}
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the model names
        for grade_id in ("recipe-given", *answers):
            exec(compile(cells[grade_id], f"{ASSIGNMENT}.ipynb:{grade_id}", "exec"), namespace)
    return namespace


def write_solution_work_files(folder) -> list[Path]:
    """The two checkpoints a run of the source solution leaves beside the notebook, without the
    training: each recipe's model (challenge_recipe for CIFAR-10, cifar100_recipe for CIFAR-100,
    in this run mode), untrained with seeded weights, saved as the notebook's save cells save it,
    with the completed recipe and the data the notebook would train on (course_data in this run
    mode). They pass every check of the saved files; their accuracy is that of an untrained model."""
    import torch

    from ..data.datasets import course_data
    ns = given_namespace(answers=("challenge_recipe-answer", "cifar100_recipe-answer"))
    written = []
    for function, name, dataset in (("challenge_recipe", CHECKPOINT_NAME, "cifar10"),
                                    ("cifar100_recipe", CIFAR100_CHECKPOINT_NAME, "cifar100")):
        recipe = ns["complete_recipe"](ns[function]())
        data = course_data(dataset, verbose=False)
        torch.manual_seed(recipe["seed"])
        model = ns["build_recipe_model"](recipe["model"], data.num_classes)
        written.append(save_challenge_checkpoint(Path(folder) / name, model, history=[], mean=(0.5, 0.5, 0.5),
                                                 std=(0.25, 0.25, 0.25), dataset=data, recipe=recipe))
    return written


# ----------------------------------------------------------------------------- recipes and checkpoints

def _plain_json(value):
    return json.loads(json.dumps(value))


def recipe_differences(answer: dict, recorded: dict, limit: int = 3) -> str:
    """'' when two completed recipes are the same (as JSON: tuples and lists alike), else a short
    text naming the first `limit` keys that differ, e.g. "epochs: 3 now, 2 trained; lr: ..."."""
    try:
        a, b = _plain_json(answer), _plain_json(recorded)
    except (TypeError, ValueError):
        return "the recipe holds values that are not plain data"
    if not isinstance(a, dict) or not isinstance(b, dict):
        return f"expected two recipe dicts, got {type(a).__name__} and {type(b).__name__}"
    keys = [k for k in list(b) + [k for k in a if k not in b] if a.get(k, "(missing)") != b.get(k, "(missing)")]
    shown = []
    for key in keys[:limit]:
        now, then = a.get(key, "(missing)"), b.get(key, "(missing)")
        if key == "model" and isinstance(now, dict) and isinstance(then, dict) and now.get("name") == then.get("name"):
            now, then = f"{now.get('name')} with other arguments", f"{then.get('name')} with its own"
        shown.append(f"{key}: {str(now)[:60]} now, {str(then)[:60]} trained")
    return "; ".join(shown) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


class run_mode:
    """`with run_mode(reduced):` COURSE_FAST set to that mode (by_mode reads it at each call), restored
    afterwards; for calling a recipe function as it was called when its model trained."""

    def __init__(self, reduced: bool):
        self.reduced = bool(reduced)

    def __enter__(self):
        import os
        from ..settings import env
        self.before = env("COURSE_FAST")
        os.environ["COURSE_FAST"] = "1" if self.reduced else "0"
        return self

    def __exit__(self, *exc):
        import os
        if self.before is None:
            os.environ.pop("COURSE_FAST", None)
        else:
            os.environ["COURSE_FAST"] = self.before
        return False
