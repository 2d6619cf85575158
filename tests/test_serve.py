"""The real web service: score.py under azureml-inference-server-http on a free loopback port, tested end to end
(functional, parity with in-process predictions, load, bad input) with real images from ../shared/data, and
stopped afterwards; the `cvflow serve` / `cvflow test-service` command lines; failure and cleanup paths."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from cvflow.client import load_test_images, main as client_main, run_service_tests
from cvflow.deploy import (LocalService, azure_deploy_plan, demo_package, free_port, main_deploy, pid_alive, pid_file,
                           port_in_use, start_service, stop_service)

pytestmark = pytest.mark.slow   # servers, subprocesses, whole runs: `make test` runs it, `make test-quick` skips it

COCO_IMAGES = ("coco_rle_labelbox", "images")
THRESHOLD = 0.05  # the untrained demo package scores around 0.5: a low threshold makes sure instances exist


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    "An untrained cpu-small package exported with step 07's export_package (built once for the module)."
    return demo_package(tmp_path_factory.mktemp("pkg") / "package")


def _images(shared_data: Path) -> Path:
    d = shared_data.joinpath(*COCO_IMAGES)
    assert d.is_dir(), d
    return d


def test_local_service_full_suite(shared_data, home, package):
    from cvflow.package import load_package
    images = _images(shared_data)
    imgs = load_test_images(images, 2)
    # what the service must find, computed here independently of the client's parity code
    pred = load_package(package, device="cpu")
    expected = [len(pred.predict([im.array], score_threshold=THRESHOLD)[0]["instances"]) for im in imgs]
    assert sum(expected) > 0

    with LocalService(package, env={"CVFLOW_MAX_IMAGES": "3"}) as svc:
        pid, port = svc.pid, svc.port
        assert svc.host == "127.0.0.1" and pid_file(port).read_text().strip() == str(pid)
        assert svc.info["limits"]["max_images"] == 3
        rep = run_service_tests(svc.url, images, package=package, concurrency=2, duration=3, max_requests=4,
                                max_images=2, score_threshold=THRESHOLD, out=home / "rep")
    # stopped: the process group is gone, the PID file removed, the port free
    assert not pid_alive(pid)
    assert not pid_file(port).exists()
    assert not port_in_use(port)

    assert rep["passed"], json.dumps({k: rep[k] for k in ("functional", "parity", "bad_input")}, indent=1)[:4000]
    assert rep["functional"]["instances"] == sum(expected)
    assert [p["local"] for p in rep["parity"]["images"]] == expected
    assert rep["parity"]["instances_compared"] == sum(expected)
    bad = rep["bad_input"]
    assert bad["n"] >= 20 and not bad["failed"] and bad["healthy_after"] and bad["good_after"]
    statuses = {c["name"]: c["status"] for c in bad["cases"]}
    assert statuses["too_many_images"] == 413 and statuses["too_many_pixels"] == 413  # the configured limit (3) in force
    assert statuses["not_json"] == 400 and statuses["wrong_content_type"] == 415
    assert rep["load"]["ok"] >= 1 and rep["load"]["latency_ms"]["p50"] > 0
    saved = json.loads((home / "rep" / "report.json").read_text())
    assert saved["passed"] and len(saved["latencies_ms"]) == rep["load"]["ok"]
    assert (home / "rep" / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_serve_test_service_and_stop(shared_data, home, package, capsys):
    port = free_port()
    env = dict(os.environ, CVFLOW_HOME=str(home))
    code = "import sys; from cvflow.deploy import main_serve; sys.exit(main_serve(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, str(package), "--port", str(port)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"http://127.0.0.1:{port}/score" in r.stdout
    pid = int(pid_file(port).read_text())
    try:
        assert pid_alive(pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            assert resp.status == 200 and resp.read() == b"Healthy"
        # a second service on the same port is refused with a pointer to --stop
        with pytest.raises(RuntimeError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_service(package, port)
        rc = client_main([f"http://127.0.0.1:{port}", "--images", str(_images(shared_data)), "--max-images", "1",
                          "--max-requests", "2", "--duration", "2", "--out", str(home / "cli-rep")])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "PASSED" in out and (home / "cli-rep" / "report.json").is_file()
    finally:
        r = subprocess.run([sys.executable, "-c", code, "--stop", "--port", str(port)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not pid_alive(pid) and not pid_file(port).exists()
    r = subprocess.run([sys.executable, "-c", code, "--stop", "--port", str(port)], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "no running service" in r.stderr


def test_broken_package_fails_with_log_tail(home, package, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(package, broken)
    (broken / "model.pt").write_bytes(b"not a state dict")
    with pytest.raises(RuntimeError, match="exited with code") as e:
        start_service(broken, free_port(), timeout=300)
    assert "model.pt" in str(e.value)  # the reason, from the server's log
    assert not list((home / "reports" / "service").glob("*.pid"))


def test_stale_pid_file_never_kills_another_process(home):
    pf = pid_file(5999)
    pf.parent.mkdir(parents=True, exist_ok=True)
    pf.write_text(f"{os.getpid()}\n")  # our own PID: alive, but not an inference server
    assert stop_service(5999) is False
    assert not pf.exists() and pid_alive(os.getpid())


def test_run_deploy_serves_checks_and_stops(home, package, tmp_path, capsys):
    "The deploy step (`run_deploy`: the notebook, `cvflow deploy --local` and `cvflow run`): served, one request, stopped."
    from PIL import Image
    from cvflow.results import read_results
    from cvflow.deploy import DeployParams, DeployResult, run_deploy
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (96, 64), (120, 80, 40)).save(imgs / "a.jpg")
    r = run_deploy(DeployParams(package=str(package), images=str(imgs), score_threshold=THRESHOLD))
    assert isinstance(r, DeployResult)
    assert (r.package, r.demo, r.left_running, r.smoke_image) == (package, False, False, imgs / "a.jpg")
    res = r.answer["results"][0]
    assert (res["width"], res["height"]) == (96, 64) and r.answer["model"]["name"] == "cvflow-demo"
    assert r.scoring_uri == f"http://127.0.0.1:{r.port}/score" and not pid_alive(r.pid) and not port_in_use(r.port)
    assert read_results(home)["deploy"]["results"] == r.headline()
    assert "a.jpg: 96x64" in r.describe()
    # the command line runs the same step; a package that is not there is an error (the notebook serves a demo instead)
    assert main_deploy([str(home / "nope"), "--local"]) == 2                          # what the user gave: exit 2
    assert f"model package {home / 'nope'} does not exist" in capsys.readouterr().err
    port = free_port()
    assert main_deploy([str(package), "--local", "--keep-running", "--port", str(port), "--images", str(imgs)]) == 0
    try:
        assert f"service running: http://127.0.0.1:{port}/score" in capsys.readouterr().out
        assert pid_alive(int(pid_file(port).read_text()))
    finally:
        assert stop_service(port)


def test_deploy_dry_run_and_azure_objects(package, capsys, tmp_path):
    assert main_deploy([str(package), "--target", "aks", "--aks-cluster", "aks1", "--name", "shapes-prod", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["deployment_config"]["auth_enabled"] is True and plan["target"] == "aks"
    assert plan["inference_config"]["entry_script"] == "score.py"
    assert Path(plan["inference_config"]["source_files"][0]).read_bytes() == (package / "score.py").read_bytes()
    reqs = plan["environment"]["pip_requirements"]
    assert any(r.startswith("azureml-inference-server-http") for r in reqs) and reqs[-1].startswith("cvflow")
    assert main_deploy([str(package), "--target", "aks", "--dry-run"]) == 1
    assert "needs --aks-cluster" in capsys.readouterr().err
    try:
        import azureml.core  # noqa: F401
    except ImportError:
        pytest.skip("azureml-core is not installed (optional extra cvflow[azure]): real SDK objects not built")
    from cvflow.deploy import azure_objects
    objs = azure_objects(azure_deploy_plan(package, "aci"), tmp_path / "stage")
    assert objs["inference_config"].entry_script == "score.py"
    assert objs["deployment_config"].auth_enabled is True


def test_local_detection_service_full_suite(shared_data, home, tmp_path):
    "A Faster R-CNN package (task detection) behind the real server: the boxes-only schema, parity, load and bad input."
    from cvflow.package import load_package
    package = demo_package(tmp_path / "det" / "package", task="detection")
    images = _images(shared_data)
    imgs = load_test_images(images, 2)
    pred = load_package(package, device="cpu", runtime="eager")
    expected = [len(pred.predict([im.array], score_threshold=THRESHOLD)[0]["instances"]) for im in imgs]
    assert sum(expected) > 0
    with LocalService(package) as svc:
        assert svc.info["model"]["task"] == "detection"
        rep = run_service_tests(svc.url, images, package=package, concurrency=1, duration=2, max_requests=3,
                                max_images=2, score_threshold=THRESHOLD, out=home / "rep-det")
    assert rep["passed"], json.dumps({k: rep[k] for k in ("functional", "parity", "bad_input")}, indent=1)[:4000]
    assert rep["task"] == "detection" and rep["functional"]["instances"] == sum(expected)
    assert rep["parity"]["instances_compared"] == sum(expected)
    statuses = {c["name"]: c["status"] for c in rep["bad_input"]["cases"]}
    assert statuses["polygons_without_masks"] == 400 and statuses["raw_polygons_without_masks"] == 400


def test_local_classification_service_full_suite(shared_data, home, tmp_path):
    "An image classifier package (task classification) behind the real server: top-k labels, parity, top_k bad inputs."
    from cvflow.package import load_package
    package = demo_package(tmp_path / "cls" / "package", min_size=96, task="classification")
    images = _images(shared_data)
    imgs = load_test_images(images, 2)
    pred = load_package(package, device="cpu", runtime="eager")
    expected = [len(pred.predict([im.array])[0]["labels"]) for im in imgs]
    assert expected == [3, 3]   # three classes, all listed (the served threshold of a classifier is 0)
    with LocalService(package) as svc:
        assert svc.info["model"]["task"] == "classification"
        rep = run_service_tests(svc.url, images, package=package, concurrency=1, duration=2, max_requests=3,
                                max_images=2, out=home / "rep-cls")
    assert rep["passed"], json.dumps({k: rep[k] for k in ("functional", "parity", "bad_input")}, indent=1)[:4000]
    assert rep["task"] == "classification" and rep["functional"]["instances"] == sum(expected)
    assert rep["parity"]["instances_compared"] == sum(expected)
    statuses = {c["name"]: c["status"] for c in rep["bad_input"]["cases"]}
    assert statuses["top_k_zero"] == 400 and statuses["raw_bad_query_top_k"] == 400 and statuses["polygons_without_masks"] == 400
