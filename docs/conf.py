"""Sphinx configuration of the cvflow docs site: the notebooks of `nbs/` (executed) plus an API reference.

Build it with `make docs` (→ `docs/_build/html/index.html`). By hand:

    .venv/bin/sphinx-build -W --keep-going -b html -c docs build/docs-src docs/_build/html

The source folder (`build/docs-src`) is generated from `nbs/` and `cvflow/` on every build by
`cvflow_docs.prepare` (next to this file): a new notebook appears on the site without any change here.
"""
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(REPO))

import cvflow  # noqa: E402
import cvflow_docs  # noqa: E402

# Notebooks run with their fast defaults in a scratch project home, never in the user's data/ (as `make test`).
os.environ["CVFLOW_HOME"] = os.environ.get("CVFLOW_DOCS_HOME") or str(REPO / "build" / "docs-home")
Path(os.environ["CVFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
# Figures render inline in the executed notebooks (ipykernel's inline backend), whatever the caller's shell set.
os.environ.pop("MPLBACKEND", None)

project = "cvflow"
author = "cvflow developers"
copyright = "2026 onwards, cvflow developers"
release = version = cvflow.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "cvflow_docs"]

# The source tree is generated from nbs/ and cvflow/; `sphinx-build` is pointed at it with `-c docs`.
SOURCE = Path(os.environ.get("CVFLOW_DOCS_SRC") or REPO / "build" / "docs-src")
cvflow_docs.prepare(SOURCE)
root_doc = "index"
exclude_patterns = ["**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}

# --- myst / myst-nb
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("CVFLOW_DOCS_EXECUTE", "cache")  # cache | force | off
nb_execution_cache_path = str(REPO / "build" / "docs-cache")
nb_execution_in_temp = False  # run in nbs/ (see cvflow_docs._run_in_nbs), as nbdev_test does
nb_execution_timeout = 900  # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "remove"  # progress bars and library chatter on stderr stay out of the pages
# ipywidgets need their JavaScript from a CDN to come alive: the site loads nothing from outside and keeps
# their text fallback (the figures the notebooks also draw show the same).
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]

# --- autodoc: the package's exported names (`__all__`), docstrings written in Markdown (see cvflow_docs)
autodoc_default_options = {"members": True, "undoc-members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_mock_imports = ["azureml"]
default_role = "py:obj"  # `name` in a docstring renders as code and links to `name` when it is documented
add_module_names = False

# --- HTML
html_theme = "furo"
html_title = f"cvflow {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
