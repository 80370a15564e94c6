"""The tests' one browser stack: Debian's Chromium, headless, driven by Selenium through Debian's
chromium-driver (never a downloaded browser or driver: this machine cannot download them).

A pytest plugin: a test module uses it with `pytest_plugins = ["browser"]` (or tests/conftest.py
once for all). The `browser` fixture is a Selenium WebDriver shared by the session. When
selenium, /usr/bin/chromium or /usr/bin/chromedriver is missing, a test that asks for it is
skipped with one line saying what to install; under CI=true it fails instead. As root (CI,
containers) Chromium runs with --no-sandbox. COURSE_CHROMIUM and COURSE_CHROMEDRIVER point
elsewhere.

Helpers for the tests that drive it: `wait_for` (an explicit wait that fails with what the page
showed), `screenshot` (a PNG of a step) and `page_text`.
"""
import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("COURSE_CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL = "apt-get install -y chromium chromium-driver, and pip install selenium"


def page_text(driver, limit: int = 4000) -> str:
    """The text the page shows (its end, when long): for failure messages."""
    try:
        text = driver.execute_script("return document.body ? document.body.innerText : ''") or ""
    except Exception as exc:  # a page still loading, a closed window
        return f"(the page text could not be read: {type(exc).__name__})"
    return text if len(text) <= limit else "...\n" + text[-limit:]


def wait_for(driver, condition, timeout: float = 30, what: str = "the page", describe=None, poll: float = 0.2):
    """Poll `condition(driver)` (raising counts as not yet) until truthy; on timeout fail with describe(driver)."""
    __tracebackhide__ = True  # a failure points at the test's wait, not here
    deadline = time.monotonic() + timeout
    error = None
    while True:
        try:
            value = condition(driver)
            if value:
                return value
        except Exception as exc:  # selenium's JavascriptException, StaleElementReferenceException, ...
            error = exc
        if time.monotonic() > deadline:
            last = f" (last error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})" \
                if error is not None else ""
            shown = describe(driver) if describe is not None else page_text(driver)
            raise AssertionError(f"waited {timeout:.0f} s for {what}{last}; the page showed:\n{shown}")
        time.sleep(poll)


def screenshot(driver, folder, name: str) -> Path:
    """Save what the window shows as folder/name.png and return the path (a record of each step)."""
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"the browser did not save a screenshot to {path}")
    return path


def missing() -> str | None:
    """What is missing for the browser tests, in a few words, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing"
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Selenium WebDriver, 1280x900 window), quit at the end of the session."""
    if reason := missing():
        message = f"browser tests need Chromium: {reason} ({INSTALL})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox on
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager must never try a download
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
