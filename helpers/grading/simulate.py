"""Simulated student submissions, built from the release notebook as a student would fill it in.

- `solution(release, source)`: every answer cell holds the source's solution (markers removed);
- `blank(release)`: the release as is;
- `with_answer`, `delete_cell`, `edit_cell`, `tag_cell`: one change to one cell, on a copy;
- `tampered(release, source, assignment)`: the solution with the attacks the grader must survive;
- `with_wrong_answers(release, source, wrongs)`: the solution with some of the registered wrong answers.

WRONG_ANSWERS holds, per assignment, plausible wrong answers that only the hidden tests catch, each
with the points its block must lose and why it is wrong. The first one goes into the `tampered`
student; `wrong_students` packs the others into as few more students as possible (at most one wrong
answer per block in each, so each still provably loses exactly its own block's points). The
round-trip tests run every assignment that has an entry. Notebook authors add theirs; a weakness
found in a hidden test gets its wrong answer here when the test is fixed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(frozen=True)
class WrongAnswer:
    """One plausible wrong answer: the answer cell it goes in, the cell's source, the points that cell's
    block must lose (all of them: a block is all or nothing) and, in one line, why it is wrong."""
    grade_id: str
    source: str
    points: float
    why: str

    @property
    def tests_id(self) -> str:
        """The graded test cell of its block (`<name>-answer` -> `<name>-tests`)."""
        return self.grade_id.removesuffix("-answer") + "-tests"


WRONG_ANSWERS: dict[str, list[WrongAnswer]] = {
    "01_data": [
        WrongAnswer("class_counts-answer",
                    "def class_counts(labels, num_classes):\n"
                    "    values, counts = np.unique(labels, return_counts=True)\n"
                    "    return counts.astype(np.int64)\n",
                    2.0, "counts only the classes present: right on the full data, wrong when a class is missing"),
        WrongAnswer("stratified_split-answer",
                    "def stratified_split(labels, val_fraction, seed):\n"
                    "    labels = np.asarray(labels)\n"
                    "    if not 0.0 < val_fraction < 1.0:\n"
                    "        raise ValueError(f\"val_fraction must be between 0 and 1, got {val_fraction}\")\n"
                    "    rng = np.random.default_rng(0)\n"
                    "    train, val = [], []\n"
                    "    for c in np.unique(labels):\n"
                    "        idx = np.roll(rng.permutation(np.flatnonzero(labels == c)), -37 * seed)\n"
                    "        n_val = int(round(len(idx) * val_fraction))\n"
                    "        val.append(idx[:n_val])\n"
                    "        train.append(idx[n_val:])\n"
                    "    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))\n",
                    3.0, "one fixed shuffle per class, rotated by 37 * seed: seeded and well spread, but different "
                         "seeds give rotations of one order, not independent draws"),
        WrongAnswer("stratified_split-answer",
                    "def stratified_split(labels, val_fraction, seed):\n"
                    "    labels = np.asarray(labels)\n"
                    "    if not 0.0 < val_fraction < 1.0:\n"
                    "        raise ValueError(f\"val_fraction must be between 0 and 1, got {val_fraction}\")\n"
                    "    np.random.seed(seed)\n"
                    "    train, val = [], []\n"
                    "    for c in np.unique(labels):\n"
                    "        idx = np.random.permutation(np.flatnonzero(labels == c))\n"
                    "        n_val = int(round(len(idx) * val_fraction))\n"
                    "        val.append(idx[:n_val])\n"
                    "        train.append(idx[n_val:])\n"
                    "    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))\n",
                    3.0, "seeds and draws from NumPy's global random state (np.random.seed) instead of "
                         "np.random.default_rng(seed): reproducible, but it resets everyone else's random numbers"),
        WrongAnswer("channel_mean_std-answer",
                    "def channel_mean_std(images):\n"
                    "    x = np.asarray(images).astype(np.float64) / 255.0\n"
                    "    return x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))\n",
                    3.0, "converts all images to float64 at once (1.2 GB for CIFAR-10's training images) instead "
                         "of working in chunks"),
        WrongAnswer("label_agreement-answer",
                    "def label_agreement(truth, labels):\n"
                    "    if not any(name in truth for name in labels):\n"
                    "        raise ValueError(\"none of the labelled files is in the answer key\")\n"
                    "    wrong = sorted(name for name in labels if name in truth and labels[name] != truth[name])\n"
                    "    return 1.0 - len(wrong) / len(labels), wrong\n",
                    2.0, "divides by every labelled file, also those the answer key does not know: right when all "
                         "are in the key"),
    ],
    "02_augmentation": [
        WrongAnswer("random_crop-answer",
                    "def random_crop(x, padding, generator):\n"
                    "    if padding == 0:\n"
                    "        return x\n"
                    "    n, c, h, w = x.shape\n"
                    "    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))\n"
                    "    dy, dx = torch.randint(0, 2 * padding + 1, (2,), generator=generator).tolist()\n"
                    "    return padded[:, :, dy:dy + h, dx:dx + w]\n",
                    3.0, "draws ONE offset for the whole batch (what v2.RandomCrop does to a batch tensor): every "
                         "image is a valid window of its padded self, so the visible checks pass"),
        WrongAnswer("normalize-answer",
                    "def normalize(x, mean, std):\n"
                    "    mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)\n"
                    "    std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)\n"
                    "    return (x.float() - mean) / std\n"
                    "\n"
                    "\n"
                    "def denormalize(x, mean, std):\n"
                    "    mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)\n"
                    "    std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)\n"
                    "    return x.float() * std + mean\n",
                    2.0, "makes mean and std on the CPU (no device=x.device): right on the CPU, fails for x on a GPU"),
        WrongAnswer("random_crop-answer",
                    "def random_crop(x, padding, generator):\n"
                    "    if padding == 0:\n"
                    "        return x\n"
                    "    n, c, h, w = x.shape\n"
                    "    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))\n"
                    "    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)\n"
                    "    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)\n"
                    "    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]\n"
                    "    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]\n"
                    "    batch = torch.arange(n)[:, None, None, None]\n"
                    "    channel = torch.arange(c)[None, :, None, None]\n"
                    "    return padded[batch, channel, rows, cols]\n",
                    3.0, "torch.arange(h) without device=x.device: right on the CPU, fails for x on a GPU"),
        WrongAnswer("horizontal_flip-answer",
                    "def horizontal_flip(x, generator, p=0.5):\n"
                    "    flip = torch.rand(x.shape[0], generator=generator) < p\n"
                    "    return torch.where(flip[:, None, None, None], x.flip(-1), x)\n",
                    2.0, "draws the flips on the CPU (no device=x.device): right on the CPU, fails for x on a GPU"),
        WrongAnswer("cutout-answer",
                    "def cutout(x, size, generator):\n"
                    "    if size <= 0:\n"
                    "        return x\n"
                    "    n, _, h, w = x.shape\n"
                    "    cy = torch.randint(0, h, (n,), generator=generator, device=x.device)[:, None, None]\n"
                    "    cx = torch.randint(0, w, (n,), generator=generator, device=x.device)[:, None, None]\n"
                    "    rows = torch.arange(h)[None, :, None]\n"
                    "    cols = torch.arange(w)[None, None, :]\n"
                    "    top, left = cy - size // 2, cx - size // 2\n"
                    "    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)\n"
                    "    return x.masked_fill(inside[:, None], 0.0)\n",
                    2.0, "torch.arange(h) without device=x.device: right on the CPU, fails for x on a GPU"),
        WrongAnswer("cutmix-answer",
                    "def cutmix(x, y_onehot, lam, perm, generator):\n"
                    "    n, _, h, w = x.shape\n"
                    "    half_h, half_w = int(h * math.sqrt(1 - lam) / 2), int(w * math.sqrt(1 - lam) / 2)\n"
                    "    cy = torch.randint(0, h, (n, 1, 1), generator=generator)\n"
                    "    cx = torch.randint(0, w, (n, 1, 1), generator=generator)\n"
                    "    rows = torch.arange(h)[None, :, None]\n"
                    "    cols = torch.arange(w)[None, None, :]\n"
                    "    box = ((rows >= (cy - half_h).clamp(min=0)) & (rows < (cy + half_h).clamp(max=h))\n"
                    "           & (cols >= (cx - half_w).clamp(min=0)) & (cols < (cx + half_w).clamp(max=w)))\n"
                    "    mixed_x = torch.where(box[:, None], x[perm], x)\n"
                    "    pasted = box.flatten(1).sum(1).to(y_onehot.dtype)[:, None] / (h * w)\n"
                    "    return mixed_x, (1 - pasted) * y_onehot + pasted * y_onehot[perm]\n",
                    3.0, "draws the centres and builds the boxes on the CPU (no device=x.device): right on the "
                         "CPU, fails for x on a GPU"),
    ],
    "03_models": [
        WrongAnswer("BasicBlock-answer",
                    "class BasicBlock(nn.Module):\n"
                    "    def __init__(self, in_channels, out_channels, stride=1):\n"
                    "        super().__init__()\n"
                    "        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, "
                    "bias=False)\n"
                    "        self.bn1 = nn.BatchNorm2d(out_channels)\n"
                    "        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)\n"
                    "        self.bn2 = nn.BatchNorm2d(out_channels)\n"
                    "        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, "
                    "bias=False),\n"
                    "                                      nn.BatchNorm2d(out_channels))\n"
                    "\n"
                    "    def forward(self, x):\n"
                    "        out = torch.relu(self.bn1(self.conv1(x)))\n"
                    "        out = self.bn2(self.conv2(out))\n"
                    "        return torch.relu(out + self.shortcut(x))\n",
                    3.0, "always uses a projection shortcut: right for the downsampling block the visible checks "
                         "use, wrong (4,224 extra parameters) for a block whose shapes match"),
        WrongAnswer("MLP-answer",
                    "class MLP(nn.Module):\n"
                    "    def __init__(self, num_classes=10):\n"
                    "        super().__init__()\n"
                    "        self.net = nn.Sequential(\n"
                    "            nn.Flatten(),\n"
                    "            nn.Linear(3 * 32 * 32, 128), nn.ReLU(inplace=True),\n"
                    "            nn.Linear(128, 256), nn.ReLU(inplace=True), nn.Dropout(0.2),\n"
                    "            nn.Linear(256, 512), nn.ReLU(inplace=True),\n"
                    "            nn.Linear(512, num_classes),\n"
                    "        )\n"
                    "\n"
                    "    def forward(self, x):\n"
                    "        return self.net(x)\n",
                    2.0, "an extra nn.Dropout: the same parameters and the same outputs in eval mode, different "
                         "ones in training mode"),
    ],
    "04_training": [
        WrongAnswer("train_one_epoch-answer",
                    "def train_one_epoch(model, loader, optimizer, loss_fn, device, scaler=None):\n"
                    "    model.train()\n"
                    "    losses, accuracies = [], []\n"
                    "    for x, y in loader:\n"
                    "        x, y = x.to(device), y.to(device)\n"
                    "        optimizer.zero_grad()\n"
                    "        logits = model(x)\n"
                    "        loss = loss_fn(logits, y)\n"
                    "        loss.backward()\n"
                    "        optimizer.step()\n"
                    "        losses.append(loss.item())\n"
                    "        accuracies.append((logits.argmax(dim=1) == y).float().mean().item())\n"
                    "    return sum(losses) / len(losses), sum(accuracies) / len(accuracies)\n",
                    4.0, "averages per batch, not per sample (and ignores the scaler): right only when all "
                         "batches are equally large"),
        WrongAnswer("train_one_epoch-answer",
                    "def train_one_epoch(model, loader, optimizer, loss_fn, device, scaler=None):\n"
                    "    device = torch.device(device)\n"
                    "    model.train()\n"
                    "    loss_sum, correct, seen = 0.0, 0, 0\n"
                    "    for x, y in loader:\n"
                    "        x, y = x.to(device), y.to(device)\n"
                    "        optimizer.zero_grad()\n"
                    "        logits = model(x)\n"
                    "        loss = loss_fn(logits, y)\n"
                    "        loss.backward()\n"
                    "        optimizer.step()\n"
                    "        loss_sum += loss.item() * len(y)\n"
                    "        correct += (logits.argmax(dim=1) == y).sum().item()\n"
                    "        seen += len(y)\n"
                    "    return loss_sum / seen, correct / seen\n",
                    4.0, "ignores the GradScaler (loss.backward(); optimizer.step() even when a scaler is given): "
                         "right without mixed precision"),
        WrongAnswer("EarlyStopping-answer",
                    "class EarlyStopping:\n"
                    "    def __init__(self, patience, min_delta=0.0, mode=\"max\"):\n"
                    "        if mode not in (\"max\", \"min\"):\n"
                    "            raise ValueError(f\"mode must be 'max' or 'min', got {mode!r}\")\n"
                    "        self.patience, self.min_delta, self.mode = patience, min_delta, mode\n"
                    "        self.best, self.bad_epochs = None, 0\n"
                    "\n"
                    "    def step(self, value):\n"
                    "        if self.best is None:\n"
                    "            better = True\n"
                    "        elif self.mode == \"max\":\n"
                    "            better = value >= self.best + self.min_delta and value != self.best\n"
                    "        else:\n"
                    "            better = value <= self.best - self.min_delta and value != self.best\n"
                    "        if better:\n"
                    "            self.best, self.bad_epochs = value, 0\n"
                    "        else:\n"
                    "            self.bad_epochs += 1\n"
                    "        return self.bad_epochs >= self.patience\n",
                    3.0, "counts a gain of exactly min_delta as an improvement (>= instead of the spec's strict >)"),
    ],
    "05_evaluation": [
        WrongAnswer("precision_recall_f1-answer",
                    "def precision_recall_f1(y_true, y_pred, num_classes):\n"
                    "    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)\n"
                    "    tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)\n"
                    "    precision = np.divide(tp, predicted, out=np.zeros(num_classes), where=predicted > 0)\n"
                    "    recall = np.divide(tp, actual, out=np.zeros(num_classes), where=actual > 0)\n"
                    "    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_classes),\n"
                    "                   where=precision + recall > 0)\n"
                    "    mp, mr = float(precision.mean()), float(recall.mean())\n"
                    "    return {\"precision\": precision, \"recall\": recall, \"f1\": f1, \"macro_precision\": mp,\n"
                    "            \"macro_recall\": mr, \"macro_f1\": 2 * mp * mr / (mp + mr) if mp + mr > 0 "
                    "else 0.0}\n",
                    3.0, "macro-F1 as the F1 of macro precision and macro recall, not the mean of the per-class "
                         "F1 scores"),
        WrongAnswer("expected_calibration_error-answer",
                    "def expected_calibration_error(probs, y_true, n_bins=15):\n"
                    "    probs = np.asarray(probs, dtype=np.float64)\n"
                    "    y = np.asarray(y_true)\n"
                    "    confidence = probs.max(axis=1)\n"
                    "    correct = probs.argmax(axis=1) == y\n"
                    "    bins = np.clip(np.floor(confidence * n_bins).astype(np.int64), 0, n_bins - 1)\n"
                    "    ece = 0.0\n"
                    "    for b in range(n_bins):\n"
                    "        in_bin = bins == b\n"
                    "        if in_bin.any():\n"
                    "            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())\n"
                    "    return float(ece)\n",
                    3.0, "left-closed bins [b/n, (b+1)/n): a confidence exactly on an inner edge goes to the bin "
                         "above it, the spec's (b/n, (b+1)/n] puts it in the one below"),
        WrongAnswer("fgsm-answer",
                    "def fgsm(model, x, y, eps):\n"
                    "    model.eval()\n"
                    "    x_in = x.detach().clone().requires_grad_(True)\n"
                    "    with torch.enable_grad():\n"
                    "        loss = F.cross_entropy(model(x_in), y)\n"
                    "        (grad,) = torch.autograd.grad(loss, x_in)\n"
                    "    return (x.detach() + eps * grad.sign()).detach().cpu()\n",
                    2.0, "returns x_adv on the CPU (.cpu()), not on x's device: right when x is on the CPU"),
    ],
    "06_challenge": [
        WrongAnswer("worst_classes-answer",
                    "def worst_classes(y_true, y_pred, num_classes, k=3):\n"
                    "    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)\n"
                    "    per_class = len(y_true) / num_classes  # assumes balanced classes\n"
                    "    errors = np.bincount(y_true[y_true != y_pred], minlength=num_classes)\n"
                    "    recall = 1 - errors / per_class\n"
                    "    order = np.argsort(recall, kind=\"stable\")[:k]\n"
                    "    return [(int(c), float(recall[c])) for c in order]\n",
                    2.0, "recall divided by N / num_classes: right on the balanced validation split, wrong on "
                         "imbalanced labels"),
    ],
}


SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")
HANG = "\nwhile True:  # simulated hang: autograde must time this cell out and go on\n    pass\n"
# Wraps function {name} so that each call writes a warning and a tqdm-like bar to stderr.
NOISE = """
import functools as _functools, sys as _sys, warnings as _warnings
_quiet_{name} = {name}
@_functools.wraps(_quiet_{name})
def {name}(*args, **kwargs):  # simulated noise: stderr in a test cell must not cost points
    _warnings.warn("simulated noisy student code", UserWarning)
    print("\\r 50%|#####     | 1/2 [00:01<00:01,  1.00it/s]", file=_sys.stderr)
    return _quiet_{name}(*args, **kwargs)
"""


def read(path):
    """A notebook file as an nbformat v4 NotebookNode."""
    import nbformat
    return nbformat.read(str(path), as_version=4)


def write(nb, path) -> None:
    """Write a notebook file (nbformat v4)."""
    import nbformat
    nbformat.write(nb, str(path))


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def cell_index(nb, grade_id: str) -> int:
    """Position of the cell with this grade_id (KeyError names the ids there are)."""
    for i, cell in enumerate(nb.cells):
        if _meta(cell).get("grade_id") == grade_id:
            return i
    ids = [_meta(c)["grade_id"] for c in nb.cells if "grade_id" in _meta(c)]
    raise KeyError(f"no cell with grade_id {grade_id!r}; the notebook has {ids}")


def answer_ids(nb) -> list[str]:
    """grade_ids of the cells a student writes in (nbgrader solution cells), in order."""
    return [_meta(c)["grade_id"] for c in nb.cells if _meta(c).get("solution")]


def autograded_ids(nb) -> list[str]:
    """grade_ids of the automatically graded test cells (code grade cells that are not answers)."""
    return [_meta(c)["grade_id"] for c in nb.cells
            if c.cell_type == "code" and _meta(c).get("grade") and not _meta(c).get("solution")]


def blocks(nb) -> list[tuple[str, str]]:
    """(answer id, tests id) pairs named by the convention `<name>-answer` / `<name>-tests`."""
    tests = set(autograded_ids(nb))
    return [(a, a[:-len("-answer")] + "-tests") for a in answer_ids(nb)
            if a.endswith("-answer") and a[:-len("-answer")] + "-tests" in tests]


def strip_solution_markers(source: str) -> str:
    """The source without its `### BEGIN SOLUTION` / `### END SOLUTION` lines."""
    return "\n".join(line for line in source.split("\n") if not any(m in line for m in SOLUTION_MARKERS))


# ----------------------------------------------------------------------------- submissions

def blank(release):
    """A submission that changes nothing: the release notebook as handed out."""
    return copy.deepcopy(release)


def solution(release, source):
    """The release with every answer cell filled with the source's solution, as a student would type it."""
    nb = copy.deepcopy(release)
    for cell in source.cells:
        if _meta(cell).get("solution"):
            nb = with_answer(nb, _meta(cell)["grade_id"], strip_solution_markers(cell.source))
    return nb


def with_answer(nb, grade_id: str, code: str):
    """A copy of nb whose answer cell `grade_id` holds `code`."""
    if not _meta(nb.cells[cell_index(nb, grade_id)]).get("solution"):
        raise ValueError(f"{grade_id!r} is not an answer cell")
    return edit_cell(nb, grade_id, code)


def edit_cell(nb, grade_id: str, new_source: str):
    """A copy of nb with the source of cell `grade_id` replaced (any cell, locked ones too)."""
    nb = copy.deepcopy(nb)
    nb.cells[cell_index(nb, grade_id)].source = new_source
    return nb


def delete_cell(nb, grade_id: str):
    """A copy of nb without cell `grade_id`."""
    nb = copy.deepcopy(nb)
    del nb.cells[cell_index(nb, grade_id)]
    return nb


def tag_cell(nb, grade_id: str, tag: str):
    """A copy of nb with `tag` added to the tags of cell `grade_id`."""
    nb = copy.deepcopy(nb)
    tags = nb.cells[cell_index(nb, grade_id)].metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)
    return nb


def tampered(release, source, assignment: str):
    """The solution with the standard attacks; returns (notebook, plan) where plan says what was done.

    - the assignment's first WRONG_ANSWERS answer is put in, and its test cell tagged `skip-execution`
      (it must still run and lose exactly the registered points);
    - the test cell of the next block is deleted (it must be restored and graded);
    - the test cell of the block after that is edited to `pass` (it must be restored and graded);
    - the answer cell of the block after that hangs after defining its function (it must time out
      while everything else is graded);
    - the function of the edited block writes a warning and a progress bar to stderr on every call
      (IgnorePattern must keep that from costing points); skipped when the cell defines no function
      of that name.
    """
    first = WRONG_ANSWERS[assignment][0]
    wrong_id, wrong_code, lost = first.grade_id, first.source, first.points
    pairs = blocks(source)
    tests_of = dict(pairs)
    others = [p for p in pairs if p[0] != wrong_id]
    if wrong_id not in tests_of or not others:
        raise ValueError(f"{assignment}: needs the block of {wrong_id!r} and at least one other block")
    solved = {a: strip_solution_markers(source.cells[cell_index(source, a)].source) for a, _ in others}
    deleted = others[0][1]
    edited = others[1][1] if len(others) > 1 else None
    hung = others[2 % len(others)][0]
    noisy = others[1 % len(others)][0]
    name = noisy[:-len("-answer")]
    if noisy == hung or f"def {name}(" not in solved[noisy]:
        noisy = None

    nb = solution(release, source)
    nb = with_answer(nb, wrong_id, wrong_code)
    nb = tag_cell(nb, tests_of[wrong_id], "skip-execution")
    if edited:
        nb = edit_cell(nb, edited, "pass")
    if noisy:
        nb = with_answer(nb, noisy, solved[noisy] + NOISE.format(name=name))
    nb = with_answer(nb, hung, solved[hung] + HANG)
    nb = delete_cell(nb, deleted)
    plan = {"wrong": wrong_id, "wrong_tests": tests_of[wrong_id], "points_lost": float(lost),
            "skip_tagged": tests_of[wrong_id], "deleted": deleted, "edited": edited, "hung": hung,
            "noisy": noisy}
    return nb, plan


def wrong_students(assignment: str) -> list[list[WrongAnswer]]:
    """The assignment's wrong answers after the first (the `tampered` student holds that one), packed
    into as few students as possible: each student holds at most one wrong answer per block, so that
    each block it fails is failed by exactly one wrong answer. In registry order, first fit."""
    students: list[list[WrongAnswer]] = []
    for wrong in WRONG_ANSWERS.get(assignment, [])[1:]:
        free = next((s for s in students if all(w.grade_id != wrong.grade_id for w in s)), None)
        if free is None:
            students.append([wrong])
        else:
            free.append(wrong)
    return students


def with_wrong_answers(release, source, wrongs):
    """The solution with each of `wrongs` in its answer cell (those whose cell is in this notebook)."""
    nb = solution(release, source)
    ids = answer_ids(source)
    for wrong in wrongs:
        if wrong.grade_id in ids:
            nb = with_answer(nb, wrong.grade_id, wrong.source)
    return nb


def write_work_files(assignment: str, folder) -> list:
    """Files a student's own run of the notebook leaves beside it, for simulated submissions.

    Only the challenge has any: its two checkpoints, as a run of the source solution saves them
    (the recipe's model, untrained, with the completed recipe and the fingerprint of the data the
    notebook trains on in this run mode; see challenge.write_solution_work_files). They pass the
    in-notebook and hidden checks (the accuracy is scored outside the notebook); `helpers.demo`
    runs the real notebook instead.
    """
    from . import challenge
    if assignment != challenge.ASSIGNMENT:
        return []
    return challenge.write_solution_work_files(folder)
