"""Training speed: the course's `fit()` against the conventional pipeline, side by side in one run.

Conventional = what the courses this one replaces do: per-image PIL transforms (RandomCrop(32, 4),
RandomHorizontalFlip, ToTensor, Normalize) in a DataLoader with worker processes, an eager fp32
model, batch 128, a `.item()` per step. fit() = GPU-resident data, batched augmentation, bf16 +
channels_last on CUDA, no per-step host synchronization.

CUDA mode (a GPU is present):
  (a) reference recipe: FastNet, airbench-style, over --seeds seeds: test accuracy mean/std and
      seconds per run (target: >= 94.0% in <= 5 s on an H100);
  (b) ResNet-18 seconds per epoch, conventional vs fit() (target ratio >= 4), and ResNet-18
      trained with fit() to test accuracy (target >= 93% in < 60 s).
CPU mode: (b)'s comparison on a small model and a subset (--model, --images), in a few minutes.
Both modes: (c) the time fit() spends in MLflow tracking calls per epoch and its share of the
epoch (target <= 1%), measured directly (helpers.train.tracking.Tracker times every call).
The last line holds the headline figures.

    PYTHONPATH=. python benchmarks/train_speed.py [--data PATH] [--seeds 5] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from helpers.settings import pick_device
from helpers.data import DataError, ImageData, load_dataset
from helpers.eval.evaluate import predict
from helpers.models import build_model
from helpers.data.split import stratified_subset
from helpers.train import fit, init_from_data, make_loaders, make_optimizer
from helpers.train.recipes import settings_for

from conventional import conventional_loader  # beside this script: the shared baseline


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- data

def load_data(path, images: int | None, test_images: int | None) -> ImageData:
    """CIFAR-10 from --data or $COURSE_CIFAR10 (never downloaded here), else the generated dataset."""
    try:
        data = load_dataset("cifar10", path, download=False, verbose=True)
    except DataError as exc:
        print(f"NOTE: CIFAR-10 not found ({str(exc).splitlines()[0]}); using the generated dataset, so the "
              "accuracies below are not CIFAR-10 accuracies (the speed figures still compare)")
        data = load_dataset("synthetic", synthetic_size=(max(images or 0, 10_000), 2_000))
    if images and images < len(data.train_labels):
        per_class = images // data.num_classes
        tr = stratified_subset(data.train_labels, per_class, seed=0)
        te = stratified_subset(data.test_labels, (test_images or len(data.test_labels)) // data.num_classes, seed=0)
        data = ImageData(data.name, data.classes, data.train_images[tr], data.train_labels[tr],
                         data.test_images[te], data.test_labels[te], source=data.source + " (subset)")
    return data


# --------------------------------------------------------------------------- the two pipelines
# Both train the same registry model with SGD (momentum 0.9, Nesterov, weight decay 5e-4) at a
# constant learning rate of 0.05 per 128 images, so their accuracies can be compared as well.

class Conventional:
    """The conventional pipeline, one epoch per call: PIL transforms in a DataLoader, eager fp32,
    batch 128, loss.item() and the correct count read back every step."""

    def __init__(self, data, model_name: str, device, workers: int, mean, std):
        self.loader = conventional_loader(data.train_images, data.train_labels, mean, std, batch_size=128,
                                          workers=workers, pin_memory=device.type == "cuda", drop_last=True)
        torch.manual_seed(0)
        self.model = build_model(model_name, num_classes=data.num_classes).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        self.device, self.mean, self.std = device, mean, std

    def epoch(self, index: int) -> float:
        sync(self.device)
        start = time.perf_counter()
        self.model.train()
        running, correct = 0.0, 0
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device)
            self.opt.zero_grad()
            out = self.model(x)
            loss = torch.nn.functional.cross_entropy(out, y)
            loss.backward()
            self.opt.step()
            running += loss.item()                        # the usual per-step host synchronization
            correct += (out.argmax(1) == y).sum().item()
        sync(self.device)
        return time.perf_counter() - start


class WithFit:
    """helpers.train.fit, one epoch per call (GpuLoader, bf16 + channels_last on CUDA)."""

    def __init__(self, data, model_name: str, device, batch_size: int):
        self.train, _, self.mean, self.std = make_loaders(data, batch_size=batch_size, val_fraction=0.0, device=device)
        torch.manual_seed(0)
        self.model = build_model(model_name, num_classes=data.num_classes)
        self.lr = 0.05 * batch_size / 128

    def epoch(self, index: int) -> float:
        self.train.seed = index  # each call is a new fit(): vary the shuffle with the round
        history = fit(self.model, self.train, None, epochs=1, lr=self.lr, schedule="constant", warmup=0.0,
                      progress=False, seed=index)
        return history.last["seconds"]


def test_accuracy(model, data, mean, std, tta=False) -> float:
    return predict(model, data.test_images, data.test_labels, batch_size=1024, mean=mean, std=std, tta=tta)[1]


def compare(data, model_name: str, rounds: int, device, workers: int, fit_batches: list[int]) -> dict:
    """Seconds per epoch of the conventional pipeline and of fit() at each batch size, interleaved:
    each round runs one epoch of each, so a busy machine slows all of them alike. The first
    round is a warm-up (worker start-up, cuDNN autotuning) and is left out of the medians."""
    from helpers.data.split import channel_mean_std
    mean, std = (tuple(float(v) for v in a) for a in channel_mean_std(data.train_images))
    runners = {"conventional": Conventional(data, model_name, device, workers, mean, std)}
    runners.update({f"fit, batch {bs}": WithFit(data, model_name, device, bs) for bs in fit_batches})
    times = {name: [] for name in runners}
    for r in range(rounds):
        for name, runner in runners.items():
            times[name].append(runner.epoch(r))
    medians = {name: statistics.median(t[1:] or t) for name, t in times.items()}
    base = medians["conventional"]
    print(f"\n{model_name}, {len(data.train_labels):,} training images, {rounds} interleaved rounds of one epoch each "
          f"(median seconds per epoch, first round left out)")
    for name, runner in runners.items():
        acc = test_accuracy(runner.model, data, runner.mean, runner.std)
        print(f"  {name:<22} {medians[name]:7.2f} s/epoch  {len(data.train_labels) / medians[name]:9,.0f} img/s  "
              f"x{base / medians[name]:5.2f}  test acc {acc:.4f}   "
              f"(epochs: {', '.join(f'{t:.2f}' for t in times[name])})")
    return medians


def tracking_cost(data, model_name: str, device, epochs: int = 3) -> str:
    """(c) fit() logging to a temporary local MLflow store: the seconds spent in tracking calls per
    epoch, timed call by call, against the epoch's seconds; returns the headline part."""
    import tempfile

    from helpers.train.tracking import Tracker
    from helpers.train import resolve_config
    try:
        import mlflow  # noqa: F401
    except ImportError:
        print("\n(c) tracking: MLflow is not installed, nothing to measure")
        return "tracking n/a"
    train, val, _, _ = make_loaders(data, batch_size=512, val_fraction=0.1, device=device)
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=data.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve_config(model, train, val, epochs=epochs, track=True)
        config.tracking.root, config.name = tmp, "train_speed"
        tracker = Tracker().start(config)
        history = fit(model, train, val, config, progress=False, track=tracker)
        tracker.end()
    per_epoch = statistics.mean(tracker.epoch_seconds)
    epoch = statistics.mean(row["seconds"] for row in history)
    share = 100 * per_epoch / epoch
    print(f"\n(c) MLflow tracking in fit(), {model_name}, {epochs} epochs: {1000 * per_epoch:.1f} ms of tracking "
          f"calls per epoch ({', '.join(f'{1000 * t:.1f}' for t in tracker.epoch_seconds)} ms) against "
          f"{epoch:.2f} s per epoch = {share:.2f}% (target <= 1%); start and params {1000 * (tracker.seconds - sum(tracker.epoch_seconds)):.0f} ms once")
    return f"tracking {1000 * per_epoch:.1f} ms/epoch = {share:.2f}%"


# --------------------------------------------------------------------------- CUDA-only parts

def fastnet_runs(data, seeds: int, device, compile: bool = False) -> tuple[list[float], list[float]]:
    """The reference recipe (helpers.commands.train.MODEL_DEFAULTS['fastnet']) once untimed, then once per seed;
    a run's seconds cover building the model, whitening, training and the test pass with TTA."""
    s = settings_for("fastnet")
    train, _, mean, std = make_loaders(data, batch_size=s["batch_size"], val_fraction=0.0, device=device,
                                       crop_padding=s["crop_padding"])
    accs, secs = [], []
    for seed in [-1] + list(range(seeds)):  # seed -1: warm-up (cuDNN autotuning, lazy initialisation)
        train.seed = max(seed, 0)
        sync(device)
        start = time.perf_counter()
        torch.manual_seed(max(seed, 0))
        model = build_model("fastnet", num_classes=data.num_classes).to(device)
        init_from_data(model, data.train_images, mean, std)
        opt = make_optimizer(model, "sgd", s["lr"], s["momentum"], True, s["weight_decay"], s["norm_bias_lr_scale"])
        fit(model, train, None, epochs=s["epochs"], optimizer=opt, schedule=s["schedule"], warmup=s["warmup"],
            label_smoothing=s["label_smoothing"], seed=max(seed, 0), progress=False, compile=compile)
        acc = test_accuracy(model, data, mean, std, tta=s["tta"])
        sync(device)
        if seed >= 0:
            secs.append(time.perf_counter() - start)
            accs.append(acc)
            print(f"  fastnet seed {seed}: test acc {acc:.4f} in {secs[-1]:.2f} s")
    return accs, secs


def resnet18_run(data, epochs: int, device, compile: bool = False) -> tuple[float, float]:
    """ResNet-18 with fit() and the course defaults, on all training images: (test accuracy, seconds)."""
    s = settings_for("resnet18")
    sync(device)
    start = time.perf_counter()
    train, _, mean, std = make_loaders(data, batch_size=s["batch_size"], val_fraction=0.0, device=device)
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=data.num_classes)
    fit(model, train, None, epochs=epochs, lr=s["lr"], label_smoothing=s["label_smoothing"], progress=False,
        compile=compile)
    acc = test_accuracy(model, data, mean, std, tta="flip")
    sync(device)
    return acc, time.perf_counter() - start


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CIFAR-10 image folder or .tar.gz (default: $COURSE_CIFAR10, then data/)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--seeds", type=int, default=5, help="CUDA: FastNet runs")
    parser.add_argument("--resnet-epochs", type=int, default=16, help="CUDA: epochs of the timed ResNet-18 run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="epochs per pipeline in the comparison (the first is a warm-up)")
    parser.add_argument("--compile", action="store_true",
                        help="CUDA: torch.compile FastNet and the timed ResNet-18 run")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--images", type=int,
                        help="training images for the comparison (default: all on CUDA, 3000 on CPU)")
    parser.add_argument("--model", help="model of the comparison (default resnet18 on CUDA, fiveconv_bn on CPU)")
    parser.add_argument("--workers", type=int,
                        help="DataLoader workers of the conventional pipeline (default min(4, cores))")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device(args.device) if args.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    workers = args.workers if args.workers is not None else min(4, os.cpu_count() or 1)
    cpu = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()})"
    machine = torch.cuda.get_device_name(device) if cuda else cpu
    print(f"train_speed: {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, mode {'CUDA' if cuda else 'CPU'}")

    if cuda:
        data = load_data(args.data, None, None)
        print(f"data: {data.name}, {len(data.train_labels):,} train / {len(data.test_labels):,} test ({data.source})")
        print(f"\n(a) FastNet reference recipe, {args.seeds} seeds")
        accs, secs = fastnet_runs(data, args.seeds, device, args.compile)
        acc_mean, acc_std = statistics.mean(accs), statistics.pstdev(accs)
        sec_mean, sec_std = statistics.mean(secs), statistics.pstdev(secs)
        print(f"  fastnet: test acc {100 * acc_mean:.2f} ± {100 * acc_std:.2f}%, "
              f"{sec_mean:.2f} ± {sec_std:.2f} s per run")
        sub = load_data(args.data, args.images, None) if args.images else data
        print("\n(b) ResNet-18: conventional pipeline against fit()")
        per_epoch = compare(sub, args.model or "resnet18", args.rounds, device, workers, [512])
        ratio = per_epoch["conventional"] / per_epoch["fit, batch 512"]
        acc, seconds = resnet18_run(data, args.resnet_epochs, device, args.compile)
        print(f"  resnet18 with fit(), {args.resnet_epochs} epochs: test acc {acc:.4f} in {seconds:.1f} s")
        tracked = tracking_cost(sub, args.model or "resnet18", device)
        print(f"HEADLINE cuda {machine}: fastnet {100 * acc_mean:.2f}±{100 * acc_std:.2f}% "
              f"in {sec_mean:.2f}±{sec_std:.2f} s "
              f"({args.seeds} seeds) | resnet18 s/epoch conventional {per_epoch['conventional']:.2f} vs fit "
              f"{per_epoch['fit, batch 512']:.2f} = {ratio:.1f}x | resnet18 fit {100 * acc:.2f}% in {seconds:.1f} s "
              f"| data {data.name}")
    else:
        data = load_data(args.data, args.images or 3000, 2000)
        print(f"data: {data.name}, {len(data.train_labels):,} train / {len(data.test_labels):,} test ({data.source})")
        model = args.model or "fiveconv_bn"
        per_epoch = compare(data, model, args.rounds, device, workers, [128, 512])
        conv = per_epoch["conventional"]
        tracked = tracking_cost(data, model, device)
        print(f"HEADLINE cpu: {model} on {len(data.train_labels):,} {data.name} images, s/epoch conventional "
              f"({workers} workers) {conv:.2f} | fit batch 128 {per_epoch['fit, batch 128']:.2f} "
              f"= {conv / per_epoch['fit, batch 128']:.2f}x | fit batch 512 {per_epoch['fit, batch 512']:.2f} "
              f"= {conv / per_epoch['fit, batch 512']:.2f}x | {tracked}")


if __name__ == "__main__":
    main()
