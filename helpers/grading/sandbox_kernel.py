"""The course's autograde kernel: ipykernel inside the sandbox, reached through a proxy the grader owns.

nbgrader's `Execute` starts the kernelspec `course-sandbox` (helpers/grading/kernels/, found
through JUPYTER_PATH, which nbgrader_config.py sets). jupyter_client runs this file as the TA with
`-f <connection file>` in the notebook's folder (autograded/<student>/<assignment>). This trusted
launcher then:

1. reads that connection file (tcp on 127.0.0.1: jupyter_client's client connects there);
2. makes a private folder (mode 700) holding a connection file for the kernel with the same key
   but transport "ipc" (TCP on loopback does not cross the sandbox's network namespace), and a
   private copy of the notebook's folder (`private_copy`: no links, devices or oversized files);
3. starts `python -m ipykernel_launcher -f <that file>` with `sandbox_command`: uid 65534, no
   network, the copy in a 1 GB tmpfs at the same path, read-only environment and data, the socket
   folder the only other writable path, an environment with no course secret;
4. proxies ZMQ between the tcp ports and the ipc sockets: shell, control and heartbeat as
   ROUTER<->DEALER, iopub as XPUB<->XSUB through `OutputCap`, which cuts each cell's output at
   LIMITS.cell_output_bytes and the notebook's at LIMITS.notebook_output_bytes (bytes, not lines)
   before anything reaches the grader's process. stdin is not proxied: nbgrader executes with
   allow_stdin=False, so `input()` raises StdinNotImplementedError as without the sandbox;
5. runs a `Watchdog` (memory cap, 30 minutes per notebook) on the sandbox and kills the sandbox's
   whole tree when the kernel exits, on SIGTERM/SIGINT and at exit; removes its folders.

Interrupts (nbclient's cell timeout) go by kernel message (`interrupt_mode: message` in the
kernelspec): a signal to this launcher would not reach a kernel in its own PID namespace.

COURSE_SANDBOX=off (a trusted local run only, never for real grading) runs ipykernel directly.
Without bubblewrap the kernel does not start and the message says how to install it.

The kernelspec runs this file by path (not `-m helpers...`), so the launcher does not import
helpers/__init__ and torch: about 2.5 s and 300 MB less per notebook. `python -m
helpers.grading.sandbox_kernel -f FILE` works too.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

DELIM = b"<IDS|MSG>"
IPC_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
OUTPUT_TYPES = {"stream", "display_data", "execute_result", "update_display_data", "error"}
PASS_TYPES = {"status", "execute_input", "clear_output", "iopub_welcome", "shutdown_reply"}
ERROR_KEEP_BYTES = 64 * 1024  # an error is never dropped (it is what scores a test 0), only shortened
MAX_MESSAGE_BYTES = 64 * 2**20  # larger messages from the kernel are refused by ZMQ before they are read
STDERR_KEEP_BYTES = 64 * 1024  # the kernel's own stderr (not its cells' output) passed on to the TA's log
# Environment variables the notebooks legitimately read; nothing else of the TA's reaches the kernel.
PASSED_ENV = ("COURSE_CIFAR10", "COURSE_CIFAR100", "NBGRADER_EXECUTION", "NBGRADER_VALIDATING",
              "COURSE_CELL_TIMEOUT", "MPLBACKEND")


def _bootstrap_light():
    """Import helpers.grading.sandbox without running helpers/__init__ (which imports torch).

    Run as a script, this file registers bare `helpers` and `helpers.grading` packages, so that
    sandbox.py and helpers.settings (standard library only) load without the package's __init__;
    if that is not enough (sandbox.py changed), it falls back to the ordinary import.
    """
    import importlib
    import types
    package_dir = Path(__file__).resolve().parent.parent
    if sys.path and Path(sys.path[0] or ".").resolve() == package_dir / "grading":
        sys.path.pop(0)  # run as a script: its folder's modules must not shadow anything
    if "helpers" not in sys.modules:
        stubs = {}
        for name, path in (("helpers", package_dir), ("helpers.grading", package_dir / "grading")):
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            stubs[name] = mod
        sys.modules.update(stubs)
        try:  # helpers.settings imports only the standard library
            return importlib.import_module("helpers.grading.sandbox"), importlib.import_module("helpers.settings")
        except (ImportError, AttributeError):
            for name in [*stubs, "helpers.settings", "helpers.grading.sandbox"]:
                sys.modules.pop(name, None)
    from helpers import settings
    from helpers.grading import sandbox
    return sandbox, settings


# ----------------------------------------------------------------------------- output caps

class OutputCap:
    """Cuts iopub output messages at a byte budget per cell (per parent execute request) and per notebook.

    A stream past the budget keeps its head and gets a visible note; later outputs of that cell are
    dropped (one note per cell); an error is always kept (shortened), because dropping it would
    turn a failed test into a passed one. Changed messages are signed again with the kernel's key.
    """

    def __init__(self, key: bytes, scheme: str = "hmac-sha256", cell_bytes: int = 10**6,
                 notebook_bytes: int = 10 * 10**6):
        self.key, self.cell_bytes, self.notebook_bytes = key, cell_bytes, notebook_bytes
        self.digest = getattr(hashlib, scheme.split("-", 1)[-1]) if key else None
        self.cell_used: dict[str, int] = {}
        self.noted: set[str] = set()
        self.errored: set[str] = set()
        self.total = 0

    def _sign(self, parts: list[bytes]) -> bytes:
        if not self.key:
            return b""
        mac = hmac.new(self.key, digestmod=self.digest)
        for part in parts:
            mac.update(part)
        return mac.hexdigest().encode()

    def note(self, scope: str) -> str:
        limit = self.cell_bytes if scope == "cell" else self.notebook_bytes
        return (f"\n[output cut: this {scope}'s output passed the grader's limit of {limit / 1e6:g} MB; "
                f"the rest was not kept]\n")

    def filter(self, frames: list[bytes]) -> list[bytes] | None:
        """The frames to forward (possibly changed), or None to drop the message."""
        try:
            i = frames.index(DELIM)
            header = json.loads(frames[i + 2])
            parent = json.loads(frames[i + 3])
        except (ValueError, IndexError):
            return frames  # not a Jupyter message: nothing to cap
        msg_type = header.get("msg_type", "")
        size = sum(len(f) for f in frames[i + 2:])
        if msg_type in PASS_TYPES:  # the protocol needs them (status: idle ends a cell): kept, but small
            if size <= ERROR_KEEP_BYTES:
                return frames
            content = json.loads(frames[i + 5])
            small = {k: content[k] for k in ("execution_state", "wait", "status", "restart") if k in content}
            return self._rebuild(frames[:i + 6], i, header, small)
        pid = parent.get("msg_id", "")
        if msg_type not in OUTPUT_TYPES:  # comm messages etc.: counted against the notebook, then dropped
            if size > self.cell_bytes or self.total + size > self.notebook_bytes:
                return None
            self._count(pid, size)
            return frames
        used = self.cell_used.get(pid, 0)
        allowance = min(self.cell_bytes - used, self.notebook_bytes - self.total)
        scope = "cell" if self.cell_bytes - used <= self.notebook_bytes - self.total else "notebook"
        if msg_type == "error":  # kept, shortened; past the budget only a cell's first error
            if allowance <= 0 and pid in self.errored:
                return None
            self.errored.add(pid)
            if size > ERROR_KEEP_BYTES:
                frames = self._rebuild(frames, i, header, _short_error(json.loads(frames[i + 5])))
            self._count(pid, sum(len(f) for f in frames[i + 2:]))
            return frames
        if size <= allowance and pid not in self.noted:
            self._count(pid, size)
            return frames
        if pid in self.noted:
            return None
        self.noted.add(pid)
        note = self.note(scope)
        if msg_type == "stream":
            content = json.loads(frames[i + 5])
            room = max(0, allowance - (size - len(frames[i + 5])) - 2 * len(note) - 256)
            content["text"] = _cut_text(str(content.get("text", "")), room) + note
        else:  # a display past the budget becomes the note
            header = dict(header, msg_type="stream")
            content = {"name": "stdout", "text": note}
        frames = self._rebuild(frames[:i + 6], i, header, content)
        self._count(pid, sum(len(f) for f in frames[i + 2:]))
        return frames

    def filter_reply(self, frames: list[bytes]) -> list[bytes]:
        """A shell/control reply: never dropped (nbclient waits for it), an oversized one shortened.

        An execute_reply with status "error" carries the exception again (ename, evalue, traceback).
        """
        try:
            i = frames.index(DELIM)
        except ValueError:
            return frames
        if sum(len(f) for f in frames[i + 2:]) <= ERROR_KEEP_BYTES:
            return frames
        try:
            header, content = json.loads(frames[i + 2]), json.loads(frames[i + 5])
        except (ValueError, IndexError):
            return frames
        if content.get("status") == "error":
            content = _short_error(content)
        if len(json.dumps(content)) > ERROR_KEEP_BYTES:  # payloads, user expressions, huge replies
            content = {k: v for k, v in content.items() if k in ("status", "execution_count", "ename", "evalue",
                                                                 "traceback", "protocol_version", "implementation")}
            content.update({k: _cut_text(str(v), ERROR_KEEP_BYTES // 8) for k, v in content.items()
                            if k not in ("status", "execution_count", "traceback")})
        return self._rebuild(frames[:i + 6], i, header, content)

    def _count(self, pid: str, size: int) -> None:
        self.cell_used[pid] = self.cell_used.get(pid, 0) + size
        self.total += size

    def _rebuild(self, frames, i, header, content):
        parts = [json.dumps(header).encode(), frames[i + 3], frames[i + 4],
                 json.dumps(content, ensure_ascii=False).encode()]
        return [*frames[:i], DELIM, self._sign(parts), *parts, *frames[i + 6:]]


def _short_error(content: dict) -> dict:
    """An error's name, value and traceback within about ERROR_KEEP_BYTES (the same cut on iopub and shell)."""
    return dict(content, ename=_cut_text(str(content.get("ename", "")), 1024),
                evalue=_cut_text(str(content.get("evalue", "")), ERROR_KEEP_BYTES // 8),
                traceback=_cut_lines(content.get("traceback", []), ERROR_KEEP_BYTES // 2))


def _cut_text(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "replace")
    return text if len(data) <= max_bytes else data[:max(0, max_bytes)].decode("utf-8", "ignore")


def _cut_lines(lines: list, max_bytes: int) -> list:
    """The first and last lines of a traceback within about max_bytes."""
    lines = [str(line) for line in lines]
    if sum(len(line.encode()) for line in lines) <= max_bytes:
        return lines
    head = [_cut_text(line, max_bytes // 8) for line in lines[:3]]
    tail = [_cut_text(line, max_bytes // 8) for line in lines[-3:]]
    return head + ["[traceback cut by the grader's output limit]"] + tail


# ----------------------------------------------------------------------------- proxy

def _address(transport: str, ip: str, port: int) -> str:
    return f"tcp://{ip}:{port}" if transport == "tcp" else f"ipc://{ip}-{port}"


def _start_proxies(ctx, outer: dict, inner_ip: str, cap: OutputCap) -> list:
    """Bind the ports jupyter_client expects and relay them to the sandboxed kernel's ipc sockets."""
    import zmq
    transport, ip = outer.get("transport", "tcp"), outer.get("ip", "127.0.0.1")
    sockets, threads = [], []

    def pair(name, front_type, back_type):
        front, back = ctx.socket(front_type), ctx.socket(back_type)
        for s in (front, back):
            s.setsockopt(zmq.LINGER, 0)
        back.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # never read a bigger message into our memory
        front.bind(_address(transport, ip, outer[name]))
        back.connect(_address("ipc", inner_ip, IPC_PORTS[name]))
        sockets.extend([front, back])
        return front, back

    for name in ("shell_port", "control_port", "hb_port"):
        front, back = pair(name, zmq.ROUTER, zmq.DEALER)
        threads.append(threading.Thread(target=_relay, args=(front, back, None if name == "hb_port" else
                                                             cap.filter_reply), daemon=True))
    stdin = ctx.socket(zmq.ROUTER)  # held so the port stays ours; input() is not supported while grading
    stdin.setsockopt(zmq.LINGER, 0)
    stdin.bind(_address(transport, ip, outer["stdin_port"]))
    sockets.append(stdin)
    front, back = pair("iopub_port", zmq.XPUB, zmq.XSUB)
    threads.append(threading.Thread(target=_relay, args=(front, back, cap.filter), daemon=True))
    for t in threads:
        t.start()
    return sockets


def _relay(front, back, cap=None) -> None:
    """Forward whole messages both ways; messages from the kernel (back) go through `cap` (None: drop)."""
    import zmq
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    try:
        while True:
            for sock, _ in poller.poll():
                frames = sock.recv_multipart(copy=True)
                if sock is back:
                    if cap is not None:
                        frames = cap(frames)
                    if frames is not None:
                        front.send_multipart(frames)
                else:
                    back.send_multipart(frames)
    except Exception:  # the context was closed at exit
        return


# ----------------------------------------------------------------------------- launcher

def _split_args(argv: list[str]) -> tuple[str, list[str]]:
    if "-f" not in argv or argv.index("-f") + 1 >= len(argv):
        raise SystemExit("usage: sandbox_kernel.py -f CONNECTION_FILE [ipykernel options]")
    i = argv.index("-f")
    return argv[i + 1], argv[:i] + argv[i + 2:]


def _kernel_env(sandbox, config, extra: dict) -> dict:
    env = config.passed_through(PASSED_ENV)
    env["COURSE_DATA_DIR"] = str(config.data_dir())
    env["PYTHONPATH"] = str(config.PROJECT_ROOT)  # only helpers/ (and the data) is visible there
    env.update(extra)
    out = sandbox.base_env(env)
    if config.env("MPLBACKEND") is None:  # as without the sandbox: ipykernel's inline backend
        out.pop("MPLBACKEND", None)
    return out


def _readonly_paths(config) -> list[str]:
    """The data the notebooks may read: the data folder and the archives COURSE_CIFAR10/100 name."""
    paths = [config.data_dir()]
    paths += [Path(config.env(k)).expanduser() for k in ("COURSE_CIFAR10", "COURSE_CIFAR100") if config.env(k)]
    paths = [p.resolve() for p in paths if p.exists()]
    if os.geteuid() != 0:  # a normal TA's uid is the sandbox's uid 65534 inside its user namespace
        return [str(p) for p in paths]
    out = []
    for path in paths:
        out += _readable_view(path)
    return out


def _readable_view(path: Path, budget: int = 256) -> list[str]:
    """As root the kernel runs as the real uid 65534 and reads only what "others" may read. A data
    folder the TA keeps private (mode 700, as pytest makes its temporary folders) is bound entry by
    entry instead: bwrap recreates the folder itself traversable, its contents keep their modes."""
    def walk(p: Path, found: list) -> bool:
        mode = p.stat().st_mode
        if not p.is_dir() or mode & 0o005 == 0o005:
            if not p.is_dir() and mode & 0o004 == 0:
                print(f"[helpers] sandbox: {p} is not readable by the sandbox's uid (mode {mode & 0o777:o}); "
                      f"`chmod a+r` it if the notebooks need it", file=sys.stderr)
            found.append(str(p))
            return len(found) <= budget
        return all(walk(child, found) for child in sorted(p.iterdir()))
    found: list[str] = []
    if walk(path, found):
        return found
    print(f"[helpers] sandbox: {path} is not readable by the sandbox's uid and holds too many private "
          f"folders to bind one by one; the notebooks cannot read it: `chmod a+rX {path}`", file=sys.stderr)
    return [str(path)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    conn_file, rest = _split_args(argv)
    if not any(arg.startswith("--HistoryManager.hist_file") for arg in rest):
        rest.append("--HistoryManager.hist_file=:memory:")  # nbclient adds it only for kernels named python*
    sandbox, config = _bootstrap_light() if __name__ == "__main__" else _import_full()
    if sandbox.sandbox_disabled():  # trusted local run only
        print("[helpers] COURSE_SANDBOX=off: the kernel runs without the sandbox", file=sys.stderr)
        os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", conn_file, *rest])
    try:
        sandbox.find_bwrap()
    except sandbox.SandboxUnavailable as exc:
        print(f"[helpers] the grading kernel cannot start: {exc}", file=sys.stderr)
        return 1
    import zmq

    outer = json.loads(Path(conn_file).read_text())
    workdir = os.getcwd()
    private = Path(tempfile.mkdtemp(prefix="kernel-", dir="/tmp" if os.path.isdir("/tmp") else None))
    os.chmod(private, 0o700)
    sockets_dir, copy_dir = private / "s", private / "copy"
    sockets_dir.mkdir(mode=0o700)
    sandbox.make_sandbox_writable(sockets_dir)  # as root: owned by the sandbox's uid 65534
    proc, watchdog, ctx = None, None, zmq.Context()

    def cleanup(*_):
        if proc is not None:
            sandbox.kill_tree(proc.pid)
        shutil.rmtree(private, ignore_errors=True)

    def on_signal(signum, _frame):
        cleanup()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for line in sandbox.private_copy(Path(workdir), copy_dir):
            print(f"[helpers] sandbox: {line}", file=sys.stderr)
        inner_ip = str(sockets_dir / "k")
        inner = {**{k: v for k, v in outer.items() if not k.endswith("_port")}, **IPC_PORTS,
                 "transport": "ipc", "ip": inner_ip}
        inner_file = sockets_dir / "kernel.json"
        inner_file.write_text(json.dumps(inner))
        os.chmod(inner_file, 0o600)
        if os.geteuid() == 0:
            os.chown(inner_file, sandbox.SANDBOX_UID, sandbox.SANDBOX_UID)
        limits = sandbox.LIMITS
        cap = OutputCap(outer.get("key", "").encode(), outer.get("signature_scheme", "hmac-sha256"),
                        limits.cell_output_bytes, limits.notebook_output_bytes)
        _start_proxies(ctx, outer, inner_ip, cap)
        cmd = sandbox.sandbox_command(
            [sys.executable, "-m", "ipykernel_launcher", "-f", str(inner_file), *rest],
            workdir=workdir, submission=str(copy_dir), readonly=_readonly_paths(config),
            writable=[str(sockets_dir)], env=_kernel_env(sandbox, config, {}))
        # stdout: only ipykernel's "no parent, Ctrl-C will not work" banner comes before it captures fd 1.
        # stderr: a pipe we read, never the TA's own stderr (the kernel could write, truncate or rewrite it).
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=_pass_stderr, args=(proc.stderr,), daemon=True).start()
        watchdog = sandbox.Watchdog(proc.pid, memory_bytes=limits.memory_bytes, seconds=limits.notebook_seconds,
                                    watch_folder=str(sockets_dir), folder_bytes=limits.socket_dir_bytes)
        watchdog.start()
        rc = proc.wait()
        if watchdog.reason:
            print(f"[helpers] the sandboxed kernel {watchdog.reason}", file=sys.stderr)
        return rc
    finally:
        if watchdog is not None:
            watchdog.stop()
        cleanup()


def _pass_stderr(pipe, keep: int = STDERR_KEEP_BYTES) -> None:
    """Copy the kernel's stderr to ours: at most `keep` bytes, read in chunks (a line without end
    never piles up here), control characters shown escaped (no terminal escape sequences reach the
    TA); the rest is read and dropped."""
    passed, fd = 0, pipe.fileno()
    while chunk := os.read(fd, 65536):
        if passed >= keep:
            continue
        text = chunk[:keep - passed].decode("utf-8", "replace")
        passed += len(chunk)
        sys.stderr.write("".join(ch if ch.isprintable() or ch in "\n\t" else repr(ch)[1:-1] for ch in text))
        if passed >= keep:
            sys.stderr.write(f"\n[helpers] the kernel's stderr passed {keep // 1024} KB; the rest is not shown\n")
        sys.stderr.flush()


def _import_full():
    from helpers import config
    from helpers.grading import sandbox
    return sandbox, config


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # without waiting for the relay threads or the zmq context
