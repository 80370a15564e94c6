"""Score checkpoints on the test split; run in a fresh process by `helpers.grading.score`.

    python -m helpers.grading.score_worker <checkpoint> [<checkpoint> ...] --dataset cifar10 [--dataset cifar100 ...]
        [--allow-synthetic] --json

One process scores all of one student's checkpoints (importing torch once), one --dataset per
checkpoint (or one for all). Prints one JSON line per checkpoint, in order:
{status, accuracy, macro_f1, reason, model, dataset, images}.
status "ok": scored; "zero": the submission cannot be scored (reason says why, 0 points);
"error": the grader itself could not work (no test data), which is the TA's to fix.
The file is read with `torch.load(weights_only=True)` only (helpers.checkpoint.load_checkpoint),
and the network is rebuilt from the course's model registry, so nothing from the file runs.
Test hook: COURSE_SCORE_TEST_SLEEP=<seconds> makes the worker sleep first (to test timeouts).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

MAX_BYTES = 150_000_000  # nbgrader refuses files over 100 MB; anything much bigger is not a submission
REFUSED_CODE = ("refused: the checkpoint contains Python objects other than tensors (possible code); "
                "nothing from it was run")


class Zero(Exception):
    """The submission scores 0; the message is the one-line reason."""


class GraderError(Exception):
    """The grader cannot score anything (e.g. no test data); not the student's fault."""


def _read(path: Path) -> dict:
    """The checkpoint dict, read weights-only; Zero with a plain reason on any problem."""
    from ..checkpoint import CheckpointError, load_checkpoint
    if path.is_symlink():
        raise Zero(f"refused: {path.name} is a symbolic link; submit the file itself")
    if not path.exists():
        raise Zero(f"checkpoint missing: {path.name} not found in the submission")
    if not path.is_file():
        raise Zero(f"checkpoint missing: {path.name} is not a regular file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise Zero(f"refused: {path.name} is {size / 1e6:.0f} MB, over nbgrader's 100 MB limit")
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        text = str(exc).replace(str(path), path.name)
        if "other than tensors" in text:
            raise Zero(REFUSED_CODE) from None
        if "empty" in text or "truncated" in text or "corrupt" in text:
            raise Zero(f"checkpoint truncated or corrupt: {path.name} could not be read; save it again") from None
        raise Zero(text if text.startswith(path.name) else f"not a course checkpoint: {text}") from None


def _rebuild(ckpt: dict):
    """The model rebuilt from the registry spec with the checkpoint's weights (never downloads)."""
    from ..checkpoint import CheckpointError, has_nonfinite, rebuild_model
    from ..models import model_names
    spec = ckpt.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise Zero("the checkpoint does not say which model it holds: build the model with "
                   "helpers.models.build_model and save it with save_challenge_checkpoint")
    if spec["name"] not in model_names():
        raise Zero(f"unknown model name {spec['name']!r}: not one of helpers.models ({', '.join(model_names())})")
    if not isinstance(spec.get("kwargs") or {}, dict):
        raise Zero(f"model {spec['name']!r}: its saved constructor arguments are not a dict")
    if bad := has_nonfinite(ckpt["state_dict"]):
        raise Zero(f"weights contain NaN or inf in {len(bad)} tensors (e.g. {bad[0]}): training diverged")
    try:
        # rebuild_model sets pretrained=False for models that take it: the weights come from the file
        return rebuild_model(ckpt)
    except CheckpointError as exc:
        raise Zero(f"wrong architecture: {exc}") from None
    except Exception as exc:  # a constructor refusing its saved arguments
        raise Zero(f"model {spec['name']!r} cannot be rebuilt from its saved arguments "
                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''})") from None


def _test_data(dataset: str, allow_synthetic: bool):
    """The test split to score on, and a note when it is not the dataset asked for."""
    from ..data import DataError, course_data
    try:
        data = course_data(dataset, fallback=allow_synthetic, verbose=False)
    except DataError as exc:
        raise GraderError(f"test data unavailable: {str(exc).splitlines()[0]} (set $COURSE_CIFAR10/"
                          "$COURSE_CIFAR100, or pass --allow-synthetic for a demo)") from None
    note = ""
    if data.name != dataset:
        note = f"scored on the generated '{data.name}' dataset: {dataset} is not available here (--allow-synthetic)"
    if "[reduced mode]" in data.source:
        note = "; ".join(filter(None, [note, "reduced mode (COURSE_FAST=1): a test subset"]))
    return data, note


def evaluate(path, dataset: str = "cifar10", *, allow_synthetic: bool = False, device=None) -> dict:
    """Check, rebuild and test one checkpoint; a dict with status, accuracy, macro_f1 and reason."""
    out = {"status": "zero", "accuracy": None, "macro_f1": None, "model": None, "dataset": dataset,
           "images": 0, "reason": ""}
    try:
        from .challenge import check_mean_std
        ckpt = _read(Path(path))
        if problem := check_mean_std(ckpt.get("mean"), ckpt.get("std")):
            raise Zero(problem)
        model = _rebuild(ckpt)
        out["model"] = ckpt["model"]["name"]
        data, note = _test_data(dataset, allow_synthetic)
        out.update(_measure(model, ckpt, data, device))
        out["status"] = "ok"
        out["reason"] = "; ".join(filter(None, [
            f"{out['model']} on the {data.name} test split ({out['images']} images)", note]))
    except Zero as exc:
        out["reason"] = str(exc)
    except GraderError as exc:
        out["status"], out["reason"] = "error", str(exc)
    return out


def _measure(model, ckpt: dict, data, device) -> dict:
    """Accuracy and macro-F1 of the model on the test split (Zero when it cannot be run on it)."""
    import torch
    from ..config import pick_device
    from ..evaluate import predict, to_model_input
    from ..metrics import accuracy, macro_f1
    device = pick_device(device)
    model.to(device)
    try:
        with torch.no_grad():
            probe = model(to_model_input(data.test_images[:2], ckpt.get("mean"), ckpt.get("std"), device))
    except Exception as exc:
        raise Zero(f"the model fails on a test batch ({type(exc).__name__}: {str(exc).splitlines()[0][:150]})") from None
    if probe.ndim != 2:
        raise Zero(f"the model outputs shape {tuple(probe.shape[1:])} per image, expected one score per class")
    if probe.shape[1] != data.num_classes:
        raise Zero(f"wrong number of classes: the model outputs {probe.shape[1]} classes, "
                   f"the test set has {data.num_classes}")
    logits = predict(model, data.test_images, device=device, mean=ckpt.get("mean"), std=ckpt.get("std"))
    preds = logits.argmax(1).numpy()
    return {"accuracy": accuracy(data.test_labels, preds),
            "macro_f1": macro_f1(data.test_labels, preds, num_classes=data.num_classes),
            "images": int(len(preds))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.grading.score_worker", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="checkpoint")
    parser.add_argument("--dataset", action="append", choices=["cifar10", "cifar100", "synthetic"],
                        help="the test set of each checkpoint, in order (one for all when given once)")
    parser.add_argument("--allow-synthetic", action="store_true",
                        help="use the generated dataset when the real one is not available (demo, tests)")
    parser.add_argument("--device", default=None, help="default: CUDA when available, else the CPU")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    datasets = args.dataset or ["cifar10"]
    if len(datasets) == 1:
        datasets = datasets * len(args.checkpoints)
    if len(datasets) != len(args.checkpoints):
        parser.error(f"{len(args.checkpoints)} checkpoints but {len(datasets)} --dataset options")
    if os.environ.get("COURSE_SCORE_TEST_SLEEP"):  # test hook: simulate a hang
        time.sleep(float(os.environ["COURSE_SCORE_TEST_SLEEP"]))
    for path, dataset in zip(args.checkpoints, datasets):
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the results
            result = evaluate(path, dataset, allow_synthetic=args.allow_synthetic, device=args.device)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{result['status']}: accuracy {result['accuracy']}, macro-F1 {result['macro_f1']}; {result['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
