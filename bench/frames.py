"""Benchmark of frame reduction (cvflow.frames) — not a test.

Speed, in one run on the same generated 720p H.264 file (scenes of the synthetic sample rendered at 1280x720,
30 fps, a new scene every 8 s; libx264 veryfast crf 20 with a keyframe every 2 s, as cameras write):
  * PyAV decode-only fps (threaded, frames decoded and dropped): the ceiling;
  * cvflow scan fps (`scan_video`: the streaming scoring pass alone), by default decoding only reference frames,
    and with `skip_nonref=False` (every frame decoded and scored);
  * cvflow `select_frames` fps, end to end (scan + choice + the seeking second pass writing full-resolution JPEGs),
    with a budget of one frame per 10 s of video (`--budget`; the issue's use is hours -> a few hundred frames);
  * PySceneDetect `ContentDetector` fps (`detect_scenes` with its default OpenCV backend, and with its PyAV backend);
  and the ratios cvflow / decode-only (goal >= 0.8) and cvflow / PySceneDetect (goal >= 1.5, against the faster backend).
Each is measured `--repeat` times, interleaved, and the median is reported, both as wall-clock fps and as
fps per CPU-second of the process (all threads) — the latter is the fairer comparison on a shared machine.

Memory: peak RSS (ru_maxrss) of `select_frames` in a fresh subprocess on a 1-minute and on a long video
(default 60 minutes). Both are generated cheaply: one minute of the sample at 320x180 / 15 fps is encoded once,
and the long one repeats its packets (same GOPs, shifted timestamps) `--long-minutes` times — decoding and
scoring still touch every frame. Goal: long within 10% of short.

Usage: .venv/bin/python bench/frames.py [--seconds 30] [--repeat 3] [--long-minutes 60] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn):
    "Run `fn()` -> n frames; return (n, wall seconds, CPU seconds of this process, all threads)."
    w, c = time.perf_counter(), cpu()
    n = fn()
    return n, time.perf_counter() - w, cpu() - c


def decode_only(video: Path) -> int:
    import av
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def cvflow_scan(video: Path, skip_nonref: bool = True) -> int:
    from cvflow.frames import FrameOptions, scan_video
    r = scan_video(video, FrameOptions(skip_nonref=skip_nonref))
    assert r.ok, r.error
    return r.n_frames


def cvflow_run(video: Path, out: Path, budget: int) -> int:
    from cvflow.frames import select_frames
    r = select_frames(video, out, progress=False, budget=budget)
    assert r.ok, r.errors
    return r.scans[0].n_frames


def scenedetect_run(video: Path, backend: str | None) -> int:
    from scenedetect import ContentDetector, SceneManager, open_video
    v = open_video(str(video), backend=backend) if backend else open_video(str(video))
    sm = SceneManager()
    sm.add_detector(ContentDetector())
    sm.detect_scenes(v, show_progress=False)
    return v.frame_number


def make_speed_video(dest: Path, seconds: float, fps: int = 30, width: int = 1280, height: int = 720, gop_s: float = 2.0) -> Path:
    "Scenes of the synthetic sample (cvflow.sample.make_scene/render), H.264 with a keyframe every `gop_s` seconds."
    import av
    import numpy as np
    from cvflow.sample import make_scene, render
    rng = np.random.default_rng(0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "20", "g": str(int(gop_s * fps))}
        scene = None
        for i in range(int(seconds * fps)):
            if i % (8 * fps) == 0: scene = make_scene(rng, width, height)
            img, _ = render(scene, (i % (8 * fps)) / fps, width, height)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")): c.mux(p)
        for p in s.encode(): c.mux(p)
    tmp.replace(dest)
    return dest


def make_long(short: Path, dest: Path, minutes: int) -> Path:
    "`dest`: the packets of the 1-minute `short` video repeated `minutes` times with shifted timestamps (no re-encoding)."
    import av
    with av.open(str(short)) as probe:
        s = probe.streams.video[0]
        period = None
        last = 0
        for p in probe.demux(s):
            if p.pts is not None: last = max(last, p.pts + (p.duration or 0))
        period = last
    with av.open(str(dest), "w") as out:
        with av.open(str(short)) as first:
            o = out.add_stream_from_template(first.streams.video[0])
        for k in range(minutes):
            with av.open(str(short)) as inp:
                for p in inp.demux(inp.streams.video[0]):
                    if p.dts is None: continue      # the demuxer's flush packet
                    p.pts += k * period; p.dts += k * period
                    p.stream = o
                    out.mux(p)
    return dest


def child(video: str, out: str) -> None:
    "Run in a fresh process: select frames, print JSON with the peak RSS."
    from cvflow.frames import select_frames
    t = time.perf_counter()
    r = select_frames(video, out, progress=False, budget=300)
    print(json.dumps({"frames": r.scans[0].n_frames, "candidates": len(r.scans[0].candidates), "kept": len(r.rows),
                      "seconds": time.perf_counter() - t,
                      "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def rss(video: Path, out: Path) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", str(video), str(out)], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the 720p speed-test video")
    ap.add_argument("--budget", type=int, default=None, help="frames kept in the end-to-end run (default: one per 10 s)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--long-minutes", type=int, default=60)
    ap.add_argument("--workdir", default=None, help="keep generated videos here (default: a temporary folder)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(*a.child)
    from cvflow.sample import make_sample
    import av, cv2, scenedetect
    work = Path(a.workdir or tempfile.mkdtemp(prefix="cvflow-bench-frames-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"versions: PyAV {av.__version__}, OpenCV {cv2.__version__}, scenedetect {scenedetect.__version__}; workdir {work}")

    v720 = work / "speed" / f"h264_720p_{a.seconds:g}s.mp4"
    if not v720.is_file():
        t = time.perf_counter()
        make_speed_video(v720, a.seconds)
        print(f"generated {v720} ({a.seconds:g} s, 1280x720, 30 fps, H.264, keyframe every 2 s) in {time.perf_counter() - t:.0f} s")
    budget = a.budget or max(1, int(a.seconds // 10))
    runs = {"decode-only (PyAV)": lambda: decode_only(v720),
            "cvflow scan": lambda: cvflow_scan(v720),
            "cvflow scan, all frames": lambda: cvflow_scan(v720, skip_nonref=False),
            "cvflow end-to-end": lambda: cvflow_run(v720, work / "out", budget),
            "scenedetect (opencv)": lambda: scenedetect_run(v720, None),
            "scenedetect (pyav)": lambda: scenedetect_run(v720, "pyav")}
    wall = {k: [] for k in runs}; per_cpu = {k: [] for k in runs}; nframes = {}
    for rep in range(a.repeat):
        for name, fn in runs.items():
            n, w, c = timed(fn)
            nframes[name] = n
            wall[name].append(n / w); per_cpu[name].append(n / c)
    fw = {k: statistics.median(v) for k, v in wall.items()}
    fc = {k: statistics.median(v) for k, v in per_cpu.items()}
    print(f"\nspeed on {v720.name} ({nframes['decode-only (PyAV)']} frames), median of {a.repeat}; "
          f"end-to-end keeps {budget} frames:")
    print(f"  {'':22} {'wall fps':>9} {'fps/CPU-s':>10}   runs (wall fps)")
    for k in runs:
        print(f"  {k:22} {fw[k]:9.1f} {fc[k]:10.1f}   {', '.join(f'{x:.0f}' for x in wall[k])}  (frames {nframes[k]})")
    for label, f in (("wall", fw), ("per CPU-second", fc)):
        sd = max(f["scenedetect (opencv)"], f["scenedetect (pyav)"])
        print(f"  [{label}] cvflow end-to-end / decode-only = {f['cvflow end-to-end'] / f['decode-only (PyAV)']:.2f}x (goal >= 0.8); "
              f"scan / decode-only = {f['cvflow scan'] / f['decode-only (PyAV)']:.2f}x; "
              f"end-to-end / scenedetect (faster backend) = {f['cvflow end-to-end'] / sd:.2f}x (goal >= 1.5); "
              f"/ scenedetect default (opencv) = {f['cvflow end-to-end'] / f['scenedetect (opencv)']:.2f}x")

    short = work / "mem" / "sample.mp4"
    if not short.is_file():
        make_sample(short.parent, seconds=60, fps=15, width=320, height=180, seed=1, progress=False)
    long_ = work / "mem" / f"long{a.long_minutes}.mp4"
    if not long_.is_file():
        t = time.perf_counter()
        make_long(short, long_, a.long_minutes)
        print(f"\ngenerated {long_.name}: the 1-minute 320x180 15 fps video's packets x {a.long_minutes} in {time.perf_counter() - t:.0f} s")
    r1 = rss(short, work / "mem_out1")
    r2 = rss(long_, work / "mem_out2")
    print("\npeak RSS of select_frames (budget 300) in a fresh process:")
    for name, r in (("1 minute", r1), (f"{a.long_minutes} minutes", r2)):
        print(f"  {name:12} {r['frames']:7d} frames  {r['candidates']:5d} candidates  {r['kept']:3d} kept  "
              f"{r['seconds']:6.1f} s  peak RSS {r['maxrss_mib']:.1f} MiB")
    print(f"  long / short = {r2['maxrss_mib'] / r1['maxrss_mib']:.3f}   (goal <= 1.10)")


if __name__ == "__main__":
    main()
