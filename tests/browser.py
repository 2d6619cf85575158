"""Headless Chromium for the browser tests: Debian's `chromium` driven by Playwright's Python package.

Playwright's own browser download cannot work offline, so the tests launch the system executable
(`apt-get install chromium`, `pip install playwright`; never `playwright install`). Where either is missing the
tests skip and say which. Everything stays on the loopback interface and is shut down in `finally`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "reports" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str:
    "The system Chromium, or skip saying how to install it."
    for cand in (os.environ.get("CVFLOW_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    pytest.skip("Chromium is not installed (Debian: `apt-get install -y chromium`; or set CVFLOW_CHROMIUM)")


@contextlib.contextmanager
def chromium_page(viewport=(1400, 900)):
    "A Playwright page in a fresh headless system Chromium; the browser is closed however the block ends."
    exe = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed "
                                   "(`pip install playwright`; its browser download is not needed)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def save_screenshot(page_or_png, tmp_path: Path, name: str) -> Path:
    "A screenshot into the test's own folder, copied to `reports/screenshots/` for people to look at."
    out = tmp_path / name
    if isinstance(page_or_png, bytes):
        out.write_bytes(page_or_png)
    else:
        page_or_png.screenshot(path=str(out))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, SCREENSHOTS / name)
    return out


@contextlib.contextmanager
def chromium_browser():
    """A fresh headless system Chromium (Playwright `Browser`) for tests that need several independent sessions
    (one `browser.new_context()` per person: own cookies, own storage); closed however the block ends."""
    exe = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed "
                                   "(`pip install playwright`; its browser download is not needed)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()
