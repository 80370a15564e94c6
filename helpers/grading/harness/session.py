"""The trusted side of the harness: start a sandboxed worker and talk to it through proxies.

`Student` is what a hidden test receives as its `student` fixture. Attribute access, calls and
indexing on it and on its `Remote` handles become requests to the worker; replies are decoded
as data only (`wire.Decoder`). A call that raises, hangs, crashes the worker or sends malformed
data fails the test with a one-line reason (`StudentError`, an AssertionError), and the worker
is started afresh (its cells replayed) before the next request.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ...settings import PROJECT_ROOT
from .wire import Decoder, Encoder, Handle, ProtocolError, pack, read_frame

BOOTSTRAP = ("import sys; sys.path.insert(0, {root!r}); "
             "from helpers.grading.harness.worker import main; sys.exit(main(sys.argv[1:]))")
DEFAULT_CALL_SECONDS = 60.0
STARTUP_SECONDS = 120.0
STDERR_TAIL = 64 * 1024


class StudentError(AssertionError):
    """The student's code failed a request: it raised, hung, crashed or sent malformed data."""

    def __init__(self, message: str, remote: dict | None = None):
        super().__init__(message)
        self.remote = remote or {}

    @property
    def type_names(self) -> list[str]:
        return list(self.remote.get("mro", [])) or [self.remote.get("type", "")]


class Worker:
    """One sandboxed worker process and its pipes; `request` sends a frame and waits for the reply."""

    def __init__(self, program_file: Path, *, workdir: str, submission: str | None, readonly: list[str],
                 overlays: list[tuple[str, str]], env: dict, sandbox: bool):
        argv = [sys.executable, "-I", "-c", BOOTSTRAP.format(root=str(PROJECT_ROOT)), str(program_file)]
        if sandbox:
            from ..sandbox import base_env, sandbox_command
            self.cmd = sandbox_command(argv, workdir=workdir, submission=submission,
                                       readonly=[str(program_file.parent), *readonly], overlays=overlays,
                                       env=base_env(env), gpu=True)
            self.cwd, self.env = "/", None
        else:  # COURSE_SANDBOX=off: a trusted local run (test authoring); deny-lists are not applied
            from ..sandbox import private_copy
            self.cwd = str(Path(tempfile.mkdtemp(prefix="harness-plain-")) / "work")
            if submission:
                private_copy(Path(submission), Path(self.cwd))
            else:
                Path(self.cwd).mkdir()
            self.cmd, self.env = argv, {**os.environ, **env}
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        from ..sandbox import LIMITS, Watchdog
        self.watchdog = Watchdog(self.proc.pid, memory_bytes=LIMITS.memory_bytes)
        self.watchdog.start()
        self.frames: queue.Queue = queue.Queue(maxsize=2)  # the reader blocks: a flood cannot pile up here
        self.stderr = bytearray()
        threading.Thread(target=self._read_frames, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_frames(self) -> None:
        try:
            while True:
                self.frames.put(read_frame(self.proc.stdout))
        except Exception as exc:  # noqa: BLE001 - any failure to read ends this worker's conversation
            self.frames.put(exc if isinstance(exc, (EOFError, OSError, ValueError)) else ProtocolError(str(exc)[:200]))

    def _read_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read(8192), b""):
            self.stderr += chunk
            del self.stderr[:-STDERR_TAIL]

    def receive(self, seconds: float) -> tuple[dict, list[bytes]]:
        try:
            item = self.frames.get(timeout=seconds)
        except queue.Empty:
            self.stop()
            raise StudentError(f"no answer within {seconds:g} s (an endless loop?); stopped") from None
        if isinstance(item, BaseException):
            self.stop()
            why = self.watchdog.reason or (f"sent malformed data ({item})" if isinstance(item, ProtocolError)
                                           else "the student's process ended")
            raise StudentError(f"the code under test stopped: {why}{self._stderr_hint()}")
        return item

    def _stderr_hint(self) -> str:
        tail = bytes(self.stderr[-400:]).decode("utf-8", "replace").strip().splitlines()
        return f" (last output: {tail[-1][:200]})" if tail else ""

    def send(self, header: dict, buffers: list[bytes]) -> None:
        try:
            self.proc.stdin.write(pack(header, buffers))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.stop()
            raise StudentError("the student's process ended before the request") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        from ..sandbox import kill_tree
        self.watchdog.stop()
        if self.proc.poll() is None:
            kill_tree(self.proc.pid)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)


class Remote:
    """A proxy for an object in the worker: call it, index it, read its attributes."""

    def __init__(self, student: "Student", handle: Handle, generation: int, label: str):
        self._student, self._handle, self._generation, self._label = student, handle, generation, label

    def __call__(self, *args, **kwargs):
        return self._student._request({"op": "call", "ref": self._ref()}, args, kwargs, f"{self._label}(...)")

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._student._request({"op": "getattr", "ref": self._ref(), "name": name}, (), {},
                                      f"{self._label}.{name}")

    def __getitem__(self, key):
        return self._student._request({"op": "getitem", "ref": self._ref()}, (key,), {}, f"{self._label}[{key!r}]")

    def __len__(self) -> int:
        value = self._student._request({"op": "len", "ref": self._ref()}, (), {}, f"len({self._label})")
        if type(value) is not int or value < 0:
            raise StudentError(f"len({self._label}) is not a non-negative int")
        return value

    def __repr__(self) -> str:
        return f"<{self._label}: remote {self._handle.type_name}>"

    @property
    def type_name(self) -> str:
        return self._handle.type_name

    def _ref(self) -> int:
        if self._generation != self._student._generation:
            raise StudentError(f"{self._label} belongs to a worker that was stopped after an earlier failure")
        return self._handle.ref


class Student:
    """The `student` fixture: the namespace of a student's answer cells, in a sandboxed worker."""

    def __init__(self, program: dict, *, submission: str | None = None, readonly: list[str] = (),
                 overlays: list[tuple[str, str]] = (), env: dict | None = None, sandbox: bool = True):
        self._program, self._submission = program, submission
        self._readonly, self._overlays, self._env = list(readonly), list(overlays), dict(env or {})
        self._sandbox = sandbox
        self._scratch = Path(tempfile.mkdtemp(prefix="harness-program-"))
        self._scratch.chmod(0o755)
        self._program_file = self._scratch / "program.json"
        self._program_file.write_text(json.dumps(program), encoding="utf-8")
        self._program_file.chmod(0o644)
        self._worker: Worker | None = None
        self._generation = 0
        self._broken: str | None = None
        self._request_id = 0
        self._streamed: list = []
        self.call_seconds = float(program.get("cell_seconds", DEFAULT_CALL_SECONDS))
        self.ready: dict = {}
        self.starts = 0
        self.startup_seconds = 0.0

    # ------------------------------------------------------------------ lifecycle
    def _ensure(self) -> Worker:
        if self._worker is not None and self._worker.alive():
            return self._worker
        if self._broken:
            raise StudentError(self._broken)
        while True:
            self._generation += 1
            self.starts += 1
            t0 = time.perf_counter()
            self._worker = Worker(self._program_file, workdir="/tmp/work", submission=self._submission,
                                  readonly=self._readonly, overlays=self._overlays, env=self._env,
                                  sandbox=self._sandbox)
            try:
                header = self._run_cells(self._worker)
            except StudentError as exc:
                if not self._skip_running_cell(str(exc)):
                    self._broken = f"the notebook's cells could not be run: {exc}"
                    raise StudentError(self._broken) from None
                continue  # again, without the cell that hung or ended the process
            finally:
                self.startup_seconds += time.perf_counter() - t0
            if not self.ready:
                self.ready = _checked_ready(header, self._streamed)
            return self._worker

    def _run_cells(self, worker: Worker) -> dict:
        """Wait for the ready frame; `self._running` follows the cell being run (one frame per cell).
        The whole start has one deadline, so forged progress frames cannot keep the grader waiting."""
        self._running, self._streamed = None, []
        deadline = time.monotonic() + STARTUP_SECONDS + len(self._program["cells"]) * (self.call_seconds + 10)
        while True:
            per_frame = self.call_seconds + 10 if self._running is not None else STARTUP_SECONDS
            left = deadline - time.monotonic()
            if left <= 0:
                worker.stop()
                raise StudentError("the cells did not finish within the time of all their limits together")
            header, _ = worker.receive(min(per_frame, left))
            if isinstance(header, dict) and type(header.get("running")) is int:
                self._running = header["running"]
                events = header.get("events")
                if isinstance(events, list):  # streamed per cell: a later cell cannot take them back
                    self._streamed += events[:100]
                continue
            return header

    def _skip_running_cell(self, why: str) -> bool:
        """Mark the cell that hung or ended the worker as skipped (rewrites the program file); False if none."""
        cells = self._program["cells"]
        i = self._running
        if i is None or not 0 <= i < len(cells) or cells[i]["kind"] in ("setup", "skipped"):
            return False
        cells[i] = dict(cells[i], kind="skipped", why=f"this cell stopped the grading process ({why}); "
                                                       "it was left out and the rest run without it")
        self._program_file.write_text(json.dumps(self._program), encoding="utf-8")
        return True

    def start(self) -> dict:
        """Run the cells now (the first request does it otherwise); returns the ready report."""
        self._ensure()
        return self.ready

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    # ------------------------------------------------------------------ requests
    def _request(self, header: dict, args, kwargs, label: str, *, seconds: float | None = None):
        value, _ = self._exchange(header, args, kwargs, label, seconds=seconds)
        return value

    def _exchange(self, header: dict, args, kwargs, label: str, *, seconds: float | None = None):
        worker = self._ensure()
        self._request_id += 1
        header = dict(header, id=self._request_id)
        encoder = Encoder()
        args, kwargs = self._unwrap(list(args)), self._unwrap(dict(kwargs))
        header = dict(header, args=encoder.encode(args), kwargs=encoder.encode(kwargs))
        worker.send(header, encoder.buffers)
        deadline = time.monotonic() + (seconds or self.call_seconds)
        while True:  # frames that are not the reply to this request (sent early, forged) are dropped
            reply, buffers = worker.receive(max(deadline - time.monotonic(), 0.01))
            if isinstance(reply, dict) and reply.get("id") == self._request_id:
                break
        if "error" in reply:
            remote = reply["error"] if isinstance(reply["error"], dict) else {}
            raise StudentError(f"{label} raised {str(remote.get('type', 'an error'))[:80]}: "
                               f"{str(remote.get('message', ''))[:500]}", remote)
        generation = self._generation
        try:
            value = Decoder(buffers).decode(reply.get("ok"))
        except (ProtocolError, ValueError, TypeError, RuntimeError) as exc:
            raise StudentError(f"{label}: returned data the grader cannot read ({exc})") from None
        calls = reply.get("calls")
        return self._wrap(value, generation, label), calls if type(calls) is int else None

    def _unwrap(self, value):
        """Remote proxies inside an argument become the handles the worker knows them by."""
        if isinstance(value, Remote):
            value._ref()  # refuses a proxy of a stopped worker
            return value._handle
        if type(value) in (list, tuple):
            items = [self._unwrap(v) for v in value]
            return items if type(value) is list else tuple(items)
        if type(value) is dict:
            return {k: self._unwrap(v) for k, v in value.items()}
        return value

    def _wrap(self, value, generation: int, label: str):
        """Handles inside a decoded value become Remote proxies."""
        if isinstance(value, Handle):
            return Remote(self, value, generation, label)
        if type(value) in (list, tuple):
            items = [self._wrap(v, generation, label) for v in value]
            return items if type(value) is list else tuple(items)
        if type(value) is dict:
            return {k: self._wrap(v, generation, label) for k, v in value.items()}
        return value

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._request({"op": "get", "name": name}, (), {}, name)

    def make(self, path: str, *args, **kwargs):
        """A trusted constructor or function (dotted name), called inside the sandbox."""
        return self._request({"op": "make", "path": path}, args, kwargs, path.rsplit(".", 1)[-1])

    def counted(self, fn: Remote, *args, **kwargs):
        """(value, torch calls made by the call): for checks that code is batched, not a loop per item."""
        value, calls = self._exchange({"op": "call", "ref": fn._ref(), "count": True}, args, kwargs,
                                      f"{fn._label}(...)")
        if calls is None:
            raise StudentError(f"{fn._label}: the call count did not come back")
        return value, calls

    @contextlib.contextmanager
    def raises(self, *type_names: str):
        """Expect the student's code to raise one of `type_names` (or a subclass)."""
        try:
            yield
        except StudentError as exc:
            if exc.remote and set(type_names) & set(exc.type_names):
                return
            raise
        raise AssertionError(f"expected {' or '.join(type_names)} to be raised, got none")


def _checked_ready(header: dict, streamed: list) -> dict:
    """The worker's ready report, kept only in the shape the trusted side expects; the events are
    those streamed cell by cell plus any in the report not seen before (a cleared list hides nothing
    that was already sent)."""
    if not isinstance(header, dict) or header.get("ready") is not True:
        raise StudentError("the student's process did not start properly")
    cells = []
    for cell in header.get("cells", [])[:500] if isinstance(header.get("cells"), list) else []:
        if isinstance(cell, dict):
            err = cell.get("error") if isinstance(cell.get("error"), dict) else None
            cells.append({"id": str(cell.get("id", ""))[:200], "kind": str(cell.get("kind", ""))[:20],
                          "error": {k: str(err.get(k, ""))[:500] for k in ("type", "message", "where")} if err else None})
    events, seen = [], set()
    final = header.get("events", [])[:500] if isinstance(header.get("events"), list) else []
    for ev in [*streamed, *final]:
        key = repr(ev)[:400]
        if isinstance(ev, dict) and key not in seen:
            seen.add(key)
            line = ev.get("line")
            events.append({"cell": str(ev.get("cell", ""))[:200], "line": line if type(line) is int else None,
                           "kind": str(ev.get("kind", ""))[:40], "detail": str(ev.get("detail", ""))[:300]})
    swallowed = header.get("canary_swallowed")
    return {"cells": cells, "events": events, "canary_swallowed": swallowed if type(swallowed) is bool else None}
