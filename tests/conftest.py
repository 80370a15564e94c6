"""Shared test settings: offline, reduced mode, a non-interactive plot backend."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_OFFLINE", "1")


def pytest_configure(config):
    """Under CI=true the sandbox tool must be there: a test that needs it fails, never skips."""
    import shutil
    if os.environ.get("CI") == "true" and shutil.which("bwrap") is None:
        raise RuntimeError("CI=true but bubblewrap (bwrap) is missing: `make test` installs it as root "
                           "(apt-get install bubblewrap)")
