"""The built docs site (`make docs` → docs/_build/html) in headless Chromium: the home page renders, links work.

Skips when the site is not built (CI builds it after `make test`; run `make docs`, then this file) or when
Chromium/Playwright are missing. A screenshot of the home page goes to the test's folder and
`reports/screenshots/docs_home.png`. Also checks the source-tree generator (docs/cvflow_docs.py), which needs
neither.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from browser import REPO, chromium_page, save_screenshot

SITE = Path(__import__("os").environ.get("CVFLOW_DOCS_OUT") or REPO / "docs" / "_build" / "html")
sys.path.insert(0, str(REPO / "docs"))
import cvflow_docs  # noqa: E402


# ------------------------------------------------------------------------------------- the source generator
def test_directives_become_myst_nb_tags():
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# 01 · Frames\n\nSee `get_paths` and `nope`."},
        {"cell_type": "code", "id": "b", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "#| default_exp frames"},
        {"cell_type": "code", "id": "c", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "#| slow\ntrain()"},
        {"cell_type": "code", "id": "d", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "#|export\n#| echo: false\ndef f(): pass"},
        {"cell_type": "code", "id": "e", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "#| eval: false\nboom()"},
        {"cell_type": "code", "id": "f", "metadata": {}, "outputs": [], "execution_count": None, "source": "#| hide\nx = 1"}]}
    out = cvflow_docs.docs_notebook(nb, {"slow", "notest"}, {"cvflow.config.get_paths": "cvflow.config"},
                                    "cvflow.frames", "k")
    by_id = {c["id"]: c for c in out["cells"]}
    tags = {k: c["metadata"].get("tags", []) for k, c in by_id.items()}
    assert by_id["a"]["source"] == "# 01 · Frames\n\nSee {py:obj}`get_paths <cvflow.config.get_paths>` and `nope`."
    assert tags["b"] == ["remove-cell"]
    assert tags["c"] == ["skip-execution"] and by_id["c"]["source"] == "train()"
    assert tags["d"] == ["remove-input"] and by_id["d"]["source"] == "def f(): pass"
    assert tags["e"] == ["skip-execution"]
    assert tags["f"] == ["remove-cell"]
    # the cache key cell comes first, the module link right after the title
    assert out["cells"][0]["source"].endswith(": k") and "remove-cell" in out["cells"][0]["metadata"]["tags"]
    assert "{py:mod}`cvflow.frames`" in out["cells"][2]["source"]
    assert len({c["id"] for c in out["cells"]}) == len(out["cells"])
    assert nb["cells"][2]["source"] == "#| slow\ntrain()"  # the input is not modified


def test_prepare_covers_every_notebook_and_module(tmp_path):
    notebooks = cvflow_docs.prepare(tmp_path)
    expected_nbs = sorted(p.stem for p in (REPO / "nbs").glob("*.ipynb") if p.stem != "index")
    assert notebooks == expected_nbs
    assert sorted(p.stem for p in tmp_path.glob("*.ipynb")) == sorted(["index", *expected_nbs])
    modules = sorted(f"cvflow.{p.stem}" for p in (REPO / "cvflow").glob("*.py") if not p.name.startswith("_"))
    assert sorted(p.stem for p in (tmp_path / "api").glob("cvflow.*.rst")) == modules
    index = json.loads((tmp_path / "index.ipynb").read_text())
    toc = index["cells"][-1]["source"]
    assert all(f"\n{n}\n" in toc for n in expected_nbs) and "api/index" in toc
    # a notebook that leaves nbs/ leaves the site
    (tmp_path / "99_gone.ipynb").write_text("{}")
    cvflow_docs.prepare(tmp_path)
    assert not (tmp_path / "99_gone.ipynb").exists()


def test_cache_key_follows_imported_modules():
    deps = cvflow_docs.module_deps("from cvflow.sample import make_sample\n")
    assert "sample" in deps and "config" in deps  # sample imports config
    assert "train" not in deps
    assert cvflow_docs.package_key("import cvflow.sample") != cvflow_docs.package_key("import cvflow.config")


# ------------------------------------------------------------------------------------------ the built site
@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").exists():
        pytest.skip(f"the docs site is not built ({SITE}/index.html is missing): run `make docs`")
    return SITE


def test_every_page_is_built(site):
    "Pages for the notebooks and modules the site was built from exist (a stale site still passes this)."
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "cvflow" in html
    assert (site / "api" / "index.html").exists()
    assert list(site.glob("api/cvflow.*.html")), "no API page was built"
    assert list(site.glob("0*.html")), "no notebook page was built"


def test_home_page_in_chromium(site, tmp_path):
    with chromium_page() as page:
        broken = []
        page.on("requestfailed", lambda r: broken.append(r.url))
        page.goto(site.joinpath("index.html").as_uri(), wait_until="load")
        assert "cvflow" in page.title()
        assert page.locator("h1").first.inner_text().strip().startswith("cvflow")
        # the README's figures (nbs/index.ipynb is the README) rendered
        imgs = page.locator("article img")
        assert imgs.count() >= 1, "the home page shows no figure (was index.ipynb executed?)"
        assert imgs.first.evaluate("i => i.complete && i.naturalWidth > 0"), "the home page's figure did not load"
        # the navigation lists the notebooks and the API, and every local link resolves to a file
        hrefs = page.locator("a[href]").evaluate_all("as => as.map(a => a.href)")
        local = {urlparse(h).path for h in hrefs if h.startswith("file:")}
        assert any(p.endswith("/api/index.html") for p in local)
        assert sum(Path(p).name.startswith("0") for p in local) >= 2, "the navigation lists no notebooks"
        missing = sorted(p for p in local if not Path(p).exists())
        assert not missing, f"links to missing pages: {missing[:10]}"
        assert not broken, f"resources that failed to load: {broken[:10]}"
        shot = save_screenshot(page, tmp_path, "docs_home.png")
        assert shot.stat().st_size > 10_000
