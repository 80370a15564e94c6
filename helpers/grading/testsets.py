"""The test sets the grader scores on, checked against SHA-256 digests pinned here.

The data folder (`data/cache/*.npz`) is writable by whoever runs a notebook, including a
student's code in the autograde kernel, so to the grader a cache is only a cache: every test
split it scores on is loaded by `load_verified` and its digest (`testset_digest`: SHA-256 over
the split's shape, images and labels) is compared with the digests pinned in `PINNED`:

- the generated 'synthetic' dataset (helpers.data.synthetic, seed 0, the sizes `course_data` uses),
  in full and in reduced mode (COURSE_FAST=1), for `--dataset synthetic` and the
  `--allow-synthetic` fallback;
- the course's CIFAR-10 / CIFAR-100 copies (cifar10-webp, cifar10-jpeg, cifar100-webp .tar.gz
  image-folder archives), in full and in reduced mode. Only their digests are here: the
  archives are no dependency of the kit or its tests.

When the loaded split does not match, it is loaded again from its source with the cache
bypassed (`use_cache=False`): a relabelled or replaced cache therefore changes nothing. When the
fresh load does not match either, grading stops with a `TestSetError` naming the source and
both digests.

Other sources: a split that came from torchvision (a previous or a new download) is accepted,
because torchvision verifies the MD5 of every file it reads (a modified file raises "Dataset not
found or corrupted"); it is always loaded with the cache bypassed, so the cache cannot stand in
for it. Any other source (e.g. a TA's own image folder) is accepted only when the TA pins its
digest explicitly: `$COURSE_TESTSET_SHA256` holds one or more digests (comma-separated) that
the grader adds to the pinned ones; the refusal message prints the digest to pin. The digests of
a run are printed by `python -m helpers grade` so that a TA can pin them.

The training split: a model must have been trained on the training split of the data it is
graded on (a checkpoint records `helpers.models.checkpoint.dataset_fingerprint` of its training data).
So every verified set also carries the digest of its TRAINING split (`train_digest`, the same
`split_digest` the checkpoint records), pinned in `_PINNED_TRAIN` beside the test digest of the
same source and mode. A training split that does not match its pin is loaded again with the
cache bypassed (a rewritten cache changes nothing) and refused when it still does not match;
for a source without a pinned training digest (torchvision, a TA-pinned folder) the digest is
taken from a load that bypasses the cache, unless the TA pins it in `$COURSE_TRAINSET_SHA256`
(which saves decoding the source again in every grading process).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..settings import env

DIGEST_VERSION = b"course-testset-v1"
PIN_ENV = "COURSE_TESTSET_SHA256"
TRAIN_PIN_ENV = "COURSE_TRAINSET_SHA256"  # the training splits' digests of a TA's own source (comma-separated)

# (dataset, test images, source, reduced mode, SHA-256 of the test split as `testset_digest` computes it)
_PINNED_TABLE = [
    ("synthetic", 2000, "generated, seed 0", False, "fad7e50d59941263fbaf9eec161c82c3c5b9b326c50fcbc11e0b863d35ee5b87"),
    ("synthetic", 1000, "generated, seed 0", True, "dc3e712e8352a81d360e7db073837d34c8df907e124c55c8d4a5708feb2887a8"),
    ("cifar10", 10000, "cifar10-webp.tar.gz", False, "e370d75eb8b33a0fa8f84234d35fb5b5dc6a892fe74ffdbe3363a66e8f8a2318"),
    ("cifar10", 1000, "cifar10-webp.tar.gz", True, "d6e5a0c7935352f9a645bae307447568bac3361a60e13bea374833559b8beb4c"),
    ("cifar10", 10000, "cifar10-jpeg.tar.gz", False, "f7b9d44a9f9520f2b7b6c5776758808d10a92de377a8b692c9c03b932bac37f8"),
    ("cifar10", 1000, "cifar10-jpeg.tar.gz", True, "2987d81315d2813f796d84367b163d16d09bcbab85d2d65dc3ba7f2c51620bbc"),
    ("cifar100", 10000, "cifar100-webp.tar.gz", False, "75600efe119f8b9e7953c77d70bba7b6df5df501ddf601ea0d4261fcd7303e1b"),
    ("cifar100", 3000, "cifar100-webp.tar.gz", True, "1ff0517d7a6e1abe15c66a84736d35519c04fd8a3360f70adea5d5f7334b7d71"),
]

# SHA-256 of the TRAINING split (helpers.models.checkpoint.split_digest) of the same source and mode, keyed by
# the test digest above; computed with helpers.models.checkpoint.dataset_fingerprint on course_data (2026-12-03).
_PINNED_TRAIN = {
    "fad7e50d59941263fbaf9eec161c82c3c5b9b326c50fcbc11e0b863d35ee5b87":  # synthetic, 10,000 images
        "ed6dc6252b15834d17ab569c66c8efdb96cdebb55576d977da3e0616fe1fb562",
    "dc3e712e8352a81d360e7db073837d34c8df907e124c55c8d4a5708feb2887a8":  # synthetic, reduced: 3,000
        "b296054c7722eb3c643fba3fddaa737cba143ddd5fff86dffaedd9f57269d355",
    "e370d75eb8b33a0fa8f84234d35fb5b5dc6a892fe74ffdbe3363a66e8f8a2318":  # cifar10-webp, 50,000
        "82b09cfcf5a7b40950987e8c71b8e0402c05b73bfd994020301a9d0cb8c36eae",
    "d6e5a0c7935352f9a645bae307447568bac3361a60e13bea374833559b8beb4c":  # cifar10-webp, reduced: 3,000
        "5a501d3e1652fceca974c841be4087bc68dd7feee04e952b69bd33eaaf80cf62",
    "f7b9d44a9f9520f2b7b6c5776758808d10a92de377a8b692c9c03b932bac37f8":  # cifar10-jpeg, 50,000
        "197dd99e96f1fcd720a1f4ab26a3c7f1b8bf10421e7fe15046ebed8ef83a842e",
    "2987d81315d2813f796d84367b163d16d09bcbab85d2d65dc3ba7f2c51620bbc":  # cifar10-jpeg, reduced: 3,000
        "9323959285c780f2097302780a2b80485d897a7c73711b409735990f645e1bd9",
    "75600efe119f8b9e7953c77d70bba7b6df5df501ddf601ea0d4261fcd7303e1b":  # cifar100-webp, 50,000
        "74790e485fee2ea514fea44a7260cc3b8174524def8f766161e04f2af624e98f",
    "1ff0517d7a6e1abe15c66a84736d35519c04fd8a3360f70adea5d5f7334b7d71":  # cifar100-webp, reduced: 10,000
        "9198cda1fc17195b1518a89c937d8ad33842eb88704d8ef3b2049add38921d1f",
}


class TestSetError(RuntimeError):
    """The test set does not match its pinned digest (or cannot be trusted); grading must stop."""

    __test__ = False  # not a pytest test class


def testset_digest(images, labels) -> str:
    """SHA-256 over a test split: a version tag, the images' shape, their uint8 bytes, int64 labels."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype="<i8")
    h = hashlib.sha256(DIGEST_VERSION)
    h.update(repr(tuple(images.shape)).encode())
    h.update(images.tobytes())
    h.update(labels.tobytes())
    return h.hexdigest()


def pinned_digests() -> dict[str, str]:
    """{digest: what it is} of every split the grader accepts: the pinned ones and the TA's own."""
    known = {digest: f"{name} test split ({n} images, {source}{', reduced mode' if reduced else ''})"
             for name, n, source, reduced, digest in _PINNED_TABLE}
    for digest in (env(PIN_ENV) or "").replace(";", ",").split(","):
        if digest.strip():
            known.setdefault(digest.strip().lower(), f"pinned by the TA (${PIN_ENV})")
    return known


@dataclass
class VerifiedTestSet:
    """A test split the grader trusts: images and labels (copies it owns), with how it was verified."""
    name: str           # the dataset actually loaded ('synthetic' on the --allow-synthetic fallback)
    asked: str          # the dataset asked for
    num_classes: int
    images: np.ndarray
    labels: np.ndarray
    source: str
    digest: str
    verified: str       # which pinned digest it matched, or "torchvision checksums"
    note: str = ""      # said in every reason: synthetic fallback, reduced mode
    train_digest: str = ""  # split_digest of the training split a model must have been trained on
    train_images: int = 0   # how many images that training split holds
    reduced: bool = False   # a reduced-mode subset (COURSE_FAST=1)

    def trained_on(self) -> str:
        """'<name> <train digest, 12 hex> (<n> images[, reduced mode])', as reasons name the data."""
        mode = ", reduced mode" if self.reduced else ""
        return f"{self.name} {self.train_digest[:12]} ({self.train_images:,} training images{mode})"


def _load(dataset: str, allow_synthetic: bool, use_cache: bool):
    from ..data.datasets import course_data
    return course_data(dataset, fallback=allow_synthetic, verbose=False, use_cache=use_cache)


def load_verified(dataset: str, *, allow_synthetic: bool = False) -> VerifiedTestSet:
    """The test split of `dataset` as `course_data` gives it (run mode included), verified.

    Raises DataError when no data is found and TestSetError when what was found is not a pinned
    (or torchvision-checksummed, or TA-pinned) test set.
    """
    known = pinned_digests()
    data = _load(dataset, allow_synthetic, use_cache=True)
    from_torchvision = "torchvision download" in data.source
    if from_torchvision:  # torchvision verifies the files' MD5 when it reads them: read them, not the cache
        data = _load(dataset, allow_synthetic, use_cache=False)
    digest = testset_digest(data.test_images, data.test_labels)
    if digest not in known and not from_torchvision:
        first = digest
        data = _load(dataset, allow_synthetic, use_cache=False)  # the cache may have been rewritten
        digest = testset_digest(data.test_images, data.test_labels)
        if digest not in known:
            raise TestSetError(
                f"the {data.name} test split from {data.source} ({len(data.test_labels)} images) does not match any "
                f"pinned digest (cached: {first[:16]}..., fresh from the source: {digest}). Grading stopped: the "
                f"scores would not be comparable. If this source is the one you mean to grade on, pin it: "
                f"export {PIN_ENV}={digest}")
    verified = known.get(digest, "torchvision's file checksums (MD5, checked as it read them)")
    train_digest = _verified_train_digest(data, digest, dataset, allow_synthetic, fresh=from_torchvision)
    notes = []
    if data.name != dataset:
        notes.append(f"scored on the generated '{data.name}' dataset: {dataset} is not available here "
                     "(--allow-synthetic)")
    if "[reduced mode]" in data.source:
        notes.append("reduced mode (COURSE_FAST=1): a test subset")
    return VerifiedTestSet(data.name, dataset, data.num_classes, np.array(data.test_images, dtype=np.uint8),
                           np.array(data.test_labels, dtype=np.int64), data.source, digest, verified, "; ".join(notes),
                           train_digest=train_digest, train_images=int(len(data.train_labels)),
                           reduced="[reduced mode]" in data.source)


def _verified_train_digest(data, test_digest: str, dataset: str, allow_synthetic: bool, fresh: bool) -> str:
    """The training split's digest, checked against `_PINNED_TRAIN` (loaded again without the cache
    when it does not match; TestSetError when it still does not). Without a pin: the digest of a
    load that bypassed the cache."""
    from ..models.checkpoint import split_digest
    pinned = _PINNED_TRAIN.get(test_digest)
    digest = split_digest(data.train_images, data.train_labels)
    ta_pinned = {d.strip().lower() for d in (env(TRAIN_PIN_ENV) or "").replace(";", ",").split(",") if d.strip()}
    if digest == pinned or (pinned is None and (fresh or digest in ta_pinned)):
        return digest
    again = _load(dataset, allow_synthetic, use_cache=False)
    if testset_digest(again.test_images, again.test_labels) != test_digest:
        raise TestSetError(f"the {data.name} data from {data.source} changed while it was verified; grading stopped")
    digest = split_digest(again.train_images, again.train_labels)
    if pinned is not None and digest != pinned:
        raise TestSetError(
            f"the {data.name} training split from {again.source} ({len(again.train_labels)} images) does not match "
            f"its pinned digest ({pinned[:16]}..., found {digest[:16]}...): the test split matches but the training "
            f"split does not, so the data is not the course's. Grading stopped.")
    return digest


_MEMO: dict[tuple, VerifiedTestSet] = {}


def verified_testset(dataset: str, *, allow_synthetic: bool = False) -> VerifiedTestSet:
    """`load_verified`, remembered in this (trusted) process for the same dataset, mode and source settings."""
    from ..settings import data_dir, fast_mode
    key = (dataset, allow_synthetic, fast_mode(), str(data_dir()), env("COURSE_CIFAR10"),
           env("COURSE_CIFAR100"), env(PIN_ENV), env(TRAIN_PIN_ENV), env("COURSE_OFFLINE"))
    if key not in _MEMO:
        _MEMO[key] = load_verified(dataset, allow_synthetic=allow_synthetic)
    return _MEMO[key]
