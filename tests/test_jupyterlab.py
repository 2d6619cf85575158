"""JupyterLab in a real browser: open the dataset viewer notebook, run all cells, click the browser's "next".

The user works in JupyterLab (JupyterHub on a DSVM). This test starts `jupyter lab` from this environment on
127.0.0.1 (a random token, a free port, no browser of its own) over a temporary copy of `nbs/` with a fresh
`CVFLOW_HOME`, drives Debian's Chromium with Playwright (`tests/browser.py`), runs every cell of
`05_view_dataset.ipynb` from the Run menu, waits for the ipywidgets dataset browser, clicks "next" and checks the
browser moved on (its caption and image change). Screenshots go to the test's folder and `reports/screenshots/`.
Skips, saying why, where Chromium or Playwright is missing.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser import REPO, chromium_page, chromium_path, save_screenshot

NOTEBOOK = "05_view_dataset.ipynb"
CAPTION = re.compile(r"^\s*(\d+)/(\d+)\s+\S")  # the browser's caption: "1/9  sample_000003.jpg  (320x240, 3 instances)"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    "Stop the server and everything it started (kernels): SIGTERM to its process group, then SIGKILL."
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


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 over a copy of nbs/; yields (base url, token); always shut down."
    chromium_path()  # skip before starting anything when there is no browser
    pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed (`pip install playwright`)")
    jupyter = Path(sys.executable).parent / "jupyter"
    if not (REPO / "nbs" / NOTEBOOK).exists():
        pytest.skip(f"nbs/{NOTEBOOK} does not exist yet")
    root, home, conf = tmp_path / "nbs", tmp_path / "home", tmp_path / "jupyter"
    shutil.copytree(REPO / "nbs", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home.mkdir()
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "CVFLOW_HOME": str(home),
           # the user's own JupyterLab settings, workspaces and runtime files stay out of it
           "JUPYTER_CONFIG_DIR": str(conf / "config"), "JUPYTER_RUNTIME_DIR": str(conf / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(conf / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(conf / "workspaces")}
    env.pop("MPLBACKEND", None)  # figures render inline as they would for a user
    # no "get notified about Jupyter news?" prompt over the notebook
    news = conf / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')
    log = (tmp_path / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI and containers run as root
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer on {url} within 120 s:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(1)
        yield url, token
    finally:
        stop(proc)
        log.close()


def caption_of(page) -> str | None:
    "The text of the dataset browser's caption label, if it is on the page."
    for text in page.locator(".jp-OutputArea-output .widget-label").all_inner_texts():
        if CAPTION.match(text):
            return text.strip()
    return None


def wait_for(page, what: str, predicate, timeout_s: float):
    "Poll `predicate()` until it returns something truthy (bounded); fail naming `what`."
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(500)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_dataset_browser_in_jupyterlab(lab, tmp_path):
    url, token = lab
    with chromium_page() as page:
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", wait_until="domcontentloaded", timeout=90_000)
        page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(state="visible", timeout=120_000)
        # the kernel is up when the status bar says so ("Python 3 (ipykernel) | Idle")
        page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=120_000)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

        next_button = page.get_by_role("button", name="next ▶")
        next_button.wait_for(state="visible", timeout=300_000)
        before = wait_for(page, "the dataset browser's caption", lambda: caption_of(page), 60)
        widget = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=next_button).first
        image = widget.locator("img").first
        wait_for(page, "the browser's image", lambda: image.evaluate("i => i.complete && i.naturalWidth > 0"), 60)
        src_before = image.get_attribute("src")
        widget.scroll_into_view_if_needed()
        save_screenshot(page, tmp_path, "jupyterlab_05_view_dataset_before.png")

        next_button.click()
        after = wait_for(page, "the caption to change after clicking next",
                         lambda: (c := caption_of(page)) and c != before and c, 60)
        (p0, n0), (p1, n1) = map(int, CAPTION.match(before).groups()), map(int, CAPTION.match(after).groups())
        assert n1 == n0 and p1 == p0 % n0 + 1, f"'next' went from {before!r} to {after!r}"
        wait_for(page, "the image to change after clicking next", lambda: image.get_attribute("src") != src_before, 30)
        shot = save_screenshot(page, tmp_path, "jupyterlab_05_view_dataset.png")
        assert shot.stat().st_size > 10_000

        # the rest of the notebook ran too, without an error
        wait_for(page, "every cell to finish", lambda: page.locator(".jp-InputPrompt", has_text="[*]").count() == 0, 300)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                              ":text('Traceback'), .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
        assert errors.count() == 0, f"a cell failed:\n{errors.first.inner_text()[:2000]}"
