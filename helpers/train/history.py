"""`History`: what `fit` returns, one plain dict per epoch, so it prints, plots and saves as JSON.

Each row has the keys epoch, train_loss, train_acc, val_loss, val_acc (None without a
validation split), lr, seconds and images_per_s. `helpers.eval.plots.plot_history(history)` draws it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..atomic import write_json

KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")


class History(list):
    """A list of per-epoch dicts, with the best validation accuracy and JSON save/load."""

    @property
    def last(self) -> dict | None:
        """The latest epoch's row (None before the first epoch ends)."""
        return self[-1] if self else None

    @property
    def best_val_acc(self) -> float | None:
        """The highest validation accuracy of any epoch (None without validation)."""
        accs = [row["val_acc"] for row in self if row.get("val_acc") is not None]
        return max(accs) if accs else None

    @property
    def best_epoch(self) -> int | None:
        """The epoch number with the highest validation accuracy (the first one on a tie)."""
        best = self.best_val_acc
        if best is None:
            return None
        return next(row["epoch"] for row in self if row.get("val_acc") == best)

    def column(self, key: str) -> list:
        """One value per epoch, e.g. `history.column("val_acc")`."""
        return [row.get(key) for row in self]

    def to_list(self) -> list[dict]:
        """Plain list of plain dicts (for JSON and weights-only checkpoints)."""
        return [dict(row) for row in self]

    def save_json(self, path) -> Path:
        """Write the rows to `path` atomically (temporary file beside it, then a rename)."""
        # NaN is not JSON: a diverged epoch's loss is written as null.
        rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                for row in self]
        return write_json(path, rows)

    @classmethod
    def load_json(cls, path) -> "History":
        """Read rows written by `save_json` (or any JSON list of per-epoch dicts)."""
        with open(path) as f:
            rows = json.load(f)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path} does not hold a list of per-epoch dicts")
        return cls(rows)

    def __repr__(self) -> str:
        if not self:
            return "History(no epochs)"
        last = self[-1]
        best = self.best_val_acc
        text = f"History({len(self)} epochs, last train_acc {last.get('train_acc') or 0:.4f}"
        if best is not None:
            text += (f", last val_acc {last.get('val_acc') or float('nan'):.4f}, "
                     f"best val_acc {best:.4f} (epoch {self.best_epoch})")
        return text + ")"
