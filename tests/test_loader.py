"""The GPU-resident loader and its batched augmentations (run on the CPU here)."""
import numpy as np
import pytest
import torch

from helpers import augment
from helpers.loader import GpuLoader


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (103, 32, 32, 3), dtype=np.uint8)


def test_batches_have_the_right_shape_dtype_and_range(images):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    loader = GpuLoader(images, np.arange(103) % 10, batch_size=32, mean=mean, std=std, train=False)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    x, y = batches[0]
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = (torch.from_numpy(images[:32]).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert batches[-1][0].shape[0] == 103 - 96


def test_every_image_once_per_epoch_and_drop_last(images):
    labels = np.arange(103)
    loader = GpuLoader(images, labels, batch_size=10, seed=1)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(103))
    assert seen.tolist() != list(range(103))  # shuffled
    dropping = GpuLoader(images, labels, batch_size=10, drop_last=True)
    assert len(dropping) == 10 and sum(len(y) for _, y in dropping) == 100 == dropping.num_samples


def test_same_seed_same_batches_and_epochs_differ(images):
    labels = np.arange(103)
    a = GpuLoader(images, labels, batch_size=16, seed=5, cutout=8)
    b = GpuLoader(images, labels, batch_size=16, seed=5, cutout=8)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    epoch1 = torch.cat([y for _, y in a])  # second pass is the next epoch
    b.set_epoch(1)
    assert torch.equal(epoch1, torch.cat([y for _, y in b]))
    b.set_epoch(0)
    assert not torch.equal(epoch1, torch.cat([y for _, y in b]))


def test_flip_is_the_mirror_image():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).view(2, 3, 4, 5)
    gen = torch.Generator().manual_seed(0)
    out = augment.random_flip(x, gen, p=1.0)
    assert torch.equal(out, x.flip(3)) and torch.equal(out[0, :, :, 0], x[0, :, :, -1])
    assert torch.equal(augment.random_flip(x, gen, p=0.0), x)


def test_crops_come_from_the_padded_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = augment.random_crop(x, 4, gen)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets = set()
    for i in range(64):
        matches = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(padded[i, :, dy:dy + 32, dx:dx + 32], out[i])]
        assert matches, f"crop {i} is not a window of the padded image"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets vary across the batch


def test_cutout_zeroes_one_square():
    gen = torch.Generator().manual_seed(0)
    x = torch.ones(50, 3, 32, 32)
    out = augment.cutout(x, 8, gen)
    zeros = (out == 0).all(1).sum((1, 2))
    assert zeros.max() == 64 and zeros.min() > 0  # full squares and squares clipped at the border
    assert torch.equal((out == 0)[:, 0], (out == 0)[:, 2])  # same square in every channel


def test_loader_batch_is_a_crop_and_maybe_a_mirror_of_its_image(images):
    loader = GpuLoader(images, np.arange(103), batch_size=103, mean=(0, 0, 0), std=(1, 1, 1), seed=2)
    x, y = next(iter(loader))
    padded = torch.nn.functional.pad(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, (4, 4, 4, 4))
    flips = 0
    for xi, i in zip(x, y.tolist()):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        plain = any(torch.allclose(w, xi) for w in windows)
        mirrored = any(torch.allclose(w.flip(2), xi) for w in windows)
        assert plain or mirrored, f"batch image for index {i} is not a window of its padded image"
        flips += mirrored and not plain
    assert 20 < flips < 80


def test_train_loader_augments_but_eval_loader_does_not(images):
    labels = np.zeros(103)
    aug = GpuLoader(images, labels, batch_size=103, shuffle=False, seed=0)
    plain = GpuLoader(images, labels, batch_size=103, train=False)
    xa, _ = next(iter(aug))
    xp, _ = next(iter(plain))
    assert not torch.equal(xa, xp)
    assert plain.crop_padding == 0 and not plain.flip and plain.cutout == 0


def test_channels_last_option(images):
    x, _ = next(iter(GpuLoader(images, np.zeros(103), batch_size=8, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="uint8"):
        GpuLoader(np.zeros((4, 32, 32, 3), np.float32), np.zeros(4))
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        GpuLoader(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3))


def test_denormalize_inverts_normalization(images):
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    x = augment.to_normalized_float(torch.from_numpy(images).permute(0, 3, 1, 2), torch.tensor(mean), torch.tensor(std))
    assert torch.equal(augment.denormalize(x, mean, std), torch.from_numpy(images))


def test_mix_transform_gives_soft_targets():
    torch.manual_seed(0)
    t = augment.mix_transform(10, mixup_alpha=0.4, cutmix_alpha=1.0)
    x, y = t(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    assert y.shape == (16, 10)
    torch.testing.assert_close(y.sum(1), torch.ones(16))
    assert augment.mix_transform(10) is None
