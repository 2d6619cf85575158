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
    with chromium_browser() as browser:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page


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


def free_port() -> int:
    "A free TCP port on the loopback interface."
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(proc) -> None:
    "Stop a server and everything it started (kernels): SIGTERM to its process group, then SIGKILL."
    import signal
    import subprocess
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def jupyter_lab(root: Path, home: Path, work: Path, timeout_s: float = 120):
    """`jupyter lab` from this environment on 127.0.0.1 (a random token, a free port, no browser of its own) over
    `root`, with `CVFLOW_HOME=home` and its settings, workspaces and runtime files under `work`; yields
    (base url, token); always shut down."""
    import secrets
    import subprocess
    import sys
    jupyter = Path(sys.executable).parent / "jupyter"
    conf = work / "jupyter"
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "CVFLOW_HOME": str(home),
           "JUPYTER_CONFIG_DIR": str(conf / "config"), "JUPYTER_RUNTIME_DIR": str(conf / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(conf / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(conf / "workspaces")}
    env.pop("MPLBACKEND", None)
    news = conf / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text('{"fetchNews": "false"}')
    log_path = work / "jupyterlab.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(proc, f"{url}/api/status?token={token}", "jupyter lab", log_path, timeout_s)
        yield url, token
    finally:
        stop_process_group(proc)
        log.close()


def wait_until_answering(proc, url: str, name: str, log_path: Path, timeout_s: float = 120) -> None:
    "Wait (bounded) until `url` answers 200, failing with the end of the server's log if `proc` exits or time runs out."
    import time
    import urllib.request
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not answer on {url.split('?')[0]} within {timeout_s:.0f} s:\n{log_path.read_text()[-4000:]}")
        time.sleep(1)


def poll(page, what: str, predicate, timeout_s: float):
    "Poll `predicate()` until it returns something truthy (bounded); fail naming `what`."
    import time
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(200)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
