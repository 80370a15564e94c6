"""Hidden tests of 05_evaluation: the metrics, temperature scaling, Grad-CAM and FGSM.

They run in the trusted grading process: each test calls the student's function in the
sandboxed worker through `student` and compares what comes back with scikit-learn and helpers'
reference implementations (helpers.metrics, helpers.evaluate, helpers.explain) on inputs made
here, at call time. Models handed to grad_cam and fgsm are built inside the sandbox with trusted
constructors and loaded with weights made here, so the reference runs on the same weights;
their state (weights, parameter gradients, modes, hooks) is read back after the calls. Each test
decides the points of one test cell of the notebook (`@block`); the deny-lists make the
references the specs forbid absent from the student's process. FGSM's result must be on x's
device: that is checked with the model and tensors on the "meta" device (no GPU here).
"""
import copy
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import f1_score as sk_f1
from sklearn.metrics import precision_recall_fscore_support as sk_prfs
from sklearn.metrics import top_k_accuracy_score as sk_top_k
from torch import nn

from helpers import checks
from helpers.evaluate import temperature_scale as reference_temperature
from helpers.explain import grad_cam as reference_grad_cam
from helpers.grading.harness import block
from helpers.grading.harness.session import Remote, StudentError
from helpers.metrics import expected_calibration_error as reference_ece


# ----------------------------------------------------------------------------- helpers

def plain(value, name: str, what: str):
    """`value` when it came back as data; a one-line failure when it is a remote object."""
    if isinstance(value, Remote):
        raise AssertionError(f"{name}: expected {what}, got a {value.type_name} object")
    return value


def under_no_grad(student, fn):
    """A remote wrapper that calls `fn` inside torch.no_grad() in the sandbox."""
    return student.make("torch.no_grad")(fn)


def attr(student, obj, path: str):
    """obj.<path> read in the sandbox (dotted; numbers index a Sequential)."""
    return student.make("operator.attrgetter", path)(obj)


def sandbox_sequential(student, spec: list):
    """nn.Sequential of the (class name, args) in `spec`, built in the sandbox by trusted constructors."""
    layers = [student.make(f"torch.nn.{name}", *args) for name, *args in spec]
    return student.make("torch.nn.Sequential", *layers)


def local_sequential(spec: list) -> nn.Sequential:
    """The same nn.Sequential here, in the trusted process."""
    return nn.Sequential(*[getattr(nn, name)(*args) for name, *args in spec])


class WarningsAsErrors:
    """Inside the sandbox: warnings of `category` become errors, as warnings.simplefilter("error", ...)."""

    def __init__(self, student, category: str):
        self.student, self.category = student, category

    def __enter__(self):
        s = self.student
        self.catcher = s.make("warnings.catch_warnings")
        s.make("operator.methodcaller", "__enter__")(self.catcher)
        builtins = s.make("importlib.import_module", "builtins")
        category = s.make("operator.attrgetter", self.category)(builtins)
        s.make("warnings.simplefilter", "error", category)
        return self

    def __exit__(self, *exc):
        self.student.make("operator.methodcaller", "__exit__", None, None, None)(self.catcher)
        return False


# ----------------------------------------------------------------------------- 1. confusion_matrix

@block("confusion_matrix-tests", deny=["helpers.metrics.confusion_matrix", "sklearn", "torchmetrics"])
def test_confusion_matrix_visible(student):
    confusion_matrix = student.confusion_matrix
    cm = plain(confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3),
               "confusion_matrix(6 labels, 6 predictions, 3)", "a NumPy array")
    checks.check_shape(cm, (3, 3), "confusion_matrix(6 labels, 6 predictions, 3).shape")
    checks.check_dtype(cm, np.int64, "confusion_matrix(...).dtype", hint="convert with .astype(np.int64)")
    checks.check_equal(cm, np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]]),
                       "confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)",
                       hint="row = true class, column = predicted class")
    small = plain(confusion_matrix(np.array([1, 1]), np.array([1, 1]), 4),
                  "confusion_matrix(labels of class 1 only, 4)", "a NumPy array")
    checks.check_equal(np.shape(small), (4, 4), "confusion_matrix(labels of class 1 only, 4).shape",
                       hint="make it num_classes x num_classes")


@block("confusion_matrix-tests", deny=["helpers.metrics.confusion_matrix", "sklearn", "torchmetrics"])
def test_confusion_matrix_random(student):
    confusion_matrix = student.confusion_matrix
    rng = np.random.default_rng(21)
    for n, k, present in [(500, 7, 5), (1, 3, 3), (2000, 10, 10)]:
        t = rng.integers(0, present, n)
        p = np.where(rng.random(n) < 0.6, t, rng.integers(0, k, n))
        checks.check_equal(confusion_matrix(t, p, k), sk_confusion_matrix(t, p, labels=np.arange(k)),
                           f"confusion_matrix of {n} random labels, {k} classes",
                           hint="compare with sklearn.metrics.confusion_matrix")
    got = plain(confusion_matrix(t.astype(np.int32), p.astype(np.int32), 10), "confusion_matrix of int32 labels",
                "a NumPy array")
    checks.check_equal(got, sk_confusion_matrix(t, p, labels=np.arange(10)), "confusion_matrix of int32 labels")
    checks.check_dtype(got, np.int64, "confusion_matrix(int32 labels).dtype")
    checks.check_equal(confusion_matrix(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 3),
                       np.zeros((3, 3), dtype=np.int64), "confusion_matrix(no samples, 3)")


# ----------------------------------------------------------------------------- 2. precision_recall_f1

PRF_KEYS = ("precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1")


def _prf_dict(result, name: str) -> dict:
    checks.check(isinstance(result, dict) and set(PRF_KEYS) <= set(result),
                 f"{name}: expected a dict with keys precision, recall, f1, macro_precision, macro_recall, macro_f1, "
                 f"got {sorted(map(str, result)) if isinstance(result, dict) else type(result).__name__}")
    return result


@block("precision_recall_f1-tests", deny=["helpers.metrics.precision_recall_f1", "sklearn", "torchmetrics"])
def test_precision_recall_f1_visible(student):
    prf = student.precision_recall_f1
    r = _prf_dict(prf(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]), 3), "precision_recall_f1")
    checks.check_close(r["precision"], [1 / 2, 2 / 3, 1.0], "precision for true [0,0,1,1,2,2], predicted [0,1,1,1,2,0]",
                       hint="precision[c] = TP_c / (samples predicted as c): divide by the column sums")
    checks.check_close(r["recall"], [1 / 2, 1.0, 1 / 2], "recall for the same labels",
                       hint="recall[c] = TP_c / (samples of class c): divide by the row sums")
    checks.check_close(r["f1"], [1 / 2, 0.8, 2 / 3], "f1 for the same labels", hint="2 * P * R / (P + R), per class")
    checks.check_close(r["macro_precision"], (1 / 2 + 2 / 3 + 1) / 3, "macro_precision", hint="the mean over classes")
    checks.check_close(r["macro_recall"], (1 / 2 + 1 + 1 / 2) / 3, "macro_recall", hint="the mean over classes")
    r = _prf_dict(prf(np.array([0, 0, 1]), np.array([0, 0, 0]), 3), "precision_recall_f1")
    checks.check(not any(np.isnan(np.asarray(r[k], dtype=np.float64)).any() for k in ("precision", "recall", "f1")),
                 f"precision_recall_f1 with a class never predicted and one absent: expected no NaN, got precision "
                 f"{r['precision']}, recall {r['recall']}, f1 {r['f1']}; count 0/0 as 0")
    checks.check_close(_prf_dict(prf(np.arange(4), np.arange(4), 4), "precision_recall_f1")["macro_f1"], 1.0,
                       "macro_f1 of perfect predictions")


@block("precision_recall_f1-tests", deny=["helpers.metrics.precision_recall_f1", "sklearn", "torchmetrics"])
def test_precision_recall_f1_random(student):
    prf = student.precision_recall_f1
    rng = np.random.default_rng(22)
    for n, k, present in [(600, 8, 6), (3, 5, 5), (5000, 10, 10), (40, 4, 2)]:
        t = rng.integers(0, present, n)
        p = np.where(rng.random(n) < 0.5, t, rng.integers(0, k - 1, n))
        try:
            with WarningsAsErrors(student, "RuntimeWarning"):
                r = prf(t, p, k)
        except StudentError as exc:
            if "RuntimeWarning" in exc.type_names:
                raise AssertionError(f"precision_recall_f1: expected no RuntimeWarning, got {str(exc)[:200]}; "
                                     "divide only where the denominator is > 0 (np.divide(..., where=...))") from None
            raise
        r = _prf_dict(r, "precision_recall_f1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sp, sr, sf, _ = sk_prfs(t, p, labels=np.arange(k), zero_division=0)
            macro = sk_f1(t, p, labels=np.arange(k), average="macro", zero_division=0)
        what = f"for {n} random labels of {k} classes, some never true or never predicted"
        checks.check_close(r["precision"], sp, "precision " + what, atol=1e-9, hint="0/0 counts as 0")
        checks.check_close(r["recall"], sr, "recall " + what, atol=1e-9, hint="0/0 counts as 0")
        checks.check_close(r["f1"], sf, "f1 " + what, atol=1e-9, hint="0/0 counts as 0")
        checks.check_close(r["macro_precision"], sp.mean(), "macro_precision " + what, atol=1e-9,
                           hint="average over ALL num_classes classes")
        checks.check_close(r["macro_recall"], sr.mean(), "macro_recall " + what, atol=1e-9,
                           hint="average over ALL num_classes classes")
        checks.check_close(r["macro_f1"], macro, "macro_f1 " + what, atol=1e-9,
                           hint="macro_f1 is the mean of the per-class F1 scores, not 2PR/(P+R) of the macro averages")
        checks.check(all(isinstance(r[m], float) for m in ("macro_precision", "macro_recall", "macro_f1")),
                     "precision_recall_f1: expected Python floats for the macro averages; use float(...)")


# ----------------------------------------------------------------------------- 3. top_k_accuracy

@block("top_k_accuracy-tests", deny=["helpers.metrics.top_k_accuracy", "sklearn", "torchmetrics"])
def test_top_k_accuracy_visible(student):
    top_k_accuracy = student.top_k_accuracy
    s = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.06, 0.04], [0.2, 0.3, 0.5]])
    y = torch.tensor([2, 1, 2])
    for k, want in [(1, 1 / 3), (2, 1.0), (3, 1.0), (5, 1.0)]:
        got = top_k_accuracy(s, y, k)
        checks.check(isinstance(got, float), f"top_k_accuracy: expected a Python float, got {type(got).__name__}")
        checks.check_close(got, want, f"top_k_accuracy(3 samples, 3 classes, k={k})",
                           hint="look for y_true among the k highest scores of each row (torch.topk); k >= C gives 1.0")


@block("top_k_accuracy-tests", deny=["helpers.metrics.top_k_accuracy", "sklearn", "torchmetrics"])
def test_top_k_accuracy_random(student):
    top_k_accuracy = student.top_k_accuracy
    rng = np.random.default_rng(23)
    for n, c in [(400, 10), (57, 7), (1, 4)]:
        z = rng.normal(size=(n, c))
        t = rng.integers(0, c, n)
        for k in (1, 2, 3, 5):
            want = sk_top_k(t, z, k=k, labels=np.arange(c)) if k < c else 1.0
            checks.check_close(plain(top_k_accuracy(z, t, k), "top_k_accuracy", "a float"), want,
                               f"top_k_accuracy(NumPy scores {n} x {c}, k={k})", atol=1e-6,
                               hint="accept NumPy arrays as well as tensors")
            checks.check_close(plain(top_k_accuracy(torch.from_numpy(z).float(), torch.from_numpy(t), k),
                                     "top_k_accuracy", "a float"), want,
                               f"top_k_accuracy(tensor scores {n} x {c}, k={k})", atol=1e-6)
    checks.check_close(plain(top_k_accuracy(z, t, 1), "top_k_accuracy", "a float"), float(np.mean(z.argmax(1) == t)),
                       "top_k_accuracy(k=1)", atol=1e-6, hint="with k=1 it is the ordinary accuracy")


# ----------------------------------------------------------------------------- 4. expected_calibration_error

def _rows(confidences, classes: int = 3) -> np.ndarray:
    """Probability rows whose largest entry (class 0) is exactly each given confidence."""
    out = np.full((len(confidences), classes), 0.0)
    for i, c in enumerate(confidences):
        out[i] = (1 - c) / (classes - 1)
        out[i, 0] = c
    return out


@block("expected_calibration_error-tests", deny=["helpers.metrics.expected_calibration_error",
                                                   "helpers.metrics.reliability_bins", "sklearn", "torchmetrics"])
def test_ece_visible(student):
    ece = student.expected_calibration_error
    onehot = np.eye(5)[[0, 3, 1, 1, 4]]
    got = ece(onehot, np.array([0, 3, 1, 1, 4]))
    checks.check(isinstance(got, float),
                 f"expected_calibration_error: expected a Python float, got {type(got).__name__}")
    checks.check_close(got, 0.0, "ECE of confident (probability 1.0) and correct predictions",
                       hint="a confidence of exactly 1.0 belongs to the last bin")
    p = np.full((10, 3), 0.05)
    p[:, 0] = 0.9  # confidence 0.9, prediction class 0, for all 10 samples
    y = np.array([0] * 6 + [1] * 4)  # 6 of 10 correct
    checks.check_close(plain(ece(p, y), "expected_calibration_error", "a float"), 0.3,
                       "ECE of 10 predictions with confidence 0.9, 6 correct",
                       hint="one bin: |accuracy 0.6 - confidence 0.9| = 0.3")


@block("expected_calibration_error-tests", deny=["helpers.metrics.expected_calibration_error",
                                                   "helpers.metrics.reliability_bins", "sklearn", "torchmetrics"])
def test_ece_hidden(student):
    ece = student.expected_calibration_error
    # Two bins of different sizes: the gaps are weighted by the bins' shares of the samples.
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.95, 0.05], [0.45, 0.55]])
    checks.check_close(plain(ece(p, np.array([0, 0, 0, 0]), n_bins=10), "expected_calibration_error", "a float"),
                       0.75 * 0.05 + 0.25 * 0.55, "ECE of 3 correct predictions at 0.95 and 1 wrong at 0.55 (10 bins)",
                       atol=1e-9, hint="weight each bin's gap by n_b / N, not the plain mean over bins")
    # Perfectly calibrated predictions: in each group, the fraction correct equals the confidence.
    probs, labels = [], []
    for c in (0.35, 0.55, 0.75, 0.95):
        row = np.full(10, (1 - c) / 9)
        row[2] = c
        probs.append(np.tile(row, (1000, 1)))
        labels.append(np.where(np.arange(1000) < round(c * 1000), 2, 7))
    checks.check_close(plain(ece(np.vstack(probs), np.concatenate(labels)), "expected_calibration_error", "a float"),
                       0.0, "ECE of perfectly calibrated predictions", atol=1e-9)
    # Confident and always wrong, at confidence 1.0.
    checks.check_close(plain(ece(np.eye(4)[[0, 1, 2, 3]], np.array([1, 2, 3, 0]), n_bins=5),
                             "expected_calibration_error", "a float"), 1.0,
                       "ECE of wrong predictions made with confidence 1.0", atol=1e-9)
    rng = np.random.default_rng(24)
    for n, c, bins in [(2000, 10, 15), (300, 3, 5), (1, 10, 15), (5000, 100, 20)]:
        pr = rng.dirichlet(np.full(c, 0.3), size=n)
        yy = np.where(rng.random(n) < 0.7, pr.argmax(1), rng.integers(0, c, n))
        checks.check_close(plain(ece(pr, yy, n_bins=bins), "expected_calibration_error", "a float"),
                           reference_ece(pr, yy, n_bins=bins),
                           f"ECE of {n} random predictions over {c} classes with n_bins={bins}", atol=1e-9,
                           hint="bins are (b/n_bins, (b+1)/n_bins]; skip empty bins")


@block("expected_calibration_error-tests", deny=["helpers.metrics.expected_calibration_error",
                                                   "helpers.metrics.reliability_bins", "sklearn", "torchmetrics"])
def test_ece_interior_edges(student):
    """A confidence exactly on an interior edge b/n_bins belongs to the bin below it (right-closed bins)."""
    ece = student.expected_calibration_error
    # 4 wrong at the edge, 4 right just below it, 2 right just above: the edge group cancels with
    # the group it shares a bin with, so left-closed bins give a different ECE.
    for edge, below, above, bins in [(0.6, 0.5, 0.7, 5), (0.75, 0.6, 0.9, 4), (0.5, 0.45, 0.55, 10)]:
        probs = _rows([edge] * 4 + [below] * 4 + [above] * 2)
        labels = np.array([1] * 4 + [0] * 4 + [0] * 2)
        want = (abs(4 * (0 - edge) + 4 * (1 - below)) + 2 * (1 - above)) / 10
        assert abs(reference_ece(probs, labels, n_bins=bins) - want) < 1e-12  # the oracle agrees
        checks.check_close(plain(ece(probs, labels, n_bins=bins), "expected_calibration_error", "a float"), want,
                           f"ECE with 4 confidences exactly on the bin edge {edge} (n_bins={bins})", atol=1e-9,
                           hint=f"bins are (b/n_bins, (b+1)/n_bins]: a confidence of exactly {edge} belongs to the bin "
                                f"that ends at {edge}, not to the one that starts there")


# ----------------------------------------------------------------------------- 5. fit_temperature

def _nll(z, y, t):
    return F.cross_entropy(torch.as_tensor(z).double() / t, torch.as_tensor(y).long()).item()


def _calibrated_logits():
    """Seeded calibrated logits (4000, 10) and labels drawn from them (the notebook's seed 5)."""
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(4000, 10, generator=g) * 2
    lab = torch.multinomial(z0.softmax(dim=1), 1, generator=g).squeeze(1)
    return z0, lab


@block("fit_temperature-tests", deny=["helpers.evaluate.temperature_scale"])
def test_fit_temperature_visible(student):
    z0, lab = _calibrated_logits()
    t = student.fit_temperature(z0 * 2.5, lab)  # the same logits, 2.5x over-confident
    checks.check(isinstance(t, float) and t > 0, f"fit_temperature: expected a Python float > 0, got {t!r}")
    checks.check(abs(t - 2.5) < 0.25, f"fit_temperature(logits made 2.5x too large): expected T close to 2.5, got "
                 f"{t:.4f}; minimize F.cross_entropy(logits / T, labels) over T")


@block("fit_temperature-tests", deny=["helpers.evaluate.temperature_scale"])
def test_fit_temperature_hidden(student):
    fit_temperature = student.fit_temperature
    z0, lab = _calibrated_logits()
    for scale in (2.5, 0.4, 1.0, 6.0):
        z = z0 * scale
        call = student.make("functools.partial", fit_temperature, z, lab)  # keeps the sandbox's copy of z
        t = plain(call(), f"fit_temperature(logits scaled by {scale})", "a float")
        checks.check_equal(call.args[0], z, f"the logits after fit_temperature (scale {scale})",
                           hint="do not change them in place")
        checks.check(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0,
                     f"fit_temperature(logits scaled by {scale}): expected a Python float > 0, got {t!r}")
        ref = reference_temperature(z, lab, max_iter=200)
        checks.check(_nll(z, lab, t) <= _nll(z, lab, ref) + 1e-4 and abs(t / ref - 1) < 0.02,
                     f"fit_temperature(logits scaled by {scale}): expected T = {ref:.4f} "
                     f"(NLL {_nll(z, lab, ref):.5f}), "
                     f"got {t:.4f} (NLL {_nll(z, lab, t):.5f}); T < 1 must be possible too")
    zn, yn = (z0[:500] * 3).numpy(), lab[:500].numpy()
    ref = reference_temperature(torch.from_numpy(zn), torch.from_numpy(yn), max_iter=200)
    t = plain(fit_temperature(zn, yn), "fit_temperature(NumPy logits and labels)", "a float")
    checks.check(isinstance(t, (int, float)) and not isinstance(t, bool) and abs(t / ref - 1) < 0.02,
                 f"fit_temperature(NumPy logits and labels): expected T = {ref:.4f}, got {t!r}")


# ----------------------------------------------------------------------------- 6. grad_cam

CAM_NET = [("Conv2d", 3, 8, 3, 1, 1), ("BatchNorm2d", 8), ("ReLU",), ("MaxPool2d", 2), ("Conv2d", 8, 16, 3, 1, 1),
           ("ReLU",), ("AdaptiveAvgPool2d", 1), ("Flatten",), ("Linear", 16, 5)]


def _cam_setup(student):
    """The notebook's grad_cam test net (seed 6) here and, with the same weights, in the sandbox; and x."""
    torch.manual_seed(6)
    local = local_sequential(CAM_NET)
    x = torch.randn(6, 3, 32, 32)
    remote = sandbox_sequential(student, CAM_NET)
    remote.load_state_dict(local.state_dict())
    return local, remote, x


def _hooks_left(student, net, index: int) -> int:
    return len(attr(student, net, f"{index}._forward_hooks"))


@block("grad_cam-tests", deny=["helpers.explain.grad_cam"])
def test_grad_cam_visible(student):
    _, net, x = _cam_setup(student)
    cam = plain(student.grad_cam(net, net[4], x), "grad_cam(net, layer, x)", "a tensor")
    checks.check_shape(cam, (6, 32, 32), "grad_cam(net, layer, x of shape (6, 3, 32, 32)).shape",
                       hint="one map per image, upsampled to the input's height and width")
    c = cam.detach().cpu().float().numpy() if torch.is_tensor(cam) else np.asarray(cam, dtype=np.float64)
    checks.check(c.min() >= 0 and c.max() <= 1 + 1e-6, f"grad_cam: expected values in [0, 1], got [{c.min():.3g}, "
                 f"{c.max():.3g}]; apply the ReLU, then scale each map by its own min and max")
    checks.check(np.allclose(c.reshape(6, -1).max(1), 1.0, atol=1e-5),
                 f"grad_cam: expected each map to reach 1.0, got maxima {np.round(c.reshape(6, -1).max(1), 4)}; "
                 "scale each map separately: (cam - its min) / (its max - its min)")
    checks.check(_hooks_left(student, net, 4) == 0,
                 "grad_cam: expected the forward hook removed afterwards, got it still registered; "
                 "call handle.remove()")


@block("grad_cam-tests", deny=["helpers.explain.grad_cam"])
def test_grad_cam_against_reference(student):
    local, net, x = _cam_setup(student)
    grad_cam = student.grad_cam
    for target in (None, 3, torch.tensor([0, 1, 2, 3, 4, 0])):
        local.train()  # BatchNorm in training mode: grad_cam must switch to eval mode
        want = reference_grad_cam(local, local[4], x, target)
        net.load_state_dict(local.state_dict())
        net.train()
        got = plain(grad_cam(net, net[4], x, target), "grad_cam", "a tensor")
        checks.check_close(got, want, f"grad_cam(net, net[4], x, target_class={target!r}) against helpers' Grad-CAM",
                           atol=1e-4, hint="model.eval(); weights = gradient mean over h, w; ReLU; bilinear upsampling "
                                           "(align_corners=False) BEFORE the min-max scaling")
    net.load_state_dict(local.state_dict())
    got = plain(under_no_grad(student, grad_cam)(net, net[0], x[:2], 1), "grad_cam", "a tensor")
    checks.check_close(got, reference_grad_cam(local, local[0], x[:2], 1), "grad_cam called inside torch.no_grad()",
                       atol=1e-4, hint="wrap the forward and backward pass in torch.enable_grad()")
    xr = torch.randn(3, 3, 24, 40)  # not square: catches swapped height and width
    net.load_state_dict(local.state_dict())
    got = plain(grad_cam(net, net[4], xr, torch.tensor([4, 4, 1])), "grad_cam", "a tensor")
    checks.check_shape(got, (3, 24, 40), "grad_cam on (3, 3, 24, 40) images: the shape")
    checks.check_close(got, reference_grad_cam(local, local[4], xr, torch.tensor([4, 4, 1])),
                       "grad_cam on 24 x 40 images", atol=1e-4)
    checks.check(not torch.is_tensor(got) or not got.requires_grad, "grad_cam: expected a detached result, got one "
                 "that requires grad; return .detach()")
    checks.check(_hooks_left(student, net, 4) == 0 and _hooks_left(student, net, 0) == 0,
                 "grad_cam: expected no forward hooks left after the calls; remove them in a finally block")


# ----------------------------------------------------------------------------- 7. fgsm

LIN_NET = [("Flatten",), ("Linear", 3 * 8 * 8, 4)]
BN_NET = [("Conv2d", 3, 6, 3, 1, 1), ("BatchNorm2d", 6), ("ReLU",), ("Flatten",), ("Linear", 6 * 64, 4)]


def _fgsm_setup(student):
    """The notebook's linear test model (seed 7), x and y; the model also built in the sandbox."""
    torch.manual_seed(7)
    lin = local_sequential(LIN_NET)
    x, y = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0])
    remote = sandbox_sequential(student, LIN_NET)
    remote.load_state_dict(lin.state_dict())
    return lin, remote, x, y


def _check_model_untouched(student, local: nn.Module, remote, what: str, *, kept_in_eval: bool = False) -> None:
    """The sandbox's model after fgsm: same weights, no parameter gradients; with kept_in_eval, still in eval mode."""
    state = local.state_dict()
    after = remote.state_dict()
    checks.check(isinstance(after, dict) and set(after) == set(state),
                 f"{what}: expected the model's state_dict keys unchanged, got {sorted(map(str, after))[:6]}")
    for k, v in state.items():
        checks.check_equal(after[k], v, f"model.state_dict()[{k!r}] after fgsm",
                           hint="fgsm must not change the model: eval mode, no optimizer step")
    for k in state:
        grad = attr(student, remote, f"{k}.grad")
        checks.check(grad is None, f"{what}: expected {k}.grad to stay None, got a gradient there; take the gradient "
                     "with respect to x only, with torch.autograd.grad(loss, the copy of x), not loss.backward()")
    if kept_in_eval:
        modes = {name or "model": attr(student, remote, f"{name}.training" if name else "training")
                 for name, _ in local.named_modules()}
        wrong = [name for name, training in modes.items() if training is not False]
        checks.check(not wrong, f"{what}: expected the model (in eval mode before the call) still in eval mode after "
                     f"it, got training mode in {wrong[:3]}; put it in eval mode, do not switch it back to training")


@block("fgsm-tests", deny=["helpers.explain.fgsm_attack", "helpers.explain._loss_gradient_sign"])
def test_fgsm_visible(student):
    lin, net, x, y = _fgsm_setup(student)
    fgsm = student.fgsm
    same = plain(fgsm(net, x, y, 0.0), "fgsm(model, x, y, 0.0)", "a tensor")
    checks.check_shape(same, (5, 3, 8, 8), "fgsm(model, x of shape (5, 3, 8, 8), y, 0.0).shape")
    checks.check_equal(same, x, "fgsm(model, x, y, eps=0.0)",
                       hint="return x + eps * sign(gradient): with eps = 0 that is x")
    adv = plain(fgsm(net, x, y, 0.1), "fgsm(model, x, y, 0.1)", "a tensor")
    checks.check_close(torch.abs(torch.as_tensor(adv) - x), torch.full_like(x, 0.1),
                       "|fgsm(model, x, y, 0.1) - x| for every pixel",
                       atol=1e-6, hint="move every pixel by exactly eps, in the direction of the gradient's sign")
    with torch.no_grad():
        l0, l1 = F.cross_entropy(lin(x), y).item(), F.cross_entropy(lin(torch.as_tensor(adv).float()), y).item()
    checks.check(l1 > l0, f"fgsm: expected the loss to increase, got {l0:.4f} before and {l1:.4f} after; "
                 "step along +sign(gradient of the loss with respect to x)")


@block("fgsm-tests", deny=["helpers.explain.fgsm_attack", "helpers.explain._loss_gradient_sign"])
def test_fgsm_batchnorm_no_grad(student):
    lin, net_lin, x, y = _fgsm_setup(student)
    fgsm = student.fgsm
    bn = local_sequential(BN_NET)
    with torch.no_grad():
        bn[1].running_mean.uniform_(-0.5, 0.5)
    state = copy.deepcopy(bn.state_dict())
    ref_net = copy.deepcopy(bn).eval()
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(ref_net(xr), y), xr)
    net = sandbox_sequential(student, BN_NET)
    net.load_state_dict(state)
    net.train()
    call = student.make("functools.partial", fgsm, net, x, y, 0.03)  # keeps the sandbox's copy of x
    adv = plain(under_no_grad(student, call)(), "fgsm(model with BatchNorm, x, y, 0.03)", "a tensor")
    checks.check_close(adv, x + 0.03 * g.sign(), "fgsm(model with BatchNorm, x, y, 0.03)", atol=1e-6,
                       hint="model.eval() first; the gradient is taken with respect to x; torch.enable_grad() inside")
    checks.check_equal(call.args[1], x, "x after fgsm", hint="do not modify x in place; work on x.detach().clone()")
    _check_model_untouched(student, bn, net, "fgsm(model with BatchNorm, ...)")
    checks.check(torch.is_tensor(adv) and not adv.requires_grad,
                 "fgsm: expected a detached result, got one with gradient history; return .detach()")
    checks.check(adv.dtype == x.dtype and adv.device == x.device, f"fgsm: expected dtype {x.dtype} on {x.device}, "
                 f"got {adv.dtype} on {adv.device}")
    big = plain(fgsm(net_lin, x, y, 5.0), "fgsm(model, x, y, 5.0)", "a tensor")
    checks.check_close(torch.abs(torch.as_tensor(big) - x).max(), 5.0, "the largest change with eps=5.0", atol=1e-5,
                       hint="do not clip the result")


@block("fgsm-tests", deny=["helpers.explain.fgsm_attack", "helpers.explain._loss_gradient_sign"])
def test_fgsm_leaves_the_model_alone(student):
    """No parameter gradients (torch.autograd.grad, not backward), same weights, eval mode kept."""
    lin, net, x, y = _fgsm_setup(student)
    net.eval()
    adv = plain(student.fgsm(net, x, y, 0.1), "fgsm(model, x, y, 0.1)", "a tensor")
    checks.check_shape(adv, (5, 3, 8, 8), "fgsm(model, x of shape (5, 3, 8, 8), y, 0.1).shape")
    _check_model_untouched(student, lin, net, "fgsm(model, x, y, 0.1)", kept_in_eval=True)
    bn = local_sequential(BN_NET)
    net_bn = sandbox_sequential(student, BN_NET)
    net_bn.load_state_dict(bn.state_dict())
    net_bn.eval()
    under_no_grad(student, student.fgsm)(net_bn, x, y, 0.05)
    _check_model_untouched(student, bn, net_bn, "fgsm(model with BatchNorm, x, y, 0.05) inside torch.no_grad()",
                           kept_in_eval=True)


@block("fgsm-tests", deny=["helpers.explain.fgsm_attack", "helpers.explain._loss_gradient_sign"])
def test_fgsm_any_device(student):
    """x_adv on x's device (the spec), with the model, x and y on a device other than the CPU.

    There is no GPU here, so they go to the "meta" device, which has shapes and dtypes but no data: mixing
    a meta tensor with a CPU tensor, or copying one to the CPU, raises, as code that leaves the GPU would
    fail or return a CPU tensor there. Meta tensors cannot cross the boundary: the call is chained in the
    sandbox with map() and only (device, shape, dtype) of the result comes back.
    """
    mk = student.make
    _, net, x, y = _fgsm_setup(student)
    net.to("meta")
    to_meta = mk("operator.methodcaller", "to", "meta")
    results = mk("builtins.map", student.fgsm, [net], mk("builtins.map", to_meta, [x]),
                 mk("builtins.map", to_meta, [y]), [0.1])
    describe = mk("operator.attrgetter", "device", "shape", "dtype")
    try:
        (kind,) = mk("builtins.list", mk("builtins.map", describe, results))
    except StudentError as exc:
        raise AssertionError(f"fgsm(model, x, y, 0.1) with the model, x and y on a device other than the CPU (the meta "
                             f"device stands in for a GPU here) failed: {exc}; keep every tensor on x's device (no "
                             ".cpu(), no tensors made without device=x.device)") from None
    checks.check(tuple(kind) == (torch.device("meta"), (5, 3, 8, 8), torch.float32),
                 f"fgsm with x on a device other than the CPU: expected (device, shape, dtype) (meta, (5, 3, 8, 8), "
                 f"torch.float32), got {kind}; return the result on x's device, with x's dtype")
