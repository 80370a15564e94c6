"""`fit`: the course's training loop, fast on a GPU and the same code on a CPU.

A run is described by a `TrainConfig` (helpers.train.config; fit's keyword arguments are folded
into one) and carried by a `TrainState` (helpers.train.state) whose state_dict is the checkpoint.

The speed comes from what the loop does not do: no per-step host synchronization (loss and
accuracy are summed as device tensors and read once per epoch), no worker processes (the
GpuLoader keeps the data on the device), bf16 autocast and channels_last on CUDA, cuDNN
autotuning, an optional torch.compile. Around it: schedules, label smoothing, MixUp/CutMix,
gradient clipping, EMA weights, early stopping, per-epoch checkpoints and exact resuming.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..precision import amp_dtype, autocast, is_oom, oom_message, synchronize
from ..data.augment import mix_transform
from ..models.checkpoint import load_checkpoint
from ..settings import pick_device, seed_everything
from .ema import EMA
from ..eval.inference import eval_mode, forward, normalize
from .history import History
from ..data.loader import GpuLoader
from .progress import Progress
from .recipes import DEFAULT_LR, GENERAL  # DEFAULT_LR: notebooks import it from here
from .schedules import make_scheduler
from ..data.split import channel_mean_std, train_val_split
from .tracking import start_tracking
from .config import TrainConfig, check, complete, from_keywords, optim_config_of, to_dict
from .state import EarlyStopping, TrainState


class TrainingError(RuntimeError):
    """Training cannot go on (out of GPU memory, a diverged loss); the message says what to try."""


# --------------------------------------------------------------------------- data

def make_loaders(data, *, batch_size: int = GENERAL["batch_size"], val_fraction: float = 0.1, seed: int = 0, device=None,
                 crop_padding: int = GENERAL["crop_padding"], flip: bool = True, cutout: int = 0):
    """(train_loader, val_loader, mean, std) from an ImageData's training split.

    The stratified validation split is made before any augmentation, and mean/std come from
    the training part only. val_fraction=0 trains on everything and gives val_loader=None.
    """
    device = pick_device(device)
    images, labels = np.asarray(data.train_images), np.asarray(data.train_labels)
    if val_fraction > 0:
        train_idx, val_idx = train_val_split(labels, val_fraction, seed)
    else:
        train_idx, val_idx = np.arange(len(labels)), None
    mean, std = channel_mean_std(images[train_idx])
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    train = GpuLoader(images[train_idx], labels[train_idx], batch_size=batch_size, device=device, mean=mean,
                      std=std, train=True, crop_padding=crop_padding, flip=flip, cutout=cutout, seed=seed,
                      drop_last=len(train_idx) > batch_size)  # no tiny last batch for BatchNorm
    val = None
    if val_idx is not None:
        val = GpuLoader(images[val_idx], labels[val_idx], batch_size=batch_size, device=device, mean=mean,
                        std=std, train=False)
    return train, val, mean, std


def init_from_data(model: nn.Module, images, mean, std, max_images: int = 5000) -> nn.Module:
    """Data-dependent set-up before training: FastNet's patch-whitening layer is set from the first
    `max_images` of `images` (uint8 (N, H, W, 3) from the training split only, normalized with
    mean/std as in training). Other models are returned unchanged."""
    from ..models import FastNet, init_whitening
    target = getattr(model, "_orig_mod", model)
    if isinstance(target, FastNet):
        device = next(target.parameters()).device
        init_whitening(target, normalize(images[:max_images], mean, std, device))
    return model


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_loader(model: nn.Module, loader, device=None, amp=None, tta=False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` over a loader; one host synchronization in all.

    `tta`: False, True/"flip" or "translate"; the forward pass is helpers.eval.inference.forward's.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = amp_dtype(device, amp)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = forward(model, x, tta, dtype)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
    if seen == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / seen, correct.item() / seen


# --------------------------------------------------------------------------- training

def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = GENERAL["momentum"],
                   nesterov: bool = True, weight_decay: float = GENERAL["weight_decay"],
                   norm_bias_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """SGD (with momentum, Nesterov by default), Adam or AdamW over the trainable parameters.

    norm_bias_lr_scale > 1 gives BatchNorm biases a larger learning rate (with the weight decay
    scaled down to match), as FastNet's fast recipe does; the other parameters are group 0.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params}]
    if norm_bias_lr_scale != 1.0:
        norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
        biases = {id(m.bias) for m in model.modules() if isinstance(m, norms) and m.bias is not None}
        scaled = [p for p in params if id(p) in biases]
        groups = [{"params": [p for p in params if id(p) not in biases]},
                  {"params": scaled, "lr": lr * norm_bias_lr_scale, "weight_decay": weight_decay / norm_bias_lr_scale}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(DEFAULT_LR)} (or pass an optimizer)")


def _num_classes(model: nn.Module) -> int:
    """Output size of the model's last Linear layer (what MixUp/CutMix need as num_classes)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("cannot tell the number of classes from the model; pass num_classes=...")
    return linears[-1].out_features


def _train_epoch(net, state: TrainState, loader, progress):
    """One pass over `loader`; returns (loss sum, correct count) as device tensors, and images seen."""
    net.train()
    device, optimizer, scaler, grad_clip = state.device, state.optimizer, state.scaler, state.grad_clip
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        target = y
        if state.mix is not None:
            x, target = state.mix(x, y)  # soft targets; accuracy is still counted against y
        with autocast(device, state.dtype):
            logits = net(x)
            loss = state.criterion(logits, target)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
            optimizer.step()
        state.scheduler.step()
        if state.ema is not None:
            state.ema.update(state.model)
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        progress.step()
    return loss_sum, correct, seen


def _run_epoch(net, state: TrainState, train, val, config: TrainConfig, display):
    """Train one epoch and validate: (the history row, None), or (None, the TrainingError to raise)
    when the loss diverged or the GPU ran out of memory (returned, not raised, so the failed
    batch's tensors are freed with this frame)."""
    epoch = state.epoch
    if hasattr(train, "set_epoch"):
        train.set_epoch(epoch)
    display.start_epoch(epoch + 1)
    phase = "training"
    try:
        synchronize(state.device)
        t0 = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(net, state, train, display)
        synchronize(state.device)
        train_seconds = time.perf_counter() - t0
        train_loss, train_acc = loss_sum.item() / seen, correct.item() / seen
        if not math.isfinite(train_loss):
            return None, TrainingError(
                f"the training loss became {train_loss} in epoch {epoch + 1}: the weights diverged. "
                f"Try a lower learning rate (peak lr is {config.optim.lr}), grad_clip=1.0, or a warmup; "
                "check the inputs for NaN.")
        phase = "validation"
        val_loss = val_acc = None
        if val is not None:
            evaluated = state.ema.module if state.ema is not None else net
            amp = {"off": False, "auto": None}.get(config.precision.amp, config.precision.amp)
            tta = False if config.augment.tta == "off" else config.augment.tta
            val_loss, val_acc = evaluate_loader(evaluated, val, state.device, amp, tta)
    except Exception as exc:
        if not is_oom(exc):
            raise
        return None, TrainingError(oom_message(config.data.batch_size, phase, exc, state.dtype is not None))
    return {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
            "val_acc": val_acc, "lr": state.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
            "images_per_s": seen / train_seconds}, None


def resolve_config(model: nn.Module, train, val=None, config: TrainConfig | None = None, *, track=False,
                   **settings) -> TrainConfig:
    """The complete TrainConfig that `fit(model, train, val, config, **settings)` runs, as it records it:
    the keyword arguments set, the general recipe's defaults filled in (helpers.train.recipes), and this
    run's facts: a given optimizer's real settings, the loader's batch size, augmentation and
    statistics, the model's registry spec, the device and the autocast precision."""
    if config is None and "epochs" not in settings:
        raise TypeError("fit() needs epochs=... (or a TrainConfig with schedule.epochs)")
    optimizer = settings.get("optimizer")
    if isinstance(optimizer, torch.optim.Optimizer):
        settings = {k: v for k, v in settings.items() if k != "optimizer"}
    config = complete(from_keywords(settings, config))
    if isinstance(optimizer, torch.optim.Optimizer):  # what runs is this optimizer, whatever the settings say
        config.optim = optim_config_of(optimizer)
    data, augment, precision = config.data, config.augment, config.precision
    data.batch_size = getattr(train, "batch_size", data.batch_size)
    for name in ("crop_padding", "flip", "cutout"):
        if isinstance(train, GpuLoader):
            setattr(augment, name, getattr(train, name))
    for name in ("mean", "std"):
        if getattr(train, name, None) is not None:
            setattr(data, name, [float(v) for v in torch.as_tensor(getattr(train, name)).flatten()])
    spec = getattr(getattr(model, "_orig_mod", model), "_course_spec", None)
    if config.model.name is None and spec is not None:
        config.model.name, config.model.kwargs = spec["name"], dict(spec["kwargs"])
    device = torch.device(precision.device) if precision.device else getattr(train, "device", None) or pick_device()
    precision.device = str(device)
    dtype = amp_dtype(device, {"auto": None, "off": False}.get(precision.amp, precision.amp))
    precision.amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "off")
    precision.channels_last = device.type == "cuda" if precision.channels_last is None else precision.channels_last
    config.tracking.enabled = bool(config.tracking.enabled or track is True or getattr(track, "enabled", False))
    check(config)
    if config.regularization.early_stopping and val is None:
        raise ValueError("early_stopping watches validation accuracy: pass a val loader")
    if len(train) == 0:
        raise ValueError("the training loader yields no batches (fewer images than one batch with drop_last?)")
    return config


def _start(model: nn.Module, config: TrainConfig, optimizer, steps_per_epoch: int) -> TrainState:
    """A fresh TrainState for `config`: the model on its device, the optimizer (built from config.optim
    unless one is given), the schedule over all steps, and the grad scaler, EMA, early stopping,
    loss and MixUp/CutMix the config asks for."""
    device = torch.device(config.precision.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed batch shape
    model.to(device)
    if config.precision.channels_last:
        model.to(memory_format=torch.channels_last)
    o, r, a = config.optim, config.regularization, config.augment
    if optimizer is None:
        optimizer = make_optimizer(model, o.name, o.lr, o.momentum, o.nesterov, o.weight_decay, o.norm_bias_lr_scale)
    total = config.schedule.epochs * steps_per_epoch
    scheduler = make_scheduler(optimizer, config.schedule.name, total, round(config.schedule.warmup * total))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision.amp)
    mix = None
    if a.mixup_alpha > 0 or a.cutmix_alpha > 0:
        mix = mix_transform(config.data.num_classes or _num_classes(model), a.mixup_alpha, a.cutmix_alpha)
    return TrainState(model, optimizer, scheduler, ema=EMA(model, r.ema) if r.ema else None,
                      scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None,
                      stopper=EarlyStopping(r.early_stopping, r.min_delta) if r.early_stopping else None,
                      device=device, dtype=dtype, criterion=nn.CrossEntropyLoss(label_smoothing=r.label_smoothing),
                      mix=mix, grad_clip=r.grad_clip)


def _save(state: TrainState, config: TrainConfig) -> None:
    """Write the checkpoint when the config names one: the state, the config, the data's record."""
    if config.checkpoint.path is not None:
        state.save(config.checkpoint.path, config=to_dict(config), mean=config.data.mean, std=config.data.std,
                   recipe=config.recipe, dataset=config.data.fingerprint)


def fit(model: nn.Module, train, val=None, config: TrainConfig | None = None, *, progress: bool = True,
        live_plot: bool = False, track=False, **settings) -> History:
    """Train `model` on `train`, validating on `val` after each epoch; returns the History (its
    `.config` is the complete TrainConfig that ran, also stored in the checkpoint).

    `train`/`val`: GpuLoaders (see make_loaders) or any re-iterable of (images, labels) batches with a
    length. `config`: a TrainConfig; keyword arguments, as notebooks pass them, set its fields
    (helpers.train.config.KEYWORDS): epochs, optimizer (a name or an optimizer object), lr (default
    0.1 for SGD, 1e-3 for Adam/AdamW), momentum, nesterov, weight_decay, schedule, warmup (fraction of
    all steps), label_smoothing, grad_clip, mixup_alpha, cutmix_alpha, early_stopping (patience on
    val accuracy; the best epoch's weights are put back), min_delta, ema (decay of a weight average
    that is evaluated and kept), tta, device, amp (None = bf16, else fp16, on CUDA; off on CPU),
    channels_last, compile, seed, checkpoint (a path written after every epoch), resume (such a path,
    to continue exactly where it stopped), num_classes. `track`: log the run to MLflow
    (helpers.train.tracking; True, or a Tracker to log into).
    `seed` seeds everything random from here on (data order, augmentation, MixUp, dropout); the
    initial weights were drawn when the model was built, so for a rerun to give the same numbers,
    build it after `seed_everything(seed)` too (as the notebooks and `python -m helpers train` do).
    Afterwards `model` holds the evaluated weights (the EMA or the best epoch's when those are on).
    """
    config = resolve_config(model, train, val, config, track=track, **settings)
    optimizer = settings.get("optimizer") if isinstance(settings.get("optimizer"), torch.optim.Optimizer) else None
    seed_everything(config.seed)
    state = _start(model, config, optimizer, steps_per_epoch=len(train))
    if config.checkpoint.resume is not None:
        state.load_state_dict(load_checkpoint(config.checkpoint.resume))
    net = torch.compile(model) if config.precision.compile else model
    epochs, steps = config.schedule.epochs, len(train)
    display = Progress(epochs * steps, epochs, enabled=progress, live_plot=live_plot, initial=state.epoch * steps)
    tracker = start_tracking(track, config)
    failure = None
    try:
        while state.epoch < epochs and not state.stopped:
            row, failure = _run_epoch(net, state, train, val, config, display)
            if failure is not None:
                break
            state.end_epoch(row)
            display.epoch_end(row, state.history)
            tracker.log_epoch(row)
            if state.stopped:
                display.message(f"early stopping: no val_acc gain over {state.stopper.best:.4f} "
                                f"for {state.stopper.patience} epochs")
            _save(state, config)
    except BaseException:
        tracker.close("KILLED")
        raise
    finally:
        display.close()
    if failure is not None:
        tracker.close("FAILED")
        if state.device.type == "cuda":
            torch.cuda.empty_cache()
        raise failure
    if state.finish():  # the file now holds the weights that were kept
        _save(state, config)
    tracker.end_fit(state.history, config)
    state.history.config = config
    return state.history
