"""ONNX export and ONNX Runtime serving on a tiny untrained model: `cvflow export --onnx` (parity checked at export,
opset and parity recorded, onnxruntime in the requirements), a failed parity check leaves no package, and the web
service runs the package with ONNX Runtime (or eager when told to) while `test-service` compares it with eager."""
import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from cvflow.client import load_test_images, run_service_tests
from cvflow.deploy import LocalService, demo_package
from cvflow.package import (ONNX_OPSET, ParityError, cpu_cores, export_package, load_package, main_export,
                            read_package_meta)
from cvflow.sample import make_sample_images

pytestmark = pytest.mark.slow   # servers, subprocesses, whole runs: `make test` runs it, `make test-quick` skips it

THRESHOLD = 0.05  # the untrained model scores low: a low threshold makes sure instances exist


@pytest.fixture(scope="module")
def onnx_package(tmp_path_factory) -> Path:
    return demo_package(tmp_path_factory.mktemp("onnx") / "package", onnx=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    ann = make_sample_images(tmp_path_factory.mktemp("imgs"), n=2, seed=3)
    return ann.parent / "images"


def _checkpoint(tmp: Path) -> Path:
    import torch
    from cvflow.model import build_model, model_config
    torch.manual_seed(0)
    m = build_model("cpu-small", 4, min_size=128, max_size=160)
    cfg = {"preset": "cpu-small", "classes": ["disc", "square", "triangle"], "num_classes": 4, "model": model_config(m), "data": ""}
    ck = tmp / "m" / "checkpoints" / "last.pt"
    ck.parent.mkdir(parents=True)
    torch.save({"model": m.state_dict(), "config": cfg, "step": 1, "epoch": 1, "metrics": {}}, ck)
    return ck


def test_cli_export_onnx(home, capsys):
    _checkpoint(home)
    assert main_export([str(home / "m"), "--out", str(home / "pkg"), "--onnx"]) == 0
    out = capsys.readouterr().out
    assert f"ONNX: opset {ONNX_OPSET}" in out and "model.onnx" in out
    meta = read_package_meta(home / "pkg")
    par = meta["onnx"]["parity"]
    assert meta["onnx"]["opset"] == ONNX_OPSET and meta["files"]["model.onnx"]["bytes"] > 100_000
    assert par["images"] == 4 and par["pairs"] > 50 and par["max_box_px"] <= 1.0 and par["max_score_diff"] <= 1e-3
    assert {tuple(s) for s in par["sizes"]} == {(320, 240), (200, 300)}
    assert any(line.startswith("onnxruntime==") for line in (home / "pkg" / "requirements.txt").read_text().splitlines())
    assert load_package(home / "pkg", device="cpu").runtime == "onnxruntime"
    # without --onnx: no model.onnx, eager, no onnxruntime requirement
    assert main_export([str(home / "m"), "--out", str(home / "pkg2")]) == 0
    assert "onnx" not in read_package_meta(home / "pkg2") and not (home / "pkg2" / "model.onnx").exists()
    assert load_package(home / "pkg2", device="cpu").runtime == "eager"
    assert "onnxruntime" not in (home / "pkg2" / "requirements.txt").read_text()


def test_failed_parity_leaves_no_package(home):
    _checkpoint(home)
    with pytest.raises(ParityError, match=r"box differs by .* px > -1"):
        export_package(home / "m", home / "pkg", quiet=True, onnx=True, tolerances={"box_px": -1.0})
    assert not (home / "pkg").exists()


def test_service_runs_onnx_and_matches_eager(home, onnx_package, images):
    imgs = load_test_images(images, 2)
    eager = load_package(onnx_package, device="cpu", runtime="eager")
    expected = [len(eager.predict([im.array], score_threshold=THRESHOLD)[0]["instances"]) for im in imgs]
    assert sum(expected) > 0
    with LocalService(onnx_package) as svc:
        assert svc.info["model"]["runtime"] == "onnxruntime" and svc.info["model"]["threads"] == cpu_cores()
        rep = run_service_tests(svc.url, images, package=onnx_package, concurrency=1, duration=2, max_requests=3,
                                max_images=2, score_threshold=THRESHOLD, out=home / "rep")
    assert rep["passed"], json.dumps({k: rep[k] for k in ("functional", "parity")}, indent=1)[:3000]
    par = rep["parity"]
    assert (par["service_runtime"], par["local_runtime"], par["score_tol"], par["min_iou"]) == ("onnxruntime", "eager", 1e-3, 0.98)
    assert [p["service"] for p in par["images"]] == expected and par["instances_compared"] >= sum(expected) - 1
    # the same package served eagerly when asked: same answers, the stricter eager tolerances
    with LocalService(onnx_package, env={"CVFLOW_RUNTIME": "eager", "CVFLOW_THREADS": "1"}) as svc:
        assert (svc.info["model"]["runtime"], svc.info["model"]["threads"]) == ("eager", 1)
        rep = run_service_tests(svc.url, images, package=onnx_package, concurrency=1, duration=1, max_requests=2,
                                max_images=2, score_threshold=THRESHOLD, out=home / "rep2")
    assert rep["passed"] and rep["parity"]["score_tol"] == 1e-4 and rep["parity"]["instances_compared"] == sum(expected)
