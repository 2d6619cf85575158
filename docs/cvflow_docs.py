"""Turn `nbs/` and the `cvflow` package into a Sphinx source tree, and the Sphinx extension that builds it.

The notebooks are the documentation. `prepare(src)` writes, into a generated source folder (never into `nbs/`):

* a copy of every `nbs/*.ipynb`, with nbdev's cell directives turned into the tags myst-nb understands
  (`#| hide` → `remove-cell`, `#| echo: false` → `remove-input`, `#| output: false` → `remove-output`; the
  test flags of `settings.ini` (`tst_flags`, e.g. `slow`, `notest`) and `#| eval: false` → `skip-execution`,
  exactly what `nbdev_test` skips), the directive lines removed from the shown code, backticked names of
  exported symbols turned into links to the API pages (nbdev's doclinks, done with Sphinx roles), and a link to
  the notebook's module page;
* `index.ipynb` (nbdev's home page) with the site's table of contents appended. `nbs/index.ipynb` itself is made
  from `README.md` (`index_from_readme`, `make index`): one text, so the README, nbdev's home page and the site's
  first page say the same thing (tests/test_readme.py checks they agree);
* `api/<module>.rst`, one page per module of `cvflow/` (autodoc), each linking back to its notebook.

The copies are executed by myst-nb with the kernel's working directory set to `nbs/` (as under `nbdev_test`),
so a notebook that reads a file relative to itself finds it. Files are only rewritten when their content
changes, so Sphinx's incremental build and myst-nb's execution cache stay valid.
"""
from __future__ import annotations

import ast
import configparser
import copy
import hashlib
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / "nbs"
PKG = REPO / "cvflow"
API_DIR = "api"
README = REPO / "README.md"
STATIC = REPO / "docs" / "_static"
# a line of nbdev cell directives: `#| export`, `#|hide`, `#| eval: false`
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(?P<name>[\w-]+:?)\s*(?P<value>.*?)\s*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
# `name`, `name()` or `Class.method` in markdown prose, not already part of a link text or a role
BACKTICKED = re.compile(r"(?<![\w`\[}])`(?P<name>[A-Za-z_][\w.]*)(?P<call>\(\))?`(?!`)")


def tst_flags(repo: Path = REPO) -> set[str]:
    "The test flags of `settings.ini` (`tst_flags = notest|slow`): cells carrying one are not run by `nbdev_test`."
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(repo / "settings.ini", encoding="utf-8")
    raw = cfg["DEFAULT"].get("tst_flags", "")
    return {f.strip() for f in re.split(r"[|\s]+", raw) if f.strip()}


def split_directives(source: str) -> tuple[dict[str, str], str]:
    "nbdev directives at the top of a code cell (`{'export': '', 'eval:': 'false'}`) and the code without them."
    lines = source.splitlines()
    directives: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if m:
            directives[m["name"].lower()] = m["value"]
        elif lines[i].strip():
            break
        i += 1
    return directives, "\n".join(lines[i:]).strip("\n")


def module_notebooks(nbs: Path = NBS) -> dict[str, str]:
    "`{'cvflow.config': '00_config', ...}`: the notebook each module is exported from (its `#| default_exp`)."
    out = {}
    for nb_path in sorted(nbs.glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            directives, _ = split_directives("".join(cell.get("source", "")))
            if "default_exp" in directives and directives["default_exp"]:
                out.setdefault(f"cvflow.{directives['default_exp']}", nb_path.stem)
                break
    return out


def package_modules(pkg: Path = PKG) -> list[str]:
    "The public modules of the package that exist now (`cvflow.config`, ...), private ones (`_modidx`) left out."
    return sorted(f"cvflow.{p.stem}" for p in pkg.glob("*.py") if not p.stem.startswith("_"))


def exported_symbols(pkg: Path = PKG) -> dict[str, str]:
    "`{'cvflow.config.get_paths': 'cvflow.config', ...}`: every name in a module's `__all__` and their methods."
    out = {}
    for mod in package_modules(pkg):
        path = pkg / (mod.split(".", 1)[1] + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        public: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                try:
                    public = list(ast.literal_eval(node.value))
                except ValueError:
                    public = []
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in public:
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                        out[f"{mod}.{node.name}.{item.name}"] = mod
        for name in public:
            out[f"{mod}.{name}"] = mod
    return out


def link_names(markdown: str, symbols: dict[str, str], module: str | None) -> str:
    "Backticked exported names in prose become `{py:obj}` links to their API entry (code fences left alone)."
    short: dict[str, list[str]] = {}
    for full, mod in symbols.items():
        short.setdefault(full[len(mod) + 1:], []).append(full)
        short.setdefault(full, []).append(full)

    def target(name: str) -> str | None:
        cands = short.get(name, [])
        if len(cands) == 1:
            return cands[0]
        local = [c for c in cands if symbols[c] == module]  # ambiguous: prefer this notebook's own module
        return local[0] if len(local) == 1 else None

    def repl(m: re.Match) -> str:
        full = target(m["name"])
        if full is None:
            return m.group(0)
        return f"{{py:obj}}`{m['name']}{m['call'] or ''} <{full}>`"

    out, fence = [], None
    for line in markdown.split("\n"):
        f = FENCE.match(line)
        if fence is None and f:
            fence = f.group(1)[0]
        elif fence is not None and f and f.group(1)[0] == fence:
            fence = None
        elif fence is None:
            line = BACKTICKED.sub(repl, line)
        out.append(line)
    return "\n".join(out)


def _frontmatter_skip_exec(nb: dict) -> bool:
    "nbdev's notebook-level `skip_exec: true` (front matter in the first markdown cell)."
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell.get("source", ""))
            m = re.match(r"^---\s*\n(.*?)\n---", src, re.S)
            return bool(m and re.search(r"^skip_exec:\s*true\s*$", m.group(1), re.M | re.I))
    return False


def _tag(cell: dict, tag: str) -> None:
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def docs_notebook(nb: dict, flags: set[str], symbols: dict[str, str], module: str | None, key: str) -> dict:
    "The docs copy of a notebook (see the module docstring); `key` (a hash of the package) keys the execution cache."
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.get("cells", []):
        src = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            cell["source"] = link_names(src, symbols, module)
        elif cell.get("cell_type") == "code":
            directives, code = split_directives(src)
            if flags & directives.keys() or directives.get("eval:", "").lower() == "false":
                _tag(cell, "skip-execution")
            if "hide" in directives or not code.strip():
                _tag(cell, "remove-cell")
            if directives.get("echo:", "").lower() == "false":
                _tag(cell, "remove-input")
            if directives.get("output:", "").lower() == "false":
                _tag(cell, "remove-output")
            cell["source"] = code if code.strip() else src
        cells.append(cell)
    # myst-nb's cache matches notebooks on their code: this hidden cell makes a change in a package module the
    # notebook imports (directly or not) re-execute it instead of showing stale outputs.
    cells.insert(0, {"cell_type": "code", "execution_count": None, "outputs": [], "source": f"# cvflow modules used: {key}",
                     "metadata": {"tags": ["remove-cell"]}})
    if module:
        # after the title cell: where this notebook's code ends up
        title_at = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), 0)
        cells.insert(title_at + 1, {"cell_type": "markdown", "metadata": {},
                                    "source": f"*Module:* {{py:mod}}`{module}` ({{doc}}`API reference <{API_DIR}/{module}>`)"})
    if nb.get("nbformat", 4) == 4 and nb.get("nbformat_minor", 0) >= 5:  # cell ids are required from 4.5 on
        for i, c in enumerate(cells):
            c.setdefault("id", f"cvflow-docs-{i}")
    nb["cells"] = cells
    if _frontmatter_skip_exec(nb):
        nb.setdefault("metadata", {})["mystnb"] = {"execution_mode": "off"}
    return nb


def toctree(caption: str, entries: list[str]) -> str:
    return "\n".join(["```{toctree}", f":caption: {caption}", ":hidden:", "", *entries, "```"])


def api_page(module: str, notebook: str | None) -> str:
    "A module's API page, in reStructuredText: autodoc writes rST, which a MyST page would misread."
    title = f"``{module}``"
    lines = [title, "=" * len(title), ""]
    if notebook:
        lines += [f"Written and explained in the notebook :doc:`../{notebook}`; generated from it by ``nbdev_export``.", ""]
    lines += [f".. automodule:: {module}", "   :members:", "   :undoc-members:", "   :show-inheritance:", ""]
    return "\n".join(lines)


def api_index(modules: list[str], mod_nbs: dict[str, str]) -> str:
    lines = ["# API reference", "",
             "The `cvflow` package, one module per notebook. Each page is generated from the module's code and "
             "docstrings; the notebook next to it explains the why and shows each function at work.", "",
             "| module | notebook |", "|---|---|"]
    for m in modules:
        nb = mod_nbs.get(m)
        lines.append(f"| {{doc}}`{m} <{m}>` | {f'{{doc}}`../{nb}`' if nb else ''} |")
    lines += ["", toctree("Modules", modules), ""]
    return "\n".join(lines)


IMPORTS = re.compile(r"\b(?:from|import)\s+(?:cvflow)?\.(\w+)")  # `from cvflow.x import`, `import cvflow.x`, `from .x import`


def module_deps(code: str, pkg: Path = PKG) -> set[str]:
    "The package modules `code` imports, with everything they import in turn (`{'config', 'sample'}`)."
    todo, seen = set(IMPORTS.findall(code)), set()
    while todo:
        m = todo.pop()
        path = pkg / f"{m}.py"
        if m in seen or not path.exists():
            continue
        seen.add(m)
        todo |= set(IMPORTS.findall(path.read_text(encoding="utf-8"))) - seen
    return seen


def package_key(code: str, pkg: Path = PKG) -> str:
    "A hash of the package modules `code` depends on: beside the notebook's own code, the execution cache's key."
    h = hashlib.sha256()
    for m in sorted(module_deps(code, pkg)):
        h.update(m.encode() + b"\0" + (pkg / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


def _write(path: Path, text: str) -> None:
    "Write only when the content changes (keeps Sphinx's incremental build and the execution cache valid)."
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def prepare(src: Path, nbs: Path = NBS, pkg: Path = PKG) -> list[str]:
    "Write the Sphinx source tree into `src` (see the module docstring); returns the notebook names, in order."
    src = Path(src)
    src.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(p.stem for p in nbs.glob("*.ipynb") if p.stem != "index")
    if not (nbs / "index.ipynb").exists():
        raise FileNotFoundError(f"{nbs / 'index.ipynb'} is missing: it is the docs home page (and nbdev's readme_nb)")
    modules = package_modules(pkg)
    mod_nbs = module_notebooks(nbs)
    nb_mod = {nb: m for m, nb in mod_nbs.items() if m in modules}
    symbols, flags = exported_symbols(pkg), tst_flags(nbs.parent)
    wanted = {"index.ipynb", *(f"{n}.ipynb" for n in notebooks), API_DIR}
    for stale in src.iterdir():  # a notebook deleted from nbs/ leaves the site
        if stale.name not in wanted and stale.suffix in (".ipynb", ".md"):
            stale.unlink()
    for name in ["index", *notebooks]:
        nb = json.loads((nbs / f"{name}.ipynb").read_text(encoding="utf-8"))
        code = "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "code")
        out = docs_notebook(nb, flags, symbols, nb_mod.get(name), package_key(code, pkg))
        if name == "index":   # the README's images: copied beside the generated index, paths made relative to it
            for cell in out["cells"]:
                text = "".join(cell.get("source", ""))
                for img in sorted(set(re.findall(r"\]\(\.\./docs/_static/([\w.-]+)\)", text))):
                    (src / "_static").mkdir(exist_ok=True)
                    data = (STATIC / img).read_bytes()
                    if not (src / "_static" / img).exists() or (src / "_static" / img).read_bytes() != data:
                        (src / "_static" / img).write_bytes(data)
                if "../docs/_static/" in text:
                    cell["source"] = text.replace("](../docs/_static/", "](_static/")
            out["cells"].append({"cell_type": "markdown", "metadata": {}, **({"id": "cvflow-docs-toc"} if "id" in out["cells"][0] else {}),
                                 "source": toctree("Notebooks", notebooks) + "\n\n" + toctree("Reference", [f"{API_DIR}/index"])})
        _write(src / f"{name}.ipynb", json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    api = src / API_DIR
    api.mkdir(exist_ok=True)
    for stale in [*api.glob("*.md"), *api.glob("*.rst")]:
        if stale.stem not in modules and stale.stem != "index" or stale.suffix == ".md" and stale.stem != "index":
            stale.unlink()
    _write(api / "index.md", api_index(modules, mod_nbs))
    for m in modules:
        _write(api / f"{m}.rst", api_page(m, mod_nbs.get(m)))
    return notebooks


def _source_lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def index_from_readme(readme: str) -> dict:
    """`nbs/index.ipynb` made from the README's text: one markdown cell per `## ` section (headings inside code blocks
    are not sections), image paths under `docs/_static/` made relative to `nbs/`. Deterministic (cell ids
    `readme-NN`), so a regenerated index only changes where the README did."""
    sections: list[list[str]] = [[]]
    in_fence = False
    for line in readme.strip("\n").split("\n"):
        if FENCE.match(line): in_fence = not in_fence
        if line.startswith("## ") and not in_fence and sections[-1]: sections.append([])
        sections[-1].append(line)
    cells = [{"cell_type": "markdown", "id": f"readme-{i:02d}", "metadata": {},
              "source": _source_lines("\n".join(sec).strip("\n").replace("](docs/_static/", "](../docs/_static/"))}
             for i, sec in enumerate(sections)]
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def write_index(readme: Path = README, nbs: Path = NBS) -> Path:
    "Write `nbs/index.ipynb` from `readme` (as `nbdev_clean` formats notebooks); returns its path."
    out = nbs / "index.ipynb"
    _write(out, json.dumps(index_from_readme(readme.read_text(encoding="utf-8")), indent=1, ensure_ascii=False) + "\n")
    return out


# ---------------------------------------------------------------------------------------------- Sphinx side
def _run_in_nbs(nbs: Path = NBS) -> None:
    """myst-nb runs a notebook in the folder of its source file; ours are copies, so point it at `nbs/` instead.

    myst-nb (1.x) executes through `myst_nb.sphinx_.create_client(notebook, path, ...)`, whose `path.parent`
    becomes the kernel's working directory (with `nb_execution_in_temp = False`). The notebook executed is the
    copy passed in; only the path is swapped for the original's.
    """
    import myst_nb.sphinx_ as mnb

    if getattr(mnb.create_client, "_cvflow", False):
        return
    if not hasattr(mnb, "create_client"):
        raise RuntimeError("myst_nb.sphinx_.create_client is gone: update docs/cvflow_docs.py for this myst-nb")
    original = mnb.create_client

    def create_client(notebook, path, *args, **kwargs):
        if path is not None and (nbs / Path(path).name).exists():
            path = nbs / Path(path).name
        return original(notebook, path, *args, **kwargs)

    create_client._cvflow = True
    mnb.create_client = create_client


def _markdown_docstrings(app, what, name, obj, options, lines) -> None:
    """nbdev docstrings are Markdown; escape what reStructuredText would misread in them.

    Single backticks stay (`default_role = "py:obj"` renders them as code and links known names); a `*` or `_`
    that is not markup in Markdown (`*args`, `**kw`, `name_`) is escaped outside backticks.
    """
    def fix(segment: str) -> str:
        segment = re.sub(r"(?<!\\)\*\*(?=\w)", r"\\*\\*", segment)
        segment = re.sub(r"(?<![\\*])\*(?=\w)", r"\\*", segment)
        return re.sub(r"(?<=\w)_(?=\W|$)", r"\\_", segment)

    for i, line in enumerate(lines):
        parts = re.split(r"(`[^`]*`)", line)
        lines[i] = "".join(p if p.startswith("`") else fix(p) for p in parts)


def setup(app):
    _run_in_nbs()
    app.connect("autodoc-process-docstring", _markdown_docstrings)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":   # `make index`: nbs/index.ipynb from README.md
    print(write_index())
