"""The generated dataset must be learnable, or tests that prove training works prove nothing."""
import torch
from torch import nn

from helpers.data import load_dataset
from helpers.loader import GpuLoader
from helpers.split import channel_mean_std


def test_small_cnn_beats_chance_by_a_wide_margin(tmp_path):
    torch.manual_seed(0)
    data = load_dataset("synthetic", root=tmp_path, synthetic_size=(2000, 500), seed=0)
    mean, std = channel_mean_std(data.train_images)
    train = GpuLoader(data.train_images, data.train_labels, batch_size=64, mean=mean, std=std, crop_padding=2)
    test = GpuLoader(data.test_images, data.test_labels, batch_size=250, mean=mean, std=std, train=False)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        for x, y in train:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in test)
    accuracy = correct / len(data.test_labels)
    assert accuracy > 0.5, f"accuracy {accuracy:.2f} on the generated dataset; chance is 0.10"
