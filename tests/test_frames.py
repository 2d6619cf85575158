"""Frame reduction (cvflow.frames): the synthetic sample's ground truth, the real videos in ../shared/data, broken files."""
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cvflow.files import frame_filename
from cvflow.frames import (FrameOptions, SceneCut, SegmentRule, main, read_manifest, reduce_videos, scan_video,
                           segment_rules, select_frames)
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


# --- issue #18: real videos' kinds, rebuilt as small generated videos ---------------------------------------------

def write_video(path, frames, fps=10, rotation=None, codec="libx264"):
    "Encode RGB uint8 frames `(H, W, 3)` with PyAV; `rotation`: display matrix, degrees counter-clockwise (as PyAV reads it)."
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "12"}
        if rotation is not None: s.set_display_rotation(rotation)
        for a in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")): c.mux(p)
        for p in s.encode(): c.mux(p)
    return path


def displayed(stored, mp4):
    """What a player shows: `stored` mapped through the MP4 track header matrix of `mp4`, read from the file bytes
    (ISO/IEC 14496-12 'tkhd': x' = a·x + c·y, y' = b·x + d·y, 16.16 fixed point) — independent of PyAV and cvflow."""
    import struct
    b = Path(mp4).read_bytes(); i = b.index(b"tkhd")
    assert b[i + 4] == 0                                    # version 0 header: the matrix is 40 bytes after the flags
    a, bb, _, c, d, _, _, _, _ = struct.unpack(">9i", b[i + 44:i + 80])
    h, w = stored.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    xp, yp = (a * xs + c * ys) // 65536, (bb * xs + d * ys) // 65536
    out = np.zeros((np.ptp(yp) + 1, np.ptp(xp) + 1) + stored.shape[2:], stored.dtype)
    out[yp - yp.min(), xp - xp.min()] = stored[ys, xs]
    return out


def _pattern(h, w, seed=0):
    "A textured, asymmetric RGB picture: smooth noise, a bright block top left, a red bar along the bottom."
    import cv2
    rng = np.random.default_rng(seed)
    a = cv2.resize(rng.integers(40, 200, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    a[: h // 3, : w // 4] = 250
    a[-h // 6:, w // 3:] = (220, 30, 30)
    return a


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_phone_rotation_saved_upright(tmp_path, rotation):
    "A 96x64 video with a display matrix is scanned, reported and saved as players show it (pixels compared)."
    stored = _pattern(64, 96)
    video = write_video(tmp_path / f"phone{rotation}.mp4", [stored] * 8, rotation=rotation)
    want = displayed(stored, video).astype(np.float32)
    assert want.shape[:2] == ((96, 64) if rotation in (90, 270) else (64, 96))
    res = select_frames(video, tmp_path / "out", progress=False, budget=1)
    rows = read_manifest(res.manifest)
    assert len(rows) == 1
    got = np.asarray(Image.open(res.frames_dir / rows[0]["file"]).convert("RGB"), np.float32)
    assert got.shape == want.shape
    err = np.abs(got - want).mean()
    assert err < 6, err
    for k in (1, 2, 3):                                    # and clearly not any other turn of the picture
        other = np.rot90(want, k)
        if other.shape == got.shape: assert np.abs(got - other).mean() > 5 * err + 10
    s = res.scans[0]
    assert (s.width, s.height, s.rotation) == (want.shape[1], want.shape[0], rotation)
    rep = json.loads((tmp_path / "out" / "frames_report.json").read_text())["videos"][0]
    assert (rep["width"], rep["height"], rep["rotation"]) == (want.shape[1], want.shape[0], rotation)


def test_real_rotated_video_saved_upright(shared_data, tmp_path):
    "fire2.mp4 is stored upside down with a 180° display matrix: its frames come out turned back."
    video = shared_data / "videos" / "moviepy_media" / "fire2.mp4"
    res = select_frames(video, tmp_path / "out", progress=False, budget=3)
    assert res.scans[0].rotation == 180
    rows = read_manifest(res.manifest)
    ref, _ = decoded_frames(video, {r["frame_index"] for r in rows})
    for r in rows:
        got = np.asarray(Image.open(res.frames_dir / r["file"]).convert("RGB"), np.float32)
        want = np.rot90(ref[r["frame_index"]], 2).astype(np.float32)
        assert np.abs(got - want).mean() < 4.0 < np.abs(got - ref[r["frame_index"]]).mean()


def _static_shot(seconds, fps, moving, h=96, w=160, seed=1):
    "A fixed camera: a textured background; `moving(t)` gives `(x, y)` of a small dark thing (8x12 px, 0.6 % of the picture) or None."
    bg = _pattern(h, w, seed)
    for i in range(int(seconds * fps)):
        a = bg.copy()
        xy = moving(i / fps)
        if xy is not None:
            x, y = map(int, xy); a[y:y + 12, max(0, x):max(0, x + 8)] = 15
        yield a


def test_static_camera_small_movement_makes_candidates(tmp_path):
    "80 s of a fixed camera: a small thing crosses during 0-20 s, another one back during 60-80 s, nothing moves in between."
    def moving(t):
        if t < 20: return -8 + t * 8.4, 50          # crosses the 160 px in 20 s
        if t >= 60: return 160 - (t - 60) * 8.4, 20  # the way back, higher up
        return None
    video = write_video(tmp_path / "street.mp4", _static_shot(80, 5, moving), fps=5)
    scan = scan_video(video)
    assert scan.ok and scan.n_scenes == 1
    t = np.array([c.timestamp for c in scan.candidates])
    crossing = ((t < 20) | (t >= 60)).sum()
    quiet = ((t >= 21) & (t < 60)).sum()
    assert crossing >= 10 and quiet <= 1, t                     # candidates where things move, not where nothing does
    assert sum(c.reason == "objects moved" for c in scan.candidates) >= 8
    # the frame-to-frame / segment-start measures alone see nothing: the background is what finds it
    old = scan_video(video, FrameOptions(object_motion=None))
    assert len(old.candidates) <= 2
    # a selection with a budget keeps frames of both crossings
    res = select_frames(video, tmp_path / "out", progress=False, budget=10)
    kept = [r["timestamp"] for r in read_manifest(res.manifest)]
    assert any(k < 20 for k in kept) and any(k >= 60 for k in kept)


def test_a_new_segment_rule_plugs_in_without_touching_the_scan(tmp_path):
    "A rule written by a user (a segment every 4 s of a static shot) is asked alongside the default ones, and scans"
    "are independent: the rule's state is copied for each scan."
    class Every4s(SegmentRule):
        reason = "every 4 s"
        def __init__(self): self.start = None
        def started(self, f): self.start = f.t
        def starts(self, f): return f.t - self.start >= 4 - 1e-9
    video = write_video(tmp_path / "parking.mp4", _static_shot(20, 5, lambda t: None), fps=5)
    assert len(scan_video(video).candidates) == 1                     # nothing moves: the default rules find one
    rules = [SceneCut(), Every4s()]
    for _ in range(2):                                                # the same rules object twice: same answer
        scan = scan_video(video, rules=rules)
        assert [c.reason for c in scan.candidates] == ["start"] + ["every 4 s"] * 4
        assert [round(c.timestamp) for c in scan.candidates] == [0, 4, 8, 12, 16]
    assert rules[1].start is None                                     # the caller's rule objects are left as they were
    assert [type(r).__name__ for r in segment_rules(FrameOptions())] == ["SceneCut", "Motion", "ObjectMotion"]


def test_static_camera_nothing_moving_warns(tmp_path, capsys):
    video = write_video(tmp_path / "parking.mp4", _static_shot(80, 2, lambda t: None), fps=2)
    assert main([str(video), "--out", str(tmp_path / "out"), "--budget", "20", "--no-progress", "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert f"video {video}: 1 candidate(s) in 80 s: the picture barely changes; lower --motion-threshold or use --every-seconds" in err
    rep = json.loads((tmp_path / "out" / "frames_report.json").read_text())["videos"][0]
    assert rep["candidates"] == 1 and "barely changes" in rep["warnings"][0]


def test_dark_frame_with_timestamp_never_chosen(tmp_path):
    "A webcam: 3 s of black with a burned-in clock, then 5 s of a lit room with the same clock; the black is never kept."
    import cv2
    room = _pattern(120, 160, seed=4)
    frames = []
    for i in range(80):
        a = np.full((120, 160, 3), 4, np.uint8) if i < 30 else room.copy()
        cv2.putText(a, f"2024-05-01 06:00:{i // 10:02d}", (4, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1)
        frames.append(a)
    video = write_video(tmp_path / "webcam.mp4", frames, fps=10)
    scan = scan_video(video)
    assert scan.n_scenes == 2                     # the light going on is a scene cut: the dark stretch is a scene of its own
    assert scan.low_content >= 1 and all(c.timestamp >= 3.0 for c in scan.candidates)
    for budget in (1, 2, 5, None):
        res = select_frames(video, tmp_path / f"out{budget}", progress=False, budget=budget)
        rows = read_manifest(res.manifest)
        assert rows and all(r["timestamp"] >= 3.0 for r in rows), rows
    rep = json.loads((tmp_path / "outNone" / "frames_report.json").read_text())["videos"][0]
    assert rep["low_content"] == scan.low_content >= 1
    # a video of nothing but the dark stretch still yields its best frame, with a warning saying why
    only_dark = write_video(tmp_path / "night.mp4", frames[:30], fps=10)
    s = scan_video(only_dark)
    assert len(s.candidates) == 1 and s.candidates[0].reason == "low content" and "almost no content" in s.warnings[0]


@pytest.mark.parametrize("every", [2.0, 0.5])
def test_every_seconds_at_most_one_frame_per_interval(sample, tmp_path, every):
    "`--every-seconds S` promises at most one frame per S seconds: kept frames are at least S apart, scene cuts included."
    video, gt = sample
    assert len(gt["scene_starts"]) >= 3                  # cuts inside intervals are what used to add a second frame
    for skip in (True, False):
        res = select_frames(video, tmp_path / f"o{skip}", progress=False, every_seconds=every, dup_distance=0.0, skip_nonref=skip)
        t = np.array(sorted(r["timestamp"] for r in read_manifest(res.manifest)))
        assert len(t) >= 0.4 * 24 / every
        assert np.diff(t).min() >= every - 1e-6, np.diff(t).min()
        assert len(np.unique(np.floor(t / every + 1e-9))) == len(t)   # and at most one in each fixed window


def test_cli_writes_strip_and_every_timeline(sample, tmp_path):
    video, _ = sample
    other = write_video(tmp_path / "second.mp4", _static_shot(4, 5, lambda t: (t * 30, 40)), fps=5)
    assert main([str(video), str(other), "--out", str(tmp_path / "out"), "--budget", "6", "--no-progress", "--workers", "1"]) == 0
    out = tmp_path / "out"
    for f in (out / "strip.png", out / "timelines" / f"{video.stem}.png", out / "timelines" / "second.png"):
        with Image.open(f) as im: assert im.format == "PNG" and im.width > 300
