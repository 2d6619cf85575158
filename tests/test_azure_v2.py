"""Azure ML SDK v2 (cvflow.azureml_v2, deploy --azure): everything cvflow writes for Azure ML is loaded back with the
SDK's own loaders (load_job, load_data, load_model, load_online_endpoint, load_online_deployment, load_component) and
compared field by field, with a real model package and no workspace: no test here calls the network. azure-ai-ml and
azureml-mlflow are dev requirements, so these tests run in CI (they fail, not skip, if the SDK is missing)."""
import contextlib
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from azure.ai.ml import load_component, load_data, load_job, load_model, load_online_deployment, load_online_endpoint

from cvflow import azureml_v2 as v2
from cvflow.cli import main as cli
from cvflow.config import ConfigError, Settings, azure_ai_ml_available, detect_backend, get_paths
from cvflow.files import file_hash

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_sdk_is_installed_in_the_dev_environment():
    assert azure_ai_ml_available(), "azure-ai-ml and azureml-mlflow are dev requirements (settings.ini)"


def dataset(d: Path, card: str = '{"name": "shapes", "images": 2}') -> Path:
    (d / "images").mkdir(parents=True, exist_ok=True)
    (d / "images" / "a.jpg").write_bytes(b"not really a jpeg")
    (d / "train.json").write_text("{}")
    (d / "dataset_card.json").write_text(card)
    return d


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    "A real (untrained, tiny) cvflow model package: model.pt, model.json, score.py, requirements.txt."
    from cvflow.deploy import demo_package
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("CVFLOW_HOME")
    os.environ["CVFLOW_HOME"] = str(home)
    try:
        return demo_package(home / "models" / "shapes" / "package", name="shapes")
    finally:
        if old is None: os.environ.pop("CVFLOW_HOME", None)
        else: os.environ["CVFLOW_HOME"] = old


# --- training: a command job -----------------------------------------------------------------------------------------

def test_train_dry_run_writes_a_command_job_the_sdk_loads(home, tmp_path):
    ds = dataset(home / "data" / "processed" / "shapes")
    (home / "train.yaml").write_text("preset: r50-fpn\nbatch_size: 4\n")
    rc, out, err = run_cli(["train", "--azure", "--compute", "a100-cluster", "--nodes", "4", "--gpus-per-node", "8",
                            "--data", str(ds), "--config", str(home / "train.yaml"), "--dry-run",
                            "--job-dir", str(tmp_path / "job"), "--max-steps", "9000"])
    assert rc == 0, err
    assert "written and validated by azure-ai-ml" in out
    job = load_job(tmp_path / "job" / "job.yml")
    assert type(job).__name__ == "Command"
    assert job.compute == "a100-cluster"
    assert (job.distribution.type, job.distribution.process_count_per_instance) == ("pytorch", 8)
    assert (job.resources.instance_count, job.resources.shm_size) == (4, "16g")
    version = file_hash(ds / "dataset_card.json")[:16]
    assert (job.inputs["data"].type, job.inputs["data"].path, job.inputs["data"].mode) == \
        ("uri_folder", f"cvflow-dataset-shapes:{version}", "ro_mount")
    assert (job.outputs["checkpoints"].type, job.outputs["checkpoints"].mode) == ("uri_folder", "rw_mount")
    cmd = job.command.split()
    assert cmd[:3] == ["python", "-m", "cvflow.train"]
    assert cmd[cmd.index("--data") + 1] == "${{inputs.data}}" and cmd[cmd.index("--out") + 1] == "${{outputs.checkpoints}}"
    assert cmd[cmd.index("--tracking") + 1] == "azure" and cmd[-2:] == ["--max-steps", "9000"]
    code = (tmp_path / "job" / job.code).resolve()
    assert (code / "cvflow" / "train.py").is_file()
    assert (code / "train_config.yaml").read_text() == (home / "train.yaml").read_text()
    assert cmd[cmd.index("--config") + 1] == "train_config.yaml"
    conda = job.environment.conda_file
    assert any(p.startswith("torch==") for p in conda["dependencies"][-1]["pip"])
    assert any(p.startswith("azureml-mlflow") for p in conda["dependencies"][-1]["pip"])
    data = load_data(tmp_path / "job" / "data.yml")
    assert (data.name, data.version, data.type) == ("cvflow-dataset-shapes", version, "uri_folder")
    assert Path(data.path).resolve() == ds.resolve()


def test_dataset_versions_are_content_addressed(tmp_path):
    a = dataset(tmp_path / "a" / "shapes")
    b = dataset(tmp_path / "b" / "shapes")
    assert v2.dataset_version(a) == v2.dataset_version(b)  # same content, same version: uploaded once
    (b / "dataset_card.json").write_text('{"name": "shapes", "images": 3}')
    assert v2.dataset_version(a) != v2.dataset_version(b)


def test_train_registered_dataset_and_environment(tmp_path):
    spec = v2.training_job("gpu", dataset="shapes-data:7", environment="cvflow-train@latest")
    files = v2.stage_training_job(spec, tmp_path / "job")
    job = load_job(files["job"])
    assert job.inputs["data"].path == "shapes-data:7" and "data" not in files
    assert job.environment == "cvflow-train@latest"
    with pytest.raises(ConfigError, match="NAME:VERSION"):
        v2.training_job("gpu", dataset="no version")
    with pytest.raises(ConfigError, match="set by the Azure ML job"):
        v2.training_job("gpu", dataset="d:1", train_args=["--out=x"])
    with pytest.raises(ConfigError, match="at least 1"):
        v2.training_job("gpu", dataset="d:1", nodes=0)


def test_train_routes_only_on_a_leading_mode_flag(home):
    rc, _, err = run_cli(["train", "--data", "x", "--azure"])
    assert rc == 2 and "must come first" in err
    with pytest.raises(SystemExit) as e, contextlib.redirect_stdout(io.StringIO()) as buf:
        cli(["train", "--azure", "--help"])
    assert e.value.code == 0 and "Azure ML command job (SDK v2" in buf.getvalue()


# --- registry ----------------------------------------------------------------------------------------------------------

def test_registered_model_entity_of_a_real_package(package, tmp_path):
    from cvflow.package import read_package_meta
    from cvflow.registry import version_tags
    meta = read_package_meta(package)
    tags = version_tags(meta, {"team": "vision"})
    m = v2.model_entity(package, "shapes", tags, {"segm_AP": 0.123456789, "bbox_AP": 0.5}, "first")
    m.dump(tmp_path / "model.yml")
    back = load_model(tmp_path / "model.yml")
    assert (back.name, back.type, back.description) == ("shapes", "custom_model", "first")
    assert Path(back.path).resolve() == package.resolve()
    assert back.tags == tags and back.tags["weights_sha256"] == file_hash(package / "model.pt")
    assert back.properties == {"segm_AP": "0.123457", "bbox_AP": "0.5"}
    back.version, back.tags = "2", {**back.tags, "alias:production": "true"}
    rec = v2.model_record(back)
    assert (rec["version"], rec["uri"], rec["aliases"], rec["metrics"]["segm_AP"]) == (2, "azureml:shapes:2", ["production"], 0.123457)
    assert "alias:production" not in rec["tags"]


def test_without_a_workspace_the_message_names_config_json(home):
    with pytest.raises(ConfigError) as e:
        v2.get_ml_client(Settings(), get_paths(home))
    assert "config.json" in str(e.value) and "https://ml.azure.com" in str(e.value) and "Download config file" in str(e.value)
    rc, out, _ = run_cli(["config"])
    assert rc == 0
    if detect_backend(Settings(), start=home).name == "local":
        assert "config.json" in out and "azure_sdk" in out


def test_cvflow_config_reports_the_sdk_with_a_workspace(home):
    (home / "config.json").write_text(json.dumps({"subscription_id": "00000000-0000-0000-0000-000000000000",
                                                  "resource_group": "rg", "workspace_name": "ws"}))
    rc, out, _ = run_cli(["config", "--json"])
    info = json.loads(out)
    assert rc == 0 and info["backend"] == "azure" and info["azure_sdk"].startswith("azure-ai-ml ")
    assert "Azure ML SDK v2" in info["backend_reason"]
    ml = v2.get_ml_client(Settings(), get_paths(home))  # built offline
    assert (ml.subscription_id, ml.resource_group_name, ml.workspace_name) == ("00000000-0000-0000-0000-000000000000", "rg", "ws")


# --- managed online endpoint -------------------------------------------------------------------------------------------

def test_deploy_dry_run_of_a_real_package(package, tmp_path):
    rc, out, err = run_cli(["deploy", str(package), "--azure", "--name", "shapes-prod", "--instance-type",
                            "Standard_NC4as_T4_v3", "--instance-count", "2", "--dry-run", "--out", str(tmp_path / "dep")])
    assert rc == 0, err
    ep = load_online_endpoint(tmp_path / "dep" / "endpoint.yml")
    dep = load_online_deployment(tmp_path / "dep" / "deployment.yml")
    assert (type(ep).__name__, ep.name, ep.auth_mode) == ("ManagedOnlineEndpoint", "shapes-prod", "key")
    assert (type(dep).__name__, dep.name, dep.endpoint_name) == ("ManagedOnlineDeployment", "blue", "shapes-prod")
    assert (dep.instance_type, dep.instance_count) == ("Standard_NC4as_T4_v3", 2)
    assert dep.code_configuration.scoring_script == "score.py"
    code = (tmp_path / "dep" / dep.code_configuration.code).resolve()
    assert (code / "score.py").read_bytes() == (package / "score.py").read_bytes()  # the same score.py as locally
    assert (code / "cvflow" / "package.py").is_file()  # what score.py imports
    model_dir = (tmp_path / "dep" / dep.model.path).resolve()
    assert file_hash(model_dir / package.name / "model.pt") == file_hash(package / "model.pt")
    assert dep.request_settings.request_timeout_ms == 90_000 and dep.request_settings.max_concurrent_requests_per_instance == 1
    assert dep.liveness_probe.initial_delay >= 30 and dep.readiness_probe.failure_threshold >= 3
    pip = dep.environment.conda_file["dependencies"][-1]["pip"]
    reqs = [l for l in (package / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert [p for p in pip if not p.startswith("azureml-inference-server-http")] == [r for r in reqs if not r.startswith(("cvflow", "azureml-inference-server-http"))]
    assert any(p.startswith("azureml-inference-server-http") for p in pip)
    assert "primary_key" not in out and "secondary_key" not in out


def test_deploy_with_a_registered_model(package, tmp_path):
    r = __import__("cvflow.deploy", fromlist=["deploy_managed"]).deploy_managed(
        package, model="shapes:3", dry_run=True, out=tmp_path / "dep")
    dep = load_online_deployment(r["files"]["deployment"])
    assert dep.model == "shapes:3" and not (tmp_path / "dep" / "model").exists()


# --- batch scoring: a parallel job --------------------------------------------------------------------------------------

def test_batch_score_dry_run_loaded_back(home, tmp_path):
    from cvflow.sample import make_sample_images
    make_sample_images(home / "imgs", n=3)
    imgs = home / "imgs" / "images"
    rc, out, err = run_cli(["batch-score", str(imgs), "--model", "shapes:3", "--compute", "cpu-cluster", "--nodes", "3",
                            "--mini-batch-size", "5", "--workers-per-node", "2", "--max-retries", "4", "--dry-run",
                            "--job-dir", str(tmp_path / "job")])
    assert rc == 0, err
    comp = load_component(tmp_path / "job" / "batch_score.component.yml")
    assert type(comp).__name__ == "ParallelComponent"
    assert (comp.mini_batch_size, comp.resources.instance_count, comp.max_concurrency_per_instance) == (5, 3, 2)
    assert (comp.retry_settings.max_retries, comp.task.entry_script, comp.task.type) == (4, "batch_score.py", "run_function")
    assert comp.input_data == "${{inputs.files}}"
    job = load_job(tmp_path / "job" / "job.yml")
    assert (type(job).__name__, job.settings.default_compute) == ("PipelineJob", "cpu-cluster")
    assert job.inputs["model"].path == "shapes:3" and job.inputs["files"].path.startswith("cvflow-batch-images:")
    assert type(job.jobs["score"]).__name__ == "Parallel"
    # a fixed results folder per input and model: running the same command again resumes where it stopped
    assert job.outputs["results"].path == ("azureml://datastores/workspaceblobstore/paths/cvflow/batch-score/"
                                           f"{job.inputs['files'].path.split(':')[0]}/shapes-3")
    assert load_data(tmp_path / "job" / "data.yml").version == v2.dataset_version(imgs)


def test_batch_entry_script_scores_each_file_once(package, tmp_path, monkeypatch):
    "The entry script Azure ML runs, run here on a real package: one JSON per input, files already done are skipped."
    from cvflow.sample import make_sample_images
    make_sample_images(tmp_path / "imgs", n=3)
    imgs = sorted((tmp_path / "imgs" / "images").glob("*.jpg"))
    files = v2.stage_batch_job(v2.batch_score_job("c", "azureml:x:1", "shapes:1"), tmp_path / "job")
    spec = importlib.util.spec_from_file_location("batch_score", files["code"] / v2.BATCH_ENTRY)
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    out = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", ["batch_score.py", "--model", str(package.parent), "--out", str(out),
                                      "--score-threshold", "0.0"])
    entry.init()
    done = entry.run([str(p) for p in imgs[:2]])
    assert [d.split("\t")[0] for d in done] == [p.name for p in imgs[:2]]
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert sorted(first) == sorted(p.name + ".json" for p in imgs[:2])
    doc = json.loads((out / (imgs[0].name + ".json")).read_text())
    assert (doc["file"], doc["kind"], doc["width"], doc["height"]) == (imgs[0].name, "image", 320, 240)
    assert isinstance(doc["instances"], list)
    entry.run([str(p) for p in imgs])  # a retried mini-batch: the first two are not scored again
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name in first} == first
    assert len(list(out.glob("*.json"))) == 3


def test_specs_carry_no_secret(package, tmp_path, home):
    "Nothing cvflow writes for Azure ML holds a key, token or password."
    ds = dataset(home / "ds")
    v2.stage_training_job(v2.training_job("gpu", data=ds), tmp_path / "t")
    v2.stage_online_deployment(v2.online_deployment(package), tmp_path / "d")
    for f in [*(tmp_path / "t").glob("*.yml"), *(tmp_path / "d").glob("*.yml")]:
        doc = yaml.safe_load(f.read_text())
        text = json.dumps(doc).lower()
        assert not any(w in text for w in ("primary_key", "secondary_key", "password", "token", "client_secret")), f


# --- test-service against a managed online endpoint's front end --------------------------------------------------------

def test_service_client_behind_a_managed_endpoint_front_end():
    "A stand-in on loopback for the endpoint's front end: only /score is routed, and key auth is a Bearer header."
    import http.server
    import threading
    from cvflow.client import ServiceClient
    seen = []

    class FrontEnd(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            ok = self.path == "/score" and self.headers.get("Authorization") == "Bearer k-123"
            body = json.dumps({"status": "ready", "model": {"name": "shapes"}}).encode() if ok else b"not found"
            self.send_response(200 if ok else (401 if self.path == "/score" else 404))
            self.send_header("Content-Type", "application/json" if ok else "text/plain")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FrontEnd)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/score"
        c = ServiceClient(url, key="k-123")
        assert c.health() and c.info()["model"]["name"] == "shapes"
        assert ("/", "Bearer k-123") in seen and ("/score", "Bearer k-123") in seen
        assert "k-123" not in repr(c)  # the key is never shown
        assert not ServiceClient(url, key="wrong").health()
    finally:
        srv.shutdown()


def test_registry_and_tracking_pick_sdk_v2_with_a_workspace(home):
    "With config.json and the SDK, `auto` is Azure ML v2 for the registry (an MLClient, built offline) and tracking."
    from cvflow import registry
    from cvflow.experiment_tracking import resolve_tracking
    (home / "config.json").write_text(json.dumps({"subscription_id": "00000000-0000-0000-0000-000000000000",
                                                  "resource_group": "rg", "workspace_name": "ws"}))
    paths = get_paths(home)
    assert registry.registry_backend("auto", Settings(), paths) == "azure"
    mod, client = registry._azure_registry("azure", Settings(), paths)
    assert mod is v2 and type(client).__name__ == "MLClient" and client.workspace_name == "ws"
    uri = ("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/00000000-0000-0000-0000-000000000000"
           "/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws")
    assert resolve_tracking("auto", Settings(), paths, env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": "r1"}) == ("azure", uri, "r1")
    assert resolve_tracking("auto", Settings(backend="local"), paths, env={})[0] == "mlflow"
    # the legacy SDK is asked for explicitly; without it the message says which extra installs it
    from cvflow.config import azureml_available
    if azureml_available():
        assert detect_backend(Settings(backend="azure-v1"), start=home).name == "azure-v1"
    else:
        with pytest.raises(ConfigError, match=r"cvflow\[azure-v1\]"):
            detect_backend(Settings(backend="azure-v1"), start=home)
