"""Screenshots of report.html pages for the README and benchmarks/results/html-*.png.

    python benchmarks/html_screenshots.py RUN_DIR [RUN_DIR ...] [--out benchmarks/results]

Builds each run's report.html (``build_html``), opens it in headless Chromium (Debian's chromium
+ chromium-driver, `make browser`), clicks the first code / sample where the page has them, and
saves ``html-<kind>.png``; prints each page's size and load time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bottlenecks.report.html_browse import build_html

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--max-height", type=int, default=2400)
    args = ap.parse_args()
    profile = tempfile.mkdtemp(prefix="bn-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        for run in args.runs:
            page = build_html(run)
            t0 = time.perf_counter()
            driver.get(page.resolve().as_uri())
            WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
            seconds = time.perf_counter() - t0
            kind = driver.execute_script("return document.body.dataset.kind")
            for css in ("#code-list tbody tr", "#gallery .bn-thumb:nth-child(3)"):
                found = driver.find_elements("css selector", css)
                if found:
                    found[0].click()
            driver.execute_script("window.scrollTo(0, 0)")
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1400, min(height + 40, args.max_height))
            shot = Path(args.out) / f"html-{kind}.png"
            driver.save_screenshot(str(shot))
            driver.set_window_size(1400, 1000)
            print(f"{run}: {kind} page, {page.stat().st_size / 1e6:.2f} MB, drawn in {seconds:.1f} s -> {shot}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
