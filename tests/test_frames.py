"""Frame reduction (cvflow.frames): the synthetic sample's ground truth, the real videos in ../shared/data, broken files."""
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cvflow.config import frame_filename
from cvflow.frames import FrameOptions, main, read_manifest, reduce_videos, scan_video, select_frames
from cvflow.sample import load_ground_truth, make_sample

REAL = ["intel_sample_videos/car-detection.mp4", "intel_sample_videos/one-by-one-person-detection.mp4",
        "intel_sample_videos/bottle-detection.mp4", "intel_sample_videos/asl_gestures/book.mkv",
        "moviepy_media/big_buck_bunny_0_30.webm", "moviepy_media/chaplin.mp4", "moviepy_media/fire2.mp4",
        "moviepy_media/no_duration.webm"]


def decoded_frames(video, indices):
    "Frames `indices` of `video` as RGB arrays and every frame's PTS time, by plain sequential decoding (independent of cvflow)."
    out, times = {}, []
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        for i, f in enumerate(c.decode(s)):
            times.append(float(f.pts * s.time_base))
            if i in indices: out[i] = f.to_ndarray(format="rgb24")
    return out, times


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    video = make_sample(d / "sample", seconds=24, fps=10, width=320, height=180, seed=3, progress=False)
    return video, load_ground_truth(video)


def test_sample_every_scene_kept_no_blur(sample, tmp_path):
    video, gt = sample
    n_scenes = len(gt["scene_starts"])
    assert n_scenes >= 3
    scene_of = {f["index"]: f["scene"] for f in gt["frames"]}
    blurred = {f["index"] for f in gt["frames"] if f["blurred"]}
    assert blurred
    res = select_frames(video, tmp_path / "out", progress=False, budget=n_scenes)
    rows = read_manifest(tmp_path / "out" / "frames.csv")
    assert len(rows) == n_scenes
    assert sorted(scene_of[r["frame_index"]] for r in rows) == list(range(n_scenes))
    assert not blurred & {r["frame_index"] for r in rows}
    # the files: full resolution, no EXIF, named by the convention, listed in frames.txt
    files = sorted(p.name for p in (tmp_path / "out" / "frames").iterdir())
    assert files == sorted(frame_filename(video, r["frame_index"]) for r in rows)
    assert (tmp_path / "out" / "frames.txt").read_text().split() == [r["file"] for r in rows]
    for name in files:
        with Image.open(tmp_path / "out" / "frames" / name) as im:
            assert im.size == (gt["width"], gt["height"]) and im.format == "JPEG"
            assert len(im.getexif()) == 0 and "exif" not in im.info
    assert res.ok and res.scans[0].n_frames == gt["n_frames"]


def test_sample_blurred_frames_never_kept_even_frame_by_frame(sample, tmp_path):
    "One candidate per frame (every_seconds below the frame interval): only the blur test stands between a blurred frame and the output."
    video, gt = sample
    blurred = {f["index"] for f in gt["frames"] if f["blurred"]}
    scan = scan_video(video, FrameOptions(every_seconds=0.01, skip_nonref=False))
    kept = {c.frame_index for c in scan.candidates}
    assert not kept & blurred
    assert len(kept) >= 0.9 * (gt["n_frames"] - len(blurred))     # the sharp frames are not thrown away with them


def test_sample_budget_larger_than_scenes_spreads_and_dedups(sample, tmp_path):
    video, gt = sample
    res = select_frames(video, tmp_path / "out", progress=False, budget=40, min_gap=0.5)
    rows = read_manifest(res.manifest)
    assert len(gt["scene_starts"]) < len(rows) <= 40
    t = sorted(r["timestamp"] for r in rows)
    assert min(np.diff(t)) >= 0.5
    # the chosen frames' hashes are pairwise farther apart than the duplicate distance
    h = np.stack([np.frombuffer(bytes.fromhex(r["hash"]), np.uint8) for r in rows])
    d = np.unpackbits(h[:, None] ^ h[None], axis=-1).mean(-1)
    assert d[~np.eye(len(rows), dtype=bool)].min() > FrameOptions().dup_distance


@pytest.mark.parametrize("name,opts,span,distinct", [
    ("moviepy_media/big_buck_bunny_0_30.webm", dict(budget=6, min_gap=3.0), 8.0, 3),                  # VP8: seeks
    ("intel_sample_videos/bottle-detection.mp4", dict(every_seconds=4.0, dup_distance=0.0), 20.0, 2)])  # H.264 High, B-frames
def test_saved_frames_are_the_frames_the_manifest_names(shared_data, tmp_path, name, opts, span, distinct):
    "The seeking second pass must save exactly frame `frame_index` (checked against a plain sequential decode)."
    video = shared_data / "videos" / name
    res = select_frames(video, tmp_path / "out", progress=False, **opts)
    rows = read_manifest(res.manifest)
    assert len(rows) >= 3 and max(r["timestamp"] for r in rows) - min(r["timestamp"] for r in rows) > span
    want = {r["frame_index"] + k for r in rows for k in (-1, 0, 1)}
    ref, times = decoded_frames(video, want)
    strict = 0
    for r in rows:
        i = r["frame_index"]
        saved = np.asarray(Image.open(tmp_path / "out" / "frames" / r["file"]).convert("RGB"), np.float32)
        assert saved.shape == ref[i].shape
        own = np.abs(saved - ref[i]).mean()
        assert own < 4.0, r["file"]
        others = [np.abs(saved - ref[j]).mean() for j in (i - 1, i + 1) if j in ref]
        assert all(own <= o for o in others), (r["file"], own, others)     # not a neighbouring frame
        strict += all(own < o - 0.5 for o in others)
        assert r["timestamp"] == pytest.approx(times[i], abs=1e-5)
    assert strict >= distinct                # frames whose neighbours differ visibly, where the check above has teeth


@pytest.fixture(scope="module")
def real_run(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("real")
    bad = d / "bad"; bad.mkdir()
    src = shared_data / "videos" / "intel_sample_videos" / "car-detection.mp4"
    data = src.read_bytes()
    (bad / "truncated-car.mp4").write_bytes(data[: len(data) // 2])
    (bad / "download.avi").write_text("<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not Found</body></html>\n")
    (bad / "empty.mkv").write_bytes(b"")
    videos = [shared_data / "videos" / v for v in REAL] + sorted(bad.iterdir())
    res = reduce_videos(videos, d / "out", budget=40, workers=2, progress=False)
    return res, videos, bad, d / "out"


def test_real_videos_each_yield_frames_and_manifest(real_run, shared_data):
    res, videos, bad, out = real_run
    rows = read_manifest(out / "frames.csv")
    per_video = {}
    for r in rows: per_video.setdefault(r["video"], []).append(r)
    for v in REAL:
        p = str(shared_data / "videos" / v)
        assert p in per_video, f"{v} yielded no frame"
        for r in per_video[p]:
            assert (out / "frames" / r["file"]).is_file()
    assert len(rows) <= 40
    report = json.loads((out / "frames_report.json").read_text())
    assert [v["ok"] for v in report["videos"]] == [True] * len(REAL) + [False] * 3


def test_real_video_quirks(real_run, shared_data):
    res, videos, bad, out = real_run
    rows = read_manifest(out / "frames.csv")
    scans = {Path(s.video).name: s for s in res.scans}
    # MKV with a start offset and VFR MP4: timestamps are PTS times, matching an independent decode
    for name in ("book.mkv", "fire2.mp4"):
        video = next(v for v in videos if v.name == name)
        mine = [r for r in rows if Path(r["video"]).name == name]
        _, times = decoded_frames(video, set())
        assert scans[name].n_frames == len(times)
        for r in mine:
            assert r["timestamp"] == pytest.approx(times[r["frame_index"]], abs=1e-5)
    _, book_times = decoded_frames(shared_data / "videos/intel_sample_videos/asl_gestures/book.mkv", set())
    assert book_times[0] == pytest.approx(0.033, abs=1e-3)        # the start offset is kept, not reset to zero
    _, fire_times = decoded_frames(shared_data / "videos/moviepy_media/fire2.mp4", set())
    assert np.ptp(np.diff(fire_times)) > 0.01                      # really variable frame rate
    # the VP9 file without a duration is scanned to its end
    assert scans["no_duration.webm"].duration is None and scans["no_duration.webm"].n_frames == 74


def test_broken_files_fail_clearly_others_succeed(real_run):
    res, videos, bad, out = real_run
    errs = res.errors
    assert set(errs) == {str(p) for p in bad.iterdir()}
    assert str(bad / "download.avi") in errs[str(bad / "download.avi")] and "HTML" in errs[str(bad / "download.avi")]
    assert "empty" in errs[str(bad / "empty.mkv")]
    assert "truncated" in errs[str(bad / "truncated-car.mp4")]
    assert not any(r["video"].startswith(str(bad)) for r in read_manifest(out / "frames.csv"))
    assert sorted(p.name for p in bad.iterdir()) == ["download.avi", "empty.mkv", "truncated-car.mp4"]


def test_cli_exit_codes(shared_data, tmp_path, capsys):
    good = shared_data / "videos" / "moviepy_media" / "fire2.mp4"
    page = tmp_path / "page.avi"; page.write_text("<html><body>gone</body></html>")
    assert main([str(good), "--out", str(tmp_path / "o1"), "--budget", "3", "--no-progress", "--workers", "1"]) == 0
    assert len(read_manifest(tmp_path / "o1" / "frames.csv")) == 3
    assert main([str(good), str(page), "--out", str(tmp_path / "o2"), "--budget", "3", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {page}: is an HTML/XML page" in err
    assert len(read_manifest(tmp_path / "o2" / "frames.csv")) == 3
    assert main([str(good), "--out", str(tmp_path / "o3"), "--budget", "-1"]) == 2
    # the same file given twice (two spellings) is processed once
    assert main([str(good), str(good.parent / ".." / good.parent.name / good.name), "--out", str(tmp_path / "o4"),
                 "--budget", "3", "--no-progress"]) == 0
    rows = read_manifest(tmp_path / "o4" / "frames.csv")
    assert len(rows) == 3 and len({r["file"] for r in rows}) == 3


def test_every_seconds_and_rerun_replaces_frames(shared_data, tmp_path):
    video = shared_data / "videos" / "moviepy_media" / "chaplin.mp4"        # 9.6 s
    res = select_frames(video, tmp_path, progress=False, every_seconds=2.0, dup_distance=0.0)
    rows = read_manifest(res.manifest)
    n_scenes = res.scans[0].n_scenes
    assert 3 <= len(rows) <= 9.64 / 2.0 + 1 + n_scenes
    res2 = select_frames(video, tmp_path, progress=False, budget=1)
    assert len(read_manifest(res2.manifest)) == 1
    assert len(list((tmp_path / "frames").iterdir())) == 1             # the old run's frames are gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
