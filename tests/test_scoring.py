"""Batch and video scoring (cvflow.batch_scoring): the tracker against the synthetic sample's true identities, the video
outputs decoded back independently, truncated files, real videos and images from ../shared/data.

Tracking tolerance (the tracker fed true detections; an untrained model cannot track): |count error| and ID switches
each at most max(1, 10 % of the true identities), recall of what it was given at least 0.9 x (1 - dropout)."""
import contextlib
import csv
import io
import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from cvflow.model import build_model, model_config
from cvflow.package import export_package, load_package
from cvflow.sample import load_ground_truth, make_sample
from cvflow.object_tracking import gt_detections, track_detections, tracking_errors
from cvflow.batch_scoring import TRACK_COLUMNS, main_score, main_score_video, score_video

CLASSES = ["disc", "square", "triangle"]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    "An untrained cpu-small package at a tiny input size (min_size 96), at most 10 instances per image."
    d = tmp_path_factory.mktemp("pkg") / "tiny"
    torch.manual_seed(0)
    m = build_model("cpu-small", 4, min_size=96, max_size=128, box_detections_per_img=10)
    (d / "checkpoints").mkdir(parents=True)
    torch.save({"model": m.state_dict(), "step": 0, "epoch": 0, "metrics": {},
                "config": {"preset": "cpu-small", "classes": CLASSES, "category_ids": [1, 2, 3], "num_classes": 4,
                           "model": model_config(m), "data": ""}}, d / "checkpoints" / "last.pt")
    return export_package(d, quiet=True)


@pytest.fixture(scope="module")
def predictor(package):
    return load_package(package, device="cpu")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    return {"20s": load_ground_truth(make_sample(d / "20s", seconds=20, fps=15, width=320, height=180, seed=0, progress=False)),
            "40s": load_ground_truth(make_sample(d / "40s", seconds=40, fps=15, width=320, height=180, seed=5, progress=False))}


def decoded(path):
    "(frame count, width, height, average fps, error) of a video by plain sequential decoding, independent of cvflow."
    n, err = 0, None
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        try:
            for _ in c.decode(s):
                n += 1
        except av.error.FFmpegError as e:
            err = e
        return n, s.codec_context.width, s.codec_context.height, float(s.average_rate or s.guessed_rate), err


@pytest.mark.parametrize("name,jitter,dropout,every", [
    ("20s", 0.0, 0.0, 1), ("20s", 0.03, 0.1, 3), ("40s", 0.0, 0.0, 1), ("40s", 0.03, 0.1, 1),
    ("40s", 0.03, 0.1, 3), ("40s", 0.05, 0.2, 1)])
def test_tracker_on_true_detections(samples, name, jitter, dropout, every):
    gt = samples[name]
    tracker = track_detections(gt_detections(gt, jitter=jitter, dropout=dropout, seed=7), every=every, cuts=gt["scene_starts"])
    frames = range(0, gt["n_frames"], every)
    e = tracking_errors(tracker.observations(), gt, frames=frames)
    true_ids = {o["track_id"] for fr in gt["frames"] if fr["index"] % every == 0 for o in fr["objects"]}
    assert e["true_ids"] == len(true_ids) and len(true_ids) >= 8
    tol = max(1, 0.1 * len(true_ids))
    assert abs(e["count_error"]) <= tol, e
    assert e["id_switches"] <= tol, e
    assert e["recall"] >= 0.9 * (1 - dropout), e
    assert sum(v["true"] for v in e["per_class"].values()) == len(true_ids)


def test_tracker_needs_scene_cut_reset(samples):
    "Without the reset at scene cuts, objects of a new scene continue old tracks: merges, an undercount."
    gt = samples["40s"]
    uncut = tracking_errors(track_detections(gt_detections(gt)).observations(), gt)   # no scene-cut reset: merges
    assert uncut["merges"] >= 1 and uncut["count_error"] < 0, uncut


def test_score_video_sample(predictor, tmp_path):
    video = make_sample(tmp_path / "s", seconds=3, fps=10, width=160, height=96, seed=3, progress=False)
    out = tmp_path / "out"
    r = score_video(predictor, video, out, every=1, batch=4, score_threshold=0.05, progress=False)
    n, w, h, fps, err = decoded(video)
    assert err is None and n == 30
    on, ow, oh, ofps, oerr = decoded(out / "overlay.mp4")
    assert (on, ow, oh, oerr) == (n, w, h, None) and ofps == pytest.approx(fps, rel=1e-3)
    lines = [json.loads(l) for l in (out / "frames.jsonl").read_text().splitlines()]
    assert [l["frame"] for l in lines] == list(range(n))
    assert [l["time"] for l in lines] == pytest.approx([i / 10 for i in range(n)], abs=1e-3)
    assert all(set(i) >= {"class_id", "class_name", "score", "box", "mask", "track_id"} for l in lines for i in l["instances"])
    assert sum(len(l["instances"]) for l in lines) > 0        # the untrained model does propose instances at 0.05
    with open(out / "tracks.csv", newline="") as f:
        assert next(csv.reader(f)) == TRACK_COLUMNS
    with open(out / "tracks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    named = {}
    for l in lines:
        for i in l["instances"]:
            if i["track_id"] is not None:
                named.setdefault(i["track_id"], []).append(l["frame"])
    assert sorted(int(r["track_id"]) for r in rows) == sorted(named)
    for row in rows:   # frames named in the JSON are the track's frames after its min_hits - 1 tentative ones
        fr = named[int(row["track_id"])]
        assert int(row["last_frame"]) == fr[-1] and int(row["frames_seen"]) == len(fr) + 2
    gt = load_ground_truth(video)
    assert r.scene_cuts == gt["scene_starts"][1:]          # detected in the picture = the true cuts
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["n_frames"] == n and sum(summary["counts"].values()) == len(rows)
    assert not list(out.glob(".*"))       # no temporary files left


def test_score_video_every(predictor, tmp_path):
    video = make_sample(tmp_path / "s", seconds=2.5, fps=12, width=128, height=72, seed=1, progress=False)
    r = score_video(predictor, video, tmp_path / "out", every=4, batch=3, score_threshold=0.05, progress=False)
    n = decoded(video)[0]
    assert decoded(tmp_path / "out" / "overlay.mp4")[:3] == (n, 128, 72)
    lines = [json.loads(l) for l in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    assert [l["frame"] for l in lines] == list(range(0, n, 4)) and r.n_scored == math.ceil(n / 4)


def test_truncated_video(predictor, tmp_path):
    video = make_sample(tmp_path / "s", seconds=4, fps=10, width=128, height=72, seed=2, progress=False)
    mkv = tmp_path / "cut.mkv"
    with av.open(str(video)) as i, av.open(str(mkv), "w", format="matroska") as o:
        s = i.streams.video[0]
        os_ = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.dts is not None:
                p.stream = os_
                o.mux(p)
    data = mkv.read_bytes()
    mkv.write_bytes(data[: len(data) // 2])
    n_ok = decoded(mkv)[0]
    assert 0 < n_ok < 40
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        r = score_video(predictor, mkv, tmp_path / "out", every=5, progress=False)
    assert not r.complete and r.n_frames == n_ok and f"frame {n_ok - 1}" in r.stopped
    assert "truncated" in err.getvalue()
    assert decoded(tmp_path / "out" / "overlay.mp4")[0] == n_ok
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["stopped"] == r.stopped


def test_broken_inputs(predictor, tmp_path):
    (tmp_path / "page.mp4").write_text("<!DOCTYPE html><html>not found</html>")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main_score_video([str(tmp_path / "nopkg"), str(tmp_path / "page.mp4"), "--out", str(tmp_path / "o")]) == 2
    assert "nopkg" in err.getvalue()
    with pytest.raises(Exception, match="HTML"):
        score_video(predictor, tmp_path / "page.mp4", tmp_path / "o", progress=False)
    assert not (tmp_path / "o" / "overlay.mp4").exists()


@pytest.mark.parametrize("rel,max_frames,every", [("intel_sample_videos/asl_gestures/book.mkv", None, 30),
                                                  ("intel_sample_videos/car-detection.mp4", 26, 13)])
def test_real_video(predictor, shared_data, tmp_path, rel, max_frames, every):
    video = shared_data / "videos" / rel
    n, w, h, fps, err = decoded(video)
    assert err is None
    r = score_video(predictor, video, tmp_path / "out", every=every, batch=2, score_threshold=0.05,
                    max_frames=max_frames, progress=False)
    want = n if max_frames is None else min(n, max_frames)
    on, ow, oh, ofps, _ = decoded(tmp_path / "out" / "overlay.mp4")
    assert (on, ow, oh) == (want, w, h) and ofps == pytest.approx(fps, rel=1e-3)
    lines = [json.loads(l) for l in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    assert [l["frame"] for l in lines] == list(range(0, want, every))
    assert r.complete and r.stopped is None


def test_score_images_real(package, shared_data, tmp_path):
    src = shared_data / "fishy_business_frames"
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert files
    out = tmp_path / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main_score([str(package), str(src), "--out", str(out), "--overlays", "--quiet",
                           "--score-threshold", "0.05", "--device", "cpu"]) == 0
    assert f"{len(files)} images: {len(files)} scored now" in stdout.getvalue()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out / "images.json"))
        dt = gt.loadRes(str(out / "results.json"))
    assert len(gt.imgs) == len(files)
    for im in gt.imgs.values():
        w, h = Image.open(src / im["file_name"]).size
        assert (im["width"], im["height"]) == (w, h)
    assert len(dt.anns) > 0 and all(a["image_id"] in gt.imgs for a in dt.anns.values())
    assert len(list((out / "overlays").rglob("*.jpg"))) == len(files)
    with contextlib.redirect_stdout(io.StringIO()) as again:
        assert main_score([str(package), str(src), "--out", str(out), "--quiet",
                           "--score-threshold", "0.05", "--device", "cpu"]) == 0
    assert f"0 scored now, {len(files)} already scored" in again.getvalue()



@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_score_video_rotated_phone_video_upright(predictor, tmp_path, rotation):
    "A 96x64 video with a display matrix: the overlay video and the JSON are in the upright picture players show."
    from test_frames import _pattern, displayed, write_video
    stored = _pattern(64, 96)
    video = write_video(tmp_path / "phone.mp4", [stored] * 6, fps=10, rotation=rotation)
    want = displayed(stored, video).astype(np.float32)        # from the MP4 track matrix, independent of cvflow
    r = score_video(predictor, video, tmp_path / "out", every=1, batch=2, score_threshold=1.0, progress=False)
    assert (r.width, r.height) == (want.shape[1], want.shape[0])
    with av.open(str(tmp_path / "out" / "overlay.mp4")) as c:
        first = next(c.decode(video=0))
        assert (first.width, first.height) == (want.shape[1], want.shape[0]) and first.rotation == 0
        got = first.to_ndarray(format="rgb24").astype(np.float32)
    assert np.abs(got - want).mean() < 8
    assert np.abs(got - np.rot90(want, 2)).mean() > 30                # not upside down
    lines = [json.loads(l) for l in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    assert [l["frame"] for l in lines] == list(range(6))
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["width"] == want.shape[1]
