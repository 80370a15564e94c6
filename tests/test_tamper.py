"""The tamper scan flags each in-kernel trick at its line, and leaves a clean solution alone."""
import copy

import nbformat
import pytest

from helpers.grading.tamper import scan_assignment, scan_notebook, write_csv
from helpers.grading.tamper_code import scan_code

A = "06_challenge"
STUB = "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"


def _cell(source, grade_id=None, kind="code", tags=None, **flags):
    meta = {}
    if grade_id:
        meta["nbgrader"] = {"grade": False, "solution": False, "locked": False, "grade_id": grade_id,
                            "schema_version": 3, **flags}
    if tags:
        meta["tags"] = list(tags)
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    return make(source, metadata=meta)


def release_nb():
    return nbformat.v4.new_notebook(cells=[
        _cell("# Challenge", kind="markdown"),
        _cell("import os\nimport numpy as np\nimport torch\nfrom torch import nn\nimport helpers\n"
              "GRADING = bool(os.environ.get('NBGRADER_EXECUTION'))", "setup", locked=True),
        _cell(STUB, "double-answer", solution=True),
        _cell("assert double(2) == 4", "double-tests", grade=True, locked=True, points=1),
        _cell("Model score", "model-score", kind="markdown", locked=True, task=True, points=10),
    ])


def with_answer(code, nb=None):
    nb = copy.deepcopy(nb or release_nb())
    nb.cells[2].source = code
    return nb


CLEAN = """%matplotlib inline
!nvidia-smi
torch.backends.cudnn.benchmark = True
np.random.seed(0)
model = nn.Sequential(nn.Linear(2, 2))
model.fc = nn.Linear(2, 2)
values = np.mean([1, 2]) if 3 % 2 else 0
config = {"lr": 0.1}
config["lr"] *= 2

def double(x):
    return 2 * x"""


def test_a_clean_solution_is_not_flagged():
    assert scan_notebook(with_answer(CLEAN), release_nb(), student="ann", notebook="a.ipynb") == []
    assert scan_notebook(release_nb(), release_nb()) == []  # the instructor's own lines never count


@pytest.mark.parametrize("code, line, reason", [
    ("ip = get_ipython()\nip.input_transformers_post.append(lambda lines: [])", 2, "input transformer"),
    ("x = 1\nget_ipython().events.register('pre_run_cell', lambda *a: None)", 2, "event hook"),
    ("get_ipython().register_magic_function(lambda line: None, 'cell', 'test')", 1, "registers an IPython magic"),
    ("import helpers.checks as hc\nhc.check_close = lambda *a, **k: None", 2, "monkeypatches hc.check_close"),
    ("y = 2\ntorch.nn.functional.cross_entropy = lambda *a, **k: 0", 2, "monkeypatches torch.nn.functional"),
    ("nn.Module.__call__ = lambda self, x: x", 1, "monkeypatches nn.Module.__call__"),
    ("F.relu = lambda x: x", 1, "monkeypatches F.relu"),
    ("setattr(np, 'allclose', lambda *a, **k: True)", 1, "monkeypatches np with setattr()"),
    ("vars(torch)['load'] = None", 1, "monkeypatches vars(torch)['load']"),
    ("import sys\nsys.modules['helpers.checks'] = object()", 2, "replaces a module through sys.modules['helpers.checks']"),
    ("import importlib\nimportlib.reload(helpers)", 2, "reloads a module"),
    ("import builtins\nbuiltins.AssertionError = Warning", 2, "monkeypatches builtins.AssertionError"),
    ("__builtins__.print = None", 1, "__builtins__"),
    ("if os.environ.get('NBGRADER_EXECUTION'):\n    double = lambda x: 4", 1, "NBGRADER_EXECUTION"),
    ("from unittest import mock\nmock.patch('helpers.checks.check_close').start()", 2, "patches helpers.checks"),
    ("exec('tor' + 'ch.load = None')", 1, "runs code built from a string"),
    ("%%capture\ndef double(x):\n    return 2 * x", 1, "%%capture"),
    ("%load_ext my_hooks", 1, "IPython extension"),
    ("!sed -i 's/assert/pass/' ../../helpers/checks.py", 1, "shell command touching"),
    ("import shutil\nshutil.copy('../../other/06_challenge/challenge_model.pt', '.')", 2, "outside the submission"),
    ("def double(x:\n    return 2 * x\nnp.allclose = lambda *a: True", 3, "monkeypatches a protected module"),
])
def test_each_trick_is_flagged_at_its_line(code, line, reason):
    findings = scan_notebook(with_answer(code), release_nb(), student="bob", notebook="a.ipynb")
    hits = [f for f in findings if f.line == line and reason in f.reason]
    assert hits, [(f.line, f.reason) for f in findings]
    assert hits[0].cell == "double-answer" and hits[0].student == "bob"
    assert hits[0].code == code.split("\n")[line - 1].strip()


def test_tags_that_skip_or_excuse_cells_are_flagged():
    nb = with_answer("def double(x):\n    return 2 * x")
    nb.cells[3].metadata["tags"] = ["skip-execution"]
    nb.cells[2].metadata["tags"] = ["mine"]
    nb.cells[0].metadata["tags"] = ["mine"]  # an ungraded cell may carry any harmless tag
    reasons = {(f.cell, f.reason) for f in scan_notebook(nb, release_nb())}
    assert ("double-tests", "tag 'skip-execution' asks the grader not to run this cell") in reasons
    assert ("double-answer", "tag 'mine' added to a graded cell") in reasons
    assert len(reasons) == 2
    nb.cells[0].metadata["tags"] = ["raises-exception"]
    assert any("raises-exception" in f.reason and f.cell == "cell 1" for f in scan_notebook(nb, release_nb()))


def test_changed_nbgrader_metadata_is_flagged():
    ungraded = with_answer(CLEAN)
    ungraded.cells[3].metadata.nbgrader["grade"] = False
    ungraded.cells[4].metadata.nbgrader["points"] = 100
    reasons = [f.reason for f in scan_notebook(ungraded, release_nb())]
    assert "nbgrader metadata changed: grade True -> False" in reasons
    assert "nbgrader metadata changed: points 10 -> 100" in reasons

    stripped = with_answer(CLEAN)
    del stripped.cells[3].metadata["nbgrader"]
    deleted = with_answer(CLEAN)
    del deleted.cells[3]
    renamed = with_answer(CLEAN)
    renamed.cells[3].metadata.nbgrader["grade_id"] = "whatever"
    assert [f.reason for f in scan_notebook(stripped, release_nb())] == [
        "graded cell 'double-tests': cell 4 still has its source but not its nbgrader metadata"]
    assert [f.reason for f in scan_notebook(deleted, release_nb())] == [
        "graded cell 'double-tests': deleted or its grade_id changed"]
    assert "grade_id 'whatever' is not in the release" in [f.reason for f in scan_notebook(renamed, release_nb())]


def test_scan_code_falls_back_to_patterns_and_never_runs_anything(tmp_path):
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('x')\nget_ipython().run_cell = None\n  bad indent"
    assert (2, "uses get_ipython(): can register input transformers or hooks") in scan_code(source)
    assert not marker.exists()


def test_scan_assignment_reports_students_files_and_autograded_copies(tmp_path):
    (tmp_path / "release" / A).mkdir(parents=True)
    nbformat.write(release_nb(), str(tmp_path / "release" / A / f"{A}.ipynb"))
    for student, code in (("clean", CLEAN), ("sly", "import helpers\nhelpers.checks = None")):
        for stage in ("submitted", "autograded"):
            folder = tmp_path / stage / student / A
            folder.mkdir(parents=True)
            nbformat.write(with_answer(code), str(folder / f"{A}.ipynb"))
    (tmp_path / "submitted" / "clean" / A / "torch.py").write_text("")
    (tmp_path / "submitted" / "clean" / A / "utils.py").write_text("")
    findings = scan_assignment(tmp_path, A, autograded=True)
    by = {(f.student, f.notebook, f.cell, f.line) for f in findings}
    assert ("sly", f"{A}.ipynb", "double-answer", 2) in by
    assert ("sly", f"autograded/{A}.ipynb", "double-answer", 2) in by
    assert ("clean", "torch.py", "(file)", None) in by and ("clean", "utils.py", "(file)", None) in by
    assert len(findings) == 4
    text = write_csv(findings, tmp_path / "tamper.csv").read_text()
    assert text.splitlines()[0] == "student,notebook,cell,line,code,reason"
    assert "helpers.checks = None" in text and "replaces the module 'torch'" in text
