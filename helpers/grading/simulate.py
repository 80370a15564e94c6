"""Simulated student submissions, built from the release notebook as a student would fill it in.

- `solution(release, source)`: every answer cell holds the source's solution (markers removed);
- `blank(release)`: the release as is;
- `with_answer`, `delete_cell`, `edit_cell`, `tag_cell`: one change to one cell, on a copy;
- `tampered(release, source, assignment)`: the solution with the attacks the grader must survive.

WRONG_ANSWERS holds one plausible wrong answer per assignment, with the points it must lose;
the round-trip tests run every assignment that has an entry. Notebook authors add theirs.
"""
from __future__ import annotations

import copy

# assignment: (answer cell grade_id, the wrong cell source, points that answer must lose)
WRONG_ANSWERS: dict[str, tuple[str, str, float]] = {
    # Counts only the classes present: right on the full data, wrong when a class is missing.
    "01_data": ("class_counts-answer",
                "def class_counts(labels, num_classes):\n"
                "    values, counts = np.unique(labels, return_counts=True)\n"
                "    return counts.astype(np.int64)\n",
                2.0),
    # Draws ONE offset for the whole batch (what v2.RandomCrop does to a batch tensor): every image
    # is a valid window of its padded self, so the visible checks pass; the hidden per-image check fails.
    "02_augmentation": ("random_crop-answer",
                        "def random_crop(x, padding, generator):\n"
                        "    if padding == 0:\n"
                        "        return x\n"
                        "    n, c, h, w = x.shape\n"
                        "    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))\n"
                        "    dy, dx = torch.randint(0, 2 * padding + 1, (2,), generator=generator).tolist()\n"
                        "    return padded[:, :, dy:dy + h, dx:dx + w]\n",
                        3.0),
    # Always uses a projection shortcut: right for the downsampling block the visible checks use,
    # wrong (4,224 extra parameters) for a block whose shapes match.
    "03_models": ("BasicBlock-answer",
                  "class BasicBlock(nn.Module):\n"
                  "    def __init__(self, in_channels, out_channels, stride=1):\n"
                  "        super().__init__()\n"
                  "        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)\n"
                  "        self.bn1 = nn.BatchNorm2d(out_channels)\n"
                  "        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)\n"
                  "        self.bn2 = nn.BatchNorm2d(out_channels)\n"
                  "        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),\n"
                  "                                      nn.BatchNorm2d(out_channels))\n"
                  "\n"
                  "    def forward(self, x):\n"
                  "        out = torch.relu(self.bn1(self.conv1(x)))\n"
                  "        out = self.bn2(self.conv2(out))\n"
                  "        return torch.relu(out + self.shortcut(x))\n",
                  3.0),
    # Averages per batch, not per sample (and ignores the scaler): right only when all batches are equally large.
    "04_training": ("train_one_epoch-answer",
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
                    4.0),
    # Macro-F1 as the F1 of macro precision and macro recall, not the mean of the per-class F1 scores.
    "05_evaluation": ("precision_recall_f1-answer",
                      "def precision_recall_f1(y_true, y_pred, num_classes):\n"
                      "    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)\n"
                      "    tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)\n"
                      "    precision = np.divide(tp, predicted, out=np.zeros(num_classes), where=predicted > 0)\n"
                      "    recall = np.divide(tp, actual, out=np.zeros(num_classes), where=actual > 0)\n"
                      "    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_classes),\n"
                      "                   where=precision + recall > 0)\n"
                      "    mp, mr = float(precision.mean()), float(recall.mean())\n"
                      "    return {\"precision\": precision, \"recall\": recall, \"f1\": f1, \"macro_precision\": mp,\n"
                      "            \"macro_recall\": mr, \"macro_f1\": 2 * mp * mr / (mp + mr) if mp + mr > 0 else 0.0}\n",
                      3.0),
    # Recall divided by N / num_classes: right on the balanced validation split, wrong on imbalanced labels.
    "06_challenge": ("worst_classes-answer",
                     "def worst_classes(y_true, y_pred, num_classes, k=3):\n"
                     "    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)\n"
                     "    per_class = len(y_true) / num_classes  # assumes balanced classes\n"
                     "    errors = np.bincount(y_true[y_true != y_pred], minlength=num_classes)\n"
                     "    recall = 1 - errors / per_class\n"
                     "    order = np.argsort(recall, kind=\"stable\")[:k]\n"
                     "    return [(int(c), float(recall[c])) for c in order]\n",
                     2.0),
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

    - the WRONG_ANSWERS answer is put in, and its test cell tagged `skip-execution` (it must still run
      and lose exactly the registered points);
    - the test cell of the next block is deleted (it must be restored and graded);
    - the test cell of the block after that is edited to `pass` (it must be restored and graded);
    - the answer cell of the block after that hangs after defining its function (it must time out
      while everything else is graded);
    - the function of the edited block writes a warning and a progress bar to stderr on every call
      (IgnorePattern must keep that from costing points); skipped when the cell defines no function
      of that name.
    """
    wrong_id, wrong_code, lost = WRONG_ANSWERS[assignment]
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


def write_work_files(assignment: str, folder) -> list:
    """Files a student's own run of the notebook leaves beside it, for simulated submissions.

    Only the challenge has any: its two checkpoints. These hold small untrained registry models
    saved as the notebook saves them, which pass the in-notebook checks (the accuracy is scored
    outside the notebook); `helpers.demo` runs the real notebook instead.
    """
    from pathlib import Path

    from . import challenge
    if assignment != challenge.ASSIGNMENT:
        return []
    from ..models import build_model
    layers = [{"type": "conv", "out": 8, "stride": 2}, {"type": "relu"}, {"type": "globalpool"},
              {"type": "linear", "out": 10}]
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return [challenge.save_challenge_checkpoint(Path(folder) / name, build_model("layers", layers=layers),
                                                history=[], mean=mean, std=std, dataset="synthetic")
            for name in (challenge.CHECKPOINT_NAME, challenge.CIFAR100_CHECKPOINT_NAME)]
