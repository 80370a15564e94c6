"""helpers.metrics against scikit-learn, the oracle, on random labels and scores."""
import json

import numpy as np
import pytest
import torch

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from helpers import metrics

SEEDS = [0, 1, 2]
C = 6


def random_case(seed, n=300, classes=C, drop_pred=True):
    """Random true labels and scores; with drop_pred, class 0 is never predicted and the last
    class never occurs, so both zero-division cases come up."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes - 1, size=n)  # the last class never occurs
    scores = rng.normal(size=(n, classes)) + 2.0 * np.eye(classes)[y_true] * rng.random((n, 1))
    if drop_pred:
        scores[:, 0] = -10.0  # class 0 never predicted
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    return y_true, probs, probs.argmax(axis=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_top_k(seed):
    y, probs, pred = random_case(seed, drop_pred=False)
    assert metrics.accuracy(y, pred) == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    assert metrics.accuracy(torch.tensor(y), torch.tensor(probs)) == pytest.approx(
        sklearn_metrics.accuracy_score(y, pred))  # tensors, and scores instead of labels
    for k in (1, 2, 3, 5):
        expected = sklearn_metrics.top_k_accuracy_score(y, probs, k=k, labels=range(C))
        assert metrics.top_k_accuracy(y, probs, k) == pytest.approx(expected)
        assert metrics.top_k_accuracy(torch.tensor(y), torch.tensor(probs), k) == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix(seed):
    y, _, pred = random_case(seed)
    cm = metrics.confusion_matrix(y, pred, C)
    np.testing.assert_array_equal(cm, sklearn_metrics.confusion_matrix(y, pred, labels=range(C)))
    assert cm[:, 0].sum() == 0 and cm[-1].sum() == 0
    np.testing.assert_array_equal(metrics.confusion_matrix(torch.tensor(y), torch.tensor(pred), C), cm)


@pytest.mark.parametrize("seed", SEEDS)
def test_precision_recall_f1_with_zero_division(seed):
    y, _, pred = random_case(seed)
    got = metrics.precision_recall_f1(y, pred, C)
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
        y, pred, labels=range(C), zero_division=0)
    for key, want in zip(("precision", "recall", "f1", "support"), (p, r, f, s)):
        np.testing.assert_allclose(got[key], want, atol=1e-12, err_msg=key)
    for average in ("macro", "weighted"):
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
            y, pred, labels=range(C), average=average, zero_division=0)
        assert got[average] == pytest.approx({"precision": p, "recall": r, "f1": f})
    expected = sklearn_metrics.f1_score(y, pred, labels=range(C), average="macro", zero_division=0)
    assert metrics.macro_f1(y, pred, C) == pytest.approx(expected)
    assert got["precision"][0] == 0 and got["recall"][-1] == 0  # no NaNs


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curves_match_sklearn(seed):
    y, probs, _ = random_case(seed, drop_pred=False)
    probs = np.round(probs, 2)  # ties between scores, to exercise thresholds
    curves = metrics.roc_curves_ovr(torch.tensor(y), torch.tensor(probs))
    assert len(curves) == C
    for c, (fpr, tpr, auc) in enumerate(curves[:-1]):
        want_fpr, want_tpr, _ = sklearn_metrics.roc_curve(y == c, probs[:, c], drop_intermediate=False)
        np.testing.assert_allclose(fpr, want_fpr)
        np.testing.assert_allclose(tpr, want_tpr)
        assert auc == pytest.approx(sklearn_metrics.roc_auc_score(y == c, probs[:, c]))
    assert np.isnan(curves[-1][2])  # the last class never occurs: AUC undefined


def test_expected_calibration_error_by_hand():
    # Four predictions in 2 bins [0, .5], (.5, 1]: confidences .3 (right), .4 (wrong) in the
    # first; .8 (right), .9 (wrong) in the second.
    probs = np.array([[0.3, 0.25, 0.25, 0.2], [0.4, 0.3, 0.2, 0.1],
                      [0.1, 0.8, 0.05, 0.05], [0.05, 0.05, 0.9, 0.0]])
    y = np.array([0, 1, 1, 0])
    # bin 1: acc .5, conf .35 -> .15; bin 2: acc .5, conf .85 -> .35; ECE = .5*.15 + .5*.35
    assert metrics.expected_calibration_error(probs, y, n_bins=2) == pytest.approx(0.25)
    edges, acc, conf, counts = metrics.reliability_bins(probs, y, n_bins=2)
    np.testing.assert_allclose(edges, [0, 0.5, 1])
    np.testing.assert_allclose(acc, [0.5, 0.5])
    np.testing.assert_allclose(conf, [0.35, 0.85])
    np.testing.assert_array_equal(counts, [2, 2])
    # empty bins are zero and carry no weight; a perfectly confident right model has ECE 0
    _, acc, _, counts = metrics.reliability_bins(probs, y, n_bins=10)
    assert counts.sum() == 4 and acc[0] == 0
    assert metrics.expected_calibration_error(np.eye(4), np.arange(4)) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_ece_matches_a_direct_loop(seed):
    y, probs, pred = random_case(seed, drop_pred=False)
    conf = probs.max(axis=1)
    ece = 0.0
    for lo, hi in zip(np.linspace(0, 1, 16)[:-1], np.linspace(0, 1, 16)[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs((pred[in_bin] == y[in_bin]).mean() - conf[in_bin].mean())
    assert metrics.expected_calibration_error(torch.tensor(probs), torch.tensor(y)) == pytest.approx(ece)


def test_most_confused_pairs():
    cm = np.array([[50, 3, 9], [7, 40, 0], [1, 9, 30]])
    pairs = metrics.most_confused_pairs(cm, ["cat", "dog", "frog"], k=3)
    assert pairs == [("cat", "frog", 9), ("frog", "dog", 9), ("dog", "cat", 7)]
    assert all(type(n) is int for _, _, n in pairs)
    assert len(metrics.most_confused_pairs(cm, ["cat", "dog", "frog"], k=10)) == 5  # zeros left out
    assert metrics.most_confused_pairs(np.eye(3, dtype=int), None) == []


def test_classification_report_is_json_and_matches_sklearn():
    y, _, pred = random_case(5)
    names = [f"class{i}" for i in range(C)]
    report = metrics.classification_report(torch.tensor(y), pred, names)
    json.dumps(report)  # plain floats and ints only
    want = sklearn_metrics.classification_report(
        y, pred, labels=range(C), target_names=names, output_dict=True, zero_division=0)
    for name in names:
        assert report[name]["f1"] == pytest.approx(want[name]["f1-score"])
        assert report[name]["support"] == want[name]["support"]
    assert report["macro"]["recall"] == pytest.approx(want["macro avg"]["recall"])
    assert report["weighted"]["precision"] == pytest.approx(want["weighted avg"]["precision"])
    assert report["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    text = metrics.format_report(report)
    assert all(name in text for name in names + ["macro", "weighted", "accuracy"])
    assert len(text.splitlines()) == 1 + C + 1 + 2 + 2


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 1, 3], [0, 1, 1], num_classes=3)
    with pytest.raises(ValueError):
        metrics.accuracy([0, 1], [0, 1, 1])
