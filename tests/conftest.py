"""Shared test settings: offline, reduced mode, a non-interactive plot backend."""
import os

import pytest

pytest_plugins = ["browser"]  # the `browser` fixture (tests/browser.py): Debian's Chromium through Selenium

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_OFFLINE", "1")


# The longest modules, longest first (measured on 2 cores). With two pytest-xdist workers
# (pyproject.toml) they start first, so the suite does not end on one worker running one of them alone.
LONGEST_FIRST = ("test_roundtrip.py", "test_hostile_class.py", "test_ta_workflow.py", "test_harness_class.py",
                 "test_run_all.py", "test_jupyterlab_journey.py",
                 "test_autograde_hooks.py", "test_sandbox_kernel.py", "test_demo.py", "test_gradebook_merge.py",
                 "test_harness_monitor.py", "test_harness.py", "test_exchange.py")
# Modules whose module-scoped fixture is parametrized by assignment or notebook: each assignment's run is its own
# unit of work for the workers (its tests share that run, nothing across assignments).
SPLIT_BY_PARAMETER = ("tests/test_roundtrip.py", "tests/test_run_all.py")


def pytest_collection_modifyitems(config, items):
    """Put the longest modules first (a stable sort: the order inside a module is kept)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_xdist_make_scheduler(config, log):
    """One worker per module (its shared runs are made once), one per assignment in SPLIT_BY_PARAMETER."""
    from xdist.scheduler import LoadFileScheduling

    class ModuleOrAssignment(LoadFileScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            if module in SPLIT_BY_PARAMETER and nodeid.endswith("]"):
                return module + nodeid[nodeid.rindex("["):]
            return module

    return ModuleOrAssignment(config, log)


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
