"""Checkpoints that load without running code: tensors and plain Python values only.

`save_checkpoint` writes the weights, the model's registry spec ({"name", "kwargs"}) and
whatever is needed to resume (optimizer, scheduler, history, epoch, RNG states) atomically.
`load_checkpoint` reads with `torch.load(weights_only=True)` and nothing else, so a hostile
file cannot execute code; every failure becomes a `CheckpointError` with a plain message.
`rebuild_model` builds the model from the spec and loads the weights, explaining mismatches.

Two optional fields say how the weights came about: `recipe` (the completed training recipe, a
plain dict) and `dataset` (`dataset_fingerprint(data)`: the name of the data trained on and a
SHA-256 of its training split). Files without them still load (their values are None).
"""
from __future__ import annotations

import errno
import inspect
import math
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write

FORMAT = "helpers-checkpoint"
FORMAT_VERSION = 1
SPLIT_DIGEST_VERSION = b"course-trainset-v1"


class CheckpointError(Exception):
    """A checkpoint could not be written, read or turned back into a model; the message says why."""


# --------------------------------------------------------------------------- plain values

def _plain(value, where: str):
    """`value` made of tensors and plain Python types only, or a CheckpointError naming `where`."""
    if value is None:
        return None
    for kind in (bool, int, float, str):  # in this order: bool is an int; subclasses become plain
        if isinstance(value, kind):
            return kind(value)
    if torch.is_tensor(value):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise CheckpointError(f"cannot store {where}: key {k!r} is not a string or number")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise CheckpointError(f"cannot store {where}: a {type(value).__name__} is not a tensor or a plain "
                          "Python value (dict, list, str, int, float, bool, None)")


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose state_dict has clean names: not the torch.compile or DataParallel wrapper."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _spec(model: nn.Module) -> dict | None:
    """The registry spec of a model built by helpers.models.build_model, else None."""
    from . import model_spec
    try:
        return model_spec(model)
    except ValueError:
        return None


def rng_state() -> dict:
    """The states of Python's, NumPy's and torch's random generators (checkpoint-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state()` returned (CUDA states only when the same GPUs are there)."""
    random.setstate(tuple(tuple(s) if isinstance(s, list) else s for s in state["python"]))
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --------------------------------------------------------------------------- the data trained on

def split_digest(images, labels) -> str:
    """SHA-256 over a training split: a version tag, the images' shape, their uint8 bytes and the
    labels as little-endian int64 (about 0.3 s for CIFAR-10's 50,000 images)."""
    import hashlib
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype="<i8")
    h = hashlib.sha256(SPLIT_DIGEST_VERSION)
    h.update(repr(tuple(images.shape)).encode())
    h.update(memoryview(images).cast("B"))
    h.update(memoryview(labels).cast("B"))
    return h.hexdigest()


def dataset_fingerprint(data) -> dict:
    """What a checkpoint records about the data it was trained on, from an ImageData
    (helpers.data): {"name", "sha256" (split_digest of the TRAINING split: images and labels, the
    validation part included), "images" (how many), "reduced" (True for a reduced-mode subset)}.
    The same data always gives the same record; any other data (another dataset, another seed
    of the generated one, the full set instead of the reduced subset) gives another sha256."""
    return {"name": str(data.name), "sha256": split_digest(data.train_images, data.train_labels),
            "images": int(len(data.train_labels)), "reduced": "[reduced mode]" in str(getattr(data, "source", ""))}


# --------------------------------------------------------------------------- save

def _config_dict(config) -> dict:
    """A run's config as a dict: a TrainConfig (helpers.train.config) becomes its nested dicts."""
    import dataclasses
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def save_checkpoint(path, model: nn.Module, *, optimizer=None, scheduler=None, history=None, config=None,
                    epoch: int | None = None, extra=None, mean=None, std=None, state_dict=None,
                    recipe=None, dataset=None) -> Path:
    """Write a checkpoint of `model` to `path` atomically; returns the path.

    `state_dict` replaces model.state_dict() (fit passes the EMA weights here). `config`: the run's
    TrainConfig (or a dict), stored as nested dicts (fit stores the complete one). `recipe` (a plain
    dict: how the model was trained) and `dataset` (`dataset_fingerprint(data)` of the data it
    was trained on) are stored as the fields of the same names. A failed write (a full disk, say)
    raises CheckpointError and leaves any earlier file at `path` untouched.
    """
    from .. import __version__
    path = Path(path)
    model = _unwrap(model)
    contents = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": _spec(model),
        "state_dict": model.state_dict() if state_dict is None else state_dict,
        "optimizer": _plain(optimizer.state_dict(), "optimizer state") if optimizer is not None else None,
        "scheduler": _plain(scheduler.state_dict(), "scheduler state") if scheduler is not None else None,
        "history": _plain([dict(row) for row in history], "history") if history is not None else None,
        "config": _plain(_config_dict(config), "config") if config is not None else None,
        "epoch": None if epoch is None else int(epoch),
        "mean": None if mean is None else [float(m) for m in torch.as_tensor(mean).flatten()],
        "std": None if std is None else [float(s) for s in torch.as_tensor(std).flatten()],
        "extra": _plain(extra, "extra") if extra is not None else None,
        "recipe": _plain(dict(recipe), "recipe") if recipe is not None else None,
        "dataset": _plain(dict(dataset), "dataset") if dataset is not None else None,
        "helpers_version": str(__version__),
        "torch_version": str(torch.__version__),  # a str subclass that weights_only refuses
    }
    bad = [k for k, v in contents["state_dict"].items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"cannot store the weights: {bad[:3]} are not tensors")
    try:
        with atomic_write(path, "wb") as f:
            torch.save(contents, f)
    except OSError as exc:
        kept = " The previous checkpoint there is unchanged." if path.exists() else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(f"not enough disk space to write the checkpoint {path}.{kept} "
                                  "Free some space (old checkpoints, caches) and save again.") from None
        raise CheckpointError(f"could not write the checkpoint {path}: {exc.strerror or exc}.{kept}") from None
    return path


# --------------------------------------------------------------------------- load

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


def _refusal(message: str) -> str:
    """The plain reason weights-only loading refused a file (naming the offending global)."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    named = f" ({found.group(1)})" if found else ""
    return f"this file contains Python objects other than tensors{named}; refusing to run code from it"


# Limits on what a checkpoint archive may unpack to, checked before torch.load reads it.
MAX_UNPACKED_BYTES = 200 * 10**6   # all members together (torch.save stores, it never compresses)
MAX_COMPRESSION_RATIO = 20         # per member over 1 MB: a tensor of zeros compresses ~1000x
MAX_MEMBERS = 100_000


def check_archive(source, *, max_bytes: int = MAX_UNPACKED_BYTES, max_ratio: float = MAX_COMPRESSION_RATIO) -> None:
    """CheckpointError when the zip archive `source` (a path, bytes or a binary file) would unpack to
    more than `max_bytes`, has a member compressed more than `max_ratio` times, or too many members.

    Reads only the archive's directory (zipfile infolist), never the members. A file that is not a
    zip archive passes (torch.load then reads it, or says it is not a checkpoint); its size is the
    caller's to cap.
    """
    import io
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    try:
        if not zipfile.is_zipfile(source):
            return
        if hasattr(source, "seek"):
            source.seek(0)
        with zipfile.ZipFile(source) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # torch.load will say it is corrupt
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    if len(members) > MAX_MEMBERS:
        raise CheckpointError(f"refused: the checkpoint archive has {len(members):,} members")
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise CheckpointError(f"refused: the checkpoint archive unpacks to {total / 1e6:,.0f} MB, over the "
                              f"{max_bytes / 1e6:,.0f} MB limit (nothing was unpacked)")
    for m in members:
        if m.file_size > 2**20 and m.file_size > max_ratio * max(m.compress_size, 1):
            raise CheckpointError(f"refused: a member of the checkpoint archive ({m.filename.rsplit('/', 1)[-1]}) is "
                                  f"compressed {m.file_size / max(m.compress_size, 1):,.0f} times (a zip bomb?); "
                                  "torch.save never compresses")


def load_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint saved at `path` as a dict, read with weights_only=True only.

    Missing, empty, truncated or corrupt files, files that hold code or other Python objects,
    and files that are not course checkpoints all raise CheckpointError saying which it is.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: the file does not exist "
                              "(was it saved, and is the path right?)")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty: its save was probably interrupted; save the model again")
    check_archive(path)  # before torch.load: a small zip must not unpack to gigabytes
    try:
        with warnings.catch_warnings():  # torch warns on stderr about some pickle protocols
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: {_refusal(str(exc))}") from None
    except Exception as exc:  # RuntimeError from the zip reader, EOFError, KeyError on garbage...
        if zipfile.is_zipfile(path) or "zip archive" in str(exc):
            raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__} while reading it): "
                                  "it was probably not saved completely; save the model again") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint, or is corrupt ({type(exc).__name__} "
                              "while reading it)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        if isinstance(ckpt, dict) and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
            raise CheckpointError(f"{path} holds a bare state_dict, not a course checkpoint: it does not say which "
                                  "model it belongs to. Save with helpers.models.checkpoint.save_checkpoint(path, model).")
        raise CheckpointError(f"{path} is not a course checkpoint (made by helpers.models.checkpoint.save_checkpoint)")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is a course checkpoint without weights (no state_dict)")
    return ckpt


def has_nonfinite(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf (an empty, falsy list when none)."""
    return [name for name, t in state_dict.items()
            if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _strip_prefixes(state_dict: dict) -> dict:
    """Drop the '_orig_mod.' (torch.compile) and 'module.' (DataParallel) name prefixes."""
    out = {}
    for name, t in state_dict.items():
        for prefix in ("_orig_mod.", "module."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = t
    return out


def _mismatch_message(model_sd: dict, ckpt_sd: dict, name: str) -> str | None:
    """One or two sentences on why the weights do not fit the model, or None when they do."""
    missing = [k for k in model_sd if k not in ckpt_sd]
    unexpected = [k for k in ckpt_sd if k not in model_sd]
    if missing or unexpected:
        example = ", ".join([f"missing '{k}'" for k in missing[:1]] + [f"unexpected '{k}'" for k in unexpected[:1]])
        return (f"missing {len(missing)} and unexpected {len(unexpected)} weight names: the checkpoint was "
                f"saved from a different architecture than {name!r} (e.g. {example})")
    wrong = [k for k in model_sd if tuple(model_sd[k].shape) != tuple(ckpt_sd[k].shape)]
    if not wrong:
        return None
    head = [k for k in model_sd if model_sd[k].ndim == 2][-1:]  # the final Linear layer's weight
    head += [head[0][:-len("weight")] + "bias"] if head and head[0].endswith("weight") else []
    mine, theirs = tuple(model_sd[wrong[0]].shape), tuple(ckpt_sd[wrong[0]].shape)
    if set(wrong) <= set(head) and mine[1:] == theirs[1:]:
        return f"the checkpoint's classifier has {theirs[0]} outputs but the model was built for {mine[0]} classes"
    return (f"{len(wrong)} weights have different shapes (e.g. {wrong[0]}: checkpoint {theirs}, model {mine}): "
            f"the checkpoint was saved from a different configuration of {name!r}")


def load_weights(model: nn.Module, ckpt_or_path, *, name: str | None = None) -> nn.Module:
    """Load a checkpoint's weights into `model`, or raise CheckpointError saying why they do not fit."""
    ckpt = ckpt_or_path if isinstance(ckpt_or_path, dict) else load_checkpoint(ckpt_or_path)
    state = _strip_prefixes(ckpt["state_dict"] if "state_dict" in ckpt else ckpt)
    target = _unwrap(model)
    name = name or (_spec(target) or {}).get("name") or type(target).__name__
    problem = _mismatch_message(target.state_dict(), state, name)
    if problem:
        raise CheckpointError(problem)
    target.load_state_dict(state)
    return model


def rebuild_model(ckpt_or_path, *, map_location="cpu", allow_nonfinite: bool = False, **overrides) -> nn.Module:
    """The model a checkpoint was saved from, rebuilt from its registry spec, weights loaded, in eval mode.

    `overrides` replace the spec's arguments, e.g. `num_classes=10` to insist on CIFAR-10: a
    checkpoint that does not fit then raises CheckpointError explaining the difference.
    """
    from . import build_model, model_names
    from .registry import _REGISTRY
    ckpt = ckpt_or_path if isinstance(ckpt_or_path, dict) else load_checkpoint(ckpt_or_path, map_location)
    spec = ckpt.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise CheckpointError("the checkpoint does not say which model it holds: the model was not built with "
                              "helpers.models.build_model(name, ...), so it cannot be rebuilt from its name")
    kwargs = dict(spec.get("kwargs") or {})
    kwargs.update(overrides)
    constructor = _REGISTRY.get(spec["name"])
    if constructor is not None and "pretrained" in inspect.signature(constructor).parameters:
        kwargs["pretrained"] = False  # the weights come from the checkpoint: never download
    try:
        model = build_model(spec["name"], **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's model {spec['name']!r} cannot be built here "
                              f"(valid names: {', '.join(model_names())}): {exc}") from None
    model._course_spec = {"name": spec["name"], "kwargs": {**(spec.get("kwargs") or {}), **overrides}}
    if not allow_nonfinite and (bad := has_nonfinite(ckpt["state_dict"])):
        raise CheckpointError(f"the checkpoint's weights contain NaN or inf in {len(bad)} tensors (e.g. {bad[0]}): "
                              "training diverged before it was saved; retrain with a lower learning rate")
    load_weights(model, ckpt, name=spec["name"])
    return model.eval()
