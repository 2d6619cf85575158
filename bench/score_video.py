"""Benchmark of video scoring (cvflow.batch_scoring.score_video) — not a test.

The question: does decoding, drawing and encoding hide behind the model? Measured in one run on the same frames:
  * model-only fps: the package's predictor on the scored frames, pre-decoded into memory (RGB arrays), called
    batch by batch (`--batch` frames per call, as score_video calls it) — the ceiling;
  * video scoring fps: `score_video` end to end (threaded decode -> batched inference + tracking -> threaded
    overlay drawing and libx264 encoding of every frame, JSON lines, tracks CSV), counted in scored frames per second.
Ratio = video scoring fps / model-only fps; goal >= 0.9. Each is measured `--repeat` times, interleaved, after one
warm-up batch; the median is reported.

The default package is a tiny *untrained* cpu-small Mask R-CNN (`--min-size`, default 256): on a CPU it is fast,
which makes the ratio harder to reach than with a real model (the fixed per-frame cost of decode/draw/encode is
a larger share). Untrained, it fills all `--detections` slots (default 20) above `--score-threshold` on every
frame, so every frame has 20 masks drawn; pass a trained `--package` for realistic figures. The default video is the synthetic sample (`--seconds` at 640x360,
15 fps) rendered into a temporary folder.

Usage: .venv/bin/python bench/score_video.py [--package DIR] [--video FILE] [--frames 60] [--every 1] [--batch 4]
       [--device auto] [--repeat 3] [--min-size 256] [--detections 20] [--score-threshold 0.05]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def tiny_package(d: Path, min_size: int, detections: int) -> Path:
    "An untrained cpu-small package (deploy's demo package) at a 16:9 input size."
    from cvflow.deploy import demo_package
    return demo_package(d / "package", min_size=min_size, max_size=int(min_size * 16 / 9) + 1, max_detections=detections)


def predecode(video: Path, n: int, every: int) -> list:
    import av
    out = []
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for i, f in enumerate(c.decode(s)):
            if i >= n: break
            if i % every == 0: out.append(f.to_ndarray(format="rgb24"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package"); ap.add_argument("--video")
    ap.add_argument("--frames", type=int, default=60, help="video frames to score (default 60)")
    ap.add_argument("--every", type=int, default=1); ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="auto"); ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-size", type=int, default=256, help="input size of the default tiny package")
    ap.add_argument("--detections", type=int, default=20, help="instances per image kept by the default tiny package "
                    "(an untrained model fills every slot; the mask head's cost grows with them)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the default synthetic video")
    ap.add_argument("--score-threshold", type=float, default=0.05)
    ap.add_argument("--threads", type=int, help="torch intra-op threads for both measurements (default: torch's). On a "
                    "shared 2-core machine 2 threads ran 2-3x slower than 1 (OpenMP threads fighting other processes)")
    ap.add_argument("--workdir")
    a = ap.parse_args(argv)
    import torch
    from cvflow.package import load_package
    from cvflow.sample import make_sample
    from cvflow.batch_scoring import score_video
    if a.threads: torch.set_num_threads(a.threads)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="cvflow-bench-score-"))
    pkg = Path(a.package) if a.package else tiny_package(work / "tiny", a.min_size, a.detections)
    video = Path(a.video) if a.video else make_sample(work / "sample", seconds=a.seconds, fps=15, width=640, height=360,
                                                       progress=False)
    pred = load_package(pkg, device=a.device, batch_size=a.batch)
    frames = predecode(video, a.frames, a.every)
    n_frames = min(a.frames, (len(frames) - 1) * a.every + 1 if frames else 0)
    print(f"package {pkg} ({pred.meta['preset']}, min_size {pred.meta['model_config'].get('min_size')}), device {pred.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"video {video}: {n_frames} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, every {a.every} -> "
          f"{len(frames)} scored, batch {a.batch}")
    pred.predict(frames[: a.batch], score_threshold=a.score_threshold)       # warm-up

    def sync():
        if pred.device.type == "cuda": torch.cuda.synchronize()

    model_fps, video_fps, details = [], [], []
    def model_only():
        sync(); t = time.perf_counter()
        n = 0
        for i in range(0, len(frames), a.batch):    # batch by batch, as score_video calls it
            n += sum(len(o["instances"]) for o in pred.predict(frames[i:i + a.batch], score_threshold=a.score_threshold))
        sync()
        return len(frames) / (time.perf_counter() - t), n

    def video_scoring(r):
        t = time.perf_counter()
        res = score_video(pred, video, work / f"out{r}", every=a.every, batch=a.batch, score_threshold=a.score_threshold,
                          max_frames=a.frames, progress=False)
        sync()
        return res, time.perf_counter() - t

    for r in range(a.repeat):   # interleaved, the order alternating so drifting load favours neither
        if r % 2 == 0:
            (mf, n_inst), (res, wall) = model_only(), video_scoring(r)
        else:
            (res, wall), (mf, n_inst) = video_scoring(r), model_only()
        model_fps.append(mf)
        assert res.n_scored == len(frames), (res.n_scored, len(frames))
        video_fps.append(res.n_scored / wall)
        details.append({"wall_s": round(wall, 3), "model_s": round(res.model_seconds, 3),
                        "decode_wait_s": round(res.decode_wait_seconds, 3), "instances": n_inst})
        print(f"  run {r + 1}: model-only {model_fps[-1]:.2f} fps | video scoring {video_fps[-1]:.2f} scored fps "
              f"({res.n_frames} frames written in {wall:.2f} s; model {res.model_seconds:.2f} s, waiting for decode "
              f"{res.decode_wait_seconds:.3f} s; {n_inst} instances)")
    m, v = statistics.median(model_fps), statistics.median(video_fps)
    print(json.dumps({"model_only_fps": round(m, 3), "video_scoring_fps": round(v, 3), "ratio": round(v / m, 3),
                      "goal": 0.9, "device": str(pred.device), "frames": n_frames, "scored": len(frames),
                      "every": a.every, "batch": a.batch, "runs": details}, indent=1))
    print(f"ratio video scoring / model-only = {v / m:.3f} (goal >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
