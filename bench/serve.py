"""Benchmark of the local web service (cvflow.deploy / cvflow.score) — not a test.

One run, batch 1, CPU: the p50 latency of a scoring request to the local service (score.py under
azureml-inference-server-http on loopback, client-side wall time of `POST /score` with the raw JPEG) against the
p50 of an in-process `Predictor.predict([image])` of the same package on the same, already decoded images.
The ratio service / in-process is the serving overhead (HTTP, JPEG decode, JSON encoding); goal <= 1.15.

The two are measured interleaved (image i in-process, then image i through the service, ...) so that a shared,
busy machine slows both alike; each side has warm-up requests that are not counted. The service's own
`timings_ms` (decode / predict / postprocess inside the worker) are reported too, to show where overhead goes.

Usage: .venv/bin/python bench/serve.py [--package DIR] [--images DIR] [--n-images 8] [--repeat 3]
       (default package: models/cvflow-maskrcnn/package of the project home if it exists, else an untrained
       cpu-small demo package; default images: ../shared/data/coco_rle_labelbox/images)
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
    from cvflow.package import load_package

    paths = get_paths()
    tmp = tempfile.TemporaryDirectory()
    if a.package:
        pkg = paths.resolve(a.package)
    elif (paths.models / "cvflow-maskrcnn" / "package" / "model.json").is_file():
        pkg = paths.models / "cvflow-maskrcnn" / "package"
    else:
        pkg = demo_package(Path(tmp.name) / "package")
    if a.images:
        img_dir = paths.resolve(a.images)
    elif shared_data_dir() is not None:
        img_dir = shared_data_dir() / "coco_rle_labelbox" / "images"
    else:
        print("no --images and ../shared/data is absent", file=sys.stderr)
        return 2
    imgs = load_test_images(img_dir, a.n_images)
    pred = load_package(pkg, device="cpu")
    print(f"package {pkg} ({pred.meta['preset']}), {len(imgs)} images from {img_dir}, repeat {a.repeat}, "
          f"torch threads {torch.get_num_threads()}")

    local_ms, service_ms, inner = [], [], {"decode": [], "predict": [], "postprocess": [], "total": []}
    with LocalService(pkg) as svc:
        client = ServiceClient(svc.url)
        for i in range(a.warmup):
            im = imgs[i % len(imgs)]
            pred.predict([im.array])
            client.post_image(im.data, im.content_type)
        for _ in range(a.repeat):
            for im in imgs:
                t0 = time.perf_counter()
                pred.predict([im.array])
                local_ms.append((time.perf_counter() - t0) * 1e3)
                r = client.post_image(im.data, im.content_type)
                if r.status != 200:
                    print(f"service answered {r.status}: {r.body[:300]!r}", file=sys.stderr)
                    return 1
                service_ms.append(r.seconds * 1e3)
                for k in inner:
                    inner[k].append(r.json["timings_ms"][k])
    tmp.cleanup()

    p50_local, p50_service = statistics.median(local_ms), statistics.median(service_ms)
    print(f"in-process predict p50 {p50_local:.1f} ms (n={len(local_ms)})")
    print(f"service request    p50 {p50_service:.1f} ms (n={len(service_ms)}); inside the worker p50: "
          + ", ".join(f"{k} {statistics.median(v):.1f} ms" for k, v in inner.items()))
    ratio = p50_service / p50_local
    print(f"ratio service / in-process = {ratio:.3f} (goal <= 1.15: {'met' if ratio <= 1.15 else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
