"""`fit`: the course's training loop, fast on a GPU and the same code on a CPU.

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

from .amp import amp_dtype, autocast, is_oom, oom_message, synchronize
from .augment import mix_transform
from .checkpoint import load_checkpoint, load_weights, rng_state, save_checkpoint, set_rng_state
from .config import pick_device, seed_everything
from .ema import EMA
from .evaluate import _tta_views, eval_mode, to_model_input
from .history import History
from .loader import GpuLoader
from .progress import Progress
from .schedules import DEFAULT_WARMUP, SCHEDULES, make_scheduler
from .split import channel_mean_std, train_val_split

DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


class TrainingError(RuntimeError):
    """Training cannot go on (out of GPU memory, a diverged loss); the message says what to try."""


# --------------------------------------------------------------------------- data

def make_loaders(data, *, batch_size: int = 512, val_fraction: float = 0.1, seed: int = 0, device=None,
                 crop_padding: int = 4, flip: bool = True, cutout: int = 0):
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
    from .models import FastNet, init_whitening
    target = getattr(model, "_orig_mod", model)
    if isinstance(target, FastNet):
        device = next(target.parameters()).device
        init_whitening(target, to_model_input(images[:max_images], mean, std, device))
    return model


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_loader(model: nn.Module, loader, device=None, amp=None, tta=False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` over a loader; one host synchronization in all.

    `tta`: False, True/"flip" or "translate" (see helpers.evaluate.predict).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = amp_dtype(device, amp)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, dtype):
                views = _tta_views(x, tta)
                logits = sum(model(v).float() for v in views) / len(views)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
    if seen == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / seen, correct.item() / seen


# --------------------------------------------------------------------------- training

def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.9, nesterov: bool = True,
                   weight_decay: float = 5e-4, norm_bias_lr_scale: float = 1.0) -> torch.optim.Optimizer:
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


def _train_epoch(net, model, loader, optimizer, scheduler, scaler, criterion, mix, ema, grad_clip,
                 device, dtype, progress):
    """One pass over `loader`; returns (loss sum, correct count) as device tensors, and images seen."""
    net.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        target = y
        if mix is not None:
            x, target = mix(x, y)  # soft targets; accuracy is still counted against y
        with autocast(device, dtype):
            logits = net(x)
            loss = criterion(logits, target)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        progress.step()
    return loss_sum, correct, seen


def fit(model: nn.Module, train, val=None, *, epochs: int, optimizer="sgd", lr: float | None = None,
        momentum: float = 0.9, nesterov: bool = True, weight_decay: float = 5e-4, schedule: str = "onecycle",
        warmup: float | None = None, label_smoothing: float = 0.0, grad_clip: float | None = None,
        mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, early_stopping: int | None = None,
        min_delta: float = 0.0, ema: float | None = None, tta=False, device=None, amp=None,
        channels_last: bool | None = None, compile: bool = False, seed: int = 0, progress: bool = True,
        live_plot: bool = False, checkpoint=None, resume=None, num_classes: int | None = None) -> History:
    """Train `model` on `train` for `epochs`, validating on `val` after each epoch; returns History.

    `train`/`val`: GpuLoaders (see make_loaders) or any re-iterable of (images, labels) batches
    with a length. `lr`: peak learning rate (default 0.1 for SGD, 1e-3 for Adam/AdamW);
    `warmup`: fraction of all steps (default per schedule, see helpers.schedules);
    `early_stopping`: patience in epochs on val accuracy (improvement > min_delta), after which the
    best epoch's weights are put back; `ema`: decay of a weight average that is evaluated and
    kept; `amp`: None = bf16 (else fp16) autocast on CUDA, off on CPU; `checkpoint`: path written
    after every epoch; `resume`: such a path, to continue exactly where it stopped.
    `seed` seeds everything random from here on (data order, augmentation, MixUp, dropout); the
    initial weights were drawn when the model was built, so for a rerun to give the same numbers,
    build it after `seed_everything(seed)` too (as the notebooks and `python -m helpers train` do).
    Afterwards `model` holds the evaluated weights (the EMA or the best epoch's when those are on).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    if early_stopping and val is None:
        raise ValueError("early_stopping watches validation accuracy: pass a val loader")
    steps_per_epoch = len(train)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batches (fewer images than one batch with drop_last?)")
    device = torch.device(device) if device is not None else getattr(train, "device", None) or pick_device()
    seed_everything(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed batch shape
    dtype = amp_dtype(device, amp)
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model

    total_steps = epochs * steps_per_epoch
    if isinstance(optimizer, torch.optim.Optimizer):
        opt, opt_name = optimizer, type(optimizer).__name__.lower()
    else:
        opt_name = str(optimizer).lower()
        lr = DEFAULT_LR.get(opt_name, 0.1) if lr is None else lr
        opt = make_optimizer(model, opt_name, lr, momentum, nesterov, weight_decay)
    warmup_fraction = DEFAULT_WARMUP[schedule] if warmup is None else warmup
    scheduler = make_scheduler(opt, schedule, total_steps, round(warmup_fraction * total_steps))
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    averager = EMA(model, ema) if ema else None
    mix = None
    if mixup_alpha > 0 or cutmix_alpha > 0:
        mix = mix_transform(num_classes or _num_classes(model), mixup_alpha, cutmix_alpha)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    batch_size = getattr(train, "batch_size", None)
    mean, std = getattr(train, "mean", None), getattr(train, "std", None)
    config = dict(epochs=epochs, optimizer=opt_name, lr=opt.param_groups[0].get("initial_lr", lr),
                  momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, schedule=schedule,
                  warmup=warmup_fraction, label_smoothing=label_smoothing, grad_clip=grad_clip,
                  mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, early_stopping=early_stopping,
                  min_delta=min_delta, ema=ema, tta=tta, batch_size=batch_size, seed=seed,
                  amp=str(dtype).replace("torch.", "") if dtype else "off", channels_last=channels_last,
                  compile=compile, device=str(device))

    history, start_epoch, best, bad_epochs, stopped = History(), 0, None, 0, False
    if resume is not None:
        ckpt = load_checkpoint(resume)
        extra = ckpt.get("extra") or {}
        load_weights(model, {"state_dict": extra.get("train_state_dict") or ckpt["state_dict"]})
        opt.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        if averager is not None and "ema_updates" in extra:
            averager.module.load_state_dict(ckpt["state_dict"])
            averager.updates = int(extra["ema_updates"])
        history = History(ckpt.get("history") or [])
        start_epoch = int(ckpt.get("epoch") or 0)
        best, bad_epochs = extra.get("best_val_acc"), int(extra.get("bad_epochs", 0))
        stopped = bool(extra.get("stopped_early"))
        if extra.get("rng"):
            set_rng_state(extra["rng"])
    best_state = None

    display = Progress(total_steps, epochs, enabled=progress, live_plot=live_plot,
                       initial=start_epoch * steps_per_epoch)
    failure = None
    try:
        for epoch in range(start_epoch, epochs):
            if stopped:
                break
            if hasattr(train, "set_epoch"):
                train.set_epoch(epoch)
            display.start_epoch(epoch + 1)
            phase = "training"
            try:
                synchronize(device)
                t0 = time.perf_counter()
                loss_sum, correct, seen = _train_epoch(net, model, train, opt, scheduler, scaler, criterion, mix,
                                                       averager, grad_clip, device, dtype, display)
                synchronize(device)
                train_seconds = time.perf_counter() - t0
                train_loss, train_acc = loss_sum.item() / seen, correct.item() / seen
                if not math.isfinite(train_loss):
                    failure = TrainingError(
                        f"the training loss became {train_loss} in epoch {epoch + 1}: the weights diverged. "
                        f"Try a lower learning rate (peak lr is {config['lr']}), grad_clip=1.0, or a warmup; "
                        "check the inputs for NaN.")
                    break
                phase = "validation"
                evaluated = averager.module if averager is not None else net
                val_loss = val_acc = None
                if val is not None:
                    val_loss, val_acc = evaluate_loader(evaluated, val, device, amp, tta)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                failure = TrainingError(oom_message(batch_size, phase, exc, dtype is not None))
                break  # raised below, outside this frame, so the failed batch's tensors can be freed

            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                   "val_acc": val_acc, "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
                   "images_per_s": seen / train_seconds}
            history.append(row)
            if early_stopping and val_acc is not None:
                if best is None or val_acc > best + min_delta:
                    best, bad_epochs = val_acc, 0
                    kept = averager.module if averager is not None else model  # not the compiled wrapper
                    best_state = {k: v.detach().clone() for k, v in kept.state_dict().items()}
                else:
                    bad_epochs += 1
                    stopped = bad_epochs >= early_stopping
            display.epoch_end(row, history)
            if stopped:
                display.message(f"early stopping: no val_acc gain over {best:.4f} for {early_stopping} epochs")
            if checkpoint is not None:
                _save(checkpoint, model, averager, opt, scheduler, scaler, history, config, epoch + 1,
                      mean, std, best, bad_epochs, stopped)
    finally:
        display.close()
    if failure is not None:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise failure

    if averager is not None:
        model.load_state_dict(averager.module.state_dict())
    if stopped and best_state is not None:
        model.load_state_dict(best_state)
        if checkpoint is not None:  # the file now holds the weights that were kept
            _save(checkpoint, model, None, opt, scheduler, scaler, history, config, len(history),
                  mean, std, best, bad_epochs, True)
    return history


def _save(path, model, averager, opt, scheduler, scaler, history, config, epoch, mean, std, best, bad_epochs,
          stopped) -> None:
    """Write fit's checkpoint: evaluated weights, plus what an exact resume needs in `extra`."""
    extra = {"rng": rng_state(), "best_val_acc": best, "bad_epochs": bad_epochs, "stopped_early": stopped}
    state_dict = None
    if averager is not None:  # the EMA weights are the model's; the raw ones are needed to resume
        state_dict = averager.module.state_dict()
        extra.update(train_state_dict=model.state_dict(), ema_updates=averager.updates)
    if scaler is not None:
        extra["scaler"] = scaler.state_dict()
    save_checkpoint(path, model, optimizer=opt, scheduler=scheduler, history=history.to_list(), config=config,
                    epoch=epoch, extra=extra, mean=mean, std=std, state_dict=state_dict)
