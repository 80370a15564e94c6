"""Run All on a blank release notebook reads as a lesson (issue 11, part 5).

A student who has written nothing runs every cell (stepping past the failing checks). The only
errors must be the designed ones: a block's own test cell (grade_id `<function>-tests`) or its
answer cell (a class body that still raises). Every other cell that uses an unfinished block
says which part to finish (`checks.needs`) instead of a NotImplementedError or a cascade of
NameErrors, and the cells that use nothing of the student's run as usual.

Reduced mode, offline (the generated dataset), the venv's python3 kernel. By default three of the
five notebooks, to keep CI within about a minute and a half on two cores: 01 (names handed from
part to part), 02 (the most cells built on the blocks, one inside a function) and 05 (a training
cell with its progress display, then seven blocks that build on its model).
RUN_ALL_NOTEBOOKS=all adds 03 (about 12 s: class blocks) and 04 (about 70 s: three training cells).
What those add is also tested without a kernel: blocks that are classes and a class body that
raises (tests/test_checks.py), the live plot's order (tests/test_train.py).
"""
import os
import re
import time

import pytest

from helpers.config import PROJECT_ROOT
from helpers.grading import simulate

pytest.importorskip("nbclient")

ALL = ["01_data", "02_augmentation", "03_models", "04_training", "05_evaluation"]
NOTEBOOKS = ALL if os.environ.get("RUN_ALL_NOTEBOOKS") == "all" else ["01_data", "02_augmentation", "05_evaluation"]
WIDGET = "application/vnd.jupyter.widget-view+json"


def _run_all(name, folder):
    from nbclient import NotebookClient
    nb = simulate.read(PROJECT_ROOT / "release" / name / f"{name}.ipynb")
    t0, cpu0 = time.perf_counter(), _children_cpu()
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    print(f"\n{name}: Run All of the blank release took {time.perf_counter() - t0:.1f} s "
          f"({_children_cpu() - cpu0:.1f} s of kernel CPU time)")
    return nb


def _children_cpu() -> float:
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _text(cell) -> str:
    """Everything a cell showed as text: streams and the text/plain of displays."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


@pytest.fixture(scope="module", params=NOTEBOOKS)
def ran(request, kernel_env, tmp_path_factory):
    return _run_all(request.param, tmp_path_factory.mktemp(f"run-all-{request.param}"))


def test_only_the_blocks_own_cells_fail(ran):
    bad = []
    for i, cell in enumerate(ran.cells):
        for out in cell.get("outputs", []):
            if out.output_type != "error":
                continue
            gid = _grade_id(cell)
            if out.ename == "NameError" or not gid.endswith(("-tests", "-answer")):
                bad.append(f"cell {i} ({gid or 'plain'}): {out.ename}: {out.evalue}")
    assert not bad, "errors outside the blocks' own cells:\n  " + "\n  ".join(bad)


def test_dependent_cells_say_which_part_to_finish(ran):
    answers = {m for c in ran.cells if _grade_id(c).endswith("-answer")
               for m in re.findall(r"^(?:def|class) (\w+)", c.source, flags=re.M)}
    skipped = [_text(c) for c in ran.cells if c.cell_type == "code" and "skipped: " in _text(c)]
    assert skipped, "no cell said it was skipped"
    for text in skipped:
        line = next(ln for ln in text.splitlines() if ln.startswith("skipped: "))
        assert "finish `" in line and "(part " in line, line
        named = line.split("finish `", 1)[1].split("`", 1)[0]
        assert named in answers, f"{line!r} names {named!r}, not one of the answer blocks {sorted(answers)}"


def test_the_data_message_lists_every_source_tried(ran):
    setup = next(c for c in ran.cells if _grade_id(c) == "setup")
    text = _text(setup)
    assert "Tried, in order:" in text
    tried = text.split("Tried, in order:", 1)[1]
    for source in ("$COURSE_CIFAR10: not set", "previous download:",
                   "torchvision download: not attempted (COURSE_OFFLINE=1)"):
        assert source in tried, f"the data message does not list {source!r}:\n{text}"


def test_training_cells_leave_text_not_widgets(ran):
    """fit's progress bar is replaced by its text when it closes, and the epoch lines stay in one
    block below it (and above the live curves, where a cell draws them)."""
    tagged = [c for c in ran.cells if "training" in c.metadata.get("tags", [])]
    if not tagged:
        pytest.skip("this notebook does not train")
    trained = [c for c in tagged
               if any("epoch 1/" in o.get("data", {}).get("text/plain", "") for o in c.get("outputs", []))]
    assert trained, "no training cell showed its epochs"
    for cell in trained:
        outputs = cell.outputs
        assert not [o for o in outputs if WIDGET in o.get("data", {})], "a widget is left in the saved outputs"
        texts = [o.data.get("text/plain", "") for o in outputs if o.output_type == "display_data"]
        bars = [i for i, t in enumerate(texts) if "100%|" in t]
        lines = [i for i, t in enumerate(texts) if t.startswith("epoch 1/")]
        figures = [i for i, t in enumerate(texts) if t.startswith("<Figure")]
        assert len(bars) == 1 and len(lines) == 1 and len(figures) <= 1, texts
        assert bars[0] < lines[0] < (figures or [len(texts)])[0], texts
        epochs = [ln.split()[1] for ln in texts[lines[0]].splitlines()]
        total = epochs[0].split("/")[1]
        assert epochs == [f"{i}/{total}" for i in range(1, int(total) + 1)], texts[lines[0]]
