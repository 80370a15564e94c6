"""The sandbox every piece of student code runs in (helpers/grading/sandbox.py), tested directly.

Each test runs a real bubblewrap sandbox and checks what a hostile submission would try: see
the grader's files, write outside its folder, reach the network, read the TA's environment,
fork without end, fill memory or the disk. Under CI=true a missing bwrap fails instead of skipping.
"""
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from helpers.config import PACKAGE_DIR, PROJECT_ROOT
from helpers.grading import sandbox
from helpers.grading.sandbox import Limits, Refused, Watchdog, base_env, check_regular_file, private_copy, sandbox_command

if shutil.which("bwrap") is None:
    if os.environ.get("CI") == "true":
        pytest.fail("bubblewrap (bwrap) is required under CI=true: apt-get install bubblewrap", pytrace=False)
    pytest.skip("bubblewrap (bwrap) is not installed: apt-get install bubblewrap", allow_module_level=True)


def run_python(code: str, tmp_path, *, limits: Limits = sandbox.LIMITS, env=None, timeout=60, **kwargs):
    """Run `code` with this Python inside a sandbox whose working folder is tmp_path/work."""
    cmd = sandbox_command([sys.executable, "-I", "-c", textwrap.dedent(code)], workdir=str(tmp_path / "work"),
                          env=base_env(env), limits=limits, **kwargs)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_sees_only_its_own_files_and_the_read_only_environment(tmp_path, monkeypatch):
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "answer.txt").write_text("mine")
    submission = tmp_path / "submission"
    assert private_copy(folder, submission) == []
    secret = tmp_path / "gradebook.db"
    secret.write_text("scores")
    monkeypatch.setenv("COURSE_SKIP_TAG", "secret-value-123")
    result = run_python(f"""
        import os, json, helpers
        out = {{"uid": os.getuid(), "host": os.uname().nodename, "files": sorted(os.listdir(".")),
               "gradebook": os.path.exists({str(secret)!r}), "source": os.path.exists({str(PROJECT_ROOT / 'source')!r}),
               "config": os.path.exists({str(PROJECT_ROOT / 'nbgrader_config.py')!r}),
               "env": "secret-value-123" in json.dumps(dict(os.environ))}}
        for target in ({str(PACKAGE_DIR / '__init__.py')!r}, {str(sys.prefix)!r} + "/evil.pth"):
            try:
                open(target, "a").write("x")
                out[target] = "written"
            except OSError as exc:
                out[target] = "refused"
        open("new.txt", "w").write("fine")
        out["own_write"] = open("new.txt").read()
        print(json.dumps(out))
    """, tmp_path, submission=str(submission))
    assert result.returncode == 0, result.stderr
    import json
    out = json.loads(result.stdout)
    assert out["uid"] == sandbox.SANDBOX_UID and out["host"] == "sandbox"
    assert out["files"] == ["answer.txt"]
    assert not out["gradebook"] and not out["source"] and not out["config"]
    assert not out["env"], "a variable of the TA's environment reached the sandbox"
    assert out[str(PACKAGE_DIR / "__init__.py")] == "refused" and out[sys.prefix + "/evil.pth"] == "refused"
    assert out["own_write"] == "fine"
    assert not (tmp_path / "work" / "new.txt").exists() and not (submission / "new.txt").exists()


def test_no_network(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        result = run_python(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("connected")
            except OSError as exc:
                print("refused", type(exc).__name__)
        """, tmp_path)
    finally:
        server.close()
    assert result.stdout.startswith("refused"), result.stdout + result.stderr


def test_fork_bomb_stops_at_the_process_cap(tmp_path):
    result = run_python("""
        import os, time
        n = 0
        while n < 600:
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(3)
                os._exit(0)
            n += 1
        print(n)
    """, tmp_path, limits=Limits(processes=64))
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 64


def test_file_size_and_folder_caps(tmp_path):
    result = run_python("""
        import errno
        try:
            with open("big.bin", "wb") as f:
                f.write(b"x" * 3_000_000)
            print("file written")
        except OSError as exc:
            print("file refused", errno.errorcode[exc.errno])
        total = 0
        try:
            for i in range(20):
                with open(f"part{i}.bin", "wb") as f:
                    f.write(b"y" * 1_000_000)
                total += 1
        except OSError as exc:
            print("folder full", errno.errorcode[exc.errno], total)
    """, tmp_path, limits=Limits(file_bytes=2_000_000, folder_bytes=5_000_000))
    assert "file refused EFBIG" in result.stdout, result.stdout + result.stderr
    assert "folder full ENOSPC" in result.stdout, result.stdout + result.stderr


def test_memory_bomb_is_killed_by_the_watchdog(tmp_path):
    cmd = sandbox_command([sys.executable, "-I", "-c", textwrap.dedent("""
        import time
        hoard = []
        for _ in range(200):
            hoard.append(bytearray(20_000_000))
            time.sleep(0.02)
        print("survived")
    """)], workdir=str(tmp_path / "work"), env=base_env())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dog = Watchdog(proc.pid, memory_bytes=300 * 2**20, interval=0.05)
    dog.start()
    out, _ = proc.communicate(timeout=60)
    dog.join(timeout=5)
    assert "survived" not in out
    assert dog.reason and "memory" in dog.reason
    assert dog.peak_bytes < 1.5 * 2**30


def test_watchdog_time_limit(tmp_path):
    cmd = sandbox_command(["/bin/sleep", "30"], workdir=str(tmp_path / "work"), env=base_env(), python=False)
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    dog = Watchdog(proc.pid, seconds=1, interval=0.05)
    dog.start()
    proc.wait(timeout=20)
    assert time.monotonic() - start < 10 and "longer than 1 s" in dog.reason


def test_gpu_device_nodes_are_bound_when_present(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "gpu_device_nodes", lambda: ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"])
    cmd = sandbox_command(["true"], workdir=str(tmp_path / "w"))
    for node in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"):
        i = cmd.index(node)
        assert cmd[i - 1] == "--dev-bind" and cmd[i + 1] == node
    assert "--dev-bind" not in sandbox_command(["true"], workdir=str(tmp_path / "w"), gpu=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the unprivileged user 'nobody'")
def test_works_for_an_unprivileged_ta(monkeypatch):
    """bwrap without setuid, started by a normal user (nobody): a user namespace, same isolation, same caps."""
    monkeypatch.setattr(sandbox, "_running_as_root", lambda: False)
    cmd = sandbox_command(["/bin/sh", "-c", "id -u; hostname; ls /root 2>&1 | head -1; prlimit --nproc --output SOFT --noheadings"],
                          workdir="/tmp/inside", env=base_env(), python=False, limits=Limits(processes=32))
    assert "--unshare-user" in cmd and "setpriv" not in cmd
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd],
                            capture_output=True, text=True, timeout=30, cwd="/")
    assert result.returncode == 0, result.stderr
    uid, host, root_listing, nproc = result.stdout.split("\n")[:4]
    assert uid == str(sandbox.SANDBOX_UID) and host == "sandbox"
    assert "No such file" in root_listing or root_listing == ""
    assert nproc.strip() == "32"


def test_private_copy_refuses_links_devices_and_big_files(tmp_path):
    src = tmp_path / "sub"
    src.mkdir()
    (src / "notebook.ipynb").write_text("{}")
    (src / "zero.pt").symlink_to("/dev/zero")
    (src / "passwd.pt").symlink_to("/etc/passwd")
    (src / "big.bin").write_bytes(b"x" * 2000)
    os.mkfifo(src / "pipe.pt")
    (src / "linked_dir").symlink_to("/etc")
    skipped = private_copy(src, tmp_path / "copy", Limits(file_bytes=1000))
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["notebook.ipynb"]
    text = "\n".join(skipped)
    assert "zero.pt: zero.pt is a symbolic link" in text and "passwd.pt" in text
    assert "pipe.pt" in text and "not a regular file" in text
    assert "big.bin" in text and "limit per file" in text and "linked_dir" in text
    with pytest.raises(Refused, match="symbolic link"):
        check_regular_file(src / "zero.pt")


def test_forked_workers_are_not_counted_once_per_child(tmp_path):
    """DataLoader-style workers share the parent's pages: 30 forks of a 200 MB process stay under 1 GiB."""
    cmd = sandbox_command([sys.executable, "-I", "-c", textwrap.dedent("""
        import os, time
        shared = bytearray(200_000_000)
        for _ in range(30):
            if os.fork() == 0:
                time.sleep(2)
                os._exit(0)
        time.sleep(1)
        print("alive")
    """)], workdir=str(tmp_path / "work"), env=base_env())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    dog = Watchdog(proc.pid, memory_bytes=2**30, interval=0.05)
    dog.start()
    out, _ = proc.communicate(timeout=60)
    assert "alive" in out and dog.reason is None, dog.reason


def test_tmp_inside_is_capped(tmp_path):
    result = run_python("""
        import errno
        try:
            with open("/tmp/fill.bin", "wb") as f:
                for _ in range(10):
                    f.write(b"z" * 1_000_000)
            print("filled")
        except OSError as exc:
            print("tmp full", errno.errorcode[exc.errno])
    """, tmp_path, limits=Limits(tmp_bytes=4_000_000))
    assert "tmp full ENOSPC" in result.stdout, result.stdout + result.stderr


def test_host_socket_folder_rules(tmp_path):
    """The kernel's socket folder is the one host folder it may write: size, count and links are watched."""
    from helpers.grading.sandbox import host_folder_problem
    assert host_folder_problem(str(tmp_path), 1000) is None
    (tmp_path / "big").write_bytes(b"x" * 2000)
    assert "more than" in host_folder_problem(str(tmp_path), 1000)
    (tmp_path / "big").unlink()
    (tmp_path / "k-1").symlink_to("/var/run/somewhere.sock")
    assert "symbolic link" in host_folder_problem(str(tmp_path), 1000)
