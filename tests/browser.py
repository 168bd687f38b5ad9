"""A real headless browser for UI tests: Debian's chromium driven by selenium through chromedriver.

`.ci/run` installs the `chromium` and `chromium-driver` packages where they are missing; elsewhere a
test that needs the browser is skipped, saying which part is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS_ENV = "LITBENCH_SCREENSHOTS"  # a folder to keep the screenshots in (default: the test's tmp)


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    if CHROMEDRIVER is None:
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


needs_browser = pytest.mark.skipif(missing() is not None, reason=f"no browser: {missing()}")


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1600,1000")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for(driver, shown: Callable[[str], bool], what: str, timeout_s: float = 60.0) -> str:
    """The page's text once ``shown(text)`` holds; fails naming ``what`` and the text seen last."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            text = page_text(driver)
        except Exception:  # the page is between renders
            text = ""
        if shown(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"the page at {driver.current_url} never showed {what}; it showed:\n{text[:3000]}")
