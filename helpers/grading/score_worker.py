"""Predict the test images' classes from checkpoints; run by `helpers.grading.score` inside the sandbox.

    python -I -c "<bootstrap>" <checkpoint> [<checkpoint> ...] --images test.npy [--images ...]
        --classes 10 [--classes ...] [--device cuda]

`helpers.grading.score` starts this module with `python -I` (no PYTHONPATH, no user site, no
current folder on sys.path; the environment it runs from is read-only, so no .pth or
sitecustomize can be added) and a two-line bootstrap passed with `-c` that puts the read-only
project root first on sys.path and calls `main`: inside the sandbox that root holds only
`helpers/`, so nothing else can shadow a module.

The worker never sees the labels. For each checkpoint (a private copy of the exact bytes the
grader hashed) it prints one JSON line: {"status", "reason", "model", "n", "pred", "fingerprint",
"trained_on"} where `pred` is the predicted class of every test image, base64 of little-endian
uint16; `fingerprint` the architecture fingerprint of the rebuilt model
(helpers.grading.fingerprint, as [[kind, width], ...]); `trained_on` the checkpoint's record of
the data it was trained on (its "dataset" field: name, training-split SHA-256, images, reduced;
null when the file has none). The grader checks that line (length, classes in range, the shapes
of the other fields) and computes accuracy and macro-F1 itself, so a line printed by anything
else can earn no more than its predictions do; it compares `trained_on` with the training split
of the data it grades on, and `fingerprint` with the handed-out and zoo designs (the cap).
status "ok": predicted; "zero": the submission cannot be scored (reason says why).
The file is read with `torch.load(weights_only=True)` only (helpers.models.checkpoint.load_checkpoint),
after its zip directory was checked (helpers.models.checkpoint.check_archive); the model description is
sized on the meta device (parameters, activations for a batch of 2) before anything is allocated,
and the network is rebuilt from the course's model registry, so nothing from the file runs.
Test hook: COURSE_SCORE_TEST_SLEEP=<seconds> makes the worker sleep first (to test timeouts).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import inspect
import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np

MAX_BYTES = 150_000_000  # nbgrader refuses files over 100 MB; anything much bigger is not a submission
MAX_PARAMETERS = 20_000_000  # the challenge's cap (06_challenge: at most 20,000,000 parameters)
MAX_ACTIVATION_BYTES = 2 * 2**30  # activations of one batch of 2 images at 32x32, on the meta device
REFUSED_CODE = ("refused: the checkpoint contains Python objects other than tensors (possible code); "
                "nothing from it was run")


class Zero(Exception):
    """The submission scores 0; the message is the one-line reason."""


class GraderError(Exception):
    """The grader cannot score anything (e.g. no test data); not the student's fault."""


def _read(path: Path) -> dict:
    """The checkpoint dict, read weights-only; Zero with a plain reason on any problem."""
    from ..models.checkpoint import CheckpointError, load_checkpoint
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise Zero(f"checkpoint missing: {path.name} not found in the submission") from None
    if stat.S_ISLNK(st.st_mode):
        raise Zero(f"refused: {path.name} is a symbolic link; submit the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise Zero(f"refused: {path.name} is not a regular file (a device, pipe, socket or folder)")
    size = st.st_size
    if size > MAX_BYTES:
        raise Zero(f"refused: {path.name} is {size / 1e6:.0f} MB, over nbgrader's 100 MB limit")
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        text = str(exc).replace(str(path), path.name)
        if text.startswith("refused"):
            raise Zero(text) from None
        if "other than tensors" in text:
            raise Zero(REFUSED_CODE) from None
        if "empty" in text or "truncated" in text or "corrupt" in text:
            raise Zero(f"checkpoint truncated or corrupt: {path.name} could not be read; save it again") from None
        raise Zero(text if text.startswith(path.name) else f"not a course checkpoint: {text}") from None


def _rebuild(ckpt: dict):
    """The model rebuilt from the registry spec with the checkpoint's weights (never downloads)."""
    from ..models.checkpoint import CheckpointError, has_nonfinite, rebuild_model
    from ..models import model_names
    spec = ckpt.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise Zero("the checkpoint does not say which model it holds: build the model with "
                   "helpers.models.build_model and save it with save_challenge_checkpoint")
    if spec["name"] not in model_names():
        raise Zero(f"unknown model name {spec['name']!r}: not one of helpers.models ({', '.join(model_names())})")
    if not isinstance(spec.get("kwargs") or {}, dict):
        raise Zero(f"model {spec['name']!r}: its saved constructor arguments are not a dict")
    size_on_meta(spec)  # Zero before any allocation when the description is too big
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


def size_on_meta(spec: dict) -> tuple[int, int]:
    """(parameters, activation bytes for a batch of 2 images at 32x32) of the model a spec describes,
    measured on the meta device (nothing is allocated); Zero when over MAX_PARAMETERS or
    MAX_ACTIVATION_BYTES. A description that cannot even be built is left to the real rebuild,
    which explains why."""
    import torch
    from ..models import build_model
    from ..models.registry import _REGISTRY
    kwargs = dict(spec.get("kwargs") or {})
    constructor = _REGISTRY.get(spec["name"])
    if constructor is not None and "pretrained" in inspect.signature(constructor).parameters:
        kwargs["pretrained"] = False
    try:
        with torch.device("meta"):
            model = build_model(spec["name"], **kwargs)
    except Exception:
        return 0, 0
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    if params > MAX_PARAMETERS:
        raise Zero(f"refused: model {spec['name']!r} as described has {params:,} parameters, over the challenge's "
                   f"{MAX_PARAMETERS:,} (measured on the meta device; nothing was allocated)")
    total = [0]

    def count(_module, _inputs, output):
        for t in (output if isinstance(output, (tuple, list)) else [output]):
            if torch.is_tensor(t):
                total[0] += t.numel() * t.element_size()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(2, 3, 32, 32, device="meta"))
    except Exception:
        pass  # the real probe on a test batch says what is wrong
    finally:
        for h in hooks:
            h.remove()
    if total[0] > MAX_ACTIVATION_BYTES:
        raise Zero(f"refused: model {spec['name']!r} as described needs {total[0] / 2**30:,.1f} GiB of activations "
                   f"for 2 images, over {MAX_ACTIVATION_BYTES / 2**30:g} GiB (measured on the meta device; nothing "
                   "was allocated)")
    return params, total[0]


def trained_on_record(ckpt: dict) -> dict | None:
    """The checkpoint's "dataset" record reduced to plain, bounded fields, or None when it has none."""
    record = ckpt.get("dataset")
    if not isinstance(record, dict):
        return None
    name, digest = record.get("name"), record.get("sha256")
    images = record.get("images")
    return {"name": name[:40] if isinstance(name, str) else None,
            "sha256": digest.lower() if isinstance(digest, str) and len(digest) == 64
            and all(c in "0123456789abcdefABCDEF" for c in digest) else None,
            "images": images if type(images) is int and images >= 0 else None,
            "reduced": bool(record.get("reduced"))}


def predict_checkpoint(path, images: np.ndarray, num_classes: int, device=None) -> dict:
    """Check, rebuild and run one checkpoint on the test images (no labels):
    {status, reason, model, predictions (int64 array, or None), fingerprint, trained_on}."""
    out = {"status": "zero", "reason": "", "model": None, "predictions": None, "fingerprint": None,
           "trained_on": None}
    try:
        from ..models.checkpoint import check_mean_std
        from .fingerprint import MAX_ENTRIES, fingerprint
        ckpt = _read(Path(path))
        if problem := check_mean_std(ckpt.get("mean"), ckpt.get("std")):
            raise Zero(problem)
        model = _rebuild(ckpt)
        out["model"] = ckpt["model"]["name"]
        out["trained_on"] = trained_on_record(ckpt)
        out["fingerprint"] = fingerprint(model)[:MAX_ENTRIES]  # longer matches no handed-out design either
        out["predictions"] = _predict(model, ckpt, images, num_classes, device)
        out["status"] = "ok"
    except Zero as exc:
        out["reason"] = str(exc)
    return out


def _predict(model, ckpt: dict, images: np.ndarray, num_classes: int, device) -> np.ndarray:
    """The predicted class of every image (Zero when the model cannot be run on them)."""
    import torch
    from ..settings import pick_device
    from ..eval.inference import normalize, predict_logits
    device = pick_device(device)
    model.to(device)
    try:
        with torch.no_grad():
            probe = model(normalize(images[:2], ckpt.get("mean"), ckpt.get("std"), device))
    except Exception as exc:
        raise Zero(f"the model fails on a test batch ({type(exc).__name__}: {str(exc).splitlines()[0][:150]})") from None
    if probe.ndim != 2:
        raise Zero(f"the model outputs shape {tuple(probe.shape[1:])} per image, expected one score per class")
    if probe.shape[1] != num_classes:
        raise Zero(f"wrong number of classes: the model outputs {probe.shape[1]} classes, "
                   f"the test set has {num_classes}")
    logits = predict_logits(model, images, device=device, mean=ckpt.get("mean"), std=ckpt.get("std"))
    return logits.argmax(1).numpy().astype(np.int64)


def encode_result(result: dict) -> str:
    """The JSON line the worker prints for one checkpoint."""
    from .fingerprint import to_wire
    preds = result.get("predictions")
    line = {"status": result["status"], "reason": result["reason"], "model": result["model"],
            "n": 0 if preds is None else int(len(preds)),
            "pred": "" if preds is None else base64.b64encode(np.asarray(preds, dtype="<u2").tobytes()).decode(),
            "fingerprint": None if result.get("fingerprint") is None else to_wire(result["fingerprint"]),
            "trained_on": result.get("trained_on")}
    return json.dumps(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.grading.score_worker", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="checkpoint")
    parser.add_argument("--images", action="append", required=True,
                        help="a .npy of uint8 test images (N, 32, 32, 3), one per checkpoint (or one for all)")
    parser.add_argument("--classes", action="append", type=int, required=True,
                        help="the number of classes of each test set, in order (or one for all)")
    parser.add_argument("--device", default=None, help="default: CUDA when available, else the CPU")
    parser.add_argument("--json", action="store_true", help="accepted for compatibility; the output is always JSON")
    args = parser.parse_args(argv)
    n = len(args.checkpoints)
    images = args.images * n if len(args.images) == 1 else args.images
    classes = args.classes * n if len(args.classes) == 1 else args.classes
    if len(images) != n or len(classes) != n:
        parser.error(f"{n} checkpoints but {len(images)} --images and {len(classes)} --classes options")
    from ..settings import env_number
    if pause := env_number("COURSE_SCORE_TEST_SLEEP", 0):  # test hook: simulate a hang
        time.sleep(pause)
    out, loaded = sys.stdout, {}
    for path, image_file, num_classes in zip(args.checkpoints, images, classes):
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the results
            if image_file not in loaded:
                loaded[image_file] = np.load(image_file, allow_pickle=False)
            result = predict_checkpoint(path, loaded[image_file], num_classes, device=args.device)
        print(encode_result(result), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
