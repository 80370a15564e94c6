"""Hidden tests of 02_augmentation (normalize/denormalize, random_crop, horizontal_flip, cutout, mixup,
cutmix, train_transform), run in the trusted grading process: every input (images, labels,
permutations, seeds) is made here at call time, the student's functions run in the sandboxed worker
through the `student` fixture with generators built there by `student.make`, and the results are
compared here with helpers' reference code (`helpers.augment`), a trusted copy of the old hidden
CutMix reference and the specified torchvision pipeline. The deny-lists make the reference
implementations and torchvision's MixUp/CutMix unavailable to the student's code; torchvision's
RandomCrop and RandomHorizontalFlip (and their kernels) stay available because train_transform
needs them, so the "no per-image Python loop" rule of parts 1-6 is checked by counting torch calls
on 8 and on 256 images. Each test decides the points of the test cell named in its `@block`: that
cell's visible checks (on stand-in data), the checks that used to be hidden in it, the
batched-code rule and, where the spec says the function works on any device, a call with its
tensors on the "meta" device (no GPU here; see check_any_device).
"""
import math

import numpy as np
import torch

from helpers import augment as reference
from helpers import checks
from helpers.grading.harness import block
from helpers.grading.harness.session import StudentError

SAMPLE_SIZE = 16
# Calls a batched implementation may add between 8 and 256 images (none are needed).
EXTRA_CALLS = 5


def gen(student, seed):
    """A torch.Generator seeded `seed`, made inside the sandbox (a handle to pass to the student's code)."""
    return student.make("torch.Generator").manual_seed(seed)


def held(student, fn, *inputs):
    """The student's `fn` with its first arguments `inputs` held inside the sandbox: (call, inputs_now).

    Data sent with a request arrives as a fresh copy each time, so an in-place change of an input
    would go unseen; a functools.partial made there keeps one copy, `call(*more)` runs
    `fn(*inputs, *more)` on it and `inputs_now()` reads that copy back.
    """
    call = student.make("functools.partial", fn, *inputs)
    return call, lambda: call.args


def data_like_uint8(n, seed=0):
    """uint8 images (n, 32, 32, 3) of the course's generated dataset."""
    from helpers.synthetic import generate
    return generate(n, seed)[0]


def data_like_sample(n=SAMPLE_SIZE, seed=0):
    """As the notebook's `sample`: float32 (n, 3, 32, 32) in [0, 1], and labels 0..9."""
    from helpers.synthetic import generate
    images, labels = generate(n, seed)
    return torch.as_tensor(images).permute(0, 3, 1, 2).float().div(255.0), torch.as_tensor(labels)


def data_like_stats():
    """Per-channel mean and std of stand-in training images (as the notebook's MEAN, STD)."""
    from helpers.split import channel_mean_std
    return channel_mean_std(data_like_uint8(300, seed=1))


def one_hot(labels, num_classes):
    """The notebook's given one_hot (a trusted copy)."""
    return torch.nn.functional.one_hot(torch.as_tensor(labels).long(), num_classes).float()


def batch(n, size=8, draw=torch.rand):
    """n images (n, 3, size, size) drawn with a generator seeded n: the inputs of the batched-code checks."""
    return draw(n, 3, size, size, generator=torch.Generator().manual_seed(n))


def check_batched(student, name, make_args, hint):
    """`student.<name>(*make_args(n))` makes about as many torch calls for 256 images as for 8."""
    fn = getattr(student, name)
    _, few = student.counted(fn, *make_args(8))
    _, many = student.counted(fn, *make_args(256))
    checks.check(many <= few + EXTRA_CALLS,
                 f"{name} on 256 images made {many} torch calls, on 8 images {few}: expected about as many "
                 f"(one batched computation), got a number that grows with the batch; remove the Python loop "
                 f"over the images: {hint}")


META = torch.device("meta")
# What torch says when code takes a Python value of a meta tensor (.item(), bool(): they have no data).
META_HAS_NO_DATA = ("cannot be called on meta tensors",)


class Meta:
    """An argument of check_any_device that goes to the meta device in the sandbox."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def on_meta(student, fn, args, kwargs, pair=False):
    """`fn(*args, **kwargs)` run in the sandbox with each Meta(t) argument moved to the meta device: (device,
    shape, dtype) of the result, or a list of those for each item of a returned pair (`pair=True`).

    Meta tensors have shapes and dtypes but no data, and cannot cross the boundary: the call is chained in
    the sandbox with map() (made lazily, run by the final list()) and only the descriptions come back.
    """
    mk = student.make
    to_meta = mk("operator.methodcaller", "to", "meta")
    columns = [mk("builtins.map", to_meta, [a.tensor]) if isinstance(a, Meta) else [a] for a in args]
    results = mk("builtins.map", mk("functools.partial", fn, **kwargs), *columns)
    describe = mk("operator.attrgetter", "device", "shape", "dtype")
    if pair:
        builtins = mk("importlib.import_module", "builtins")
        each = mk("functools.partial", mk("operator.attrgetter", "map")(builtins), describe)
        results = mk("builtins.map", mk("operator.attrgetter", "list")(builtins), mk("builtins.map", each, results))
    else:
        results = mk("builtins.map", describe, results)
    (kinds,) = mk("builtins.list", results)
    return kinds


def check_any_device(student, name, *args, want, pair=False, **kwargs):
    """The spec says `name` works on any device and returns its result on x's device (the students' GPU).

    There is no GPU here, so the Meta(...) arguments go to the "meta" device instead: mixing a meta tensor
    with a CPU tensor raises, as mixing a GPU tensor with one does, so a tensor made without
    device=x.device (an arange, a mask, the mean) fails here as it would on a GPU. `want`: (shape, dtype)
    of the result, or a list of them for a pair. Generators stay CPU generators: there are no meta ones,
    and meta operations ignore them. Code that takes a Python value of a tensor (.item(), bool(t), `if t.any()`)
    works on a GPU but cannot on the meta device: this check cannot judge it, and lets it pass. Copying to
    the CPU (.cpu(), .tolist(), .numpy()) fails here, as returning a CPU tensor breaks the spec.
    """
    shapes = ", ".join(str(tuple(a.tensor.shape)) for a in args if isinstance(a, Meta))
    label = f"{name}(tensors {shapes} on a device other than the CPU, ...)"
    try:
        kinds = on_meta(student, getattr(student, name), args, kwargs, pair=pair)
    except StudentError as exc:
        if any(why in str(exc.remote.get("message", "")) for why in META_HAS_NO_DATA):
            return
        raise AssertionError(f"{label} (the meta device stands in for a GPU here) failed: {exc}; make every "
                             "tensor on x's device (torch.arange(..., device=x.device), torch.randint(..., "
                             "device=x.device), torch.as_tensor(..., device=x.device)) and return the result "
                             "there (no .cpu())") from None
    wanted = [(META, tuple(shape), dtype) for shape, dtype in (want if pair else [want])]
    got = [tuple(k) for k in (kinds if pair else [kinds])]
    checks.check(got == wanted, f"{label}: expected (device, shape, dtype) {wanted}, got {got}; return the result "
                 "on x's device")


# --------------------------------------------------------------------------- normalize / denormalize

NORMALIZE_DENY = ["helpers.augment.denormalize", "helpers.augment.to_normalized_float", "helpers.inference.normalize",
                  "helpers.inference.normalize_pixels", "helpers.evaluate.to_model_input"]


@block("normalize-tests", deny=NORMALIZE_DENY)
def test_normalize_visible(student):
    sample, _ = data_like_sample()
    mean, std = data_like_stats()
    z = student.normalize(sample, mean, std)
    checks.check_shape(z, tuple(sample.shape), "normalize(sample, MEAN, STD).shape", hint="keep (N, 3, H, W)")
    checks.check_dtype(z, np.float32, "normalize(sample, MEAN, STD).dtype", hint="compute in float32")
    half = torch.full((1, 3, 2, 2), 0.5)
    checks.check_close(student.normalize(half, [0.5, 0.25, 0.0], [0.25, 0.5, 1.0])[0, :, 0, 0], [0.0, 0.5, 0.5],
                       "normalize(all 0.5, mean=[0.5, 0.25, 0], std=[0.25, 0.5, 1]), channels of one pixel",
                       hint="subtract mean[c], then divide by std[c], with the channel on axis 1")
    checks.check_close(student.denormalize(z, mean, std), sample,
                       "denormalize(normalize(sample, MEAN, STD), MEAN, STD)",
                       atol=1e-5, hint="multiply by std, then add mean, channel by channel")


@block("normalize-tests", deny=NORMALIZE_DENY)
def test_normalize_hidden(student):
    normalize, denormalize = student.normalize, student.denormalize
    # W == 3 catches a mean broadcast over the last axis
    x = torch.rand(5, 3, 7, 3, generator=torch.Generator().manual_seed(21))
    m64, s64 = np.array([0.3, 0.5, 0.7]), np.array([0.2, 0.1, 0.4])
    want = (x.double() - torch.tensor(m64).view(1, 3, 1, 1)) / torch.tensor(s64).view(1, 3, 1, 1)
    keep = x.clone()
    for kind, m, s in (("NumPy arrays", m64, s64), ("lists", m64.tolist(), s64.tolist()),
                       ("tensors", torch.tensor(m64), torch.tensor(s64))):
        got = normalize(x, m, s)
        checks.check_dtype(got, np.float32, f"normalize(float32 x, mean and std as {kind}).dtype",
                           hint="return float32")
        checks.check_close(got, want, f"normalize(random (5, 3, 7, 3) x, mean and std as {kind})", atol=1e-5,
                           hint="the channel is axis 1: view mean and std as (1, 3, 1, 1)")
        checks.check_close(denormalize(got, m, s), x, f"denormalize(normalize(x)) with mean and std as {kind}",
                           atol=1e-5, hint="x * std + mean per channel, without clipping")
    for name in ("normalize", "denormalize"):
        call, inputs_now = held(student, getattr(student, name), x)
        call(m64, s64)
        checks.check_equal(inputs_now()[0], keep, f"x after {name}(x, ...)",
                           hint="do not modify the input in place (no x -= ..., sub_, div_)")
    checks.check_dtype(normalize(x.double(), m64, s64), np.float32, "normalize(float64 x).dtype",
                       hint="return float32 whatever the input's float type")
    far = torch.full((1, 3, 1, 1), 10.0)
    checks.check_close(denormalize(far, [0.5] * 3, [0.5] * 3)[0, :, 0, 0], [5.5, 5.5, 5.5],
                       "denormalize(10.0, mean 0.5, std 0.5)", hint="denormalize must not clip")


@block("normalize-tests", deny=NORMALIZE_DENY)
def test_normalize_batched(student):
    m, s = [0.3, 0.5, 0.7], [0.2, 0.1, 0.4]
    for name in ("normalize", "denormalize"):
        check_batched(student, name, lambda n: (batch(n, 4), m, s), "broadcast mean and std viewed as (1, 3, 1, 1)")


@block("normalize-tests", deny=NORMALIZE_DENY)
def test_normalize_any_device(student):
    x = torch.rand(4, 3, 5, 6, generator=torch.Generator().manual_seed(22))
    check_any_device(student, "normalize", Meta(x), [0.3, 0.5, 0.7], [0.2, 0.1, 0.4],
                     want=((4, 3, 5, 6), torch.float32))
    check_any_device(student, "denormalize", Meta(x), np.array([0.3, 0.5, 0.7]), np.array([0.2, 0.1, 0.4]),
                     want=((4, 3, 5, 6), torch.float32))


# --------------------------------------------------------------------------- random_crop

CROP_DENY = ["helpers.augment.random_crop", "helpers.augment.crop_flip_gather"]


def crop_offsets(out, x, padding):
    """(N, 2): for each image, the (dy, dx) whose window of the zero-padded x equals out[i]; -1 when none does."""
    out = torch.as_tensor(out)
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    found = torch.full((n, 2), -1)
    if tuple(out.shape) != tuple(x.shape):
        return found
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            same = (padded[:, :, dy:dy + h, dx:dx + w] == out).flatten(1).all(1) & (found[:, 0] < 0)
            found[same] = torch.tensor([dy, dx])
    return found


@block("random_crop-tests", deny=CROP_DENY)
def test_random_crop_visible(student):
    random_crop = student.random_crop
    x = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = random_crop(x, 2, gen(student, 0))
    checks.check_shape(out, (32, 3, 8, 8), "random_crop(x of shape (32, 3, 8, 8), 2, g).shape",
                       hint="return the H x W window, not the padded image")
    checks.check_dtype(out, np.float32, "random_crop(float32 x, 2, g).dtype", hint="keep x's dtype")
    bad = int((crop_offsets(out, x, 2)[:, 0] < 0).sum())
    checks.check(bad == 0, f"random_crop(x, 2, g): expected every output image to be an 8x8 window of its own "
                 f"zero-padded image, got {bad} of 32 that are not; pad with zeros on all four sides and take "
                 "rows dy..dy+H-1 and columns dx..dx+W-1 of the same image")
    checks.check_equal(random_crop(x, 2, gen(student, 0)), out,
                       "random_crop(x, 2, g) twice with generators seeded 0",
                       hint="draw every random number from `generator`, not from the global random state")
    checks.check_equal(random_crop(x, 0, gen(student, 0)), x, "random_crop(x, padding=0, g)",
                       hint="padding 0 leaves the images as they are")


@block("random_crop-tests", deny=CROP_DENY)
def test_random_crop_hidden(student):
    random_crop = student.random_crop
    x = torch.rand(400, 2, 5, 7, generator=torch.Generator().manual_seed(2))
    crop, inputs_now = held(student, random_crop, x)
    offsets = crop_offsets(crop(1, gen(student, 3)), x, 1)
    checks.check(bool((offsets >= 0).all()), "random_crop(x of shape (400, 2, 5, 7), 1, g): expected every image to "
                 "be a 5x7 window of its zero-padded image, got some that are not; handle H != W and any C")
    distinct = len(set(map(tuple, offsets.tolist())))
    checks.check(distinct == 9, f"random_crop on 400 images with padding 1: expected all 9 offsets (dy, dx) in "
                 f"0..2 x 0..2 to occur, got {distinct}; draw a separate dy and dx for every image, (N,) of each")
    checks.check_equal(inputs_now()[0], x, "x after random_crop(x, ...)",
                       hint="do not modify the input")
    u = torch.randint(0, 256, (64, 3, 6, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    want = reference.random_crop(u, 3, torch.Generator().manual_seed(5))
    got = random_crop(u, 3, gen(student, 5))
    checks.check_dtype(got, np.uint8, "random_crop(uint8 x, 3, g).dtype", hint="keep x's dtype")
    checks.check_equal(got, want, "random_crop(uint8 (64, 3, 6, 9), 3, generator seeded 5) against the course's "
                       "reference", hint="draw dy = torch.randint(0, 2*padding+1, (N,), generator=generator) first, "
                       "then dx the same way; dy moves rows, dx columns")


@block("random_crop-tests", deny=CROP_DENY)
def test_random_crop_batched(student):
    check_batched(student, "random_crop", lambda n: (batch(n), 2, gen(student, 0)),
                  "gather every window at once with index tensors (rows dy[:, None] + arange(H), ...)")


@block("random_crop-tests", deny=CROP_DENY)
def test_random_crop_any_device(student):
    x = torch.rand(6, 3, 8, 9, generator=torch.Generator().manual_seed(6))
    check_any_device(student, "random_crop", Meta(x), 2, gen(student, 0), want=((6, 3, 8, 9), torch.float32))
    check_any_device(student, "random_crop", Meta((x * 255).to(torch.uint8)), 3, gen(student, 1),
                     want=((6, 3, 8, 9), torch.uint8))


# --------------------------------------------------------------------------- horizontal_flip

FLIP_DENY = ["helpers.augment.random_flip", "helpers.augment.crop_flip_gather"]


@block("horizontal_flip-tests", deny=FLIP_DENY)
def test_horizontal_flip_visible(student):
    flip = student.horizontal_flip
    x = torch.rand(200, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    checks.check_equal(flip(x, gen(student, 0), p=1.0), x.flip(-1),
                       "horizontal_flip(x, g, p=1.0)", hint="mirror left-right: reverse the last axis (W)")
    checks.check_equal(flip(x, gen(student, 0), p=0.0), x,
                       "horizontal_flip(x, g, p=0.0)", hint="flip only where torch.rand(N, ...) < p")
    out = flip(x, gen(student, 0))
    checks.check_shape(out, (200, 3, 6, 6), "horizontal_flip(x of shape (200, 3, 6, 6), g).shape")
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    checks.check(bool((same | mirrored).all()), "horizontal_flip(x, g): expected each image to be either unchanged "
                 "or its mirror image, got other images; flip whole images along the last axis")
    checks.check(0.3 < mirrored.float().mean() < 0.7, f"horizontal_flip(x, g, p=0.5): expected about half of 200 "
                 f"images mirrored, got {int(mirrored.sum())}; draw one random number per image")
    checks.check_equal(flip(x, gen(student, 0)), out,
                       "horizontal_flip(x, g) twice with generators seeded 0", hint="draw from `generator` only")


@block("horizontal_flip-tests", deny=FLIP_DENY)
def test_horizontal_flip_hidden(student):
    u = torch.randint(0, 256, (4000, 2, 3, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    flip, inputs_now = held(student, student.horizontal_flip, u)
    got = flip(gen(student, 7), p=0.3)
    want = reference.random_flip(u, torch.Generator().manual_seed(7), p=0.3)
    checks.check_dtype(got, np.uint8, "horizontal_flip(uint8 x, g).dtype", hint="keep x's dtype")
    checks.check_equal(got, want, "horizontal_flip(uint8 (4000, 2, 3, 5), generator seeded 7, p=0.3) against the "
                       "course's reference", hint="flip = torch.rand(N, generator=generator) < p, then reverse axis W "
                       "of the images where flip is True")
    rate = float((got == u.flip(-1)).flatten(1).all(1).float().mean())
    checks.check(0.27 < rate < 0.33, f"horizontal_flip(x, g, p=0.3): expected about 30% of images mirrored, got "
                 f"{rate:.1%}")
    checks.check_equal(inputs_now()[0], u, "x after horizontal_flip(x, ...)",
                       hint="do not modify the input")


@block("horizontal_flip-tests", deny=FLIP_DENY)
def test_horizontal_flip_batched(student):
    check_batched(student, "horizontal_flip", lambda n: (batch(n, 6), gen(student, 0)),
                  "torch.where(flip[:, None, None, None], x.flip(-1), x)")


@block("horizontal_flip-tests", deny=FLIP_DENY)
def test_horizontal_flip_any_device(student):
    x = torch.rand(6, 3, 5, 7, generator=torch.Generator().manual_seed(8))
    check_any_device(student, "horizontal_flip", Meta(x), gen(student, 0), want=((6, 3, 5, 7), torch.float32))
    check_any_device(student, "horizontal_flip", Meta(x), gen(student, 0), p=0.3, want=((6, 3, 5, 7), torch.float32))


# --------------------------------------------------------------------------- cutout

CUTOUT_DENY = ["helpers.augment.cutout"]


@block("cutout-tests", deny=CUTOUT_DENY)
def test_cutout_visible(student):
    cutout = student.cutout
    ones = torch.ones(64, 3, 16, 16)
    out = torch.as_tensor(cutout(ones, 6, gen(student, 0)))
    checks.check_shape(out, (64, 3, 16, 16), "cutout(ones of shape (64, 3, 16, 16), 6, g).shape")
    checks.check(bool(((out == 0) | (out == 1)).all()), "cutout(ones, 6, g): expected only 0 (hidden) and 1 "
                 "(unchanged) values, got others; set the square to 0 and leave everything else as it is")
    zero = out == 0
    checks.check(bool((zero == zero[:, :1]).all()), "cutout(ones, 6, g): expected the same square hidden in all "
                 "channels of an image, got different ones; use one (N, H, W) mask for every channel")
    mask = zero[:, 0]
    area = mask.flatten(1).sum(1)
    rect = mask.any(2).sum(1) * mask.any(1).sum(1)
    checks.check(bool((area == rect).all()) and int(area.max()) <= 36,
                 f"cutout(ones, 6, g): expected each hidden region to be a rectangle of at most 6x6 = 36 pixels (less "
                 f"only where it is cut by the border), got areas {area[:8].tolist()}...; compare rows and columns "
                 "with the square's bounds")
    checks.check(int(area.max()) == 36, f"cutout(ones, 6, g) on 64 images: expected some full 6x6 squares, got "
                 f"largest area {int(area.max())}; the square spans size rows and size columns")
    checks.check_equal(cutout(ones, 6, gen(student, 0)), out,
                       "cutout(ones, 6, g) twice with generators seeded 0", hint="draw from `generator` only")
    checks.check_equal(cutout(ones, 0, gen(student, 0)), ones, "cutout(x, size=0, g)",
                       hint="size 0 hides nothing")


@block("cutout-tests", deny=CUTOUT_DENY)
def test_cutout_hidden(student):
    cutout = student.cutout
    x = torch.randn(300, 3, 11, 7, generator=torch.Generator().manual_seed(3)) + 5.0  # no zeros in the input
    cut, inputs_now = held(student, cutout, x)
    for size in (5, 4, 1, 20):
        got = cut(size, gen(student, size))
        want = reference.cutout(x, size, torch.Generator().manual_seed(size))
        checks.check_equal(got, want, f"cutout(x of shape (300, 3, 11, 7), {size}, generator seeded {size}) against "
                           "the course's reference", hint="cy = torch.randint(0, H, (N,), ...) first, then cx from "
                           "0..W-1; rows cy - size//2 up to (not including) cy - size//2 + size, columns likewise")
    checks.check_equal(inputs_now()[0], x, "x after cutout(x, ...)",
                       hint="do not modify the input (masked_fill, not masked_fill_)")
    checks.check_equal(cutout(x[:3], 40, gen(student, 0)), torch.zeros(3, 3, 11, 7),
                       "cutout(x, 40, g) with a square larger than the images", hint="clip the square at the border")


@block("cutout-tests", deny=CUTOUT_DENY)
def test_cutout_batched(student):
    check_batched(student, "cutout", lambda n: (batch(n, draw=torch.randn), 3, gen(student, 0)),
                  "one (N, H, W) mask from arange(H), arange(W) and the centres, then masked_fill")


@block("cutout-tests", deny=CUTOUT_DENY)
def test_cutout_any_device(student):
    x = torch.randn(6, 3, 9, 7, generator=torch.Generator().manual_seed(9))
    check_any_device(student, "cutout", Meta(x), 4, gen(student, 0), want=((6, 3, 9, 7), torch.float32))


# --------------------------------------------------------------------------- mixup

MIXUP_DENY = ["torchvision.transforms.v2.MixUp", "helpers.augment.mix_transform"]


@block("mixup-tests", deny=MIXUP_DENY)
def test_mixup_visible(student):
    mixup = student.mixup
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = one_hot([0, 1, 2, 3, 4, 5], 10)
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    mx, my = mixup(x, y, 0.7, perm)
    checks.check_shape(mx, (6, 3, 4, 4), "mixup(x (6, 3, 4, 4), y (6, 10), 0.7, perm)[0].shape")
    checks.check_shape(my, (6, 10), "mixup(x, y (6, 10), 0.7, perm)[1].shape", hint="return (mixed_x, mixed_y)")
    checks.check_close(mx, 0.7 * x + 0.3 * x[perm], "the mixed images for lam=0.7", atol=1e-6,
                       hint="lam * x + (1 - lam) * x[perm]")
    checks.check_close(torch.as_tensor(my).sum(1), torch.ones(6), "the sums of the rows of mixed_y", atol=1e-6,
                       hint="mix the targets with the same weights as the images")
    checks.check_close(torch.as_tensor(my)[0, [0, 1]], [0.7, 0.3],
                       "mixed_y[0] at classes 0 (image 0) and 1 (its partner)",
                       atol=1e-6, hint="the image's own class gets lam, its partner's class 1 - lam")
    same = mixup(x, y, 1.0, perm)
    checks.check_close(same[0], x, "mixup(x, y, lam=1.0, perm)[0]", hint="lam = 1 keeps the images as they are")


@block("mixup-tests", deny=MIXUP_DENY)
def test_mixup_hidden(student):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(50, 2, 5, 3, generator=g)
    y = torch.softmax(torch.randn(50, 7, generator=g), 1)  # soft targets already
    perm = torch.randperm(50, generator=g)
    mix, inputs_now = held(student, student.mixup, x, y)
    for lam in (0.0, 0.25, 0.9):
        mx, my = mix(lam, perm)
        checks.check_close(mx, lam * x + (1 - lam) * x[perm], f"mixup images for lam={lam}", atol=1e-6,
                           hint="lam * x + (1 - lam) * x[perm]")
        checks.check_close(my, lam * y + (1 - lam) * y[perm], f"mixup soft targets for lam={lam}", atol=1e-6,
                           hint="lam * y + (1 - lam) * y[perm]: the partner is perm[i], not i")
    checks.check_equal(inputs_now()[0], x, "x after mixup", hint="do not modify the inputs")
    checks.check_equal(inputs_now()[1], y, "y_onehot after mixup", hint="do not modify the inputs")


def mix_args(n, lam):
    g = torch.Generator().manual_seed(n)
    return (torch.rand(n, 3, 6, 6, generator=g), one_hot(torch.arange(n) % 10, 10), lam, torch.randperm(n, generator=g))


@block("mixup-tests", deny=MIXUP_DENY)
def test_mixup_batched(student):
    check_batched(student, "mixup", lambda n: mix_args(n, 0.3), "index the whole batch with x[perm]")


# --------------------------------------------------------------------------- cutmix

CUTMIX_DENY = ["torchvision.transforms.v2.CutMix", "helpers.augment.mix_transform"]


def pasted_mask(mixed, x, perm):
    """(N, H, W) bool: where image i shows its partner's pixels (x has no equal pixels across images)."""
    return (mixed == x[perm]).all(1) & (x != x[perm]).any(1)


def reference_cutmix(x, y, lam, perm, generator):
    """The old hidden reference (a per-image loop; trusted, for comparison only)."""
    n, _, h, w = x.shape
    half_h, half_w = int(h * math.sqrt(1 - lam) / 2), int(w * math.sqrt(1 - lam) / 2)
    cy = torch.randint(0, h, (n,), generator=generator)
    cx = torch.randint(0, w, (n,), generator=generator)
    out, target = x.clone(), y.clone()
    for i in range(n):
        r0, r1 = max(int(cy[i]) - half_h, 0), min(int(cy[i]) + half_h, h)
        c0, c1 = max(int(cx[i]) - half_w, 0), min(int(cx[i]) + half_w, w)
        out[i, :, r0:r1, c0:c1] = x[perm[i], :, r0:r1, c0:c1]
        a = max(r1 - r0, 0) * max(c1 - c0, 0) / (h * w)
        target[i] = (1 - a) * y[i] + a * y[perm[i]]
    return out, target


@block("cutmix-tests", deny=CUTMIX_DENY)
def test_cutmix_visible(student):
    cutmix = student.cutmix
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 3, 16, 16, generator=g)
    y = one_hot(torch.arange(40) % 10, 10)
    perm = torch.randperm(40, generator=g)
    mx, my = cutmix(x, y, 0.6, perm, gen(student, 0))
    checks.check_shape(mx, (40, 3, 16, 16), "cutmix(x (40, 3, 16, 16), y, 0.6, perm, g)[0].shape")
    checks.check_shape(my, (40, 10), "cutmix(x, y (40, 10), 0.6, perm, g)[1].shape", hint="return (mixed_x, mixed_y)")
    mx, my = torch.as_tensor(mx), torch.as_tensor(my)
    mask = pasted_mask(mx, x, perm)
    checks.check(bool(((mx == x).all(1) | mask).all()), "cutmix(x, y, 0.6, perm, g): expected every pixel to come "
                 "either from x[i] or, at the same place, from x[perm[i]] (all channels), got other values")
    area = mask.flatten(1).sum(1)
    checks.check(bool((area == mask.any(2).sum(1) * mask.any(1).sum(1)).all()) and int(area.max()) <= 100,
                 f"cutmix(x, y, 0.6, perm, g): expected each pasted region to be one rectangle of at most 10x10 pixels "
                 f"(half-sizes int(16 * sqrt(0.4) / 2) = 5), got areas {area[:8].tolist()}...")
    checks.check(int(area.max()) == 100, f"cutmix(x, y, 0.6, perm, g): expected some unclipped 10x10 boxes among 40, "
                 f"got largest area {int(area.max())}; rows cy - half_h up to cy + half_h (excluded)")
    checks.check_close(my.sum(1), torch.ones(40), "the sums of the rows of mixed_y", atol=1e-6)
    a = area.float()[:, None] / 256
    checks.check_close(my, (1 - a) * y + a * y[perm], "mixed_y against the pasted areas", atol=1e-6,
                       hint="the partner's class gets a = (pixels pasted) / (H * W) of image i, its own class 1 - a")
    same_x, _ = cutmix(x, y, 1.0, perm, gen(student, 0))
    checks.check_equal(same_x, x, "cutmix(x, y, lam=1.0, perm, g)[0]", hint="lam = 1 gives empty boxes")
    checks.check_equal(cutmix(x, y, 0.6, perm, gen(student, 0))[0], mx,
                       "cutmix(...) twice with generators seeded 0", hint="draw from `generator` only")


@block("cutmix-tests", deny=CUTMIX_DENY)
def test_cutmix_hidden(student):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(60, 2, 13, 9, generator=g)
    y = torch.softmax(torch.randn(60, 4, generator=g), 1)
    perm = torch.randperm(60, generator=g)
    mix, inputs_now = held(student, student.cutmix, x, y)
    for lam in (0.05, 0.5, 0.93, 0.0):
        got_x, got_y = mix(lam, perm, gen(student, 11))
        want_x, want_y = reference_cutmix(x, y, lam, perm, torch.Generator().manual_seed(11))
        checks.check_equal(got_x, want_x, f"cutmix images (60, 2, 13, 9), lam={lam}, generator seeded 11, against "
                           "a reference", hint="half_h from H and half_w from W; cy from 0..H-1 first, then cx; clip "
                           "the box at the border")
        checks.check_close(got_y, want_y, f"cutmix soft targets (soft labels), lam={lam}", atol=1e-6,
                           hint="weigh by the area actually pasted after clipping, not by 1 - lam")
    checks.check_equal(inputs_now()[0], x, "x after cutmix",
                       hint="do not modify the inputs (torch.where, not in-place writes)")
    checks.check_equal(inputs_now()[1], y, "y_onehot after cutmix", hint="do not modify the inputs")


@block("cutmix-tests", deny=CUTMIX_DENY)
def test_cutmix_batched(student):
    check_batched(student, "cutmix", lambda n: (*mix_args(n, 0.5), gen(student, 0)),
                  "one (N, H, W) box mask from arange(H), arange(W) and the centres, then torch.where")


@block("cutmix-tests", deny=CUTMIX_DENY)
def test_cutmix_any_device(student):
    x, y, _, perm = mix_args(6, 0.5)
    check_any_device(student, "cutmix", Meta(x), Meta(y), 0.5, Meta(perm), gen(student, 0), pair=True,
                     want=[((6, 3, 6, 6), torch.float32), ((6, 10), torch.float32)])


# --------------------------------------------------------------------------- train_transform

def v2_class(student, name):
    """A handle to torchvision.transforms.v2.<name> (the class itself) inside the sandbox."""
    return student.make("builtins.getattr", student.make("importlib.import_module", "torchvision.transforms.v2"), name)


@block("train_transform-tests")
def test_train_transform_visible(student):
    mean, std = data_like_stats()
    t = student.train_transform(mean, std)
    is_compose = hasattr(t, "type_name") and student.make("builtins.isinstance", t, v2_class(student, "Compose"))
    checks.check(is_compose is True, f"train_transform(MEAN, STD): expected a v2.Compose, got "
                 f"{getattr(t, 'type_name', type(t).__name__)}; return v2.Compose([...])")
    steps = t.transforms
    steps = student.make("builtins.list", steps) if hasattr(steps, "type_name") else steps
    kinds = [getattr(s, "type_name", type(s).__name__) for s in steps]
    checks.check_equal(kinds, ["RandomCrop", "RandomHorizontalFlip", "RandAugment", "ToDtype", "Normalize"],
                       "the transforms in train_transform(MEAN, STD)",
                       hint="exactly these five v2 transforms, in order")
    image = torch.as_tensor(data_like_uint8(1, seed=3)[0]).permute(2, 0, 1).contiguous()  # uint8 (3, 32, 32)
    out = t(image)
    checks.check_shape(out, (3, 32, 32), "train_transform(MEAN, STD)(uint8 image (3, 32, 32)).shape")
    checks.check_dtype(out, np.float32, "train_transform(MEAN, STD)(uint8 image).dtype",
                       hint="v2.ToDtype(torch.float32, scale=True) converts")


@block("train_transform-tests")
def test_train_transform_hidden(student):
    from torchvision.transforms import v2
    m, s = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]
    want_t = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(p=0.5),
                         v2.RandAugment(num_ops=2, magnitude=9), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(mean=m, std=s)])
    got_t = student.train_transform(m, s)
    images = torch.as_tensor(data_like_uint8(6, seed=4)).permute(0, 3, 1, 2).contiguous()
    for i, img in enumerate(images):
        student.make("torch.manual_seed", 100 + i)
        got = got_t(img)
        torch.manual_seed(100 + i)
        want = want_t(img)
        checks.check_close(got, want, f"train_transform(m, s) on training image {i} against the specified pipeline "
                           "(same seed)", atol=1e-5, hint="padding=4, p=0.5, num_ops=2, magnitude=9, scale=True, and "
                           "the given mean and std")
