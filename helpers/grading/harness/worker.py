"""The sandboxed side of the harness: run a student's cells, then serve calls from the trusted side.

Started by `session.Worker` inside bubblewrap as `python -I`. It reads the program (setup, given,
answer and canary cells) from the JSON file named on its command line, runs the cells in order
through a plain IPython shell (watched by `monitor.TamperMonitor` when it imports), sends one
"ready" frame, then answers requests until its input closes. Replies carry data or handles only
(`wire.py`). Nothing here is trusted: the student's code shares this process and can change it;
the trusted side treats every reply as untrusted data.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback

from . import resolve_name
from .wire import Decoder, Encoder, Handle, pack, read_frame

MAX_MESSAGE = 2000
# The monitor's defaults plus the harness's own modules: patching the worker is tampering too.
WATCHED_MODULES = ("builtins", "numpy", "torch", "torch.nn", "torch.nn.functional", "helpers", "helpers.checks",
                   "helpers.grading.harness.worker", "helpers.grading.harness.wire")


class Objects:
    """The handle table: objects the trusted side names by number."""

    def __init__(self):
        self.by_ref: dict[int, object] = {}
        self.refs_by_id: dict[int, int] = {}

    def handle(self, obj) -> Handle:
        ref = self.refs_by_id.get(id(obj))
        if ref is None or self.by_ref.get(ref) is not obj:
            ref = len(self.by_ref) + 1
            self.by_ref[ref] = obj
            self.refs_by_id[id(obj)] = ref
        return Handle(ref, type(obj).__name__)

    def get(self, ref: int):
        if ref not in self.by_ref:
            raise KeyError(f"no object #{ref}")
        return self.by_ref[ref]


def _error(exc: BaseException) -> dict:
    names = [c.__name__ for c in type(exc).__mro__]
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"line {f.lineno} of {f.name}" for f in reversed(tb) if f.filename.startswith("<")), "")
    return {"type": type(exc).__name__, "mro": names[:20], "message": str(exc)[:MAX_MESSAGE], "where": where}


def _cell_timed_out(signum, frame):
    raise TimeoutError("the cell ran longer than the grading limit and was stopped")


class Counter:
    """Counts torch function calls (tensor methods included) made while it is active."""

    def __init__(self):
        from torch.overrides import TorchFunctionMode

        class _Mode(TorchFunctionMode):
            calls = 0

            def __torch_function__(self, func, types, args=(), kwargs=None):
                _Mode.calls += 1
                return func(*args, **(kwargs or {}))
        self.mode = _Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)

    @property
    def calls(self) -> int:
        return type(self.mode).calls


class Server:
    """Runs the cells, then one request at a time: get, call, getattr, getitem, make, len."""

    def __init__(self, program: dict, replies, requests):
        self.program, self.replies, self.requests = program, replies, requests
        self.objects = Objects()
        self.shell = None
        self.monitor = None
        self.cells: list[dict] = []

    # ------------------------------------------------------------------ cells
    def run_cells(self) -> dict:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
        config = Config()
        config.HistoryManager.enabled = False
        self.shell = InteractiveShell.instance(config=config)
        cells, canary = [], None
        for index, cell in enumerate(self.program["cells"]):
            # Progress, and the monitor's events so far: sent before each cell, so a later cell that
            # blinds the monitor cannot take back what earlier cells were seen doing.
            events = list(getattr(self.monitor, "events", []) or [])
            self.reply(({"running": index, "events": events[-100:]}, []))
            if cell["kind"] == "skipped":
                cells.append({"id": cell["id"], "kind": "answer", "error": {
                    "type": "CellStopped", "message": cell.get("why", "skipped"), "where": ""}})
                continue
            if cell["kind"] == "canary":
                result = self._run(cell)
                canary = self._swallowed(result)
                continue
            result = self._run(cell)
            error = result.error_before_exec or result.error_in_exec
            cells.append({"id": cell["id"], "kind": cell["kind"],
                          "error": _error(error) if error is not None else None})
            if cell["kind"] == "setup" and self.monitor is None:
                self._start_monitor()
        self.cells = cells
        events = list(getattr(self.monitor, "events", []) or [])
        return {"ready": True, "cells": cells, "events": events[:500], "canary_swallowed": canary}

    def _start_monitor(self) -> None:
        try:
            from .monitor import TamperMonitor
        except ImportError:
            return
        # What the course's own cells import is part of the baseline, not a student's change.
        for name in ("torchvision", "torchvision.transforms.v2", "torch.nn.functional", "matplotlib.pyplot"):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a missing optional library only narrows the baseline
                pass
        self.monitor = TamperMonitor(self.shell, watched_names=self.program.get("watched_names", ()),
                                     watched_modules=WATCHED_MODULES)
        self.monitor.baseline()

    def _run(self, cell: dict):
        """One cell, stopped by an alarm after the program's cell limit (as nbgrader's timeout would)."""
        seconds = float(self.program.get("cell_seconds", 60))
        signal.signal(signal.SIGALRM, _cell_timed_out)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            if self.monitor is not None:
                result, _ = self.monitor.run_cell(cell["id"], cell["source"])
                return result
            return self.shell.run_cell(cell["source"], store_history=False)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _swallowed(self, result) -> bool:
        try:
            from .monitor import canary_swallowed
            return bool(canary_swallowed(result))
        except ImportError:
            return result.error_in_exec is None and result.error_before_exec is None

    # ------------------------------------------------------------------ requests
    def serve(self) -> None:
        while True:
            try:
                header, buffers = read_frame(self.requests)
            except EOFError:
                return
            self.reply(self.answer(header, buffers))

    def answer(self, header: dict, buffers: list[bytes]) -> tuple[dict, list[bytes]]:
        encoder = Encoder(to_handle=self.objects.handle)
        try:
            decoder = Decoder(buffers, from_ref=self.objects.get)
            value, calls = self.perform(header, decoder)
            return {"ok": encoder.encode(value), "calls": calls, "id": header.get("id")}, encoder.buffers
        except BaseException as exc:  # noqa: BLE001 - every failure of student code is an answer
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) and header.get("op") is None:
                raise
            return {"error": _error(exc), "id": header.get("id")}, []

    def perform(self, header: dict, decoder: Decoder):
        op = header.get("op")
        args = decoder.decode(header.get("args", {"$list": []}))
        kwargs = decoder.decode(header.get("kwargs", {"$dict": []}))
        if op == "get":
            name = header["name"]
            if name not in self.shell.user_ns:
                why = next((f" (the cell raised {c['error']['type']}: {c['error']['message'][:300]})"
                            for c in self.cells if c["id"].endswith(f":{name}-answer") and c["error"]), "")
                raise NameError(f"name {name!r} is not defined: its answer cell did not define it{why}")
            return self.shell.user_ns[name], None
        if op == "make":
            return resolve_name(header["path"])(*args, **kwargs), None
        target = self.objects.get(int(header["ref"]))
        if op == "call":
            if header.get("count"):
                with Counter() as counter:
                    value = target(*args, **kwargs)
                return value, counter.calls
            return target(*args, **kwargs), None
        if op == "getattr":
            return getattr(target, str(header["name"])), None
        if op == "getitem":
            return target[args[0]], None
        if op == "len":
            return len(target), None
        raise ValueError(f"unknown op {op!r}")

    def reply(self, message: tuple[dict, list[bytes]]) -> None:
        header, buffers = message
        self.replies.write(pack(header, buffers))
        self.replies.flush()


def main(argv: list[str]) -> int:
    # The protocol keeps private copies of stdin/stdout; the student's prints go to stderr.
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with open(argv[0], encoding="utf-8") as f:
        program = json.load(f)
    os.environ.update(program.get("env", {}))
    try:
        import torch
        from ...settings import env_number
        torch.set_num_threads(int(env_number("OMP_NUM_THREADS", 2)))
    except ImportError:
        pass
    server = Server(program, replies, requests)
    server.reply((server.run_cells(), []))
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
