"""Hidden tests of 01_data (class_counts, stratified_split, channel_mean_std, denormalize, label_agreement), run in the
trusted grading process: every input is made here at call time from fixed seeds (labels and images
shaped like the course data stand in for the notebook's `data`, which the student's cells could
rebind), the student's functions run in the sandboxed worker through the `student` fixture, and
the results are compared here with NumPy and helpers' reference code (`helpers.split`), which the
deny-lists make unavailable to the student's code. Each test decides the points of the test cell
named in its `@block`: that cell's visible checks, the checks that used to be hidden in it, and
checks that close known shortcuts (reference drop-ins, a split that is rotated or strided rather
than drawn, or drawn from NumPy's global random state, statistics that convert all images to float
at once instead of working in chunks).
"""
import numpy as np

from helpers import checks
from helpers.grading.harness import block
from helpers.split import channel_mean_std as reference_mean_std
from helpers.split import train_val_split as reference_split

NUM_CLASSES = 10


def data_like_labels(n=3000, seed=0):
    """Balanced labels 0..9 in random order, as the course data's train_labels (reduced mode)."""
    labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
    np.random.default_rng(seed).shuffle(labels)
    return labels


def data_like_images(n, seed=0):
    """uint8 images (n, 32, 32, 3) of the course's generated dataset."""
    from helpers.synthetic import generate
    return generate(n, seed)[0]


def given_normalize(images, mean, std):
    """The notebook's read-only `normalize` (a trusted copy: the student's cells could rebind it)."""
    x = np.asarray(images).astype(np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------- class_counts

@block("class_counts-tests")
def test_class_counts_visible(student):
    labels = data_like_labels()
    counts = student.class_counts(labels, NUM_CLASSES)
    checks.check_shape(counts, (NUM_CLASSES,), "class_counts(data.train_labels, 10).shape",
                       hint="return one count per class")
    checks.check_dtype(counts, np.int64, "class_counts(...).dtype", hint="convert with .astype(np.int64)")
    checks.check_equal(int(np.sum(counts)), len(labels), "the sum of the counts",
                       hint="every label must be counted exactly once")
    checks.check_equal(student.class_counts(np.array([2, 0, 2, 1, 2]), 3), np.array([1, 1, 3]),
                       "class_counts([2, 0, 2, 1, 2], 3)")


@block("class_counts-tests")
def test_class_counts_hidden(student):
    class_counts = student.class_counts
    y = np.random.default_rng(101).integers(0, 6, size=997)
    checks.check_equal(class_counts(y, 9), np.bincount(y, minlength=9), "class_counts(labels 0..5 only, 9)",
                       hint="classes without samples must still appear, with a count of 0")
    checks.check_dtype(class_counts(y.astype(np.int32), 9), np.int64, "class_counts(int32 labels).dtype")
    checks.check_equal(class_counts(np.zeros(0, dtype=np.int64), 4), np.zeros(4, dtype=np.int64),
                       "class_counts(no labels, 4)")


# --------------------------------------------------------------------------- stratified_split

SPLIT_DENY = ["helpers.split.train_val_split"]


def imbalanced_labels():
    """The hidden tests' labels: 5 classes of 3, 40, 41, 200 and 17 samples, shuffled."""
    y = np.repeat(np.arange(5), [3, 40, 41, 200, 17])
    np.random.default_rng(7).shuffle(y)
    return y


@block("stratified_split-tests", deny=SPLIT_DENY)
def test_stratified_split_visible(student):
    labels = data_like_labels()
    n = len(labels)
    tr, va = student.stratified_split(labels, 0.1, seed=0)
    checks.check_dtype(tr, "integer", "train_idx.dtype", hint="return arrays of indices, not boolean masks")
    checks.check_dtype(va, "integer", "val_idx.dtype", hint="return arrays of indices, not boolean masks")
    checks.check_equal(len(tr) + len(va), n, "len(train_idx) + len(val_idx)",
                       hint="every sample goes to exactly one of the two splits")
    checks.check_equal(np.union1d(tr, va), np.arange(n), "the indices of both splits together",
                       hint="every index 0..N-1 must appear")
    checks.check(np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0),
                 "stratified_split: expected both index arrays sorted ascending, got unsorted ones; use np.sort")
    per_class = np.bincount(labels[va], minlength=NUM_CLASSES)
    expected = np.bincount(labels, minlength=NUM_CLASSES) * 0.1
    checks.check(np.all(np.abs(per_class - expected) <= 1),
                 f"validation images per class: expected about {np.round(expected).astype(int).tolist()}, "
                 f"got {per_class.tolist()}; split each class separately")
    checks.check_equal(student.stratified_split(labels, 0.1, seed=0)[1], va,
                       "val_idx from two calls with the same seed",
                       hint="draw from np.random.default_rng(seed), not from the global random state")


@block("stratified_split-tests", deny=SPLIT_DENY)
def test_stratified_split_hidden(student):
    split = student.stratified_split
    y = imbalanced_labels()
    for frac in (0.1, 0.25, 0.5):
        tr, va = split(y, frac, seed=3)
        checks.check_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)),
                           f"all indices of both splits, sorted (val_fraction={frac})",
                           hint="the splits must be disjoint and cover every index")
        got = np.bincount(y[va], minlength=5)
        ref = np.bincount(y[reference_split(y, frac, seed=3)[1]], minlength=5)
        checks.check(np.all(np.abs(got - ref) <= 1),
                     f"validation samples per class at val_fraction={frac}: expected {ref.tolist()}, "
                     f"got {got.tolist()}; take round(n_c * val_fraction) of each class")
        checks.check(np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0),
                     "stratified_split: expected sorted index arrays, got unsorted ones")
    checks.check(not np.array_equal(split(y, 0.25, seed=1)[1], split(y, 0.25, seed=2)[1]),
                 "stratified_split: seeds 1 and 2 gave the same split; shuffle with np.random.default_rng(seed)")
    for bad in (0.0, 1.0, -0.1, 1.5):
        expect_value_error(student, lambda: split(y, bad, seed=0), f"stratified_split(labels, {bad}, seed=0)")


def expect_value_error(student, call, name):
    """`call()` must raise ValueError in the student's code."""
    try:
        with student.raises("ValueError"):
            call()
    except AssertionError as exc:
        if "got none" in str(exc):
            raise AssertionError(f"{name}: expected a ValueError, got none") from None
        raise


def _cyclic_gaps(positions, n):
    """Gaps between consecutive sorted positions in 0..n-1, the last one wrapping around."""
    p = np.sort(np.asarray(positions))
    return np.diff(np.concatenate([p, [p[0] + n]]))


@block("stratified_split-tests", deny=SPLIT_DENY)
def test_stratified_split_is_drawn(student):
    """Which samples go to validation is a random draw: not a rotated block, not a fixed stride, and a new
    independent draw for every seed (not a rotation or a stride of one fixed shuffle)."""
    split = student.stratified_split
    y = imbalanced_labels()
    big = np.flatnonzero(y == 3)  # 200 samples, 50 of them to validation at 0.25
    for seed in (4, 11):
        va = split(y, 0.25, seed)[1]
        positions = np.searchsorted(big, np.intersect1d(va, big))
        gaps = _cyclic_gaps(positions, len(big)) if len(positions) else np.array([0])
        checks.check(np.count_nonzero(gaps != 1) > 1 and len(np.unique(gaps)) > 1,
                     f"stratified_split(labels, 0.25, seed={seed}): the validation samples of a class of 200 form "
                     f"one block or a fixed stride of the class's indices (gaps {np.unique(gaps).tolist()}); draw "
                     "them at random: np.random.default_rng(seed).permutation of each class's indices")
    # Across 20 seeds every index should sometimes be in validation and sometimes not.
    members = np.zeros(len(y))
    splits = [split(y, 0.25, seed)[1] for seed in range(20)]
    for va in splits:
        members[va] += 1
    members = members[np.isin(np.arange(len(y)), np.flatnonzero(np.isin(y, [1, 2, 3])))]  # classes of 40+
    stuck = int(np.count_nonzero((members == 0) | (members == 20)))
    checks.check(stuck <= 0.05 * len(members),
                 f"stratified_split(labels, 0.25, seed) for seeds 0..19: expected each sample to land in validation "
                 f"for about 5 of the 20 seeds, got {stuck} of {len(members)} samples always or never there; "
                 "a new seed must draw a new random split (np.random.default_rng(seed)), not shift the old one")
    # Well mixed: with independent draws two samples of the class of 200 are both in validation for a given seed
    # with probability (50/200) * (49/199), so over 20 seeds about (1 - 0.0616)**20 = 28% of the pairs never are.
    # Splits that are windows (rotations) or strides of one fixed shuffle keep most pairs apart for every seed:
    # at least 51% of the pairs (those 50 or more apart in the fixed shuffle) are never together.
    together = np.zeros((len(big), len(big)), dtype=np.int64)
    for va in splits:
        inside = np.isin(big, va).astype(np.int64)
        together += np.outer(inside, inside)
    never = float(np.mean(together[np.triu_indices(len(big), 1)] == 0))
    checks.check(never < 0.4,
                 f"stratified_split(labels, 0.25, seed) for seeds 0..19: expected about 28% of the pairs of samples of "
                 f"a class of 200 never to be in validation together (independent random draws), got {never:.0%}; the "
                 "splits of different seeds are rotations or strides of one fixed order, not new draws: shuffle each "
                 "class with rng = np.random.default_rng(seed)")


@block("stratified_split-tests", deny=SPLIT_DENY)
def test_stratified_split_ignores_global_state(student):
    """The split depends on `seed` only, and leaves NumPy's global random state alone."""
    split = student.stratified_split
    y = imbalanced_labels()
    student.make("numpy.random.seed", 123)
    first = split(y, 0.25, 5)[1]
    student.make("numpy.random.seed", 456)
    second = split(y, 0.25, 5)[1]
    checks.check_equal(second, first, "val_idx for seed=5 after np.random.seed(123) and after np.random.seed(456)",
                       hint="draw from np.random.default_rng(seed), not from the global random state")
    student.make("numpy.random.seed", 789)
    split(y, 0.25, 5)
    after = student.make("numpy.random.randint", 0, 2**31 - 1, 4)
    checks.check_equal(after, np.random.RandomState(789).randint(0, 2**31 - 1, 4),
                       "NumPy's global random numbers after np.random.seed(789) and a call of stratified_split",
                       hint="do not seed or draw from the global random state (np.random.seed, np.random.permutation); "
                            "use rng = np.random.default_rng(seed)")


# --------------------------------------------------------------------------- channel_mean_std

STATS_DENY = ["helpers.split.channel_mean_std"]


@block("channel_mean_std-tests", deny=STATS_DENY)
def test_channel_mean_std_visible(student):
    mean, std = student.channel_mean_std(data_like_images(500, seed=1))
    mean, std = np.asarray(mean), np.asarray(std)
    checks.check_shape(np.asarray(mean), (3,), "the mean's shape", hint="one value per channel")
    checks.check_shape(np.asarray(std), (3,), "the std's shape", hint="one value per channel")
    checks.check(np.all((0 <= mean) & (mean <= 1)) and np.all((0 < std) & (std <= 0.5)),
                 f"channel_mean_std: expected values in [0, 1] units, got mean {mean} and std {std}; "
                 "divide the pixel values by 255")
    gray = np.full((2, 4, 4, 3), 51, dtype=np.uint8)
    checks.check_close(student.channel_mean_std(gray)[0], [0.2, 0.2, 0.2], "the mean of images whose pixels are all 51")
    checks.check_close(student.channel_mean_std(gray)[1], [0.0, 0.0, 0.0], "the std of constant images")


@block("channel_mean_std-tests", deny=STATS_DENY)
def test_channel_mean_std_hidden(student):
    channel_mean_std = student.channel_mean_std
    imgs = np.random.default_rng(5).integers(0, 256, size=(64, 8, 8, 3), dtype=np.uint8)
    imgs[..., 2] //= 3  # make the channels differ
    ref_mean, ref_std = reference_mean_std(imgs)
    got_mean, got_std = channel_mean_std(imgs)
    checks.check_close(got_mean, ref_mean, "the mean of random images", atol=1e-4,
                       hint="average over N, H and W, separately for each channel")
    checks.check_close(got_std, ref_std, "the std of random images", atol=1e-4,
                       hint="population std (ddof=0) per channel, in [0, 1] units")
    two = np.array([[[[0, 10, 255]]], [[[255, 20, 255]]]], dtype=np.uint8)
    checks.check_close(channel_mean_std(two)[1], [0.5, 5 / 255, 0.0], "the std of two pixels", atol=1e-4,
                       hint="use the population std (ddof=0)")
    white = np.full((3000, 32, 32, 3), 255, dtype=np.uint8)
    checks.check_close(channel_mean_std(white)[0], [1.0, 1.0, 1.0], "the mean of 3,000 white images",
                       atol=1e-5, hint="accumulate in float64, not in uint8")


# CIFAR-10's 50,000 training images, at 16x16 to keep the test quick: what matters is that nothing takes a
# float copy of all of them (3 x 8 bytes per pixel here: 307 MB; 1.2 GB at 32x32).
BIG_IMAGES = (50_000, 16, 16, 3)


def _memory_kib(student) -> dict:
    """VmRSS and VmHWM (resident memory now, and its peak) of the sandbox's process, in KiB."""
    text = student.make("pathlib.Path", "/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM") if k in fields}


@block("channel_mean_std-tests", deny=STATS_DENY)
def test_channel_mean_std_in_chunks(student):
    """50,000 images: the call must not convert them all to float at once (the spec's chunks).

    The images are made in the sandbox (np.resize of 8 random ones: only those 8 cross the boundary) and
    kept there in a deque, which comes back as a handle. The call's peak memory is measured twice there:
    the peak resident memory of the process (Linux: /proc/self/clear_refs resets it, /proc/self/status
    shows it; it sees NumPy and torch alike) and tracemalloc's peak (NumPy's array buffers). A warm-up
    call on the 8 images first, so that imports and first-call caches do not count. What is measured in
    the student's process is evidence, as the torch call counts are.
    """
    mk = student.make
    small = np.random.default_rng(13).integers(0, 256, size=(8, *BIG_IMAGES[1:]), dtype=np.uint8)
    ref_mean, ref_std = reference_mean_std(small)  # the 8 images repeated 6,250 times: the same statistics
    checks.check_close(student.channel_mean_std(small)[0], ref_mean, "the mean of 8 random 16x16 images", atol=1e-6)
    resize = mk("operator.attrgetter", "resize")(mk("importlib.import_module", "numpy"))
    images = mk("collections.deque", mk("builtins.map", resize, [small], [BIG_IMAGES]))  # one array, in the sandbox
    calls = mk("builtins.map", student.channel_mean_std, images)  # lazy: runs in the list() below
    try:
        mk("pathlib.Path", "/proc/self/clear_refs").write_text("5")  # peak resident memory := resident memory now
        before = _memory_kib(student)
    except AssertionError:  # not Linux, or /proc is not there: tracemalloc alone
        before = {}
    mk("tracemalloc.start")
    try:
        (result,) = mk("builtins.list", calls)
        _, traced = mk("tracemalloc.get_traced_memory")
    finally:
        mk("tracemalloc.stop")
    after = _memory_kib(student) if before else {}
    resident = (after.get("VmHWM", 0) - before.get("VmRSS", 0)) * 1024 if before else 0
    checks.check(isinstance(result, (tuple, list)) and len(result) == 2,
                 f"channel_mean_std(50,000 images): expected (mean, std), got {type(result).__name__}")
    checks.check_close(result[0], ref_mean, "the mean of 50,000 images (8 random ones repeated)", atol=1e-6,
                       hint="accumulate the sums in float64 over all chunks, then divide by the number of pixels")
    checks.check_close(result[1], ref_std, "the std of 50,000 images (8 random ones repeated)", atol=1e-6,
                       hint="accumulate the sums of x and of x**2 in float64 over all chunks")
    whole = int(np.prod(BIG_IMAGES)) * 8
    peak = max(resident, traced if type(traced) is int else whole)
    checks.check(peak <= whole // 2,
                 f"channel_mean_std on 50,000 images of 16x16: expected it to need at most {whole / 2**21:.0f} MiB "
                 f"(half of a float64 copy of all images, {whole / 2**20:.0f} MiB), got a peak of {peak / 2**20:.0f} "
                 "MiB; it must not convert all images to float at once (np.std and x - mean do that too): loop over "
                 "chunks of a few thousand images, adding up the sums of x and of x**2 per channel in float64")


# --------------------------------------------------------------------------- denormalize

DENORM_DENY = ["helpers.augment.denormalize", "helpers.plots._images_hwc"]


@block("denormalize-tests", deny=DENORM_DENY)
def test_denormalize_visible(student):
    imgs = data_like_images(16, seed=2)
    m, s = np.array([0.49, 0.48, 0.45]), np.array([0.25, 0.24, 0.26])
    back = student.denormalize(given_normalize(imgs, m, s), m, s)
    checks.check_shape(back, imgs.shape, "denormalize(normalize(images, m, s), m, s).shape",
                       hint="return channels last, (N, H, W, 3)")
    checks.check_dtype(back, np.uint8, "denormalize(...).dtype", hint="round, then convert with .astype(np.uint8)")
    checks.check_equal(back, imgs, "denormalize(normalize(images, m, s), m, s)",
                       hint="per channel, multiply by std and then add mean; round rather than truncate")


@block("denormalize-tests", deny=DENORM_DENY)
def test_denormalize_hidden(student):
    denormalize = student.denormalize
    rng = np.random.default_rng(11)
    m, s = rng.uniform(0.3, 0.6, 3), rng.uniform(0.1, 0.3, 3)
    imgs = rng.integers(0, 256, size=(8, 5, 7, 3), dtype=np.uint8)  # H != W catches swapped axes
    back = denormalize(given_normalize(imgs, m, s), m, s)
    checks.check_dtype(back, np.uint8, "denormalize(...).dtype", hint="round, then convert with .astype(np.uint8)")
    checks.check_equal(back, imgs, "the round trip on random 5x7 images",
                       hint="move the channel axis last with transpose(0, 2, 3, 1)")
    far = np.full((1, 3, 2, 2), 100.0, dtype=np.float32)
    far[:, :, 0, 0] = -100.0
    checks.check_equal(np.asarray(denormalize(far, m, s))[0, :, :, 0], np.array([[0, 255], [255, 255]], dtype=np.uint8),
                       "denormalize of values far outside the image range", hint="clip to [0, 1] before converting")


# --------------------------------------------------------------------------- label_agreement

def random_key(n, seed, classes=("disk", "square", "star")):
    """An answer key {file: class} of n files named as the labelling tool's sample folder names them."""
    rng = np.random.default_rng(seed)
    return {f"img_{i:03d}.png": str(rng.choice(classes)) for i in rng.permutation(n)}


def reference_agreement(truth, labels):
    """What the spec asks for, written here (the grader's own copy)."""
    common = [name for name in labels if name in truth]
    wrong = sorted(name for name in common if labels[name] != truth[name])
    return 1.0 - len(wrong) / len(common), wrong


@block("label_agreement-tests")
def test_label_agreement_visible(student):
    truth = {"a.png": "disk", "b.png": "square", "c.png": "disk", "d.png": "square"}
    agree, wrong = student.label_agreement(truth, {"a.png": "disk", "b.png": "disk", "c.png": "disk"})
    checks.check_close(agree, 2 / 3, "label_agreement(4 answers, 3 labels of which b.png is wrong)[0]",
                       hint="divide by the number of files you labelled (3), not by the size of the answer key (4)")
    checks.check_equal(list(wrong), ["b.png"], "label_agreement(...)[1]", hint="the files whose label differs, sorted")
    same = student.label_agreement(truth, dict(truth))
    checks.check(float(same[0]) == 1.0 and list(same[1]) == [], f"label_agreement(truth, truth): expected (1.0, []), "
                 f"got {same!r}")


@block("label_agreement-tests")
def test_label_agreement_hidden(student):
    for seed in range(4):
        truth = random_key(40, seed)
        rng = np.random.default_rng(100 + seed)
        given = {name: (label if rng.random() < 0.7 else "star") for name, label in truth.items() if rng.random() < 0.6}
        given.update({f"extra_{i}.png": "disk" for i in range(3)})  # files the key does not know: left out
        agree, wrong = student.label_agreement(truth, given)
        want_agree, want_wrong = reference_agreement(truth, given)
        checks.check_close(float(agree), want_agree, f"label_agreement(40-file key, {len(given)} labels)[0]",
                           hint="count only labelled files that the answer key knows, in the denominator too")
        checks.check_equal(list(wrong), want_wrong, "label_agreement(...)[1]",
                           hint="only files of both dicts whose labels differ, sorted by name")
    with student.raises("ValueError"):
        student.label_agreement({"a.png": "disk"}, {"z.png": "disk"})
    with student.raises("ValueError"):
        student.label_agreement({"a.png": "disk"}, {})
