"""Hidden tests of 06_challenge: the two recipes, the ablation changes, worst_classes and the saved models.

They run in the trusted grading process. The student's functions are called in the sandboxed
worker through `student`; the recipes that come back (plain data) are checked here with the
checks of the notebook's read-only `recipe-given` cell (complete_recipe, probe_recipe_model),
run from the course's own copy of that cell, in both run modes (COURSE_FAST is switched inside
the worker). The submitted checkpoints are only read inside the sandbox, by helpers' weights-only
loader; what comes back here is data, and the rebuilt model runs there. The model scores
(`model-score`, `cifar100-score`) are not decided here: helpers/grading/score.py computes them.

The answers are tied to the submitted work: a checkpoint records the completed recipe it was
trained with and the data it was trained on (helpers.checkpoint.dataset_fingerprint). Where a
readable checkpoint exists, `challenge_recipe()` / `cifar100_recipe()`, called in the run mode the
model was trained in, must return exactly its recorded recipe, and every `ablation_changes()`
entry must change that recipe. The saved-model blocks refuse a model trained on other data than
the training split the grader holds (testsets.verified_testset(...).train_digest: CIFAR-10 /
CIFAR-100 where configured, else the generated dataset), and one that is not the model of its
recorded recipe.
"""
import contextlib
import functools
import json

import numpy as np
import torch

from helpers import checks
from helpers.config import PROJECT_ROOT, fast_mode
from helpers.evaluate import to_model_input
from helpers.grading.challenge import (
    CHECKPOINT_NAME, CIFAR100_CHECKPOINT_NAME, check_mean_std, dataset_problem, model_for_classes, recipe_differences,
)
from helpers.grading.harness import block
from helpers.grading.harness.session import Remote
from helpers.models import model_names

ASSIGNMENT = "06_challenge"
MAX_FILE_BYTES = 100_000_000  # nbgrader refuses bigger files
FULL_LIMITS, FAST_LIMITS = (10_000, 20_000_000), (5, 1_000_000)  # (epochs, parameters)


# ----------------------------------------------------------------------------- helpers

def plain(value, name: str, what: str):
    """`value` when it came back as data; a one-line failure when it is a remote object."""
    if isinstance(value, Remote):
        raise AssertionError(f"{name}: expected {what}, got a {value.type_name} object")
    return value


@functools.lru_cache(maxsize=1)
def given():
    """The notebook's read-only `recipe-given` cell, run here from the course's copy (release, else source)."""
    from helpers.grading.challenge import given_namespace
    for folder in ("release", "source"):
        path = PROJECT_ROOT / folder / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        if path.is_file():
            break
    return given_namespace(path)


@functools.lru_cache(maxsize=2)
def graded_data(dataset: str):
    """The grader's verified data of `dataset` (its training-split digest is what a model must be trained
    on): CIFAR-10 / CIFAR-100 where configured, else the generated dataset, in this run mode."""
    from helpers.grading.testsets import verified_testset
    try:
        return verified_testset(dataset, allow_synthetic=True)
    except Exception as exc:  # noqa: BLE001 - the grader's problem: say so in every student's reason
        raise AssertionError(f"the grader could not load trusted {dataset} data to compare with: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None


def record_of(student, name: str) -> dict | None:
    """The plain fields of the submitted checkpoint `name` (read in the sandbox), or None when there is
    no readable one (the saved-model block says why)."""
    if student.make("os.path.isfile", name) is not True or student.make("os.path.islink", name) is not False:
        return None
    record = student.make("helpers.grading.challenge.checkpoint_record", name)
    if not isinstance(record, dict) or record.get("error"):
        return None
    return record


def complete(recipe, name: str) -> dict:
    """complete_recipe(recipe) of the given cell; its ValueError becomes the one-line reason."""
    try:
        return given()["complete_recipe"](recipe)
    except ValueError as exc:
        raise AssertionError(f"{name}: {exc}") from None


def parameters(entry: dict, num_classes: int, name: str) -> int:
    """The parameter count of a recipe's model, built on the meta device from a JSON copy of the entry."""
    try:
        params, _ = given()["probe_recipe_model"](json.loads(json.dumps(entry)), num_classes, forward=False)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise AssertionError(f"{name}: the model {entry.get('name')!r} cannot be built: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return params


@contextlib.contextmanager
def run_mode(student, fast: bool):
    """COURSE_FAST set inside the worker (by_mode reads it at each call), restored afterwards."""
    before = student.make("os.environ.get", "COURSE_FAST")
    student.make("os.environ.__setitem__", "COURSE_FAST", "1" if fast else "0")
    try:
        yield
    finally:
        if isinstance(before, str):
            student.make("os.environ.__setitem__", "COURSE_FAST", before)
        else:
            student.make("os.environ.pop", "COURSE_FAST", None)


def same(a, b) -> bool:
    """Equality of two returned values that never raises (arrays inside count as different)."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays inside: ambiguous truth value
        return False


# ----------------------------------------------------------------------------- recipes

def check_recipe_trained(student, fn_name: str, checkpoint: str) -> None:
    """`fn_name()`, in the run mode the submitted model was trained in, returns its recorded recipe."""
    record = record_of(student, checkpoint)
    if record is None:
        return  # no readable checkpoint: nothing to compare with (the saved-model block fails instead)
    call = f"{fn_name}()"
    recorded = record.get("recipe")
    checks.check(isinstance(recorded, dict),
                 f"{call}: {checkpoint} does not record the recipe it was trained with (saved by an older version "
                 "of helpers, or not by the notebook's save cell); run the training and save cells again")
    reduced = bool((record.get("dataset") or {}).get("reduced"))
    mode = "reduced mode" if reduced else "full mode"
    with run_mode(student, reduced):
        recipe = plain(getattr(student, fn_name)(), f"{call} in {mode}", "a dict")
    full = complete(recipe, f"{call} in {mode}")
    diff = recipe_differences(full, recorded)
    checks.check(not diff, f"{call} in {mode} is not the recipe {checkpoint} was trained with ({diff}); return the "
                 "recipe you trained the submitted model with, or retrain with this one and save again")


def check_recipe(student, fn_name: str, num_classes: int) -> None:
    """The checks of the recipe test cells (visible and formerly hidden) for `fn_name`."""
    fn = getattr(student, fn_name)
    call = f"{fn_name}()"
    recipe = plain(fn(), call, "a dict")
    checks.check(isinstance(recipe, dict), f"{call}: expected a dict, got {type(recipe).__name__}")
    full = complete(recipe, call)
    params = parameters(full["model"], num_classes, call)
    checks.check(params <= FULL_LIMITS[1], f"{call}: expected at most 20,000,000 parameters, got {params:,}; "
                 "the checkpoint would be too large to submit")
    _, out = given()["probe_recipe_model"](full["model"], num_classes)
    checks.check_shape(out, (2, num_classes), f"the output of your {full['model']['name']} for 2 images",
                       hint="one score per class for each image")
    again = plain(fn(), call, "a dict")
    checks.check(same(again, recipe), f"{call}: two calls gave different recipes; return the same dict")
    for fast in (False, True):  # the recipe must hold in both modes, whichever the grader runs in
        mode = "reduced mode" if fast else "full mode"
        with run_mode(student, fast):
            recipe = plain(fn(), f"{call} in {mode}", "a dict")
        full = complete(recipe, f"{call} in {mode}")
        # built from a JSON copy of the entry: that is what the checkpoint stores and the grader rebuilds
        params = parameters(full["model"], num_classes, f"{call} in {mode}")
        limit_epochs, limit_params = FAST_LIMITS if fast else FULL_LIMITS
        checks.check(full["epochs"] <= limit_epochs and params <= limit_params,
                     f"{call} in {mode}: expected at most {limit_epochs} epochs and {limit_params:,} "
                     f"parameters, got {full['epochs']} and {params:,}; use by_mode(full, fast)")


@block("challenge_recipe-tests")
def test_challenge_recipe(student):
    check_recipe(student, "challenge_recipe", 10)


@block("challenge_recipe-tests")
def test_challenge_recipe_is_what_the_model_was_trained_with(student):
    check_recipe_trained(student, "challenge_recipe", CHECKPOINT_NAME)


@block("cifar100_recipe-tests")
def test_cifar100_recipe(student):
    check_recipe(student, "cifar100_recipe", 100)  # built for 100 classes even where the data fell back to 10


@block("cifar100_recipe-tests")
def test_cifar100_recipe_is_what_the_model_was_trained_with(student):
    check_recipe_trained(student, "cifar100_recipe", CIFAR100_CHECKPOINT_NAME)


# ----------------------------------------------------------------------------- saved models

def check_saved_model(student, name: str, dataset: str, what: str) -> None:
    """The submitted checkpoint `name`, read in the sandbox with helpers' weights-only loader."""
    checks.check(student.make("os.path.isfile", name) is True,
                 f"{name}: expected the saved model beside the submitted notebook, found no such file; run the "
                 f"training and save cells, then submit {name} together with this notebook")
    checks.check(student.make("os.path.islink", name) is False,
                 f"{name}: expected a file, got a symbolic link; the grader refuses links, so save the model "
                 "itself here")
    size = student.make("os.path.getsize", name)
    checks.check(type(size) is int and size < MAX_FILE_BYTES, f"{name}: expected under 100 MB, got "
                 f"{size / 1e6 if type(size) is int else float('nan'):.0f} MB; nbgrader refuses such files: use a "
                 "smaller model")
    ckpt = plain(student.make("helpers.checkpoint.load_checkpoint", name), name, "a checkpoint dict")
    checks.check(isinstance(ckpt, dict), f"{name}: expected a course checkpoint, got {type(ckpt).__name__}")
    problem = check_mean_std(ckpt.get("mean"), ckpt.get("std"))
    checks.check(problem is None, f"{name}: {problem}")
    expected = graded_data(dataset)
    problem = dataset_problem(ckpt.get("dataset"), expected)
    checks.check(problem is None, f"{name}: {problem}")
    spec = ckpt.get("model") if isinstance(ckpt.get("model"), dict) else {}
    checks.check(spec.get("name") in model_names(), f"{name}: model {spec.get('name')!r} is not one of helpers.models, "
                 "so the grader cannot rebuild it")
    classes = expected.num_classes
    recipe = ckpt.get("recipe")
    entry = recipe.get("model") if isinstance(recipe, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        try:
            want_name, want_kwargs = model_for_classes(entry, classes)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            want_name, want_kwargs = entry["name"], None
        same_model = (spec.get("name") == want_name
                      and json.loads(json.dumps(spec.get("kwargs") or {})) == want_kwargs)
        checks.check(same_model, f"{name}: holds a {spec.get('name')!r} model, but not the one its recorded recipe "
                     f"builds ({want_name!r} with the recipe's arguments, for {classes} classes): save the model you "
                     "trained with that recipe")
    model = student.make("helpers.checkpoint.rebuild_model", name)  # from the registry name, then the weights
    images = np.random.default_rng(6).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    x = to_model_input(images, ckpt["mean"], ckpt["std"])
    out = plain(student.make("torch.no_grad")(model)(x), f"the saved {what} model's output", "a tensor")
    checks.check_shape(out, (2, classes), f"the saved {what} model's output for 2 images",
                       hint=f"one score for each of the {classes} classes of {expected.name}")
    checks.check(bool(torch.isfinite(torch.as_tensor(out)).all()), f"{name}: the saved model outputs NaN or inf")


@block("saved_model-tests")
def test_saved_model(student):
    check_saved_model(student, CHECKPOINT_NAME, "cifar10", "CIFAR-10")


@block("saved_cifar100_model-tests")
def test_saved_cifar100_model(student):
    check_saved_model(student, CIFAR100_CHECKPOINT_NAME, "cifar100", "CIFAR-100")


# ----------------------------------------------------------------------------- ablation_changes

@block("ablation_changes-tests")
def test_ablation_changes(student):
    changes = plain(student.ablation_changes(), "ablation_changes()", "a dict")
    checks.check(isinstance(changes, dict) and 1 <= len(changes) <= 3,
                 f"ablation_changes(): expected a dict with 1 to 3 entries, got {changes!r}"[:400])
    for label, change in changes.items():
        checks.check(isinstance(label, str) and label.strip() != "",
                     f"ablation_changes(): expected non-empty strings as labels, got {label!r}")
        checks.check(isinstance(change, dict) and len(change) > 0,
                     f"ablation_changes()[{label!r}]: expected a non-empty dict of recipe changes, got {change!r}")
        complete(change, f"ablation_changes()[{label!r}]")
    checks.check(same(plain(student.ablation_changes(), "ablation_changes()", "a dict"), changes),
                 "ablation_changes(): two calls gave different dicts")
    fast = fast_mode()  # the worker runs in the same mode as this process
    for label, change in changes.items():
        checks.check(len(change) <= 2, f"ablation_changes()[{label!r}] changes {len(change)} keys; change one "
                     "thing (one key, or two that belong together)")
        full = complete(change, f"ablation_changes()[{label!r}]")
        if "model" in change:
            params = parameters(full["model"], 10, f"ablation_changes()[{label!r}]")
            checks.check(not fast or params <= FAST_LIMITS[1], f"ablation_changes()[{label!r}] in reduced mode: "
                         f"expected at most 1,000,000 parameters, got {params:,}")
        checks.check(not fast or "epochs" not in change or change["epochs"] <= FAST_LIMITS[0],
                     f"ablation_changes()[{label!r}] in reduced mode: expected at most 5 epochs")


@block("ablation_changes-tests")
def test_ablation_changes_change_the_trained_recipe(student):
    record = record_of(student, CHECKPOINT_NAME)
    if record is None or not isinstance(record.get("recipe"), dict):
        return  # nothing recorded to ablate (challenge_recipe-tests and saved_model-tests say why)
    recorded = record["recipe"]
    changes = plain(student.ablation_changes(), "ablation_changes()", "a dict")
    checks.check(isinstance(changes, dict), f"ablation_changes(): expected a dict, got {type(changes).__name__}")
    for label, change in changes.items():
        checks.check(isinstance(change, dict), f"ablation_changes()[{label!r}]: expected a dict, got {change!r}"[:300])
        changed = complete({**recorded, **change}, f"ablation_changes()[{label!r}]")
        checks.check(recipe_differences(changed, recorded) != "",
                     f"ablation_changes()[{label!r}] changes nothing: {CHECKPOINT_NAME} was trained with "
                     f"{', '.join(f'{k}={recorded.get(k)!r}' for k in change)} already; ablate something your "
                     "recipe does")


# ----------------------------------------------------------------------------- worst_classes

def _pairs(got, name: str) -> list:
    checks.check(isinstance(got, list) and all(isinstance(x, tuple) and len(x) == 2 for x in got),
                 f"{name}: expected a list of (class, recall) tuples, got {got!r}"[:400])
    return got


@block("worst_classes-tests", deny=["helpers.metrics.precision_recall_f1", "sklearn"])
def test_worst_classes_visible(student):
    worst_classes = student.worst_classes
    t = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 2, 1, 0])
    got = _pairs(worst_classes(t, p, 3, k=2), "worst_classes(t, p, 3, k=2)")
    checks.check(all(type(c) is int and type(r) is float for c, r in got),
                 f"worst_classes(t, p, 3, k=2): expected Python int classes and float recalls, got {got!r}; "
                 "convert with int() and float()")
    checks.check_equal([c for c, _ in got], [2, 0], "the classes of worst_classes(t, p, 3, k=2)",
                       hint="lowest recall first: class 2 has 1 of 4 right, class 0 3 of 4, class 1 4 of 4")
    checks.check_close([r for _, r in got], [0.25, 0.75], "the recalls of worst_classes(t, p, 3, k=2)")


@block("worst_classes-tests", deny=["helpers.metrics.precision_recall_f1", "sklearn"])
def test_worst_classes_imbalanced(student):
    worst_classes = student.worst_classes
    rng = np.random.default_rng(6)
    t = np.repeat(np.arange(6), [50, 5, 20, 80, 0, 12])  # imbalanced; class 4 has no image
    rng.shuffle(t)
    p = np.where(rng.random(len(t)) < 0.7, t, rng.integers(0, 6, len(t)))
    support = np.bincount(t, minlength=6)
    hits = np.bincount(t[p == t], minlength=6)
    present = np.flatnonzero(support)
    order = present[np.lexsort((present, hits[present] / support[present]))]
    want = [(int(c), float(hits[c] / support[c])) for c in order]
    got = _pairs(worst_classes(t, p, 6, k=3), "worst_classes(imbalanced labels, 6, k=3)")
    checks.check_equal([c for c, _ in got], [c for c, _ in want[:3]], "the classes of worst_classes on imbalanced "
                       "labels", hint="divide by the number of images of each class, not by N / num_classes")
    checks.check_close([r for _, r in got], [r for _, r in want[:3]], "the recalls on imbalanced labels", atol=1e-9)
    everything = _pairs(worst_classes(t, p, 6, k=10), "worst_classes(..., k=10)")
    checks.check_equal([c for c, _ in everything], [c for c, _ in want],
                       "worst_classes(..., k=10) with 5 of 6 classes present",
                       hint="leave out classes without images; return fewer than k then")
    tied = _pairs(worst_classes(np.array([0, 1, 2, 3]), np.array([1, 0, 2, 0]), 4, k=2), "worst_classes(tied, k=2)")
    checks.check_equal(tied, [(0, 0.0), (1, 0.0)], "worst_classes with tied recalls",
                       hint="on a tie the smaller class index comes first")
    narrow = _pairs(worst_classes(t.astype(np.int32), p.astype(np.int32), 6, k=3), "worst_classes(int32 labels)")
    checks.check_equal(narrow, got, "worst_classes on int32 labels")
