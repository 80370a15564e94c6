"""Classification metrics on label and score arrays: accuracy, top-k, confusion matrix,
precision/recall/F1, one-vs-rest ROC and calibration.

Every function takes NumPy arrays or torch tensors (any device) and returns NumPy arrays or
plain Python numbers, so results print cleanly and go straight into JSON. The definitions
follow scikit-learn's (with `zero_division=0`); the tests use scikit-learn as the oracle.
"""
from __future__ import annotations

import numpy as np


def to_numpy(x) -> np.ndarray:
    """A NumPy copy-or-view of an array, list or torch tensor (detached, moved to the CPU)."""
    if hasattr(x, "detach"):  # a torch tensor; checked this way so torch is not needed here
        x = x.detach().cpu()
        if x.dtype.is_floating_point and x.dtype.itemsize < 4:  # bf16/fp16 have no NumPy twin
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _labels(y, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Integer labels as a 1-D int64 array; a 2-D score array becomes its argmax."""
    y = to_numpy(y)
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or 2-D scores), got shape {y.shape}")
    y = y.astype(np.int64)
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return y


def _pair(y_true, y_pred, num_classes=None):
    """Check and convert a (true, predicted) pair of label arrays of equal length."""
    t = _labels(y_true, num_classes, "y_true")
    p = _labels(y_pred, num_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def _safe_divide(num, den) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


# ---------------------------------------------------------------------------- accuracy

def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions; `y_pred` may be labels or (N, C) scores."""
    t, p = _pair(y_true, y_pred)
    return float((t == p).mean()) if t.size else 0.0


def top_k_accuracy(y_true, scores, k: int = 5) -> float:
    """Fraction of samples whose true class is among the k highest of its (N, C) scores."""
    scores = to_numpy(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    t = _labels(y_true, scores.shape[1])
    if scores.shape[0] != t.size:
        raise ValueError(f"scores has {scores.shape[0]} rows but y_true has {t.size} labels")
    k = min(int(k), scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == t[:, None]).any(axis=1).mean()) if t.size else 0.0


# ------------------------------------------------------------------ confusion and F1

def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    t, p = _pair(y_true, y_pred, num_classes)
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def precision_recall_f1(y_true, y_pred, num_classes: int | None = None) -> dict:
    """Per-class precision, recall, F1 and support, with macro and support-weighted averages.

    A class never predicted has precision 0, one never present has recall 0 (no NaNs), and
    every class in range(num_classes) counts in the macro average, as in scikit-learn.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    out = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    total = support.sum()
    out["macro"] = {m: float(out[m].mean()) if len(cm) else 0.0 for m in ("precision", "recall", "f1")}
    out["weighted"] = {m: float(_safe_divide((out[m] * support).sum(), total))
                       for m in ("precision", "recall", "f1")}
    return out


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1: every class counts the same however rare."""
    return precision_recall_f1(y_true, y_pred, num_classes)["macro"]["f1"]


def most_confused_pairs(cm, class_names=None, k: int = 5) -> list[tuple[str, str, int]]:
    """The k largest off-diagonal cells of a confusion matrix as (true, predicted, count)."""
    cm = to_numpy(cm)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(cm))]
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.argsort(-off[rows, cols], kind="stable")[:k]  # ties keep row-major order
    return [(names[rows[i]], names[cols[i]], int(off[rows[i], cols[i]])) for i in order]


# ------------------------------------------------------------------------------- ROC

def _binary_roc(is_pos: np.ndarray, score: np.ndarray):
    """ROC of one binary problem at every distinct threshold, starting from (0, 0)."""
    if score.size == 0:
        return np.zeros(1), np.zeros(1), float("nan")
    order = np.argsort(-score, kind="mergesort")
    score, is_pos = score[order], is_pos[order]
    last = np.r_[np.nonzero(np.diff(score))[0], score.size - 1]  # last index of each threshold
    tps = np.cumsum(is_pos)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, _safe_divide(fps, fps[-1])]
    tpr = np.r_[0.0, _safe_divide(tps, tps[-1])]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if fps[-1] and tps[-1] else float("nan")
    return fpr, tpr, auc


def roc_curves_ovr(y_true, probs) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """One-vs-rest ROC per class: a list of (fpr, tpr, auc); auc is NaN for a class that is
    absent (or the only one present), where the curve is undefined."""
    probs = to_numpy(probs).astype(np.float64)
    t = _labels(y_true, probs.shape[1])
    return [_binary_roc(t == c, probs[:, c]) for c in range(probs.shape[1])]


# ----------------------------------------------------------------------- calibration

def reliability_bins(probs, y_true, n_bins: int = 15):
    """Bin predictions by confidence (max probability) into equal-width bins over [0, 1].

    Returns (edges (n_bins+1,), accuracy, mean confidence, counts), each per bin; empty bins
    have accuracy and confidence 0. Bin i holds confidences in (edges[i], edges[i+1]].
    """
    probs = to_numpy(probs).astype(np.float64)
    t = _labels(y_true, probs.shape[1])
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    acc = _safe_divide(np.bincount(idx, weights=(pred == t), minlength=n_bins), counts)
    mean_conf = _safe_divide(np.bincount(idx, weights=conf, minlength=n_bins), counts)
    return edges, acc, mean_conf, counts


def expected_calibration_error(probs, y_true, n_bins: int = 15) -> float:
    """ECE: |accuracy - confidence| per confidence bin, weighted by the bin's share of samples."""
    _, acc, conf, counts = reliability_bins(probs, y_true, n_bins)
    total = counts.sum()
    return float((counts / total * np.abs(acc - conf)).sum()) if total else 0.0


# ---------------------------------------------------------------------------- report

def classification_report(y_true, y_pred, class_names) -> dict:
    """Per-class precision/recall/F1/support plus 'macro', 'weighted' and 'accuracy', as plain
    Python floats and ints so the dict can be written with json.dump."""
    names = list(class_names)
    prf = precision_recall_f1(y_true, y_pred, len(names))
    report = {}
    for i, name in enumerate(names):
        report[str(name)] = {"precision": float(prf["precision"][i]), "recall": float(prf["recall"][i]),
                             "f1": float(prf["f1"][i]), "support": int(prf["support"][i])}
    total = int(prf["support"].sum())
    report["macro"] = {**prf["macro"], "support": total}
    report["weighted"] = {**prf["weighted"], "support": total}
    report["accuracy"] = accuracy(y_true, y_pred)
    return report


def format_report(report: dict, digits: int = 3) -> str:
    """A fixed-width text table of a `classification_report` dict, one row per class."""
    rows = [(k, v) for k, v in report.items() if isinstance(v, dict)]
    width = max([len(k) for k, _ in rows] + [len("accuracy")])
    num = f"{{:>10.{digits}f}}"
    lines = [f"{'':>{width}}" + "".join(f"{h:>10}" for h in ("precision", "recall", "f1", "support"))]
    for name, v in rows:
        if name == "macro":
            lines.append("")
        cells = "".join(num.format(v[m]) for m in ("precision", "recall", "f1"))
        lines.append(f"{name:>{width}}{cells}{v['support']:>10d}")
    if "accuracy" in report:
        total = report.get("macro", {}).get("support", "")
        lines += ["", f"{'accuracy':>{width}}{'':>20}{num.format(report['accuracy'])}{total:>10}"]
    return "\n".join(lines)
