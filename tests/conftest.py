"""Shared test settings: offline, reduced mode, a non-interactive plot backend."""
import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_OFFLINE", "1")


def pytest_configure(config):
    """Under CI=true the sandbox tool must be there: a test that needs it fails, never skips."""
    import shutil
    if os.environ.get("CI") == "true" and shutil.which("bwrap") is None:
        raise RuntimeError("CI=true but bubblewrap (bwrap) is missing: `make test` installs it as root "
                           "(apt-get install bubblewrap)")


# Per-cell limit in autograde runs of the tests: longer than the slowest honest cell here, short
# enough that a simulated hang costs little. COURSE_TEST_CELL_TIMEOUT overrides it on a slow machine.
TEST_CELL_TIMEOUT = os.environ.get("COURSE_TEST_CELL_TIMEOUT", "20")


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment for nbgrader's kernels (they inherit ours): reduced mode, offline, the generated
    dataset cached in a data folder of the module's own, readable by the sandbox's uid."""
    data_dir = tmp_path_factory.mktemp("data")
    os.chmod(data_dir, 0o755)  # the sandboxed kernel runs as another uid (65534) and reads it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_FAST", "1")
        mp.setenv("COURSE_OFFLINE", "1")
        mp.setenv("COURSE_DATA_DIR", str(data_dir))
        mp.setenv("COURSE_CELL_TIMEOUT", TEST_CELL_TIMEOUT)
        # Plots are not graded; drawing them without the inline backend saves ~2.5 s a notebook run.
        mp.setenv("MPLBACKEND", "Agg")
        for var in ("COURSE_CIFAR10", "COURSE_CIFAR100", "COURSE_SANDBOX", "COURSE_TIERS"):
            mp.delenv(var, raising=False)
        from helpers.data import load_dataset
        load_dataset("synthetic", root=data_dir)  # build the cache once, outside the timed cells
        yield data_dir
