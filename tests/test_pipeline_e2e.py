"""The whole production pipeline, end to end, with tiny parameters: `pipeline.yaml`'s own steps and notebooks,
the real local scoring service included; then a second run that skips everything, and a forced failure."""
import json
import socket
from pathlib import Path

import pytest
import yaml

from cvflow.files import path_hash
from cvflow.pipeline import StepFailed, load_pipeline, run_pipeline

pytestmark = pytest.mark.slow   # servers, subprocesses, whole runs: `make test` runs it, `make test-quick` skips it

REPO = Path(__file__).resolve().parents[1]

# per step: the production parameters replaced by tiny ones (same notebooks, same data flow)
TINY = {
    "sample": {"seconds": 6.0, "fps": 10, "width": 320, "height": 192, "heldout_images": 4},
    "frames": {"budget": 10, "workers": 1, "show": False},
    "eda": {"min_instances": 2},
    "dataset": {"val": 0.3},
    "view_dataset": {"n_images": 4},
    "train": {"epochs": 1, "max_steps": 2, "eval_every": 0, "batch_size": 2, "min_size": 128, "max_size": 160},
    "deploy": {"score_threshold": 0.0},
    "test_service": {"max_images": 2, "concurrency": 1, "duration": 3.0, "max_requests": 6, "score_threshold": 0.0},
    "score_video": {"max_frames": 6, "batch": 2},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_pipeline(dest: Path, port: int) -> Path:
    "pipeline.yaml with tiny parameters and a free port, notebooks still the repository's."
    y = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    for st in y["steps"]:
        st["notebook"] = str(REPO / st["notebook"])
        st["parameters"] = {**st.get("parameters", {}), **TINY.get(st["name"], {})}
        if "port" in st["parameters"]:
            st["parameters"]["port"] = port
    dest.write_text(yaml.safe_dump(y))
    return dest


def test_pipeline_end_to_end_then_skip_then_failure(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CVFLOW_HOME", str(home))
    port = _free_port()
    cfg = tiny_pipeline(tmp_path / "pipeline.yaml", port)
    names = load_pipeline(cfg).names()
    assert names[:3] == ["config", "sample", "frames"] and "test_service" in names

    m = run_pipeline(cfg, home=home, progress=False)
    assert [s["status"] for s in m["steps"]] == ["done"] * len(names), [(s["name"], s["status"]) for s in m["steps"]]
    run_dir = home / "reports" / "runs" / m["run_id"]
    saved = json.loads((run_dir / "manifest.json").read_text())
    assert saved["status"] == "done" and [s["name"] for s in saved["steps"]] == names
    for s in saved["steps"]:
        assert Path(s["executed"]).is_file(), s["name"]
        assert all(h != "missing" for h in s["outputs"].values()), (s["name"], s["outputs"])
    # the artefacts each step promises
    assert (home / "data/raw/sample/sample.mp4").is_file()
    assert (home / "data/interim/frames/frames.csv").is_file()
    coco = json.loads((home / "data/interim/annotations/instances.json").read_text())
    assert coco["images"] and coco["annotations"]
    card = json.loads((home / "data/processed/cvflow/dataset_card.json").read_text())
    assert card  # written by the dataset step
    assert (home / "models/cvflow-maskrcnn/package/model.json").is_file()
    # the final model is scored on the held-out frames of fresh scenes, and the summary says so
    held = json.loads((home / "models/cvflow-maskrcnn/heldout_metrics.json").read_text())
    assert held["heldout"].endswith("sample-heldout/instances.json") and 0 <= held["segm/AP50"] <= 1
    train_results = json.loads((home / "reports/results/train.json").read_text())["results"]
    assert "held-out segm/AP50" in train_results
    report = json.loads((home / "reports/service_test/report.json").read_text())
    assert report["passed"] and report["bad_input"]["n"] >= 20
    # the summary page shows every step's results, and the service the run started is stopped
    summary = (run_dir / "summary.html").read_text()
    for step in ("sample", "frames", "annotations", "dataset", "train", "export", "register", "test_service"):
        assert f'<h2 id="{step}">{step}</h2>' in summary, step
    assert "At a glance" in summary and "mask AP50 on held-out frames" in summary and "service bad-input suite" in summary
    assert not list((home / "reports" / "service").glob("*.pid")), "the run left a service running"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on port {port}"

    # a second run: nothing changed, everything skipped
    m2 = run_pipeline(cfg, home=home, progress=False)
    assert {s["status"] for s in m2["steps"]} == {"skipped"}, [(s["name"], s["status"]) for s in m2["steps"]]

    # a forced failure in one step: it names the notebook and cell, and earlier outputs stay as they were
    before = {p: path_hash(home / p) for p in ("data/interim/annotations/instances.json", "data/processed/cvflow")}
    pl = load_pipeline(cfg)
    pl.steps[pl.index("dataset")].parameters["coco_files"] = "data/interim/annotations/missing.json"
    with pytest.raises(StepFailed) as e:
        run_pipeline(pl, home=home, progress=False)
    assert e.value.step == "dataset" and e.value.cell is not None
    assert "04_dataset_prep.ipynb" in str(e.value) and "missing.json" in str(e.value)
    assert {p: path_hash(home / p) for p in before} == before
    failed = sorted(p for p in (home / "reports" / "runs").iterdir() if p.is_dir())[-1]
    man = json.loads((failed / "manifest.json").read_text())
    assert man["status"] == "failed"
    assert [s["status"] for s in man["steps"]][:6] == ["skipped"] * 5 + ["failed"]


def test_own_videos_pause_at_annotation_with_instructions(tmp_path, monkeypatch, shared_data):
    "`cvflow run --videos DIR`: frames from the user's videos, then a pause that says which file to annotate."
    from cvflow.pipeline import main, with_videos
    home = tmp_path / "home"
    monkeypatch.setenv("CVFLOW_HOME", str(home))
    videos = tmp_path / "my-videos"
    videos.mkdir()
    (videos / "bottles.mp4").symlink_to(shared_data / "videos/intel_sample_videos/bottle-detection.mp4")
    cfg = tiny_pipeline(tmp_path / "pipeline.yaml", _free_port())
    pl = with_videos(load_pipeline(cfg), videos)
    assert "sample" not in pl.names() and pl.steps[pl.index("frames")].parameters["videos"] == [str(videos.resolve())]
    # the sample's production choices do not apply to real video: motion segments, no sample held-out set,
    # the training augmentation's safe defaults (no vertical flips or rotations)
    assert pl.steps[pl.index("frames")].parameters["every_seconds"] is None
    assert pl.steps[pl.index("train")].parameters["heldout"] is None and pl.steps[pl.index("train")].parameters["augment"] == {}
    pl.steps = pl.steps[:pl.index("annotations") + 2]  # config, frames, annotations, eda: enough to see the pause
    m = run_pipeline(pl, home=home, progress=False)
    assert m["status"] == "waiting", [(s["name"], s["status"]) for s in m["steps"]]
    st = {s["name"]: s for s in m["steps"]}
    assert st["frames"]["status"] == "done" and st["annotations"]["status"] == "waiting" and st["eda"]["status"] == "not run"
    msg = st["annotations"]["message"]
    assert "via_project.json" in msg and "via_annotated.json" in msg and "Save" in msg
    assert (home / "data/interim/annotations/via_project.json").is_file()
    assert not (home / "data/interim/annotations/via_annotated.json").exists()  # nobody annotated: nothing simulated
    assert any((home / "data/interim/frames/frames").glob("bottles_*.jpg"))
    # the same command again: frames unchanged (skipped), still waiting for the person
    m2 = run_pipeline(pl, home=home, progress=False)
    st2 = {s["name"]: s["status"] for s in m2["steps"]}
    assert m2["status"] == "waiting" and st2["frames"] == "skipped" and st2["annotations"] == "waiting"
    # the CLI says so and exits 0
    rc = main(["--config", str(cfg), "--videos", str(videos), "--classes", "bottle", "--only", "config"])
    assert rc == 0


def test_own_videos_one_broken_exits_nonzero_naming_it(tmp_path):
    "`cvflow run --videos DIR` with one good and one broken video: the frames step's progress and the failure are on the"
    "console, the run goes on to annotation with the good video's frames, and the command exits non-zero."
    import os
    import subprocess
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from test_frames import _static_shot, write_video
    home, videos = tmp_path / "home", tmp_path / "my-videos"
    videos.mkdir()
    write_video(videos / "street.mp4", _static_shot(6, 5, lambda t: (t * 25, 40)), fps=5)
    (videos / "download.avi").write_text("<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n")
    cfg = tiny_pipeline(tmp_path / "pipeline.yaml", _free_port())
    env = {**os.environ, "CVFLOW_HOME": str(home), "MPLBACKEND": "Agg"}
    p = subprocess.run([str(Path(sys.executable).parent / "cvflow"), "run", "--config", str(cfg), "--videos", str(videos)],
                       capture_output=True, text=True, env=env, timeout=600)
    out, err = p.stdout, p.stderr
    assert p.returncode == 1, (out, err)
    bad = videos / "download.avi"
    assert f"frames FAILED: {bad}: is an HTML/XML page" in out                   # as the step ends
    assert f"cvflow run: step 'frames' FAILED on {bad}: is an HTML/XML page" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cvflow run: FAILED in part: frames: 1 input(s) failed; still produced:") and "frames (data/interim/frames)" in last
    assert "frames | frames: street.mp4: 30 frames decoded" in out               # the step's own progress, streamed
    assert "paused for annotation" in out and "without encryption" not in out + err
    assert any((home / "data/interim/frames/frames").glob("street_*.jpg"))
    man = json.loads(sorted((home / "reports/runs").glob("*/manifest.json"))[-1].read_text())
    assert man["failed_inputs"]["frames"][0].startswith(str(bad))
    assert {s["name"]: s["status"] for s in man["steps"]}["frames"] == "partial"
