"""One headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) per test
module. `make browser` (a dependency of `make test`) installs it; without it these tests skip
and say why. Nothing downloads a browser."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # html_data: the pages' inputs

CHROMIUM = os.environ.get("BOTTLENECKS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BOTTLENECKS_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(p))]
    if missing:
        pytest.skip(f"no browser: {', '.join(missing)} missing; `make browser` installs Debian's chromium and "
                    "chromium-driver (as root)")
    profile = tempfile.mkdtemp(prefix="bn-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: $BOTTLENECKS_SCREENSHOTS (e.g. benchmarks/results) or a temporary folder."""
    where = os.environ.get("BOTTLENECKS_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
