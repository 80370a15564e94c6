"""One sandbox for all student code: bubblewrap with every namespace unshared, plus caps.

Whatever runs a student's code (the autograde kernel, the checkpoint scorer) starts it with
`sandbox_command(...)` and supervises it with `Watchdog`. Inside, the process sees:

- a size-capped tmpfs working folder holding a private copy of its own submission;
- read-only: the Python environment (venv and base interpreter), the course's `helpers/`, the
  system folders a Python process needs (/usr, /lib, /etc...) and any file named in `readonly`;
- nothing else: no source/, gradebook, data/cache, nbgrader_config.py, tier files, other
  students, the TA's home, no network (its own empty network namespace), no course secret
  (the environment is built from scratch).

It runs as uid 65534 inside its own user namespace (no capabilities even when the TA is root),
with RLIMIT_NPROC and RLIMIT_FSIZE set *inside* the namespace (see `_rlimit_prefix`), and the
`Watchdog` kills it when its resident memory passes the cap. Why bubblewrap: see SANDBOX.md.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..settings import PACKAGE_DIR, env, env_number, passed_through

SANDBOX_ENV = "COURSE_SANDBOX"  # "off": trusted local run without a sandbox (never for real grading)
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `dnf install "
                "bubblewrap`), or, for a trusted local run only, set COURSE_SANDBOX=off")


@dataclass(frozen=True)
class Limits:
    """The caps of one sandbox, in one place. Memory may be lowered with COURSE_SANDBOX_MEMORY_MB."""
    memory_bytes: int = int(env_number("COURSE_SANDBOX_MEMORY_MB", 8192)) * 2**20  # resident, whole process tree
    processes: int = 256             # RLIMIT_NPROC inside the sandbox's user namespace
    file_bytes: int = 200 * 10**6    # RLIMIT_FSIZE: the largest file the student's code may write
    folder_bytes: int = 10**9        # the private working folder (a tmpfs of this size)
    tmp_bytes: int = 512 * 2**20     # /tmp inside (a tmpfs: RAM, outside the resident-memory count)
    shm_bytes: int = 256 * 2**20     # /dev/shm inside (semaphores, DataLoader workers' shared tensors)
    socket_dir_bytes: int = 16 * 2**20  # the only host folder the kernel may write (its IPC sockets)
    cell_output_bytes: int = 10**6   # per cell, enforced by the TA's process on what the kernel sends
    notebook_output_bytes: int = 10 * 10**6
    notebook_seconds: int = 1800     # a whole notebook, whatever its cells' limits


LIMITS = Limits()
SANDBOX_UID = 65534  # "nobody" inside the user namespace
HOSTNAME = "sandbox"


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; the message says how to fix it."""


def sandbox_disabled() -> bool:
    """True when the TA explicitly opted out (COURSE_SANDBOX=off) for a trusted local run."""
    return (env(SANDBOX_ENV) or "").strip().lower() in ("off", "0", "no", "false")


def find_bwrap() -> str:
    """The bubblewrap binary, or SandboxUnavailable saying how to install it."""
    path = shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/usr/local/bin/bwrap") if os.access(p, os.X_OK)), None)
    if not path:
        raise SandboxUnavailable(f"grading runs student code in a sandbox, but `bwrap` was not found: {INSTALL_HINT}")
    if not shutil.which("prlimit") and not os.access("/usr/bin/prlimit", os.X_OK):
        raise SandboxUnavailable("the sandbox needs `prlimit` (Debian package util-linux) to cap processes and file sizes")
    return path


def gpu_device_nodes() -> list[str]:
    """The NVIDIA device nodes of this machine (/dev/nvidia*, /dev/dri/*): bound so CUDA works inside."""
    return sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/dri/*"))


def _python_roots() -> list[str]:
    """The folders the running Python needs: its venv and the base interpreter (a venv's python may link there)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(sys.executable).resolve().parent.parent)}
    return sorted(r for r in roots if r and os.path.isdir(r))


SYSTEM_RO = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _namespace_options() -> list[str]:
    """Every namespace unshared. A normal TA gets a user namespace mapping them to SANDBOX_UID; for
    root that is not enough (Linux never applies RLIMIT_NPROC to a process whose real uid is 0, and a
    user namespace keeps the real uid), so bwrap sets up the mounts as root and `_drop_root` then
    switches to the real uid SANDBOX_UID, which clears every capability."""
    common = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if _running_as_root():
        return [*common, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return [*common, "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]


def _drop_root() -> list[str]:
    """As root: become SANDBOX_UID for real before any student code runs (capabilities are cleared)."""
    if not _running_as_root():
        return []
    return ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--"]


def _parent_dirs(paths) -> list[str]:
    """`--dir` options making every missing ancestor of `paths` traversable (bwrap would make them 0700)."""
    made, out = set(SYSTEM_RO) | {"/", "/tmp", "/proc", "/dev"}, []
    for path in paths:
        parents = list(Path(path).parents)[::-1][1:]  # without "/"
        for parent in map(str, parents):
            if parent not in made and not any(parent.startswith(s + "/") for s in SYSTEM_RO):
                made.add(parent)
                out += ["--perms", "0755", "--dir", parent]
    return out


def make_sandbox_writable(path) -> None:
    """Let the sandbox's uid write a folder the trusted side made (a kernel's socket folder)."""
    os.chmod(path, 0o700)
    if _running_as_root():
        os.chown(path, SANDBOX_UID, SANDBOX_UID)


def _rlimit_prefix(limits: Limits) -> list[str]:
    """prlimit run inside the namespace: RLIMIT_NPROC set after the user namespace exists counts only
    the sandbox's processes (set before, it would also count every process of the TA's uid)."""
    return ["prlimit", f"--nproc={limits.processes}", f"--fsize={limits.file_bytes}", "--core=0", "--"]


def sandbox_command(argv: list[str], *, workdir: str, submission: str | None = None,
                    readonly: list[str] = (), writable: list[str] = (), env: dict | None = None,
                    gpu: bool = True, python: bool = True, limits: Limits = LIMITS,
                    overlays: list[tuple[str, str]] = ()) -> list[str]:
    """The bwrap command line that runs `argv` in the sandbox with `workdir` as its working folder.

    `workdir` is a fresh tmpfs of limits.folder_bytes at that path; `submission` (a folder the
    trusted side prepared, see `private_copy`) is copied into it first. `readonly` paths are bound
    read-only at the same path, `writable` ones read-write (the kernel's socket folder). With
    `gpu`, the NVIDIA device nodes that exist are bound too; `python=False` leaves out the Python
    environment and helpers/ (a plain system command). `overlays` are (source, target) pairs bound
    read-only over what is already there (the harness's deny-lists, see harness/deny.py).
    """
    cmd = [find_bwrap(), *_namespace_options(), "--die-with-parent", "--new-session", "--hostname", HOSTNAME,
           "--clearenv"]
    # /tmp first: later binds may sit below it
    cmd += ["--size", str(limits.tmp_bytes), "--perms", "01777", "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.shm_bytes), "--perms", "01777", "--tmpfs", "/dev/shm"]
    for path in SYSTEM_RO:
        if os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    bound = [*(_python_roots() + [str(PACKAGE_DIR)] if python else []), *readonly]
    cmd += _parent_dirs([*bound, str(workdir), *writable, "/run/submission"])
    for path in bound:
        cmd += ["--ro-bind", str(path), str(path)]
    for source, target in overlays:
        cmd += ["--ro-bind", str(source), str(target)]
    if gpu:
        for node in gpu_device_nodes():
            cmd += ["--dev-bind", node, node]
    # World-writable with the sticky bit: only the sandbox sees it, and it must be writable by its uid.
    cmd += ["--size", str(limits.folder_bytes), "--perms", "01777", "--tmpfs", str(workdir)]
    for path in writable:
        cmd += ["--bind", str(path), str(path)]
    if submission:
        cmd += ["--ro-bind", str(submission), "/run/submission"]
    for key, value in (env or {}).items():
        cmd += ["--setenv", key, str(value)]
    cmd += ["--chdir", str(workdir), "--"]
    copy = 'cp -R /run/submission/. . || exit 70; ' if submission else ''
    return cmd + _drop_root() + _rlimit_prefix(limits) + ["/bin/sh", "-c", copy + 'exec "$@"', "sandbox", *argv]


def base_env(extra: dict | None = None) -> dict:
    """The environment inside: no course secret, nothing of the TA's; only what Python needs."""
    inside = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
              "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
              "MPLCONFIGDIR": "/tmp/matplotlib", "OMP_NUM_THREADS": env("OMP_NUM_THREADS", "2"),
              **passed_through(("COURSE_FAST", "CUDA_VISIBLE_DEVICES", "COURSE_OFFLINE"))}
    inside.update(extra or {})
    return inside


# ----------------------------------------------------------------------------- the private copy

class Refused(ValueError):
    """A submitted file the grader will not copy (symlink, device, FIFO, too large); the message says why."""


def check_regular_file(path: Path, max_bytes: int = LIMITS.file_bytes) -> int:
    """The size of `path` when it is a plain file under the cap; Refused with a reason otherwise.

    lstat only: a symbolic link is refused, never followed (a link to /dev/zero would never
    finish copying; one to /etc/passwd would leak the grader's files).
    """
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"{path.name} is a symbolic link; submit the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{path.name} is not a regular file (a device, pipe or socket)")
    if st.st_size > max_bytes:
        raise Refused(f"{path.name} is {st.st_size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit per file")
    return st.st_size


def private_copy(src: Path, dest: Path, limits: Limits = LIMITS) -> list[str]:
    """Copy the plain files of `src` into `dest` (which must not exist); the reasons for what was left out.

    Never follows a link; stops adding files once limits.folder_bytes is reached.
    """
    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True)
    os.chmod(dest, 0o755)  # readable by the sandbox's uid, which copies it into its folder
    skipped, total = [], 0
    for root, dirs, files in os.walk(src, followlinks=False):
        rel = Path(root).relative_to(src)
        for name in dirs:
            if os.path.islink(Path(root) / name):
                skipped.append(f"{rel / name}: a symbolic link to a folder; left out")
        dirs[:] = [d for d in dirs if not os.path.islink(Path(root) / d)]
        (dest / rel).mkdir(mode=0o755, parents=True, exist_ok=True)
        for name in files:
            path = Path(root) / name
            try:
                size = check_regular_file(path, limits.file_bytes)
            except Refused as exc:
                skipped.append(f"{rel / name}: {exc}; left out")
                continue
            if total + size > limits.folder_bytes:
                skipped.append(f"{rel / name}: the folder is over {limits.folder_bytes / 1e9:g} GB; left out")
                continue
            total += size
            with open(path, "rb") as fsrc, open(dest / rel / name, "wb") as fdst:
                shutil.copyfileobj(fsrc, fdst)
            os.chmod(dest / rel / name, 0o644)
    return skipped


# ----------------------------------------------------------------------------- supervision

def _children_map() -> dict[int, list[int]]:
    """{parent pid: [child pids]} of every process this user can see."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children, tree, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def resident_bytes(pids: list[int]) -> int:
    """The summed resident memory of `pids` (processes that vanished count 0)."""
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def proportional_bytes(pids: list[int]) -> int:
    """The summed proportional set size (PSS) of `pids`: pages shared after a fork count once in all.

    Slower to read than RSS, so the watchdog reads it only when the RSS sum is over the cap (forked
    workers would otherwise count the parent's memory once per child).
    """
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, IndexError, ValueError):
            pass
    return total


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every descendant."""
    for p in reversed(process_tree(pid)):
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def host_folder_problem(folder: str, max_bytes: int, max_entries: int = 64) -> str | None:
    """Why a host folder the sandbox may write (a kernel's socket folder) breaks its rules, or None:
    more than `max_bytes` or `max_entries`, or a symbolic link (the trusted side connects to paths there)."""
    total = 0
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= max_entries:
                    return f"wrote more than {max_entries} files into its socket folder; stopped"
                if entry.is_symlink():
                    return f"put a symbolic link ({entry.name}) into its socket folder; stopped"
                total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        return None
    if total > max_bytes:
        return f"wrote more than {max_bytes / 2**20:g} MiB into its socket folder; stopped"
    return None


class Watchdog(threading.Thread):
    """Kills a sandbox's whole process tree when its resident memory passes the cap, its time runs out,
    or a host folder it may write (`watch_folder`) breaks `host_folder_problem`'s rules.

    `reason` says why it killed (None while it has not). Polls every `interval` seconds.
    """

    def __init__(self, pid: int, *, memory_bytes: int = LIMITS.memory_bytes, seconds: float | None = None,
                 interval: float = 0.1, watch_folder: str | None = None,
                 folder_bytes: int = LIMITS.socket_dir_bytes):
        super().__init__(daemon=True)
        self.pid, self.memory_bytes, self.seconds, self.interval = pid, memory_bytes, seconds, interval
        self.watch_folder, self.folder_bytes = watch_folder, folder_bytes
        self.reason: str | None = None
        self.peak_bytes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.wait(self.interval):
            if not os.path.exists(f"/proc/{self.pid}"):
                return
            tree = process_tree(self.pid)
            rss = resident_bytes(tree)
            if rss > self.memory_bytes:
                rss = proportional_bytes(tree)
            self.peak_bytes = max(self.peak_bytes, rss)
            if rss > self.memory_bytes:
                self.reason = (f"used more than {self.memory_bytes / 2**30:g} GiB of memory "
                               f"({rss / 2**30:.1f} GiB); stopped")
            elif self.seconds is not None and time.monotonic() - start > self.seconds:
                self.reason = f"ran longer than {self.seconds:g} s; stopped"
            elif self.watch_folder:
                self.reason = host_folder_problem(self.watch_folder, self.folder_bytes)
            if self.reason:
                kill_tree(self.pid)
                return

    def stop(self) -> None:
        self._stop_event.set()
