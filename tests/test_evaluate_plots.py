"""helpers.evaluate, helpers.explain and helpers.plots on tiny seeded models and data."""
import matplotlib

matplotlib.use("Agg")  # tests only: the helpers themselves never choose a backend

import os

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from helpers import evaluate, explain, metrics, plots

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
NAMES = ["plane", "car", "bird", "cat"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def uint8_images(n=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def normalized(images):
    """The reference conversion, written out: uint8 NHWC -> normalized float NCHW."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def flip_invariant_model(classes=10):
    """1x1 convolutions and global pooling: mirroring the image cannot change the output."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, classes))


def tiny_cnn(classes=10):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))


# ----------------------------------------------------------------------------- predict

def test_predict_matches_a_plain_forward_pass_and_restores_modes():
    model, images = flip_invariant_model(), uint8_images()
    model.train()
    model[1].eval()  # a frozen BatchNorm must stay frozen
    running_mean = model[1].running_mean.clone()
    logits = evaluate.predict(model, images, batch_size=5, mean=MEAN, std=STD)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu" and logits.shape == (12, 10)
    assert model.training and not model[1].training and model[0].training
    torch.testing.assert_close(model[1].running_mean, running_mean)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(normalized(images)))
    torch.testing.assert_close(evaluate.predict(model, normalized(images)), logits)  # float input
    labels = logits.argmax(1).numpy()
    labels[:3] = (labels[:3] + 1) % 10
    out, acc = evaluate.predict(model, images, labels=labels, mean=MEAN, std=STD)
    assert acc == pytest.approx(9 / 12)


def test_predict_tta():
    images = uint8_images()
    model = flip_invariant_model()
    plain = evaluate.predict(model, images, mean=MEAN, std=STD)
    flipped = evaluate.predict(model, images, mean=MEAN, std=STD, tta=True)
    torch.testing.assert_close(flipped, plain, atol=1e-5, rtol=1e-5)
    # a model that sees pixel positions: TTA averages the image and its mirror
    torch.manual_seed(1)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    x = normalized(images)
    with torch.no_grad():
        want = (linear(x) + linear(x.flip(-1))) / 2
    torch.testing.assert_close(evaluate.predict(linear, x, tta=True), want)
    translated = evaluate.predict(linear, x, tta="translate")
    assert translated.shape == (12, 4) and not torch.allclose(translated, want)
    with pytest.raises(ValueError):
        evaluate.predict(linear, x, tta="rotate")


def test_misclassified_most_confident_first():
    logits = torch.tensor([[5.0, 0.0], [0.0, 1.0], [0.0, 9.0], [3.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([1, 1, 0, 1, 1])
    np.testing.assert_array_equal(evaluate.misclassified(logits, labels, k=5), [2, 0, 3])
    np.testing.assert_array_equal(evaluate.misclassified(logits.numpy(), labels.numpy(), k=1), [2])


# ------------------------------------------------------------------------- calibration

def calibrated_logits(n=4000, classes=10, seed=0):
    """Logits with labels drawn from their own softmax: calibrated at temperature 1."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g) * 2.0
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    return logits, labels


def test_temperature_scaling_recovers_a_known_temperature():
    logits, labels = calibrated_logits()
    for true_t in (0.5, 2.5):
        with torch.no_grad():  # must still work when called under no_grad
            fitted = evaluate.temperature_scale(logits / true_t, labels)
        assert isinstance(fitted, float)
        assert fitted == pytest.approx(1 / true_t, rel=0.1)


def test_temperature_scaling_lowers_ece_of_overconfident_logits():
    logits, labels = calibrated_logits(seed=1)
    overconfident = logits * 3.0
    t = evaluate.temperature_scale(overconfident.numpy(), labels.numpy())
    before = metrics.expected_calibration_error(overconfident.softmax(1), labels)
    after = metrics.expected_calibration_error((overconfident / t).softmax(1), labels)
    assert t > 1 and after < before / 2


# ---------------------------------------------------------------------------------- FGSM

@pytest.fixture(scope="module")
def trained_linear():
    """A linear model trained a few steps on two separable classes of 3x8x8 images."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(256) % 2
    pixels = (0.35 + 0.3 * y.view(-1, 1, 1, 1) + 0.15 * torch.randn(256, 3, 8, 8, generator=g)).clamp(0, 1)
    x = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model, x, y


def test_fgsm_accuracy_starts_clean_and_never_rises(trained_linear):
    model, x, y = trained_linear
    model.train()
    epsilons = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]
    accs = explain.fgsm_accuracy(model, x, y, epsilons, MEAN, STD, batch_size=100)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    assert accs[0] == pytest.approx(clean) and clean > 0.9
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < 0.5 * clean
    assert model.training and all(p.grad is None for p in model.parameters())
    assert evaluate.fgsm_accuracy is explain.fgsm_accuracy  # reachable from helpers.evaluate


def test_fgsm_attack_stays_within_eps_and_valid_pixels(trained_linear):
    model, x, y = trained_linear
    torch.testing.assert_close(explain.fgsm_attack(model, x, y, 0.0, MEAN, STD), x)
    eps = 0.1
    adv = explain.fgsm_attack(model, x, y, eps, MEAN, STD)
    std, mean = torch.tensor(STD).view(1, 3, 1, 1), torch.tensor(MEAN).view(1, 3, 1, 1)
    pixels_adv, pixels = adv * std + mean, x * std + mean
    assert (pixels_adv - pixels).abs().max() <= eps + 1e-5
    assert pixels_adv.min() >= -1e-5 and pixels_adv.max() <= 1 + 1e-5
    assert not adv.requires_grad
    with torch.no_grad():
        assert (model(adv).argmax(1) == y).float().mean() < (model(x).argmax(1) == y).float().mean()


# ------------------------------------------------------------------------------ Grad-CAM

def test_grad_cam_shape_range_and_cleanup():
    model = tiny_cnn()
    model.train()
    x = normalized(uint8_images(n=4))
    with torch.no_grad():  # must still work when called under no_grad
        cams = explain.grad_cam(model, model[2], x)
    assert cams.shape == (4, 32, 32) and cams.dtype == torch.float32
    assert cams.min() >= 0 and cams.max() <= 1
    assert all(c.max() == pytest.approx(1.0) or c.max() == 0 for c in cams)
    assert not model[2]._forward_hooks and not model[2]._backward_hooks
    assert model.training and all(p.grad is None for p in model.parameters())
    by_name = explain.grad_cam(model, "2", x, target=[0, 1, 2, 3])
    assert by_name.shape == (4, 32, 32)
    assert explain.grad_cam(model, model[0], x, target=3).shape == (4, 32, 32)


def test_grad_cam_points_at_the_evidence():
    # A model that sums a positive filter's response: only a bright patch drives the logit.
    conv = nn.Conv2d(3, 1, 3, padding=1, bias=False)
    head = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    x = torch.zeros(1, 3, 32, 32)
    x[..., 20:26, 4:10] = 1.0
    cam = explain.grad_cam(model, conv, x, target=0)[0]
    row, col = divmod(int(cam.argmax()), 32)
    assert 19 <= row <= 26 and 3 <= col <= 10
    assert cam[:10, 20:].max() == 0  # nothing where the image is empty


# --------------------------------------------------------------------------------- plots

def tick_texts(labels):
    return [t.get_text() for t in labels]


def test_image_grids():
    images = uint8_images(n=10)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    fig = plots.image_grid(images, labels, NAMES, n=6, ncols=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 8
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == [NAMES[i] for i in labels[:6]]
    # a normalized float tensor is un-normalized back to the same pixels
    fig2 = plots.image_grid(normalized(images), n=6, mean=MEAN, std=STD)
    np.testing.assert_allclose(fig2.axes[0].images[0].get_array(), images[0] / 255, atol=1e-5)

    cams = explain.grad_cam(tiny_cnn(), "2", normalized(images[:3]))
    fig = plots.plot_gradcam(images[:3], cams, titles=["a", "b", "c"])
    assert isinstance(fig, Figure) and all(len(ax.images) == 2 for ax in fig.axes)
    fig = plots.plot_misclassified(images[:2], [0, 1], [3, 2], NAMES)
    assert "cat" in fig.axes[0].get_title() and "bird" in fig.axes[1].get_title()


def test_plot_history_tolerates_missing_keys():
    history = [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.3, "lr": 0.1},
               {"epoch": 2, "train_loss": 1.5, "train_acc": 0.5, "val_loss": 1.6, "val_acc": 0.45, "lr": 0.05},
               {"epoch": 3, "train_loss": 1.2}]
    fig = plots.plot_history(history)
    loss, acc = fig.axes[:2]
    assert isinstance(fig, Figure)
    assert (loss.get_xlabel(), loss.get_ylabel(), acc.get_ylabel()) == ("epoch", "loss", "accuracy")
    assert [line.get_label() for line in acc.get_lines()] == ["train acc", "val acc"]
    assert isinstance(plots.plot_history([{"train_loss": 1.0}]), Figure)
    assert isinstance(plots.plot_history([]), Figure)


def test_class_metric_plots():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=200)
    probs = rng.dirichlet(np.ones(4), size=200)
    pred = probs.argmax(1)
    cm = metrics.confusion_matrix(y, pred, 4)
    fig = plots.plot_confusion_matrix(cm, NAMES)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the matrix and its colorbar
    assert tick_texts(ax.get_xticklabels()) == NAMES and tick_texts(ax.get_yticklabels()) == NAMES
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert isinstance(plots.plot_confusion_matrix(cm, NAMES, normalize=False), Figure)

    fig = plots.plot_per_class(metrics.classification_report(y, pred, NAMES), NAMES)
    assert tick_texts(fig.axes[0].get_xticklabels()) == NAMES

    fig = plots.plot_roc(metrics.roc_curves_ovr(y, probs), NAMES)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 5 and ax.get_lines()[0].get_label().startswith("plane")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("false positive rate", "true positive rate")

    fig = plots.plot_reliability(probs, y, n_bins=10, title="before scaling")
    ece = metrics.expected_calibration_error(probs, y, n_bins=10)
    assert "before scaling" in fig.axes[0].get_title() and f"ECE = {ece:.3f}" in fig.axes[0].get_title()


def test_fgsm_and_histogram_plots():
    fig = plots.plot_fgsm([0, 0.01, 0.03], [0.9, 0.6, 0.2])
    assert fig.axes[0].get_xlabel().startswith("epsilon") and fig.axes[0].get_ylabel() == "accuracy"
    fig = plots.plot_histogram(np.array([55, 70, 82, 91, 64.5]), bins=5, title="grades", xlabel="points")
    ax = fig.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("grades", "points", "count")
    same = plots.plot_histogram([0.88, 0.88], value_range=(0.0, 1.0)).axes[0]  # identical accuracies
    assert same.get_xlim() == (0.0, 1.0)


def test_save_figure_is_atomic_png(tmp_path):
    fig = plots.plot_histogram([1, 2, 2, 3])
    out = plots.save_figure(fig, tmp_path / "figs" / "hist.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path / "figs") == ["hist.png"]
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError):  # an unknown format: nothing written, nothing left behind
        plots.save_figure(plots.plot_histogram([1]), tmp_path / "figs" / "hist.nope")
    assert os.listdir(tmp_path / "figs") == ["hist.png"]
