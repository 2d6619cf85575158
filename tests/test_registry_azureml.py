"""Legacy Azure ML SDK v1 parts (cvflow.azureml_v1, `backend: azure-v1`): the job specification and staged source
offline; the azureml-core objects are built and inspected only where azureml-core is installed (the legacy extra
cvflow[azure-v1]; Microsoft ended SDK v1 support on 2026-06-30, and the dev environment carries SDK v2 instead,
whose tests are tests/test_azure_v2.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cvflow.config import ConfigError, azureml_available
from cvflow.files import file_hash
from cvflow.azureml_v1 import (ENTRY_SCRIPT, build_training_job, main_train_azure, model_properties, model_record,
                               stage_source, training_job_spec)
from cvflow.registry import list_models

needs_azureml = pytest.mark.skipif(not azureml_available(),
                                   reason="legacy azureml-core (extra cvflow[azure-v1]) is not installed")


def tiny_dataset(d: Path, card: str = '{"name": "x"}') -> Path:
    (d / "images").mkdir(parents=True, exist_ok=True)
    (d / "train.json").write_text("{}")
    (d / "dataset_card.json").write_text(card)
    return d


def test_spec_for_multi_node_training(tmp_path):
    ds = tiny_dataset(tmp_path / "shapes")
    (tmp_path / "t.yaml").write_text("preset: r50-fpn\n")
    spec = training_job_spec("a100-cluster", data=ds, config=tmp_path / "t.yaml", nodes=4, gpus_per_node=8,
                             train_args=["--max-steps", "9000"])
    assert spec["compute_target"] == "a100-cluster"
    assert (spec["distributed"]["node_count"], spec["distributed"]["process_count"]) == (4, 32)
    assert spec["arguments"][:2] == ["--data", "{data}"]
    assert spec["arguments"][spec["arguments"].index("--config") + 1] == "train_config.yaml"
    assert spec["arguments"][-2:] == ["--max-steps", "9000"]
    assert "--tracking azure" in spec["command"] and spec["command"].startswith("python -m cvflow.train")
    # content-addressed upload path: the card's sha256 prefix
    assert spec["data"]["target_path"] == "cvflow/datasets/shapes-" + file_hash(ds / "dataset_card.json")[:12]
    assert any(p.startswith("azureml-core") for p in spec["environment"]["pip"])


def test_staged_source_runs_cvflow_train(tmp_path):
    spec = training_job_spec("c", data=tiny_dataset(tmp_path / "ds"))
    src = stage_source(spec, tmp_path / "src")
    r = subprocess.run([sys.executable, ENTRY_SCRIPT, "--help"], cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage: cvflow train" in r.stdout
    # it imports the staged copy, not the installed package
    r = subprocess.run([sys.executable, "-c", "import cvflow, pathlib; print(pathlib.Path(cvflow.__file__).resolve())"],
                       cwd=src, capture_output=True, text=True)
    assert r.stdout.strip() == str((src / "cvflow" / "__init__.py").resolve())


def test_dry_run_cli(tmp_path, capsys):
    ds = tiny_dataset(tmp_path / "ds")
    assert main_train_azure(["--azure-v1", "--compute", "gpu", "--gpus-per-node", "2", "--data", str(ds), "--dry-run",
                             "--stage-dir", str(tmp_path / "src"), "--epochs", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["distributed"]["process_count"] == 2 and shown["source_directory"] == str(tmp_path / "src")
    assert (tmp_path / "src" / "cvflow" / "train.py").is_file()
    assert main_train_azure(["--azure", "--compute", "gpu", "--data", str(ds), "--out", "x", "--dry-run"]) == 2
    assert "set by the Azure job itself" in capsys.readouterr().err


def test_registry_record_conversion():
    class M:  # the attributes of azureml.core.Model that are read
        name, version, description, url, run_id, created_time = "m", "4", "", "aml://x", "r", None
        tags = {"preset": "r50-fpn", "alias:production": "true", "alias:canary": "true"}
        properties = {"segm/AP": "0.4321", "git": "abc"}
    r = model_record(M())
    assert (r["version"], r["aliases"], r["metrics"], r["tags"]) == (4, ["canary", "production"], {"segm/AP": 0.4321},
                                                                      {"preset": "r50-fpn"})
    assert model_properties({"x": 0.5}) == {"x": "0.5"}


def test_legacy_backend_without_sdk_is_a_clear_error(tmp_path, monkeypatch):
    import cvflow.azureml_v1 as v1
    monkeypatch.setattr(v1, "azureml_available", lambda: False)  # as on a machine without the legacy extra
    with pytest.raises(ConfigError, match=r"pip install 'cvflow\[azure-v1\]'"):
        build_training_job(training_job_spec("c", data=tiny_dataset(tmp_path / "ds")), tmp_path, "/mnt")
    with pytest.raises(ConfigError, match=r"pip install 'cvflow\[azure-v1\]'"):
        list_models(backend="azure-v1")


@needs_azureml
def test_script_run_config_built_offline(tmp_path):
    spec = training_job_spec("gpu-a100", data=tiny_dataset(tmp_path / "ds"), nodes=2, gpus_per_node=4)
    job = build_training_job(spec, stage_source(spec, tmp_path / "src"), "/mnt/data")
    assert job.run_config.target == "gpu-a100" and job.script == ENTRY_SCRIPT
    assert job.arguments[:2] == ["--data", "/mnt/data"]
    assert (job.run_config.framework, job.run_config.pytorch.node_count, job.run_config.pytorch.process_count) == ("PyTorch", 2, 8)
    pip = [str(p) for p in job.run_config.environment.python.conda_dependencies.pip_packages]
    assert any(p.startswith("torch") for p in pip)
    assert job.run_config.docker.shm_size == "16g"
