"""The harness's parts: the data-only wire format, deny-lists as a view, the sandboxed worker's session.

Worker tests run a tiny program (a setup cell and answer cells written here) in the real sandbox,
with a short cell limit, so they show what a student would see: hangs and crashes cost only the
call, printed text does not disturb the protocol, denied references raise with the rule's message,
and nothing a student returns or writes is ever unpickled in the grading process.
"""
import io
import os

import numpy as np
import pytest
import torch

from helpers.grading.harness import wire
from helpers.grading.harness.deny import DenyError, Rule, build_view
from helpers.grading.harness.session import Student, StudentError
from helpers.grading.sandbox import sandbox_disabled

SETUP = "import numpy as np\nimport torch\nimport helpers\nfrom helpers import checks\n"


def roundtrip(value):
    enc = wire.Encoder()
    frame = wire.pack({"v": enc.encode(value)}, enc.buffers)
    header, buffers = wire.read_frame(io.BytesIO(frame))
    return wire.Decoder(buffers).decode(header["v"])


def test_wire_carries_arrays_tensors_and_containers_exactly():
    x = {"a": np.arange(12, dtype=np.int32).reshape(3, 4), "b": [1.5, float("nan"), None, True, "s"],
         "t": (torch.randn(2, 3).to(torch.bfloat16), torch.zeros(0, 5), torch.tensor(7)),
         "s": np.float64(2.5), 3: torch.float16}
    y = roundtrip(x)
    assert np.array_equal(y["a"], x["a"]) and y["a"].dtype == np.int32
    assert y["b"][0] == 1.5 and np.isnan(y["b"][1]) and y["b"][2:] == [None, True, "s"]
    assert torch.equal(y["t"][0], x["t"][0]) and y["t"][0].dtype == torch.bfloat16
    assert y["t"][1].shape == (0, 5) and int(y["t"][2]) == 7
    assert isinstance(y["s"], np.float64) and y[3] is torch.float16


@pytest.mark.parametrize("bad", [
    {"$nd": {"dtype": "|O", "shape": [1], "buf": 0}},          # object arrays would unpickle
    {"$nd": {"dtype": "<f8", "shape": [4], "buf": 0}},          # size does not match the buffer
    {"$pickle": "gASV"},                                         # unknown tag
    {"$tensor": {"dtype": "__class__", "shape": [1], "buf": 0}},  # not a dtype
    {"$ref": 1},                                                 # a handle the trusted side never gave
])
def test_wire_decoder_refuses_anything_but_plain_data(bad):
    with pytest.raises(wire.ProtocolError):
        wire.Decoder([b"\x80\x04\x95"]).decode(bad)


def test_wire_refuses_deep_nesting_and_oversized_frames():
    deep = {"$list": []}
    for _ in range(wire.MAX_DEPTH + 2):
        deep = {"$list": [deep]}
    with pytest.raises(wire.ProtocolError):
        wire.Decoder([]).decode(deep)
    frame = wire.pack({"v": 1}, [b"x" * 100])
    with pytest.raises(wire.ProtocolError):
        wire.read_frame(io.BytesIO(frame), max_bytes=10)


def test_deny_rule_for_an_unknown_name_fails_loudly(tmp_path):
    with pytest.raises(DenyError):
        build_view([Rule.parse("helpers.split.no_such_function")], tmp_path)
    with pytest.raises(DenyError):
        build_view([Rule.parse("torch.nn.functional.cross_entropy:no_such_argument")], tmp_path)


def _student(cells: list[tuple[str, str]], rules=(), tmp_path=None, seconds: float = 10) -> Student:
    program = {"cells": [{"id": "setup", "kind": "setup", "source": SETUP}]
               + [{"id": cid, "kind": "answer", "source": src} for cid, src in cells]
               + [{"id": "grading-canary", "kind": "canary", "source": "raise RuntimeError('grading canary')"}],
               "watched_names": ["checks", "np"], "cell_seconds": seconds, "env": {"NBGRADER_EXECUTION": "autograde"}}
    overlays = build_view([Rule.parse(r, "test") for r in rules], tmp_path / "view") if tmp_path else []
    return Student(program, overlays=overlays, env={"COURSE_OFFLINE": "1"})


needs_sandbox = pytest.mark.skipif(sandbox_disabled(), reason="COURSE_SANDBOX=off: no sandbox to test")


@needs_sandbox
def test_worker_serves_data_handles_and_survives_hangs_and_crashes(tmp_path):
    student = _student([
        ("a", "def double(x):\n    print('noise on stdout')\n    return x * 2\n"),
        ("b", "def hang():\n    while True:\n        pass\n"),
        ("c", "import os\ndef crash():\n    os._exit(3)\n"),
        ("d", "class Evil:\n    def __reduce__(self):\n        import os\n        return (os.system, ('touch /tmp/pwned-by-student',))\n"
              "def evil():\n    return [Evil(), {'k': Evil()}]\n"),
    ], seconds=3)
    try:
        assert np.array_equal(student.double(np.arange(3)), np.arange(3) * 2)
        lin = student.make("torch.nn.Linear", 4, 2)
        assert set(lin.state_dict()) == {"weight", "bias"} and lin.type_name == "Linear"
        with pytest.raises(StudentError, match="no answer within 3 s"):
            student.hang()
        assert int(student.double(torch.tensor(4))) == 8  # a fresh worker after the hang
        with pytest.raises(StudentError, match="stopped"):
            student.crash()
        out = student.evil()  # objects that are not data come back as handles, never unpickled
        assert type(out) is list and out[0].type_name == "Evil" and out[1]["k"].type_name == "Evil"
        assert not os.path.exists("/tmp/pwned-by-student")
        with student.raises("NameError"):
            student.not_defined_anywhere
        assert student.make("os.path.exists", os.path.abspath("hidden_tests")) is False
        assert student.ready["canary_swallowed"] is False and student.starts == 3
    finally:
        student.close()


@needs_sandbox
def test_worker_with_denied_references_refuses_every_route(tmp_path):
    rules = ["helpers.split.train_val_split", "torch.nn.functional.cross_entropy:label_smoothing"]
    student = _student([
        ("early", "from helpers.split import train_val_split as bound_early\n"),
        ("a", "import importlib\n"
              "def direct(y):\n    return helpers.train_val_split(y, 0.5, seed=0)\n"
              "def built(y):\n    return getattr(importlib.import_module('helpers.' + 'split'), 'train_val_' + 'split')(y, 0.5, seed=0)\n"
              "def early(y):\n    return bound_early(y, 0.5, seed=0)\n"
              "def smooth(z, t):\n    return torch.nn.CrossEntropyLoss(label_smoothing=0.1)(z, t)\n"
              "def plain(z, t):\n    return torch.nn.functional.cross_entropy(z, t)\n"
              "def pyc():\n    import glob, os\n    return [os.path.getsize(p) for p in glob.glob(helpers.split.__file__.rsplit('/', 1)[0] + '/__pycache__/split.*')]\n"
              "def source():\n    return open(helpers.split.__file__).read()\n"),
    ], rules=rules, tmp_path=tmp_path)
    try:
        y = np.repeat(np.arange(3), 4)
        for fn in ("direct", "built", "early"):
            with pytest.raises(StudentError, match="helpers.split.train_val_split is not allowed"):
                getattr(student, fn)(y)
        z, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
        with pytest.raises(StudentError, match="label_smoothing"):
            student.smooth(z, t)
        assert torch.allclose(student.plain(z, t), torch.nn.functional.cross_entropy(z, t))
        assert not any(student.pyc())  # the original byte code is blanked
        assert "n_val = int(round" not in student.source() and "_CourseDeniedReference" in student.source()
    finally:
        student.close()


@needs_sandbox
def test_a_cell_that_ends_or_hangs_the_worker_is_left_out_and_the_rest_still_graded():
    student = _student([
        ("first", "def one():\n    return 1\n"),
        ("exits", "import os\nos._exit(1)\n"),
        ("hangs", "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"),
        ("last", "def two():\n    return 2\n"),
    ], seconds=2)
    try:
        assert student.one() == 1 and student.two() == 2
        errors = {c["id"]: (c["error"] or {}).get("type") for c in student.ready["cells"]}
        assert errors["exits"] == "CellStopped" and errors["hangs"] == "CellStopped", errors
        assert errors["first"] is None and errors["last"] is None
    finally:
        student.close()
