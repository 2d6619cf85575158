"""The polygon annotator in a real browser: correct a model's pre-annotations in JupyterLab as a person would.

Starts `jupyter lab` on 127.0.0.1 over a temporary folder holding two 320×240 frames, a VIA 2 project whose
first frame has two pre-annotated regions, and a one-cell notebook opening `PolygonAnnotator` on it; drives
Debian's Chromium with Playwright (`tests/browser.py`): checks the frame shows at its native size, draws a polygon
by clicks closing on its first point, drags a vertex of one pre-annotation, deletes the other with the Delete key,
changes the new polygon's class with the key 2, moves to the next frame with →, then reads the saved project file:
exactly those shapes (within 1 px) and nothing else, and `read_annotations` finds no problem. Skips, saying why,
where Chromium or Playwright is missing.
"""
from __future__ import annotations

import json
import re
import time

import nbformat
import pytest
from PIL import Image, ImageDraw

from browser import chromium_page, chromium_path, jupyter_lab, poll, save_screenshot
from cvflow.annotation_formats import read_annotations, via_project_for_frames

pytestmark = pytest.mark.slow
SQUARE = [(40, 40), (100, 40), (100, 100), (40, 100)]     # pre-annotation 1 (class disc): its vertex 3 gets dragged
TRIANGLE = [(200, 40), (260, 40), (230, 100)]               # pre-annotation 2 (class disc): deleted
DRAWN = [(60, 150), (140, 150), (140, 210), (60, 210)]      # drawn by clicks, then made a "square" with the key 2
DRAGGED_TO = (120, 115)


def make_project(root):
    for i in range(2):
        im = Image.new("RGB", (320, 240), (40 + 60 * i, 90, 120))
        ImageDraw.Draw(im).ellipse((150, 120, 250, 220), fill=(220, 200, 60))
        im.save(root / f"clip_{i:06d}.jpg", quality=95)
    proj = via_project_for_frames(root, ["disc", "square", "triangle"], root / "project.json")
    first = proj["_via_img_metadata"][proj["_via_image_id_list"][0]]
    first["regions"] = [{"shape_attributes": {"name": "polygon", "all_points_x": [x for x, _ in p], "all_points_y": [y for _, y in p]},
                         "region_attributes": {"class": "disc"}} for p in (SQUARE, TRIANGLE)]
    (root / "project.json").write_text(json.dumps(proj))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('from cvflow.annotation_widget import PolygonAnnotator\n'
                                          'PolygonAnnotator("project.json").widget()')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, root / "annotate.ipynb")


def shapes(path) -> list[list[tuple[str, list]]]:
    "Per frame, (class, points) of each region as saved: read with plain json, not by the widget."
    proj = json.loads(path.read_text())
    return [[(r["region_attributes"]["class"], list(zip(r["shape_attributes"]["all_points_x"], r["shape_attributes"]["all_points_y"])))
             for r in proj["_via_img_metadata"][k]["regions"]] for k in proj["_via_image_id_list"]]


def close_to(a, b, tol=1.0) -> bool:
    return len(a) == len(b) and all(abs(x - u) <= tol and abs(y - v) <= tol for (x, y), (u, v) in zip(a, b))


def test_annotator_in_jupyterlab(tmp_path):
    chromium_path()
    pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed (`pip install playwright`)")
    root, home = tmp_path / "work", tmp_path / "home"
    root.mkdir(); home.mkdir()
    make_project(root)
    t0 = time.monotonic()
    with jupyter_lab(root, home, tmp_path) as (url, token), chromium_page() as page:
        page.goto(f"{url}/lab/tree/annotate.ipynb?token={token}", wait_until="domcontentloaded", timeout=90_000)
        page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(state="visible", timeout=120_000)
        page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=120_000)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

        status = page.locator(".jp-OutputArea-output .widget-label", has_text="clip_0000").first
        status.wait_for(state="visible", timeout=180_000)
        canvas = page.locator(".jp-OutputArea-output canvas").first
        canvas.scroll_into_view_if_needed()
        said = lambda text: poll(page, f"the status line to say {text!r} (it says {status.inner_text()!r})",
                                 lambda: text in status.inner_text(), 30)
        said("1/2 clip_000000.jpg: 2 region(s)")
        box = canvas.bounding_box()
        assert (round(box["width"]), round(box["height"])) == (320, 240), f"not shown at native size: {box}"
        sbox = status.bounding_box()
        assert sbox["y"] + sbox["height"] <= 900, f"the status line is out of view: {sbox}"   # the window is 1400×900
        at = lambda x, y: (box["x"] + x, box["y"] + y)
        click = lambda x, y: page.mouse.click(*at(x, y))

        for x, y in DRAWN:                        # a polygon, closed by clicking its first point again
            click(x, y)
        said("drawing 4 point(s)")
        click(DRAWN[0][0] + 2, DRAWN[0][1] + 1)
        said("3 region(s)")
        said("closed a disc")

        click(70, 70)                             # select the pre-annotated square, drag its vertex 3
        said("selected 1 (disc)")
        page.mouse.move(*at(*SQUARE[2]))
        page.mouse.down()
        page.mouse.move(*at(110, 108), steps=4)
        page.mouse.move(*at(*DRAGGED_TO), steps=4)
        page.mouse.up()
        said("moved vertex 3 of region 1")

        click(230, 60)                            # select the triangle, delete it with the key
        said("selected 2 (disc)")
        page.keyboard.press("Delete")
        said("deleted region 2")

        click(100, 180)                           # select the drawn polygon, class 2 with the key
        said("selected 2 (disc)")
        page.keyboard.press("2")
        said("region 2 is now square")
        save_screenshot(page, tmp_path, "jupyterlab_annotator.png")

        page.keyboard.press("ArrowRight")         # the next frame
        said("2/2 clip_000001.jpg: 0 region(s)")
        said("saved")
        assert page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count() == 0
        shot = save_screenshot(page, tmp_path, "jupyterlab_annotator_next.png")
        assert shot.stat().st_size > 10_000
        # the notebook is as it was: no key reached JupyterLab (no cell changed to a heading, none deleted)
        assert page.locator(".jp-NotebookPanel .jp-Cell").count() == 1
        assert page.locator(".jp-NotebookPanel .jp-MarkdownCell").count() == 0

    saved = shapes(root / "project.json")
    expected_square = [SQUARE[0], SQUARE[1], DRAGGED_TO, SQUARE[3]]
    assert len(saved) == 2 and saved[1] == [], saved
    assert [c for c, _ in saved[0]] == ["disc", "square"], saved
    assert close_to(saved[0][0][1], expected_square), saved[0][0]
    assert close_to(saved[0][1][1], DRAWN), saved[0][1]
    # the class attribute named as the widget uses it: with 2 regions of 2 classes the reader's guess would not
    # take it for a class (too few regions to tell a label from free text) and would say so
    ann = read_annotations(root / "project.json", class_attribute="class")
    assert [p for p in ann.problems if p.severity != "info"] == []
    assert [(im.file_name, sorted(i.class_name for i in im.instances)) for im in ann.images] == \
        [("clip_000000.jpg", ["disc", "square"]), ("clip_000001.jpg", [])]
    print(f"browser session: {time.monotonic() - t0:.0f} s")
