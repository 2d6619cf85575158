"""JupyterLab in a real browser: open the dataset viewer notebook, run all cells, click the browser's "next".

The user works in JupyterLab (JupyterHub on a DSVM). This test starts `jupyter lab` from this environment on
127.0.0.1 (a random token, a free port, no browser of its own) over a temporary copy of `nbs/` with a fresh
`CVFLOW_HOME`, drives Debian's Chromium with Playwright (`tests/browser.py`), runs every cell of
`05_view_dataset.ipynb` from the Run menu, waits for the ipywidgets dataset browser, clicks "next" and checks the
browser moved on (its caption and image change). Screenshots go to the test's folder and `reports/screenshots/`.
Skips, saying why, where Chromium or Playwright is missing.
"""
from __future__ import annotations

import re
import shutil

import pytest

from browser import REPO, chromium_page, chromium_path, jupyter_lab, poll, save_screenshot

NOTEBOOK = "05_view_dataset.ipynb"
CAPTION = re.compile(r"^\s*(\d+)/(\d+)\s+\S")  # the browser's caption: "1/9  sample_000003.jpg  (320x240, 3 instances)"
pytestmark = pytest.mark.slow


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 over a copy of nbs/; yields (base url, token); always shut down."
    chromium_path()  # skip before starting anything when there is no browser
    pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed (`pip install playwright`)")
    if not (REPO / "nbs" / NOTEBOOK).exists():
        pytest.skip(f"nbs/{NOTEBOOK} does not exist yet")
    root, home = tmp_path / "nbs", tmp_path / "home"
    shutil.copytree(REPO / "nbs", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "kernel-ipc-*"))
    home.mkdir()
    with jupyter_lab(root, home, tmp_path) as (url, token):
        yield url, token


def caption_of(page) -> str | None:
    "The text of the dataset browser's caption label, if it is on the page."
    for text in page.locator(".jp-OutputArea-output .widget-label").all_inner_texts():
        if CAPTION.match(text):
            return text.strip()
    return None


def run_viewer_and_click_next(page, kernel_idle: re.Pattern | str, tmp_path, shot_name: str) -> None:
    """In an open notebook tab: wait for the kernel (`kernel_idle` in the status bar), Run All Cells, click the dataset
    browser's "next" and check its caption and image moved on, then that every cell finished without an error."""
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(state="visible", timeout=120_000)
    page.locator(".jp-StatusBar-Widget", has_text=kernel_idle).first.wait_for(timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    next_button = page.get_by_role("button", name="next ▶")
    next_button.wait_for(state="visible", timeout=300_000)
    # JupyterLab renders only the outputs near the view (windowed notebook): Run All leaves it at the last cell, below
    next_button.scroll_into_view_if_needed()
    before = poll(page, "the dataset browser's caption", lambda: caption_of(page), 60)
    widget = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=next_button).first
    image = widget.locator("img").first
    poll(page, "the browser's image", lambda: image.evaluate("i => i.complete && i.naturalWidth > 0"), 60)
    src_before = image.get_attribute("src")
    widget.scroll_into_view_if_needed()
    save_screenshot(page, tmp_path, shot_name.replace(".png", "_before.png"))

    next_button.click()
    after = poll(page, "the caption to change after clicking next",
                 lambda: (c := caption_of(page)) and c != before and c, 60)
    (p0, n0), (p1, n1) = map(int, CAPTION.match(before).groups()), map(int, CAPTION.match(after).groups())
    assert n1 == n0 and p1 == p0 % n0 + 1, f"'next' went from {before!r} to {after!r}"
    poll(page, "the image to change after clicking next", lambda: image.get_attribute("src") != src_before, 30)
    shot = save_screenshot(page, tmp_path, shot_name)
    assert shot.stat().st_size > 10_000

    # the rest of the notebook ran too, without an error
    poll(page, "every cell to finish", lambda: page.locator(".jp-InputPrompt", has_text="[*]").count() == 0, 300)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                          ":text('Traceback'), .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, f"a cell failed:\n{errors.first.inner_text()[:2000]}"


def test_dataset_browser_in_jupyterlab(lab, tmp_path):
    url, token = lab
    with chromium_page() as page:
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", wait_until="domcontentloaded", timeout=90_000)
        # the kernel is up when the status bar says so ("Python 3 (ipykernel) | Idle")
        run_viewer_and_click_next(page, "Idle", tmp_path, "jupyterlab_05_view_dataset.png")
