"""Action recognition (#21): VIA 3 temporal segments (the real shared projects and the action sample), the clip dataset
and its leak-free split by video, `cvflow train --task actions`, clip accuracy against an independent computation, the
exported package, the service (schema, parity, bad input) and `cvflow score-video`'s action timeline."""
import json
from pathlib import Path

import numpy as np
import pytest

from cvflow.actions import (ClipDataset, clip_dataset, label_clips, read_segments, read_via3_segments, split_videos,
                            write_clip_dataset)
from cvflow.config import ConfigError
from cvflow.sample import ACTIONS, make_action_sample



@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    "Four short action videos (64x48 at 10 fps, 4 s) with their VIA 3 project."
    return make_action_sample(tmp_path_factory.mktemp("act") / "s", n_videos=4, seconds=4, fps=10, width=64, height=48,
                              seed=3, progress=False)


def test_real_via3_temporal_projects_read(shared_data):
    "The real VIA video annotator projects (temporal segments only, labels typed on the default attribute) read as a table."
    echo = shared_data / "via3_temporal_echo"
    if not echo.is_dir():
        pytest.skip(f"{echo} is absent from the shared data")
    files = sorted(echo.rglob("*.json"))
    assert len(files) == 2
    for f in files:
        raw = json.loads(f.read_text())
        segs = read_via3_segments(f)
        # an independent reading: every metadata entry with an empty xy is one segment, its z the span, av the label
        want = sorted((m["z"][0], m["z"][1], next(iter(m["av"].values()))) for m in raw["metadata"].values() if not m["xy"])
        assert sorted((s["start"], s["end"], s["label"]) for s in segs) == want
        assert {s["file"] for s in segs} == {f_["fname"] for f_ in raw["file"].values()}
    labels = {s["label"] for f in files for s in read_via3_segments(f)}
    assert labels == {"4CV", "4CV_NP"}
    with pytest.raises(ConfigError, match="cannot be read"):   # their videos are not in the repository: a clear error
        read_segments(files[0])


def test_reader_errors_name_file_field_value(sample, tmp_path):
    d = json.loads(sample.read_text())
    mid = next(iter(d["metadata"]))
    bad = json.loads(json.dumps(d)); bad["metadata"][mid]["z"] = [2.0, 1.0]
    (tmp_path / "a.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=rf"a.json: metadata {mid}: field z \[2.0, 1.0\]: the end 1.0 s is not after"):
        read_via3_segments(tmp_path / "a.json")
    bad = json.loads(json.dumps(d)); bad["metadata"][mid]["av"]["1"] = "9"
    (tmp_path / "b.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"av\['1'\] = '9' is not an option of attribute 'action'"):
        read_via3_segments(tmp_path / "b.json")
    bad = json.loads(json.dumps(d)); bad["metadata"][mid]["z"] = [3.5, 9.0]   # the videos are 4 s long
    (tmp_path / "c.json").write_text(json.dumps(bad))
    (tmp_path / "videos").symlink_to(sample.parent / "videos")
    with pytest.raises(ConfigError, match=r"field z end 9.0 s is past the end of the video \(4.000 s\)"):
        read_segments(tmp_path / "c.json")


def test_clip_dataset_labels_and_leak_free_split(sample, tmp_path):
    card = write_clip_dataset(sample, tmp_path / "ds", clip_length=4, stride=2, frame_size=24, val=0.5, seed=1)
    assert card["classes"] == sorted(ACTIONS)
    tr, va = (json.loads((tmp_path / "ds" / f"{s}.json").read_text()) for s in ("train", "val"))
    vids = lambda d: {Path(v["file"]).name for v in d["videos"]}
    assert len(vids(tr)) == len(vids(va)) == 2 and not vids(tr) & vids(va)   # no video on both sides
    assert sorted(vids(tr) | vids(va)) == [f"action_{i:03d}.mp4" for i in range(4)]
    gt = {Path(v["file"]).name: v for v in json.loads((sample.parent / "actions.json").read_text())["videos"]}
    for d in (tr, va):
        names = {v["id"]: Path(v["file"]).name for v in d["videos"]}
        # every whole clip of every video is there (the segments tile the videos), labelled by its centre's action
        assert len(d["clips"]) == len(d["videos"]) * len(range(0, 40 - 4 + 1, 2))
        for c in d["clips"]:
            centre = c["start_frame"] + 2   # frames s..s+3: the centre time (s + 2) / fps
            truth = next(s["label"] for s in gt[names[c["video_id"]]]["segments"] if s["start_frame"] <= centre < s["end_frame"])
            assert d["categories"][c["category_id"] - 1]["name"] == truth
    clip, target = ClipDataset(tmp_path / "ds" / "val.json")[3]
    assert tuple(clip.shape) == (4, 3, 24, 24) and str(clip.dtype) == "torch.uint8" and target["labels"].shape == (1,)
    # boundary rule: a clip straddling two segments keeps its centre's label, or is dropped with straddle="drop"
    segs = [{"label": "a", "start": 0.0, "end": 1.0}, {"label": "b", "start": 1.0, "end": 2.0}]
    assert [c["label"] for c in label_clips(segs, 20, 10, 4, 4)] == ["a", "a", "b", "b", "b"]
    assert [c["start_frame"] for c in label_clips(segs, 20, 10, 4, 4, straddle="drop")] == [0, 4, 12, 16]
    assert split_videos(["x"], 0.5) == (["x"], [])


def test_clip_metrics_against_an_independent_computation():
    "Clip accuracy and per-class precision/recall/F1 (scikit-learn in 06b) against counts by hand."
    from cvflow.evaluate import classification_metrics
    y_true = [1, 1, 1, 2, 2, 3, 3, 3, 3, 2]
    y_pred = [1, 2, 1, 2, 2, 3, 1, 3, 3, 3]
    m = classification_metrics(y_true, y_pred, ["moving", "rotating", "still"])["cls"]
    assert m["accuracy"] == sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true) == 0.7
    for k, name in enumerate(["moving", "rotating", "still"], 1):
        tp = sum(t == k and p == k for t, p in zip(y_true, y_pred))
        prec, rec = tp / sum(p == k for p in y_pred), tp / sum(t == k for t in y_true)
        pc = m["per_class"][name]
        assert abs(pc["precision"] - prec) < 1e-12 and abs(pc["recall"] - rec) < 1e-12
        assert abs(pc["f1"] - 2 * prec * rec / (prec + rec)) < 1e-12 and pc["support"] == sum(t == k for t in y_true)


def test_train_actions_cli_export_and_predict(sample, tmp_path, home):
    import torch

    import cvflow.train as T
    from cvflow.actions import read_video
    from cvflow.package import export_package, load_package
    write_clip_dataset(sample, tmp_path / "ds", clip_length=4, stride=4, frame_size=32, val=0.25)
    args = ["--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--task", "actions", "--preset", "cpu-small",
            "--max-steps", "3", "--eval-every", "3", "--tracking", "none", "--no-progress", "--batch-size", "4",
            "--set", "num_workers=0", "--set", "sample_images=0", "--set", "warmup_steps=1"]
    assert T.main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_metric"] == "cls/accuracy" and 0 <= metrics["latest"]["cls/accuracy"] <= 1
    assert metrics["latest"]["cls/n"] == 10   # one val video of 40 frames: clips at 0, 4, ... 36
    # the held-out figure: another video's clips, scored by an evaluation written here from the model's own outputs
    held = make_action_sample(tmp_path / "held", n_videos=1, seconds=4, fps=10, width=64, height=48, seed=9, progress=False)
    hm = T.score_heldout(tmp_path / "run", held)
    from cvflow.model import model_from_checkpoint
    model, conf = model_from_checkpoint(tmp_path / "run" / "model.pt")
    ds = ClipDataset(clip_dataset(*read_segments(held, classes=conf["classes"]), conf["classes"], 4, 4, 1, 32))
    with torch.no_grad():
        preds = [int(model([ds[i][0]])[0]["labels"]) for i in range(len(ds))]
    truth = [int(ds[i][1]["labels"]) for i in range(len(ds))]
    assert hm["cls"]["n"] == len(truth) == 10
    assert hm["cls"]["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(preds, truth)]))
    pkg = export_package(tmp_path / "run", tmp_path / "pkg")
    meta = json.loads((pkg / "model.json").read_text())
    assert (meta["task"], meta["classes"], meta["num_classes"], meta["clip"]["clip_length"]) == ("actions", sorted(ACTIONS), 3, 4)
    frames, _ = read_video(sample.parent / "videos" / "action_000.mp4")
    res = load_package(pkg, device="cpu").predict([list(frames[:4]), list(frames[4:8])], top_k=2)
    assert [(r["frames"], r["width"], r["height"], len(r["labels"])) for r in res] == [(4, 64, 48, 2)] * 2
    with pytest.raises(ValueError, match="exactly 4 frames"):
        load_package(pkg, device="cpu").predict([list(frames[:5])])


def test_score_video_cli_writes_the_action_timeline(sample, tmp_path, home):
    from cvflow.deploy import demo_package
    from cvflow.batch_scoring import main_score_video
    pkg = demo_package(tmp_path / "pkg", task="actions")
    assert main_score_video([str(pkg), str(sample.parent / "videos" / "action_001.mp4"), "--out", str(tmp_path / "out"),
                             "--every", "4", "--quiet"]) == 0
    tl = json.loads((tmp_path / "out" / "timeline.json").read_text())
    assert tl["stride"] == 4 and len(tl["clips"]) == 10 and (tmp_path / "out" / "overlay.mp4").is_file()
    assert tl["segments"][0]["start"] == 0.0 and tl["segments"][-1]["end"] == 4.0
    assert all(s["label"] in ("disc", "square", "triangle") for s in tl["segments"])   # the demo package's classes


@pytest.mark.slow
def test_local_actions_service_full_suite(sample, home, tmp_path):
    "An actions package behind the real server: clips as JSON frames, schema, parity with in-process predictions, bad input."
    from cvflow.client import run_service_tests
    from cvflow.deploy import LocalService, demo_package
    pkg = demo_package(tmp_path / "act" / "package", task="actions")
    with LocalService(pkg) as svc:
        assert (svc.info["model"]["task"], svc.info["model"]["clip_length"]) == ("actions", 4)
        rep = run_service_tests(svc.url, sample.parent / "videos", package=pkg, concurrency=2, duration=3, max_requests=4,
                                max_images=3, score_threshold=0.0, out=home / "rep")
    assert rep["passed"], json.dumps({k: rep[k] for k in ("functional", "parity", "bad_input")}, indent=1)[:4000]
    assert rep["task"] == "actions" and rep["functional"]["instances"] == 3 * 3   # 3 clips, all 3 actions each
    assert rep["parity"]["instances_compared"] == 9
    bad = rep["bad_input"]
    assert bad["n"] >= 20 and not bad["failed"] and bad["healthy_after"] and bad["good_after"]


def test_pipeline_task_actions_paths():
    from cvflow.pipeline import load_pipeline, with_task
    pipe = load_pipeline(Path(__file__).resolve().parents[1] / "pipeline.yaml")
    steps = {s.name: s for s in with_task(pipe, "actions").steps}
    seg = {s.name: s for s in with_task(pipe, "segmentation").steps}
    assert {"frames", "eda", "dataset", "view_dataset"}.isdisjoint(steps)
    assert steps["annotations"].notebook.name == "02c_actions.ipynb"
    assert steps["sample"].outputs == ["data/raw/sample-actions", "data/raw/sample-actions-heldout"]
    assert seg["sample"].outputs == ["data/raw/sample", "data/raw/sample-heldout"] and "actions" not in seg["sample"].parameters
    assert steps["annotations"].outputs == ["data/processed/cvflow-actions"]
    assert steps["train"].parameters["task"] == "actions"
    assert steps["train"].parameters["heldout"] == "data/raw/sample-actions-heldout/via_project.json"
    assert all(s.parameters.get("package", "models/cvflow-actions/package") == "models/cvflow-actions/package" for s in steps.values())
