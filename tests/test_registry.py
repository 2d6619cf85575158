"""Model registry (cvflow.registry): a round trip through a temporary local MLflow store, and the CLIs."""
import json
from pathlib import Path

import pytest
import torch

from cvflow.config import get_paths
from cvflow.model import build_model, model_config
from cvflow.package import export_package, load_package
from cvflow.registry import (download_package, list_models, main_models, main_register, register_package, set_alias,
                             show_model)
from cvflow.experiment_tracking import default_tracking_uri


def make_package(model_dir: Path, ap: float) -> Path:
    torch.manual_seed(0)
    m = build_model("cpu-small", 3, min_size=96, max_size=128)
    cfg = {"preset": "cpu-small", "classes": ["a", "b"], "num_classes": 3, "model": model_config(m), "data": ""}
    (model_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save({"model": m.state_dict(), "config": cfg, "step": 2,
                "metrics": {"latest": {"step": 2, "segm/AP": ap, "bbox/AP50": ap * 2}, "run_id": "train-1"}},
               model_dir / "checkpoints" / "last.pt")
    return export_package(model_dir, quiet=True)


@pytest.fixture
def store(home):
    "A fresh project home with the local backend; the registry lives in its tracking store."
    (home / "cvflow.yaml").write_text("backend: local\n")
    return home


def test_round_trip_versions_tags_metrics_alias(store):
    pkg = make_package(store / "models" / "shapes", ap=0.2)
    r1 = register_package(pkg, "shapes", tags={"owner": "ci", "dataset": "synthetic"}, description="first try")
    make_package(store / "models" / "shapes", ap=0.4)            # re-exported, better
    r2 = register_package(pkg, "shapes", tags={"owner": "ci"}, alias="production")
    assert (r1["version"], r2["version"]) == (1, 2)
    assert r1["backend"] == r2["backend"] == "local"
    assert r2["uri"] == "models:/shapes/2"

    v1 = show_model("shapes", 1)
    assert v1["tags"]["owner"] == "ci" and v1["tags"]["dataset"] == "synthetic"
    assert v1["tags"]["preset"] == "cpu-small" and json.loads(v1["tags"]["classes"]) == ["a", "b"]
    assert v1["tags"]["training_run_id"] == "train-1"
    assert v1["description"] == "first try"
    assert v1["metrics"] == pytest.approx({"segm/AP": 0.2, "bbox/AP50": 0.4})
    assert show_model("shapes", 2)["metrics"]["segm/AP"] == pytest.approx(0.4)

    assert show_model("shapes", "production")["version"] == 2
    assert show_model("shapes")["version"] == 2
    set_alias("shapes", "production", 1)
    assert show_model("shapes", "production")["version"] == 1
    assert show_model("shapes", 2)["aliases"] == []

    # the store is the tracking store of 06c, inside the project home
    uri = default_tracking_uri(get_paths(store))
    assert uri == f"sqlite:///{store.resolve()}/mlruns/mlflow.db" and (store / "mlruns" / "mlflow.db").is_file()
    assert r1["source"].startswith((store / "mlruns").resolve().as_uri())

    rows = list_models()
    assert [(r["name"], r["latest_version"], r["versions"], r["aliases"]) for r in rows] == [("shapes", 2, 2, {"production": 1})]

    # registered files are a copy: version 1 still has its own weights/metrics after the re-export
    got = download_package("shapes", "production", store / "dl")
    assert load_package(got, device="cpu").meta["metrics"]["segm/AP"] == pytest.approx(0.2)

    with pytest.raises(LookupError, match="shapes:7 is not in the local registry"):
        show_model("shapes", 7)
    with pytest.raises(LookupError, match="shapes:staging is not in the local registry"):
        show_model("shapes", "staging")


def test_register_refuses_a_broken_package(store):
    pkg = make_package(store / "models" / "m", ap=0.1)
    b = bytearray((pkg / "model.pt").read_bytes()); b[100] ^= 1; (pkg / "model.pt").write_bytes(bytes(b))
    with pytest.raises(Exception, match="model.pt does not match the sha256"):
        register_package(pkg, "m")


def test_cli(store, capsys):
    pkg = make_package(store / "models" / "shapes", ap=0.3)
    assert main_register([str(pkg), "--name", "shapes", "--tags", "owner=me", "team=cv", "--alias", "production"]) == 0
    out = capsys.readouterr().out
    assert "shapes version 1 (local) models:/shapes/1" in out and "aliases: production" in out
    assert main_register([str(store / "models/shapes/package"), "--json"]) == 0     # name from model.json
    assert json.loads(capsys.readouterr().out)["version"] == 2
    assert main_models(["list"]) == 0
    assert "latest 2  (2 versions)  production→1" in capsys.readouterr().out
    assert main_models(["--json", "show", "shapes:production"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["tags"]["owner"], shown["tags"]["team"]) == (1, "me", "cv")
    assert main_models(["alias", "shapes", "production", "2"]) == 0
    capsys.readouterr()
    assert main_models(["show", "shapes:production"]) == 0
    assert "shapes version 2" in capsys.readouterr().out
    assert main_models(["download", "shapes:1", str(store / "dl")]) == 0
    assert "model package" in capsys.readouterr().out
    assert main_models(["show", "nothere"]) == 2
    assert "nothere is not in the local registry" in capsys.readouterr().err
    assert main_register([str(store / "nope")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert main_register([str(pkg), "--tags", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
