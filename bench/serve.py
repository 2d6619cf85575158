"""Benchmark of the local web service (cvflow.deploy / cvflow.score), eager PyTorch against ONNX Runtime — not a test.

One run, batch 1, CPU, the same package and the same images for all four measurements:
  * eager in-process:  `Predictor.predict([image])` (eager PyTorch) on already decoded images;
  * ONNX in-process:   `OnnxPredictor.predict([image])` (the package's model.onnx under ONNX Runtime);
  * eager service:     `POST /score` with the raw JPEG to score.py under azureml-inference-server-http with
                       CVFLOW_RUNTIME=eager (client-side wall time on loopback);
  * ONNX service:      the same, with the package's default runtime (ONNX Runtime, since it has model.onnx).
Ratios printed: ONNX Runtime / eager in-process and ONNX Runtime service p50 / eager service p50 (goal <= 0.7), and
each service over its own in-process p50 (the serving overhead). Threads: both runtimes get intra-op threads =
cores per worker (1 worker here: every core), in-process too. The four are measured interleaved, image by image,
so a shared, busy machine slows them alike; warm-up calls are not counted.

Usage: .venv/bin/python bench/serve.py [--task segmentation|detection|classification] [--package DIR] [--images DIR] [--n-images 8] [--repeat 3]
       (default package: an untrained demo package of --task (cpu-small Mask R-CNN, Faster R-CNN for detection, a
       MobileNetV3-Small classifier at 192 px for classification;
       min_size 192, max_size 320, the preset's) exported with model.onnx; a --package must have model.onnx (`cvflow export --onnx`); default images:
       ../shared/data/coco_rle_labelbox/images)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["segmentation", "detection", "classification"], default="segmentation",
                    help="the demo package's task (ignored with --package: its model.json says)")
    ap.add_argument("--package")
    ap.add_argument("--images")
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args(argv)

    import torch
    from cvflow.client import ServiceClient, load_test_images
    from cvflow.config import get_paths, shared_data_dir
    from cvflow.deploy import LocalService, demo_package
    from cvflow.package import cpu_cores, load_package, read_package_meta

    paths = get_paths()
    tmp = tempfile.TemporaryDirectory()
    if a.package:
        pkg = paths.resolve(a.package)
        if "model.onnx" not in read_package_meta(pkg)["files"]:
            print(f"{pkg} has no model.onnx: export it with `cvflow export --onnx`", file=sys.stderr)
            return 2
    else:
        pkg = demo_package(Path(tmp.name) / "package", min_size=192, max_size=320, onnx=True, task=a.task)
    if a.images:
        img_dir = paths.resolve(a.images)
    elif shared_data_dir() is not None:
        img_dir = shared_data_dir() / "coco_rle_labelbox" / "images"
    else:
        print("no --images and ../shared/data is absent", file=sys.stderr)
        return 2
    imgs = load_test_images(img_dir, a.n_images)
    threads = cpu_cores()  # one worker: every core, for both runtimes
    torch.set_num_threads(threads)
    eager = load_package(pkg, device="cpu", runtime="eager")
    fast = load_package(pkg, device="cpu", runtime="onnx", threads=threads)
    par = read_package_meta(pkg)["onnx"]["parity"]
    print(f"package {pkg} (task {eager.meta.get('task', 'segmentation')}, {eager.meta['preset']}, input {eager.meta['input_size']}), "
          f"{len(imgs)} images from {img_dir}, "
          f"repeat {a.repeat}; threads: torch {torch.get_num_threads()}, onnxruntime {fast.threads}; "
          f"export parity: {par['pairs']} instances, max box diff {par['max_box_px']:.2g} px, "
          f"max score diff {par['max_score_diff']:.2g}"
          + (f", min mask IoU {par['min_mask_iou']:.4f}" if eager.meta.get("task", "segmentation") == "segmentation" else ""))

    ms = {k: [] for k in ("eager", "onnx", "eager_service", "onnx_service")}
    inner = {k: [] for k in ("eager_service", "onnx_service")}
    env = {"CVFLOW_THREADS": str(threads)}
    with LocalService(pkg, env={**env, "CVFLOW_RUNTIME": "eager"}) as svc_e, LocalService(pkg, env=env) as svc_o:
        if (svc_e.info["model"].get("runtime"), svc_o.info["model"].get("runtime")) != ("eager", "onnxruntime"):
            print(f"unexpected service runtimes: {svc_e.info['model']}, {svc_o.info['model']}", file=sys.stderr)
            return 1
        clients = {"eager_service": ServiceClient(svc_e.url), "onnx_service": ServiceClient(svc_o.url)}
        local = {"eager": eager, "onnx": fast}
        for i in range(a.warmup):
            im = imgs[i % len(imgs)]
            for p in local.values():
                p.predict([im.array])
            for c in clients.values():
                c.post_image(im.data, im.content_type)
        for _ in range(a.repeat):
            for im in imgs:
                for k, p in local.items():
                    t0 = time.perf_counter()
                    p.predict([im.array])
                    ms[k].append((time.perf_counter() - t0) * 1e3)
                for k, c in clients.items():
                    r = c.post_image(im.data, im.content_type)
                    if r.status != 200:
                        print(f"{k} answered {r.status}: {r.body[:300]!r}", file=sys.stderr)
                        return 1
                    ms[k].append(r.seconds * 1e3)
                    inner[k].append(r.json["timings_ms"]["predict"])
    tmp.cleanup()

    p50 = {k: statistics.median(v) for k, v in ms.items()}
    for k, label in (("eager", "eager in-process        "), ("onnx", "ONNX Runtime in-process "),
                     ("eager_service", "eager service           "), ("onnx_service", "ONNX Runtime service    ")):
        extra = f"; predict inside the worker p50 {statistics.median(inner[k]):.1f} ms" if k in inner else ""
        print(f"{label} p50 {p50[k]:7.1f} ms (n={len(ms[k])}){extra}")
    r_local, r_service = p50["onnx"] / p50["eager"], p50["onnx_service"] / p50["eager_service"]
    print(f"ratio ONNX Runtime / eager, in-process = {r_local:.3f} (goal <= 0.7: {'met' if r_local <= 0.7 else 'not met'})")
    print(f"ratio ONNX Runtime / eager, service p50 = {r_service:.3f} (goal <= 0.7: {'met' if r_service <= 0.7 else 'not met'})")
    print(f"serving overhead (service / in-process p50): eager {p50['eager_service'] / p50['eager']:.3f}, "
          f"ONNX Runtime {p50['onnx_service'] / p50['onnx']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
