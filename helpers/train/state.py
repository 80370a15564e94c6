"""What changes while `fit` trains, in one object: `TrainState` (model, EMA, optimizer, scheduler,
grad scaler, history, early stopping, the best epoch's weights). Its `state_dict` is the
checkpoint's content and `load_state_dict` the exact resume, so saving and resuming cannot drift
apart. `EarlyStopping` is the patience rule on validation accuracy.
"""
from __future__ import annotations

from torch import nn

from ..models.checkpoint import load_weights, rng_state, save_checkpoint, set_rng_state
from .history import History


class EarlyStopping:
    """Stops after `patience` epochs in a row whose validation accuracy is not above the best so far
    by more than `min_delta` (the first epoch always counts as an improvement)."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"early stopping needs a patience of at least 1 epoch, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.bad_epochs = 0         # epochs in a row without a gain
        self.stopped = False
        self.improved = False       # whether the last step was a gain (fit keeps that epoch's weights)

    def step(self, accuracy: float) -> bool:
        """Record one epoch's validation accuracy; True once training should stop."""
        self.improved = self.best is None or accuracy > self.best + self.min_delta
        if self.improved:
            self.best = accuracy
        self.bad_epochs = 0 if self.improved else self.bad_epochs + 1
        self.stopped = self.stopped or self.bad_epochs >= self.patience
        return self.stopped

    def state_dict(self) -> dict:
        return {"best_val_acc": self.best, "bad_epochs": self.bad_epochs, "stopped_early": self.stopped}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best_val_acc")
        self.bad_epochs = int(state.get("bad_epochs") or 0)
        self.stopped = bool(state.get("stopped_early"))


class TrainState:
    """The model and everything `fit` updates with it; `epoch` is the number of epochs done.

    Also carries the loop's fixed parts (device, autocast dtype, loss, MixUp/CutMix, grad_clip),
    so one object is what the epoch function needs."""

    def __init__(self, model: nn.Module, optimizer, scheduler, *, ema=None, scaler=None, stopper=None,
                 device=None, dtype=None, criterion=None, mix=None, grad_clip=None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.ema, self.scaler, self.stopper = ema, scaler, stopper
        self.device, self.dtype, self.criterion, self.mix, self.grad_clip = device, dtype, criterion, mix, grad_clip
        self.history = History()
        self.best_weights = None    # the best epoch's weights, kept in memory for early stopping

    @property
    def epoch(self) -> int:
        return len(self.history)

    @property
    def stopped(self) -> bool:
        return self.stopper is not None and self.stopper.stopped

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and kept: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def end_epoch(self, row: dict) -> None:
        """Add the epoch's row; with early stopping, step it and keep the weights of a gain."""
        self.history.append(row)
        if self.stopper is not None and row.get("val_acc") is not None:
            self.stopper.step(row["val_acc"])
            if self.stopper.improved:
                self.best_weights = {k: v.detach().clone() for k, v in self.evaluated.state_dict().items()}

    def finish(self) -> bool:
        """Put the kept weights into the model (the EMA's, or the best epoch's after an early stop);
        True when they are not the last epoch's own."""
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        if self.stopped and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
            self.ema = None  # the model now holds what is kept
            return True
        return False

    # ----------------------------------------------------------------------- checkpoint = state

    def state_dict(self) -> dict:
        """The checkpoint fields that resume this run exactly: the evaluated weights, optimizer,
        scheduler, history, epoch and, in "extra", the random generators, early stopping, the raw
        weights under an EMA and the grad scaler."""
        stopping = (self.stopper.state_dict() if self.stopper is not None
                    else {"best_val_acc": None, "bad_epochs": 0, "stopped_early": False})
        extra = {"rng": rng_state(), **stopping}
        weights = None
        if self.ema is not None:  # the EMA weights are the model's; the raw ones are needed to resume
            weights = self.ema.module.state_dict()
            extra.update(train_state_dict=self.model.state_dict(), ema_updates=self.ema.updates)
        if self.scaler is not None:
            extra["scaler"] = self.scaler.state_dict()
        return {"state_dict": weights if weights is not None else self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "history": self.history.to_list(), "epoch": self.epoch, "extra": extra}

    def load_state_dict(self, ckpt: dict) -> None:
        """Continue from a checkpoint written by `save` (or by fit before TrainState existed)."""
        extra = ckpt.get("extra") or {}
        load_weights(self.model, {"state_dict": extra.get("train_state_dict") or ckpt["state_dict"]})
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        if self.ema is not None and "ema_updates" in extra:
            self.ema.module.load_state_dict(ckpt["state_dict"])
            self.ema.updates = int(extra["ema_updates"])
        self.history = History(ckpt.get("history") or [])
        if self.stopper is not None:
            self.stopper.load_state_dict(extra)
        if extra.get("rng"):
            set_rng_state(extra["rng"])

    def save(self, path, *, config=None, mean=None, std=None, recipe=None, dataset=None):
        """Write the checkpoint (atomically) with the run's config and data statistics."""
        state = self.state_dict()
        return save_checkpoint(path, self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                               history=state["history"], config=config, epoch=state["epoch"], extra=state["extra"],
                               mean=mean, std=std, state_dict=state["state_dict"] if self.ema is not None else None,
                               recipe=recipe, dataset=dataset)
