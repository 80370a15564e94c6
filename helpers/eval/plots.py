"""Figures for the notebooks, the trainer's reports and the TAs' feedback.

Each function builds one figure with `plt.subplots` and returns it without showing it:
a notebook displays it (end the line with `;` or assign it to avoid a second copy), a script
hands it to `save_figure`, which writes the file atomically and closes the figure. The module
never picks a backend; headless machines fall back to Agg by themselves.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from ..atomic import atomic_write
from .metrics import expected_calibration_error, reliability_bins, to_numpy


# -------------------------------------------------------------------------- images

def _images_hwc(images, mean=None, std=None) -> np.ndarray:
    """Images as floats in [0, 1], (N, H, W, C): uint8 NHWC as is, float NCHW un-normalized
    with mean/std (3-tuples in [0, 1] units) when given."""
    arr = to_numpy(images)
    channels_first = arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3)
    if arr.dtype != np.uint8:
        channels_first = arr.ndim == 4 and arr.shape[1] in (1, 3)  # float tensors are NCHW
    if channels_first:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if mean is not None and std is not None:
        arr = arr * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)
    return np.clip(arr, 0.0, 1.0)


def _grid(images: np.ndarray, titles=None, ncols: int = 8, colors=None, overlays=None):
    """A grid of images (N, H, W, C) in [0, 1], optional titles and heatmap overlays."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.8 * nrows), squeeze=False)
    jet = matplotlib.colormaps["jet"]
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        image = images[i][..., 0] if images[i].shape[-1] == 1 else images[i]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        if overlays is not None:
            h, w = image.shape[:2]
            ax.imshow(overlays[i], cmap=jet, alpha=0.5, vmin=0, vmax=1,
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8, **({"color": colors[i]} if colors is not None else {}))
    return fig


def _name(label, class_names) -> str:
    """A class index as its name (or as the number when no names are given)."""
    label = int(label)
    return str(class_names[label]) if class_names is not None else str(label)


def image_grid(images, labels=None, class_names=None, n: int = 32, mean=None, std=None, ncols: int = 8):
    """The first n images in a grid, titled with their class names when labels are given."""
    shown = _images_hwc(images[:n], mean, std)
    titles = None if labels is None else [_name(y, class_names) for y in to_numpy(labels)[:n]]
    return _grid(shown, titles, ncols)


def plot_gradcam(images, heatmaps, titles=None, mean=None, std=None, ncols: int = 8):
    """Grad-CAM heatmaps (N, H, W) in [0, 1] laid over their images (uint8 NHWC)."""
    return _grid(_images_hwc(images, mean, std), titles, ncols, overlays=to_numpy(heatmaps))


def plot_misclassified(images, true, pred, class_names=None, mean=None, std=None, ncols: int = 8):
    """A gallery of images titled 'true / predicted', mistakes in red."""
    true, pred = to_numpy(true), to_numpy(pred)
    titles = [f"{_name(t, class_names)}\n→ {_name(p, class_names)}" for t, p in zip(true, pred)]
    colors = ["tab:red" if t != p else "tab:green" for t, p in zip(true, pred)]
    return _grid(_images_hwc(images, mean, std), titles, ncols, colors)


# ------------------------------------------------------------------------- curves

def plot_history(history):
    """Loss and accuracy per epoch, train and validation, from a list of per-epoch dicts
    (keys epoch, train_loss, train_acc, val_loss, val_acc, lr; any may be missing)."""
    if isinstance(history, dict):  # also accept {"train_loss": [...], ...}
        length = max((len(v) for v in history.values()), default=0)
        history = [{k: v[i] for k, v in history.items() if i < len(v)} for i in range(length)]
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")

    def curve(ax, key, **style):
        points = [(e, float(row[key])) for e, row in zip(epochs, history) if row.get(key) is not None]
        if points:
            ax.plot(*zip(*points), label=key.replace("_", " "), **style)

    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        short = "loss" if metric == "loss" else "acc"
        curve(ax, f"train_{short}", marker="o", markersize=3)
        curve(ax, f"val_{short}", marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if any(row.get("lr") is not None for row in history):
        ax_lr = ax_loss.twinx()
        curve(ax_lr, "lr", color="gray", linestyle="--")
        ax_lr.set_ylabel("learning rate")
        lines = ax_loss.get_lines() + ax_lr.get_lines()
        ax_loss.legend(lines, [line.get_label() for line in lines])
    elif ax_loss.get_lines():
        ax_loss.legend()
    if ax_acc.get_lines():
        ax_acc.legend()
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    return fig


def plot_roc(curves, class_names=None):
    """One-vs-rest ROC curves (a list of (fpr, tpr, auc) per class), AUC in the legend."""
    items = list(curves.items()) if isinstance(curves, dict) else list(enumerate(curves))
    fig, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    for c, (fpr, tpr, auc) in items:
        ax.plot(to_numpy(fpr), to_numpy(tpr), linewidth=1, label=f"{_name(c, class_names)} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
    aucs = [auc for _, (_, _, auc) in items if not math.isnan(auc)]
    ax.set_title(f"ROC, one vs rest (mean AUC {np.mean(aucs):.3f})" if aucs else "ROC, one vs rest")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    if len(items) <= 20:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_fgsm(epsilons, accuracies):
    """Accuracy against FGSM step size; `accuracies` is a list, or {model name: list}."""
    series = accuracies if isinstance(accuracies, dict) else {"": accuracies}
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for name, accs in series.items():
        ax.plot(list(epsilons), list(accs), marker="o", label=name or None)
    ax.set_xlabel("epsilon (pixel units)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("accuracy under FGSM")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return fig


def plot_histogram(values, bins=20, title=None, xlabel=None, value_range=None):
    """A histogram with the mean marked, e.g. of the class's grades; `value_range` (lo, hi) fixes
    the bins and the x axis (e.g. (0, 1) for accuracies), so classes compare at a glance."""
    values = to_numpy(values).astype(np.float64).ravel()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.hist(values, bins=bins, range=value_range, edgecolor="black")
    if value_range is not None:
        ax.set_xlim(*value_range)
    ax.yaxis.get_major_locator().set_params(integer=True)  # counts of students
    if values.size:
        ax.axvline(values.mean(), color="tab:red", linestyle="--", label=f"mean {values.mean():.3g}")
        ax.legend()
    ax.set_xlabel(xlabel or "value")
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    return fig


# ------------------------------------------------------------------ class metrics

def plot_confusion_matrix(cm, class_names=None, normalize: bool = True):
    """The confusion matrix as a heatmap, true classes down and predicted across; with
    `normalize` each row is divided by its class's count (so the diagonal is recall)."""
    cm = to_numpy(cm).astype(np.float64)
    k = len(cm)
    names = [_name(i, class_names) for i in range(k)]
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    side = min(max(5.0, 0.45 * k + 2), 24.0)
    fig, ax = plt.subplots(figsize=(side + 1, side), layout="constrained")
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "count")
    fontsize = 9 if k <= 20 else 5
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(k), labels=names, fontsize=fontsize)
    if k <= 20:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(shown[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > threshold else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (rows normalized)" if normalize else ""))
    return fig


def plot_per_class(report: dict, class_names=None):
    """Precision, recall and F1 per class as grouped bars, from `classification_report`."""
    if class_names is None:
        class_names = [k for k, v in report.items() if isinstance(v, dict) and k not in ("macro", "weighted")]
    names = [str(c) for c in class_names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names) + 2), 4), layout="constrained")
    for offset, metric in zip((-0.27, 0.0, 0.27), ("precision", "recall", "f1")):
        ax.bar(x + offset, [report[n][metric] for n in names], width=0.27, label=metric)
    if "macro" in report:
        ax.axhline(report["macro"]["f1"], color="black", linestyle="--", linewidth=1,
                   label=f"macro F1 {report['macro']['f1']:.3f}")
    ax.set_xticks(x, labels=names, rotation=45, ha="right", fontsize=9 if len(names) <= 20 else 5)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("per-class precision, recall and F1")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_reliability(probs, labels, n_bins: int = 15, title: str | None = None):
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect
    calibration, with the gap shaded and the ECE in the title."""
    edges, acc, conf, counts = reliability_bins(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins)
    width = np.diff(edges)
    filled = counts > 0
    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    ax.bar(edges[:-1][filled], acc[filled], width=width[filled], align="edge",
           edgecolor="black", label="accuracy")
    ax.bar(edges[:-1][filled], (conf - acc)[filled], bottom=acc[filled], width=width[filled],
           align="edge", fill=False, hatch="//", edgecolor="tab:red", label="gap to confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title or 'reliability diagram'} (ECE = {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return fig


# -------------------------------------------------------------------------- files

def save_figure(fig, path, dpi: int = 150) -> Path:
    """Write `fig` to `path` atomically (a temporary file in the same folder, then os.replace,
    so a reader never sees half a file) and close it. The suffix picks the format."""
    path = Path(path)
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
