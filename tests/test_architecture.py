"""The package's shape: one module per step, data flowing forward, notebooks as the source."""
import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "cvflow"
NBS = PKG.parent / "nbs"


def _source_notebook(py: Path) -> str | None:
    m = re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", py.read_text().split("\n", 5)[2] if py.read_text().count("\n") > 3 else "")
    return m.group(1) if m else None


def _modules() -> dict[str, str]:
    "module name -> the notebook that exports it"
    out = {}
    for py in sorted(PKG.glob("*.py")):
        if py.name in ("__init__.py", "_modidx.py"):
            continue
        nb = _source_notebook(py)
        assert nb is not None, f"{py} does not say which notebook it is exported from: edit the notebook, not the module"
        assert (NBS / nb).is_file(), f"{py} names {nb}, which is not in nbs/"
        out[py.stem] = nb
    return out


def _cvflow_imports(py: Path) -> set[str]:
    "Every cvflow module imported anywhere in the file (top level or inside functions)."
    found = set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cvflow"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(a.name for a in node.names if not a.name.startswith("__"))
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("cvflow."))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("cvflow."):
                found.add(node.args[0].value.split(".")[1])
    return found


def test_every_module_comes_from_a_notebook():
    mods = _modules()
    assert {"config", "sample", "pipeline", "cli"} <= set(mods)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_imports_a_later_step(module):
    mods = _modules()
    mine = mods[module]
    for other in _cvflow_imports(PKG / f"{module}.py") - {module, "_modidx"}:
        assert other in mods, f"cvflow.{module} imports cvflow.{other}, which does not exist"
        assert mods[other] <= mine, (f"cvflow.{module} ({mine}) imports cvflow.{other} ({mods[other]}), a later step: "
                                     "data must flow forward")


def _pipeline_notebooks() -> list[Path]:
    import yaml
    y = yaml.safe_load((PKG.parent / "pipeline.yaml").read_text())
    return sorted({(PKG.parent / s["notebook"]).resolve() for s in y["steps"]})


@pytest.mark.parametrize("notebook", _pipeline_notebooks(), ids=lambda p: p.name)
def test_production_runs_execute_no_test_cell(notebook):
    "What `cvflow run` executes of a step's notebook (`production_notebook`) holds none of its fastcore tests."
    import json
    from cvflow.pipeline import production_cells
    nb = json.loads(notebook.read_text())
    kept = production_cells(nb, notebook)
    code = ["".join(c["source"]) for c in kept if c["cell_type"] == "code"]
    tests = re.compile(r"\btest_(eq|ne|fail|close|is|warns|stdout|eq_type|shuffled)\(|\bassert\b")
    offenders = [c.splitlines()[0] for c in code if tests.search(c)]
    assert not offenders, f"{notebook.name}: production cells run tests: {offenders}"
    all_tests = sum(bool(tests.search("".join(c["source"]))) for c in nb["cells"] if c["cell_type"] == "code")
    assert all_tests == 0 or len(kept) < len(nb["cells"]), f"{notebook.name}: its tests would run in production"


def test_one_notebook_runner_and_pauses_as_values():
    "Every runner (`cvflow run`, an Azure ML pipeline step) executes a step through `pipeline.execute_step`, the only"
    "caller of papermill; a pause is told from a failure by what the step wrote (`StepPaused`), not by an exception's name."
    callers = sorted(py.name for py in PKG.glob("*.py") if "execute_notebook(" in py.read_text())
    assert callers == ["pipeline.py"], callers
    for py in PKG.glob("*.py"):
        assert not re.search(r"\bename\s*==", py.read_text()), f"{py.name} matches an exception by its name"
    tree = ast.parse((PKG / "azure_pipeline.py").read_text())
    run_step = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run_step")
    assert any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "execute_step" for n in ast.walk(run_step))


# Steps redesigned as one exported function (#16, one step at a time): pipeline step -> (module, its function, the
# CLI entry that calls it). Each step's notebook (run section), its `cvflow` command and `cvflow run` (which executes
# that notebook) all go through the function. Steps join this table as they are moved.
STEP_FUNCTIONS = {
    "config": ("config", "run_config", "main"),
    "sample": ("sample", "run_sample", "main"),
    "frames": ("frames", "run_frames", "main"),
    "annotations": ("annotations", "run_annotations", "main"),
    "eda": ("eda", "run_eda", "main"),
    "dataset": ("dataset", "run_dataset", "main"),
    "view_dataset": ("viz", "run_view_dataset", "main"),
    "train": ("train", "run_train", "main"),
    "export": ("package", "run_export", "main_export"),
    "register": ("registry", "run_register", "main_register"),
    "deploy": ("deploy", "run_deploy", "main_deploy"),   # `cvflow deploy --local` (without it: Azure)
    "test_service": ("client", "run_test_service", "main"),
    "score_video": ("batch_scoring", "run_score_video", "main_score_video"),
}


# A task's own notebook for a step (pipeline.yaml `tasks.<task>.notebooks`) -> (module, its function, the `cvflow`
# command and its entry).
TASK_STEP_FUNCTIONS = {
    ("classification", "annotations"): ("labels", "run_labels", "labels", "main"),
    ("actions", "annotations"): ("actions", "run_clips", "clips", "main"),
}


def test_every_step_and_task_notebook_has_its_one_function():
    import yaml
    y = yaml.safe_load((PKG.parent / "pipeline.yaml").read_text())
    assert set(STEP_FUNCTIONS) == {s["name"] for s in y["steps"]}, "a pipeline step without its one function"
    swapped = {(t, s) for t, tm in (y.get("tasks") or {}).items() for s in (tm.get("notebooks") or {})}
    assert set(TASK_STEP_FUNCTIONS) == swapped, "a task notebook without its one function"


def _check_one_function(notebook: Path, module: str, fn: str, command: str, entry: str):
    import json
    from importlib import import_module
    from cvflow.pipeline import production_cells
    assert _modules()[module] == notebook.name, f"{module}.py is not exported from the step's notebook {notebook.name}"
    tree = ast.parse((PKG / f"{module}.py").read_text())
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert fn in defs, f"{module}.{fn} is not exported"
    calls = lambda node: {getattr(c.func, "id", None) for c in ast.walk(node) if isinstance(c, ast.Call)}
    assert fn in calls(defs[entry]), f"`cvflow` {module}.{entry} does not call {fn}"
    nb = json.loads(notebook.read_text())
    run = [c for c in production_cells(nb, notebook) if c["cell_type"] == "code" and not "".join(c["source"]).startswith("#| export")
           and "parameters" not in c.get("metadata", {}).get("tags", [])]
    assert any(fn in calls(ast.parse("\n".join(l for l in "".join(c["source"]).splitlines() if not l.startswith(("%", "!")))))
               for c in run), f"{notebook.name}: the run section (what `cvflow run` executes) does not call {fn}"
    assert import_module("cvflow.cli").COMMANDS[command][:2] == (f"cvflow.{module}", entry)


@pytest.mark.parametrize("task_step", sorted(TASK_STEP_FUNCTIONS), ids=lambda ts: "-".join(ts))
def test_task_notebook_cli_and_pipeline_call_one_step_function(task_step):
    import yaml
    module, fn, command, entry = TASK_STEP_FUNCTIONS[task_step]
    y = yaml.safe_load((PKG.parent / "pipeline.yaml").read_text())
    task, step = task_step
    _check_one_function(PKG.parent / y["tasks"][task]["notebooks"][step], module, fn, command, entry)


@pytest.mark.parametrize("step", sorted(STEP_FUNCTIONS))
def test_notebook_cli_and_pipeline_call_one_step_function(step):
    import yaml
    module, fn, entry = STEP_FUNCTIONS[step]
    y = yaml.safe_load((PKG.parent / "pipeline.yaml").read_text())
    notebook = PKG.parent / next(s["notebook"] for s in y["steps"] if s["name"] == step)
    _check_one_function(notebook, module, fn, step.replace("_", "-"), entry)   # `cvflow score-video`
