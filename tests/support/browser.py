"""Debian's headless chromium driven through its chromedriver (selenium), for
tests of the control plane's dashboard. Nothing is downloaded: the system
browser and driver are named explicitly (`make test` installs the packages
chromium and chromium-driver), so selenium never looks for a driver of its own.

Screenshots and other artifacts go to $MESHGRPC_TEST_ARTIFACTS, default
test-artifacts/ at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from tests.support.procs import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def artifacts_dir() -> str:
    path = os.environ.get("MESHGRPC_TEST_ARTIFACTS", os.path.join(REPO, "test-artifacts"))
    os.makedirs(path, exist_ok=True)
    return path


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1100):
    """A headless chromium on a fresh profile, quit (and its profile removed) at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="meshgrpc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Root needs --no-sandbox; the rest keep the browser from reaching out (no network here).
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    """The page's console messages at level SEVERE (errors, failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
