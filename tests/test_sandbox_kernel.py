"""Plain nbgrader autograde and validate run every kernel in the sandbox (helpers/grading/sandbox_kernel.py).

One tiny course, one hostile student, one autograde run (module fixture), asserted on many times:
the kernel is uid 65534 on host "sandbox", sees none of the course's files, writes nothing outside
its private folder, has no network and no secret in its environment; a hung answer cell is
interrupted by kernel message and the rest still grades; a 30 MB single-line print is cut below
1 MB. Plus fast unit tests of the output caps, the missing-bubblewrap message and the read-only cache.
"""
import hashlib
import hmac
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest

from helpers.config import PACKAGE_DIR
from helpers.grading import course, sandbox
from helpers.grading.sandbox_kernel import DELIM, OutputCap

pytest.importorskip("nbgrader")
pytestmark = [
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
    pytest.mark.filterwarnings("ignore:Cell is missing an id field"),
]
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

ASSIGNMENT = "sbx"
STUDENT = "mallory"
SECRET = "secret-skip-tag-4f2a"
CELL_TIMEOUT = "8"

PROBE = '''\
import json, os, socket, sys
ROOT, DATA = {root!r}, {data!r}
facts = {{"uid": os.getuid(), "hostname": socket.gethostname(), "cwd": os.getcwd()}}
facts["sees"] = {{p: os.path.exists(p) for p in [ROOT + "/source", ROOT + "/gradebook.db",
                 ROOT + "/nbgrader_config.py", ROOT + "/submitted", {project!r} + "/source",
                 {project!r} + "/nbgrader_config.py", {project!r} + "/data/cache"]}}
writes = {{}}
for p in [ROOT + "/pwned.txt", ROOT + "/gradebook.db", {helpers!r} + "/pwned.py",
          sys.prefix + "/pwned.pth", DATA + "/pwned.txt"]:
    try:
        with open(p, "a") as f:
            f.write("x")
        writes[p] = True
    except OSError:
        writes[p] = False
facts["writes"] = writes
with open("local.txt", "w") as f:
    f.write("mine")
facts["local"] = open("local.txt").read()
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    facts["net"] = True
except OSError:
    facts["net"] = False
facts["ifaces"] = [name for _, name in socket.if_nameindex()]
facts["env"] = dict(os.environ)
print("PROBE " + json.dumps(facts))
'''


def _cell(kind, source, grade_id=None, *, grade=False, solution=False, points=0):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if grade_id:
        meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
                "solution": solution, "task": False}
        if grade:
            meta["points"] = points
        cell.metadata["nbgrader"] = meta
    return cell


def _source_notebook(root: Path, data: Path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        _cell("code", PROBE.format(root=str(root), data=str(data), helpers=str(PACKAGE_DIR),
                                   project=str(PACKAGE_DIR.parent)), "probe"),
        _cell("code", "assert 1 + 1 == 2", "before_hang", grade=True, points=1),
        _cell("code", "### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION", "answer", solution=True),
        _cell("code", "print('after the hang')\nassert 2 + 2 == 4", "after_hang", grade=True, points=1),
        _cell("code", "### BEGIN SOLUTION\nspam = 0\n### END SOLUTION", "spam", solution=True),
        _cell("code", "assert True", "after_spam", grade=True, points=1),
        _cell("code", "assert False, 'a failing test stays failed'", "fails", grade=True, points=1),
        _cell("code", "raise ValueError('e' * 5_000_000)", "huge_error", grade=True, points=1),
    ]
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The hostile student's notebook through generate_assignment and one `autograde` run."""
    tmp = tmp_path_factory.mktemp("sbx")
    root, data = tmp / "course", tmp / "data"
    data.mkdir()
    (data / "readme.txt").write_text("data the notebooks may read")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_SKIP_TAG", SECRET)
        mp.setenv("COURSE_GRADER_TOKEN", SECRET)
        mp.setenv("COURSE_DATA_DIR", str(data))
        mp.setenv("COURSE_CELL_TIMEOUT", CELL_TIMEOUT)
        mp.delenv("COURSE_SANDBOX", raising=False)
        root = course.make_course_dir(root, [])
        nbformat.write(_source_notebook(root, data), str(_mkdir(root / "source" / ASSIGNMENT) / "probe.ipynb"))
        release = course.generate_release(root, ASSIGNMENT)
        nb = nbformat.read(str(release / "probe.ipynb"), as_version=4)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid == "answer":
                cell.source = "import time\ntime.sleep(3600)  # hangs"
            elif gid == "spam":
                cell.source = "print('x' * 30_000_000)  # one 30 MB line"
        course.submit(root, STUDENT, ASSIGNMENT, {"probe": nb})
        t0 = time.perf_counter()
        result = course.autograde(root, ASSIGNMENT)
        seconds = time.perf_counter() - t0
    out = root / "autograded" / STUDENT / ASSIGNMENT
    executed = nbformat.read(str(out / "probe.ipynb"), as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in executed.cells}
    probe = next(o.text for o in cells["probe"].outputs if o.get("name") == "stdout")
    facts = json.loads(probe.split("PROBE ", 1)[1])
    return {"root": root, "data": data, "out": out, "cells": cells, "facts": facts, "result": result,
            "seconds": seconds, "grades": course.read_grades(root, ASSIGNMENT, STUDENT)}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@needs_bwrap
def test_kernel_runs_as_nobody_in_the_sandbox(graded):
    facts = graded["facts"]
    assert facts["uid"] == sandbox.SANDBOX_UID
    assert facts["hostname"] == sandbox.HOSTNAME
    assert facts["cwd"] == str(graded["out"])  # the notebook's own folder (a private copy of it)
    assert facts["env"].get("NBGRADER_EXECUTION") == "autograde"


@needs_bwrap
def test_kernel_sees_no_course_file(graded):
    assert not any(graded["facts"]["sees"].values()), graded["facts"]["sees"]


@needs_bwrap
def test_kernel_writes_nothing_outside_its_folder(graded):
    facts, root = graded["facts"], graded["root"]
    assert not any(facts["writes"].values()), facts["writes"]
    for path in facts["writes"]:
        assert not Path(path).name.startswith("pwned") or not Path(path).exists(), path
    assert facts["local"] == "mine"  # its own folder is writable...
    assert not (graded["out"] / "local.txt").exists()  # ...and private: nothing comes back
    assert not [p for p in [*root.rglob("pwned*"), *graded["data"].rglob("pwned*"), *PACKAGE_DIR.rglob("pwned*"),
                            *Path(sys.prefix).glob("pwned*")]]


@needs_bwrap
def test_kernel_has_no_network_and_no_secret(graded):
    facts = graded["facts"]
    assert facts["net"] is False
    assert facts["ifaces"] == ["lo"]
    env = facts["env"]
    assert "COURSE_SKIP_TAG" not in env and "COURSE_GRADER_TOKEN" not in env
    assert not any(SECRET in value for value in env.values())
    assert "JPY_PARENT_PID" not in env
    assert not any(SECRET in json.dumps(c.get("outputs", [])) for c in graded["cells"].values())


@needs_bwrap
def test_hung_cell_is_interrupted_by_message_and_the_rest_grades(graded):
    assert graded["grades"] == {"before_hang": (1.0, 1.0), "after_hang": (1.0, 1.0),
                                "after_spam": (1.0, 1.0), "fails": (0.0, 1.0), "huge_error": (0.0, 1.0)}
    hang = graded["cells"]["answer"]
    assert any(o.output_type == "error" for o in hang.outputs)
    assert "after the hang" in "".join(o.get("text", "") for o in graded["cells"]["after_hang"].outputs)
    # one timeout (8 s), not a stuck kernel: everything else runs after it
    assert graded["seconds"] < 120


@needs_bwrap
def test_30mb_line_is_cut_below_1mb(graded):
    outputs = graded["cells"]["spam"].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert len(json.dumps(outputs).encode()) < sandbox.LIMITS.cell_output_bytes
    assert text.startswith("xxxx") and "[output cut" in text
    assert (graded["out"] / "probe.ipynb").stat().st_size < 2 * sandbox.LIMITS.cell_output_bytes


@needs_bwrap
def test_huge_error_is_shortened_and_still_fails(graded):
    outputs = graded["cells"]["huge_error"].outputs
    assert [o.output_type for o in outputs] == ["error"] and outputs[0].ename == "ValueError"
    assert len(json.dumps(outputs).encode()) < 100_000


@needs_bwrap
def test_validate_runs_in_the_sandbox_too(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_SANDBOX", raising=False)
    root = course.make_course_dir(tmp_path / "course", [])
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell("code", "import os, socket\nassert socket.gethostname() == 'sandbox'\n"
                              f"assert os.getuid() == {sandbox.SANDBOX_UID}", "inside", grade=True, points=1)]
    nbformat.write(nb, str(tmp_path / "check.ipynb"))
    assert course.validate(tmp_path / "check.ipynb", root)["passed"]


def test_sandbox_off_runs_the_kernel_directly(tmp_path, monkeypatch):
    """COURSE_SANDBOX=off (a trusted local run): the same kernelspec runs ipykernel without the sandbox."""
    monkeypatch.setenv("COURSE_SANDBOX", "off")
    root = course.make_course_dir(tmp_path / "course", [])
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell("code", "import socket\nassert socket.gethostname() != 'sandbox'", "outside",
                      grade=True, points=1)]
    nbformat.write(nb, str(tmp_path / "check.ipynb"))
    assert course.validate(tmp_path / "check.ipynb", root)["passed"]


# ----------------------------------------------------------------------------- unit tests

def _frames(key: bytes, msg_type: str, content: dict, parent_id: str = "p1") -> list:
    parts = [json.dumps({"msg_type": msg_type, "msg_id": "m"}).encode(), json.dumps({"msg_id": parent_id}).encode(),
             b"{}", json.dumps(content).encode()]
    sig = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode()
    return [b"kernel.x.stream", DELIM, sig, *parts]


def _signed_ok(key: bytes, frames: list) -> bool:
    i = frames.index(DELIM)
    return hmac.compare_digest(frames[i + 1], hmac.new(key, b"".join(frames[i + 2:i + 6]), hashlib.sha256)
                               .hexdigest().encode())


def test_output_cap_cuts_streams_and_keeps_errors():
    key = b"k3y"
    cap = OutputCap(key, "hmac-sha256", cell_bytes=10_000, notebook_bytes=25_000)
    small = _frames(key, "stream", {"name": "stdout", "text": "hello\n"})
    assert cap.filter(small) == small
    cut = cap.filter(_frames(key, "stream", {"name": "stdout", "text": "y" * 3_000_000}))
    content = json.loads(cut[-1])
    assert sum(map(len, cut)) < 10_000 and content["text"].startswith("yyy") and "[output cut" in content["text"]
    assert _signed_ok(key, cut)
    assert cap.filter(_frames(key, "display_data", {"data": {"text/plain": "z"}})) is None  # cell is over
    error = cap.filter(_frames(key, "error", {"ename": "AssertionError", "evalue": "v" * 200_000, "traceback": []}))
    assert error is not None and _signed_ok(key, error) and len(error[-1]) < 70_000
    assert json.loads(error[-1])["ename"] == "AssertionError"
    for n in range(5):  # other cells until the notebook budget is spent
        cap.filter(_frames(key, "stream", {"name": "stdout", "text": "w" * 9_000}, parent_id=f"c{n}"))
    last = cap.filter(_frames(key, "stream", {"name": "stdout", "text": "w" * 9_000}, parent_id="late"))
    assert "notebook's output" in json.loads(last[-1])["text"]
    assert cap.filter(_frames(key, "status", {"execution_state": "idle"}, parent_id="late")) is not None
    reply = _frames(key, "execute_reply", {"status": "error", "ename": "E", "evalue": "v" * 500_000, "traceback": []})
    short = cap.filter_reply(reply[1:])  # the shell socket's frames: identities, then the message
    assert _signed_ok(key, short) and len(short[-1]) < 70_000 and json.loads(short[-1])["status"] == "error"
    ok = _frames(key, "execute_reply", {"status": "ok", "execution_count": 3})[1:]
    assert cap.filter_reply(ok) == ok


def test_cap_output_bytes_preprocessor():
    from helpers.grading.preprocessors import CapOutputBytes
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * 30_000_000),
                           nbformat.v4.new_output("display_data", data={"text/plain": "more"}),
                           nbformat.v4.new_output("error", ename="E", evalue="v", traceback=["t"] * 100_000)]
    nb, _ = CapOutputBytes().preprocess(nb, {})
    outputs = nb.cells[0].outputs
    assert len(json.dumps(outputs).encode()) < sandbox.LIMITS.cell_output_bytes
    assert "[output cut" in outputs[0].text and [o.output_type for o in outputs] == ["stream", "error"]


def test_missing_bwrap_says_how_to_install(monkeypatch, capsys, tmp_path):
    from helpers.grading import sandbox_kernel

    def missing():
        raise sandbox.SandboxUnavailable(f"`bwrap` was not found: {sandbox.INSTALL_HINT}")
    monkeypatch.delenv("COURSE_SANDBOX", raising=False)
    monkeypatch.setattr(sandbox, "find_bwrap", missing)
    assert sandbox_kernel.main(["-f", str(tmp_path / "kernel.json")]) == 1
    assert "apt-get install bubblewrap" in capsys.readouterr().err


def test_nbgrader_autograde_stops_without_bwrap(monkeypatch):
    def missing():
        raise sandbox.SandboxUnavailable(f"`bwrap` was not found: {sandbox.INSTALL_HINT}")
    monkeypatch.delenv("COURSE_SANDBOX", raising=False)
    monkeypatch.setattr(sandbox, "find_bwrap", missing)
    monkeypatch.setattr(sys, "argv", ["nbgrader", "autograde", "ps1"])
    with pytest.raises(SystemExit, match="apt-get install bubblewrap"):
        course.load_config(Path(__file__).resolve().parent.parent)


def test_config_selects_the_sandbox_kernel():
    config = course.load_config(Path(__file__).resolve().parent.parent)
    assert config.Execute.kernel_name == "course-sandbox"
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec("course-sandbox")  # found through JUPYTER_PATH
    assert spec.interrupt_mode == "message" and spec.argv[0] == "python"
    names = [str(getattr(p, "__name__", p)).rsplit(".", 1)[-1] for p in config.Autograde.autograde_preprocessors]
    executes = [i for i, name in enumerate(names) if name.endswith("Execute")]  # Execute or the course's subclass
    assert len(executes) == 1 and names[executes[0] + 1] == "CapOutputBytes"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's sandbox runs as another uid")
def test_private_data_folder_is_bound_entry_by_entry(tmp_path):
    from helpers.grading.sandbox_kernel import _readable_view
    data = tmp_path / "data"
    (data / "cache").mkdir(parents=True)
    (data / "cache" / "x.npz").write_bytes(b"x")
    (data / "notes.txt").write_text("n")
    os.chmod(data, 0o700)  # as pytest makes its folders: uid 65534 could not enter it
    assert _readable_view(data) == [str(data / "cache"), str(data / "notes.txt")]
    os.chmod(data, 0o755)
    assert _readable_view(data) == [str(data)]


def test_load_dataset_survives_a_read_only_cache(tmp_path, monkeypatch, capsys):
    from helpers.data import datasets as hdata

    def read_only(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")
    monkeypatch.setattr(hdata, "atomic_write", read_only)
    loaded = hdata.load_dataset("synthetic", root=tmp_path, synthetic_size=(100, 20))
    assert len(loaded.train_labels) == 100 and not (tmp_path / "cache").exists()
    assert "[helpers] synthetic: not cached" in capsys.readouterr().err


def test_output_cap_bounds_status_comm_and_repeated_errors():
    """Found by red-teaming: huge status messages, unlimited comm traffic and thousands of forged
    errors all went past the caps into the grader's memory and the autograded notebook."""
    key = b"k3y"
    cap = OutputCap(key, "hmac-sha256", cell_bytes=10_000, notebook_bytes=25_000)
    status = cap.filter(_frames(key, "status", {"execution_state": "idle", "junk": "j" * 1_000_000}))
    assert _signed_ok(key, status) and json.loads(status[-1]) == {"execution_state": "idle"}
    comms = [cap.filter(_frames(key, "comm_msg", {"data": "c" * 5_000}, parent_id=f"w{n}")) for n in range(10)]
    assert sum(c is not None for c in comms) <= 5  # the notebook budget holds comm traffic too
    errors = [cap.filter(_frames(key, "error", {"ename": "E", "evalue": "e" * 1_000, "traceback": []}, parent_id="x"))
              for _ in range(300)]
    kept = [e for e in errors if e is not None]
    assert kept and len(kept) < 30, len(kept)  # the first error of the cell always stays


def test_kernel_stderr_is_capped_and_cleaned(capfd):
    """The kernel's stderr reaches the TA's log through a pipe: bounded, no terminal escapes."""
    from helpers.grading.sandbox_kernel import STDERR_KEEP_BYTES, _pass_stderr
    read, write = os.pipe()
    payload = b"\x1b[2J\x1b]0;owned\x07" + b"x" * (3 * STDERR_KEEP_BYTES)
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        _pass_stderr(pipe)
    os.waitpid(pid, 0)
    err = capfd.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b" in err
    assert len(err) < STDERR_KEEP_BYTES + 2_000 and "the rest is not shown" in err
