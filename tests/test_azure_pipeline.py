"""cvflow.azure_pipeline: the Azure ML pipeline plan (offline), the step runner's command line, the SDK v2 pipeline
job, components and schedule (loaded back by azure-ai-ml, which the dev environment has, and their command lines run
here), and — only where the legacy `cvflow[azure-pipeline]` SDK v1 is installed — the azureml v1 objects."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from cvflow.azure_pipeline import (AZURE_PIPELINE_MISSING, azureml_pipeline_available, build_pipeline_plan,
                                   parse_schedule)
from cvflow.config import ConfigError, find_repo

REPO = find_repo(Path(__file__).parent)


def _notebook(path: Path, params: str = "", code: str = "pass") -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    p = nbformat.v4.new_code_cell(params); p.metadata["tags"] = ["parameters"]
    test = nbformat.v4.new_code_cell("raise AssertionError('a test cell ran in an Azure ML step')")   # never run
    nb.cells = [p, test, nbformat.v4.new_markdown_cell("## Run this step"), nbformat.v4.new_code_cell(code)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _is_within(p: str, folder: str) -> bool:
    return p == folder or p.startswith(folder.rstrip("/") + "/")


# --- the repository's pipeline.yaml -----------------------------------------------------------------------------

def test_plan_of_repository_pipeline():
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())["steps"]
    plan = build_pipeline_plan(REPO / "pipeline.yaml", "cpu-cluster", schedule="every 1 day")
    assert [s.name for s in plan.steps] == [s["name"] for s in spec]
    assert [s.notebook for s in plan.steps] == [s["notebook"] for s in spec]
    # one pipeline parameter per notebook parameter, in order, named <step>__<key>
    want = [(f"{s['name']}__{k}", s["name"], k) for s in spec for k in (s.get("parameters") or {})]
    assert [(p.name, p.step, p.key) for p in plan.parameters] == want
    for s in spec:
        for k, v in (s.get("parameters") or {}).items():
            p = next(p for p in plan.parameters if p.name == f"{s['name']}__{k}")
            assert p.default == (v if isinstance(v, (str, int, float, bool)) else json.dumps(v)), (p, v)
    # every declared output is pipeline data of its step
    assert sorted((l.producer, l.path) for l in plan.links) == sorted((s["name"], o) for s in spec for o in s.get("outputs", []))
    # every input produced (as itself or inside a folder) by an earlier step is linked to the last such producer;
    # every other input is a datastore input under the prefix
    for i, s in enumerate(spec):
        step = plan.step(s["name"])
        for inp in s.get("inputs", []):
            producers = [(e["name"], o) for e in spec[:i] for o in e.get("outputs", []) if _is_within(inp, o)]
            if producers:
                name, out = producers[-1]
                link = next(l for l in plan.links if l.producer == name and l.path == out)
                assert step.inputs[inp] == link.name and s["name"] in link.consumers
                assert {"input": link.name} in step.arguments
            elif not any(_is_within(o, inp) for e in spec[:i] for o in e.get("outputs", [])):
                d = next(d for d in plan.datastore_inputs if d.path == inp)
                assert step.inputs[inp] == d.name and d.datastore_path == f"cvflow/home/{inp}"
                assert {"datastore": d.name} in step.arguments
    assert plan.schedule["frequency"] == "Day" and plan.schedule["interval"] == 1


# --- a toy pipeline with folders, files inside them and a re-written output --------------------------------------

@pytest.fixture
def toy(tmp_path) -> Path:
    for n in ("a", "b", "c", "d"):
        _notebook(tmp_path / "nbs" / f"{n}.ipynb")
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"steps": [
        {"name": "extract", "notebook": "nbs/a.ipynb", "parameters": {"every": 5, "videos": ["x.mp4"], "limit": None},
         "inputs": ["data/raw/videos"], "outputs": ["data/interim/frames"]},
        {"name": "label", "notebook": "nbs/b.ipynb", "parameters": {"strict": True},
         "inputs": ["data/interim/frames/index.json", "data/raw/labels.json"], "outputs": ["data/interim/frames", "data/processed/ds"]},
        {"name": "train", "notebook": "nbs/c.ipynb", "parameters": {"lr": 0.01, "preset": "cpu-small"},
         "inputs": ["data/processed/ds", "data/interim/frames"], "outputs": ["models/m"]},
        {"name": "serve", "notebook": "nbs/d.ipynb", "inputs": ["cvflow.yaml"]}]}, sort_keys=False))
    return tmp_path / "pipeline.yaml"


def test_toy_plan_steps_parameters_links(toy):
    plan = build_pipeline_plan(toy, "gpu", name="shapes", experiment="exp", datastore_prefix="/proj/home/")
    assert [s.name for s in plan.steps] == ["extract", "label", "train", "serve"]
    assert [(p.name, p.kind, p.default) for p in plan.parameters] == [
        ("extract__every", "int", 5), ("extract__videos", "json", '["x.mp4"]'), ("extract__limit", "json", "null"),
        ("label__strict", "bool", True), ("train__lr", "float", 0.01), ("train__preset", "str", "cpu-small")]
    links = {l.name: l for l in plan.links}
    # label reads a file inside extract's folder: the whole folder is linked and placed at its own path
    assert plan.step("label").inputs == {"data/interim/frames/index.json": "extract__data_interim_frames",
                                         "data/raw/labels.json": "raw__data_raw_labels_json"}
    args = plan.step("label").arguments
    i = args.index({"input": "extract__data_interim_frames"})
    assert args[i - 2:i + 1] == ["--input", "data/interim/frames", {"input": "extract__data_interim_frames"}]
    # label re-writes data/interim/frames: train reads label's version, not extract's
    assert plan.step("train").inputs == {"data/processed/ds": "label__data_processed_ds",
                                         "data/interim/frames": "label__data_interim_frames"}
    assert links["extract__data_interim_frames"].consumers == ["label"]
    assert links["label__data_interim_frames"].consumers == ["train"]
    assert links["train__models_m"].consumers == []
    assert links["train__models_m"].destination == "proj/home/pipeline-runs/{run-id}/train/models/m"
    assert [(d.path, d.datastore_path, d.consumers) for d in plan.datastore_inputs] == [
        ("data/raw/videos", "proj/home/data/raw/videos", ["extract"]),
        ("data/raw/labels.json", "proj/home/data/raw/labels.json", ["label"]),
        ("cvflow.yaml", "proj/home/cvflow.yaml", ["serve"])]
    # data dependencies order extract -> label -> train; serve reads no data of train: order-only edge
    assert [s.run_after for s in plan.steps] == [[], [], [], ["train"]]
    assert (plan.name, plan.experiment, plan.compute, plan.schedule) == ("shapes", "exp", "gpu", None)
    # each pipeline parameter appears in its step's arguments exactly once, after `--param KEY`
    for p in plan.parameters:
        args = plan.step(p.step).arguments
        i = args.index({"param": p.name})
        assert args[i - 2:i] == ["--param", p.key] and args.count({"param": p.name}) == 1
    # the runner gets the parameters' defaults (types) as JSON
    args = plan.step("extract").arguments
    assert json.loads(args[args.index("--params-json") + 1]) == {"every": 5, "videos": ["x.mp4"], "limit": None}


def test_toy_plan_errors(toy):
    with pytest.raises(ConfigError, match="step 'nope' is not in the pipeline"):
        build_pipeline_plan(toy, "gpu", skip=["nope"])
    with pytest.raises(ConfigError, match="every step is skipped"):
        build_pipeline_plan(toy, "gpu", skip=["extract", "label", "train", "serve"])
    with pytest.raises(ConfigError, match="schedule 'nightly'"):
        build_pipeline_plan(toy, "gpu", schedule="nightly")
    spec = yaml.safe_load(toy.read_text())
    spec["steps"][3]["inputs"] = ["/etc/passwd"]
    toy.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="'/etc/passwd' must be relative to the project home"):
        build_pipeline_plan(toy, "gpu")


# --- schedules ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,freq,n", [("every 1 day", "Day", 1), ("every 3 days", "Day", 3), ("every 15 minutes", "Minute", 15),
                                         ("every hour", "Hour", 1), ("EVERY 2 WEEKS", "Week", 2), ("every 1 month", "Month", 1)])
def test_parse_schedule(text, freq, n):
    assert parse_schedule(text) == {"frequency": freq, "interval": n}


@pytest.mark.parametrize("text", ["daily", "every day at 3", "every 1.5 days", "every 0 hours", "every 2 fortnights", "", "each 1 day"])
def test_parse_schedule_rejects(text):
    with pytest.raises(ConfigError, match="schedule"):
        parse_schedule(text)


# --- the command line ---------------------------------------------------------------------------------------------

def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cvflow.azure_pipeline", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_dry_run_prints_the_plan(toy):
    r = _cli("publish", "--compute", "gpu", "--config", str(toy), "--schedule", "every 6 hours", "--skip", "serve", "--dry-run",
             "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [s["name"] for s in plan["steps"]] == ["extract", "label", "train"]
    assert plan["schedule"] == {"name": "cvflow-schedule", "text": "every 6 hours", "frequency": "Hour", "interval": 6}
    assert "step 'serve' is skipped" in r.stderr
    r = _cli("publish", "--compute", "gpu", "--config", str(toy), "--schedule", "whenever", "--dry-run")
    assert r.returncode == 2 and "cvflow pipeline: schedule 'whenever'" in r.stderr
    r = _cli("publish", "--config", str(toy), "--dry-run")
    assert r.returncode == 2 and "--compute" in r.stderr


@pytest.mark.skipif(azureml_pipeline_available(), reason="checks the message shown when the legacy SDK is missing")
def test_publish_v1_without_sdk_says_what_to_install(toy):
    r = _cli("publish", "--compute", "gpu", "--config", str(toy), "--v1")
    assert r.returncode == 2 and "pip install 'cvflow[azure-pipeline]'" in r.stderr


def test_run_step_cli(tmp_path):
    "What one Azure ML step executes: inputs at mount points, typed parameter overrides, outputs copied out."
    _notebook(tmp_path / "nbs" / "step.ipynb", "n = 1\nnames = []\nflag = False",
              "from cvflow.config import get_paths\nfrom cvflow.files import atomic_write_text\np = get_paths()\n"
              "src = p.resolve('data/in/frames/f.txt').read_text()\n"
              "atomic_write_text(p.resolve('data/out/r.txt'), f'{src}|{n * 2}|{names}|{flag}|{type(n).__name__}')")
    mount = tmp_path / "mnt"; (mount / "frames").mkdir(parents=True); (mount / "frames" / "f.txt").write_text("hello")
    out = tmp_path / "upload"
    r = _cli("run-step", "--notebook", str(tmp_path / "nbs" / "step.ipynb"),
             "--params-json", json.dumps({"n": 1, "names": [], "flag": False}),
             "--param", "n", "21", "--param", "names", '["a"]', "--param", "flag", "True",
             "--input", "data/in/frames", str(mount), "--output", "data/out", str(out),
             "--executed", str(tmp_path / "outputs" / "step.ipynb"), "--home", str(tmp_path / "home"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "out" / "r.txt").read_text() == "hello|42|['a']|True|int"
    assert (tmp_path / "outputs" / "step.ipynb").is_file()
    assert (mount / "frames" / "f.txt").read_text() == "hello" and sorted(p.name for p in mount.rglob("*")) == ["f.txt", "frames"]
    r = _cli("run-step", "--notebook", str(tmp_path / "nbs" / "step.ipynb"), "--params-json", '{"n": 1}',
             "--param", "n", "many", cwd=tmp_path)
    assert r.returncode == 1 and "parameter 'n': 'many' is not a valid int" in r.stderr
    r = _cli("run-step", "--notebook", str(tmp_path / "nbs" / "step.ipynb"),
             "--input", "data/in/frames", str(tmp_path / "not-mounted"), cwd=tmp_path)
    assert r.returncode == 1 and "not-mounted does not exist" in r.stderr


# --- the azureml objects (only with the optional SDK) -------------------------------------------------------------

V1_PYTHON = REPO / "build" / "venv-v1" / "bin" / "python"   # `make venv-v1` (a prerequisite of `make pytest`)


def test_azureml_objects_from_plan(toy, tmp_path):
    if not azureml_pipeline_available():
        # The v1 pipeline SDK cannot share this environment (it downgrades numpy/pyarrow/azure-identity): run this
        # same test in the small environment `make venv-v1` builds for it, and pass or fail with it.
        if not V1_PYTHON.exists():
            pytest.skip(f"{AZURE_PIPELINE_MISSING}; `make venv-v1` builds that environment in build/venv-v1")
        r = subprocess.run([str(V1_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"{__file__}::test_azureml_objects_from_plan"], capture_output=True, text=True,
                           cwd=REPO, timeout=600)
        assert r.returncode == 0 and "1 passed" in r.stdout, (r.stdout + r.stderr)[-4000:]
        return
    from azureml.data import OutputFileDatasetConfig
    from azureml.data.azure_storage_datastore import AzureBlobDatastore
    from azureml.data.data_reference import DataReference
    from azureml.pipeline.core import PipelineParameter
    from azureml.pipeline.core.schedule import ScheduleRecurrence
    from cvflow.azure_pipeline import RUNNER_SCRIPT, build_steps, stage_pipeline_source
    plan = build_pipeline_plan(toy, "gpu-cluster", schedule="every 2 days")
    ds = AzureBlobDatastore(None, "workspaceblobstore", "container", "account")   # no workspace needed
    b = build_steps(plan, stage_pipeline_source(plan, tmp_path / "src"), ds)
    steps = b["steps"]
    assert list(steps) == ["extract", "label", "train", "serve"]
    assert {n: p.default_value for n, p in b["parameters"].items()} == {p.name: p.default for p in plan.parameters}
    assert all(isinstance(p, PipelineParameter) for p in b["parameters"].values())
    for s in plan.steps:
        st = steps[s.name]
        assert (st._script_name, st._compute_target, st._allow_reuse) == (RUNNER_SCRIPT, "gpu-cluster", True)
        assert len(st._arguments) == len(s.arguments)
        for built, planned in zip(st._arguments, s.arguments):
            if isinstance(planned, str): assert built == planned
            elif "param" in planned: assert built is b["parameters"][planned["param"]]
            elif "output" in planned: assert built == f"DatasetOutputConfig:{planned['output']}"  # the SDK's placeholder
            elif "datastore" in planned: assert built is b["datastore_inputs"][planned["datastore"]]
            else: assert built == f"DatasetConsumptionConfig:{planned['input']}"  # mounted in the consumer
        assert sorted(o.name for o in st._outputs) == sorted(s.outputs.values())
        assert all(isinstance(o, OutputFileDatasetConfig) for o in st._outputs)
        ins = {getattr(i, "data_reference_name", None) or i.name for i in st._inputs}
        assert ins == set(s.inputs.values()), (s.name, ins)
        assert [x.name for x in st.run_after_steps] == s.run_after
    assert isinstance(b["datastore_inputs"]["raw__cvflow_yaml"], DataReference)
    assert b["datastore_inputs"]["raw__cvflow_yaml"].path_on_datastore == "cvflow/home/cvflow.yaml"
    assert b["outputs"]["train__models_m"].destination[1] == "cvflow/home/pipeline-runs/{run-id}/train/models/m"
    assert b["runconfig"].docker.shm_size == "16g"
    rec = ScheduleRecurrence(frequency=plan.schedule["frequency"], interval=plan.schedule["interval"])
    rec.validate()
    assert (rec.frequency, rec.interval) == ("Day", 2)


# --- the SDK v2 pipeline job, components and schedule (azure-ai-ml is a dev requirement) ---------------------------

def test_v2_dry_run_of_the_repository_pipeline_loaded_back(tmp_path):
    from azure.ai.ml import load_component, load_job
    from azure.ai.ml.entities._load_functions import load_schedule  # not re-exported by azure.ai.ml
    r = _cli("publish", "--compute", "cpu-cluster", "--schedule", "every 2 days", "--out", str(tmp_path / "p"), "--dry-run")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "type: pipeline" in r.stdout and "type: recurrence" in r.stdout
    plan = build_pipeline_plan(REPO / "pipeline.yaml", "cpu-cluster", schedule="every 2 days")
    job = load_job(tmp_path / "p" / "pipeline.yml")
    assert type(job).__name__ == "PipelineJob" and job.settings.default_compute == "cpu-cluster"
    assert list(job.jobs) == [s.name for s in plan.steps]
    for p in plan.parameters:  # every notebook parameter is a job input with its default
        assert job.inputs[p.name]._data == (p.default if p.kind != "json" else str(p.default)), p.name
    for d in plan.datastore_inputs:
        assert job.inputs[d.name].path == f"azureml://datastores/workspaceblobstore/paths/{d.datastore_path}"
    for st in plan.steps:
        comp = load_component(tmp_path / "p" / "components" / f"{st.name}.yml")
        assert type(comp).__name__ == "CommandComponent"
        assert set(comp.outputs) == {"executed", *st.outputs.values()}
        assert {n for n in comp.inputs if not n.startswith("after__")} == set(st.parameters.values()) | set(st.inputs.values())
        node = job.jobs[st.name]
        for name, link in ((n, l) for n, l in st.inputs.items()):
            bound = node.inputs[link]._data
            producer = next((l.producer for l in plan.links if l.name == link), None)
            assert bound == (f"${{{{parent.jobs.{producer}.outputs.{link}}}}}" if producer else f"${{{{parent.inputs.{link}}}}}")
        for prev in st.run_after:
            assert node.inputs[f"after__{prev}"]._data == f"${{{{parent.jobs.{prev}.outputs.executed}}}}"
        assert (tmp_path / "p" / "src" / st.notebook).is_file()
    sched = load_schedule(tmp_path / "p" / "schedule.yml")
    assert (type(sched.trigger).__name__, sched.trigger.frequency, sched.trigger.interval) == ("RecurrenceTrigger", "day", 2)
    assert type(sched.create_job).__name__ == "PipelineJob"


def test_v2_component_command_lines_run_the_steps(tmp_path):
    "The components' command lines, with Azure ML's ${{...}} filled in by local folders, run the toy series for real."
    import re
    import shlex
    from cvflow.azure_pipeline import pipeline_job_v2, run_step_cli
    _notebook(tmp_path / "nbs" / "make.ipynb", "text = 'a b'\nn = 2",
              "from cvflow.config import get_paths\nfrom cvflow.files import atomic_write_text\n"
              "atomic_write_text(get_paths().resolve('data/interim/made/a.txt'), text * n)")
    _notebook(tmp_path / "nbs" / "use.ipynb", "suffix = ''",
              "from cvflow.config import get_paths\nfrom cvflow.files import atomic_write_text\np = get_paths()\n"
              "atomic_write_text(p.resolve('data/out/b.txt'), p.resolve('data/interim/made/a.txt').read_text() + suffix + '|' + p.resolve('cvflow.yaml').read_text())")
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"steps": [
        {"name": "make", "notebook": "nbs/make.ipynb", "parameters": {"text": "a b", "n": 2}, "outputs": ["data/interim/made"]},
        {"name": "use", "notebook": "nbs/use.ipynb", "parameters": {"suffix": ""}, "inputs": ["data/interim/made", "cvflow.yaml"],
         "outputs": ["data/out"]}]}, sort_keys=False))
    (tmp_path / "home").mkdir(); (tmp_path / "home" / "cvflow.yaml").write_text("seed: 1\n")
    plan = build_pipeline_plan(tmp_path / "pipeline.yaml", "cpu")
    docs = pipeline_job_v2(plan)
    where = {l.name: tmp_path / "azure" / l.name for l in plan.links}
    where.update({d.name: tmp_path / "home" / d.path for d in plan.datastore_inputs})
    for st in plan.steps:
        cmd = docs["components"][st.name]["command"]
        executed = tmp_path / "azure" / f"{st.name}-executed"
        cmd = re.sub(r"\$\{\{inputs\.(\w+)\}\}", lambda m: str(plan_value(plan, m[1]) if m[1] not in where else where[m[1]]), cmd)
        cmd = re.sub(r"\$\{\{outputs\.(\w+)\}\}", lambda m: str(executed if m[1] == "executed" else where[m[1]]), cmd)
        argv = shlex.split(cmd)
        assert argv[:2] == ["python", "cvflow_step.py"]
        argv[argv.index("--notebook") + 1] = str(tmp_path / st.notebook)
        run_step_cli(argv[2:] + ["--home", str(tmp_path / "homes" / st.name)], log=lambda *a: None)
        assert list(executed.glob("*.ipynb")), st.name
    assert (where["use__data_out"] / "out" / "b.txt").read_text() == "a ba b|seed: 1\n"  # the empty string stayed one argument


def plan_value(plan, name):
    "A parameter's value as Azure ML passes it: its default (the pipeline input)."
    return next(p.default for p in plan.parameters if p.name == name)
