"""Benchmark: cvflow against the tool people pick instead (Ultralytics YOLO11n-seg), same data, CPU and time budget.

One run, one machine, the same data for both:
  * data: the pipeline's recipe read from `pipeline.yaml` (sample video, frame reduction, the ground truth as
    annotator, the leak-free split) -- the same training and validation frames for both; the peer gets them
    converted to its polygon label format;
  * training: each trained from scratch (no download: the peer is built from its model YAML `yolo11n-seg.yaml`)
    for the same wall-clock budget (`--minutes`, 6 by default), one after the other, each in its own process
    with `--threads` intra-op threads (2). cvflow runs the `train` step's parameters with training's `budget_minutes`
    (total steps re-sized from the measured pace, the schedule following); the peer runs `time=` (its own budget
    mode, which re-sizes its schedule likewise) with imgsz 320, batch 8, AdamW 1e-3, its default augmentation;
  * accuracy: both models' predictions on the 80 held-out frames of unseen scenes go through the same
    pycocotools `segm` (and `bbox`) evaluation below (masks at full resolution, RLE; categories matched by name;
    each tool at its own evaluation settings: cvflow's box score threshold 0.05, the peer's conf 0.001);
  * latency: batch 1, `--latency-threads` threads (1), at the same input size (320 px long side), image by image
    interleaved over the held-out frames (warm-up not counted): cvflow's served model in-process (the exported
    package's `Predictor.predict`, eager PyTorch, and the package's model.onnx under ONNX Runtime, both with
    masks pasted at full resolution and RLE-encoded) against the peer's `predict` (imgsz 320,
    `retina_masks=True`: masks at full resolution, conf 0.25).
Prints the ratios cvflow / peer for segm AP50, segm AP and p50 latency (goals: >= 1, >= 1, <= 1).

The machine may be shared: absolute times are noisy, the ratios come from one run.

Install the peer (benchmark only, AGPL-3.0: never a runtime dependency of cvflow):
    .venv/bin/pip install -e ".[bench]"      # or: .venv/bin/pip install ultralytics
Usage: .venv/bin/python bench/peer.py [--minutes 6] [--threads 2] [--latency-threads 1] [--work DIR]
       [--preset P] [--set KEY=VALUE ...] (overrides of the train step's parameters, YAML values)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def _env(threads: int, work: Path) -> dict:
    cfgdir = work / "ultralytics-config"
    cfgdir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "CVFLOW_HOME": str(work),
            "YOLO_CONFIG_DIR": str(cfgdir), "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False", "MPLBACKEND": "Agg"}


def _sub(role: str, work: Path, threads: int, args: dict) -> dict:
    "Run `role` of this script in a fresh process (its own thread settings, nothing shared); returns its JSON answer."
    spec = work / f"{role}.args.json"
    spec.write_text(json.dumps(args))
    r = subprocess.run([sys.executable, __file__, "--role", role, "--spec", str(spec), "--work", str(work),
                        "--threads", str(threads)], env=_env(threads, work), cwd=str(work))
    if r.returncode != 0:
        raise SystemExit(f"bench/peer.py: {role} failed (exit {r.returncode})")
    return json.loads((work / f"{role}.out.json").read_text())


# ---------------------------------------------------------------- data
def yolo_dataset(data: Path, out: Path) -> Path:
    "The cvflow dataset's train/val splits as an Ultralytics segmentation dataset (normalised polygons); its YAML."
    import numpy as np
    from pycocotools import mask as mask_utils
    import cv2
    out.mkdir(parents=True, exist_ok=True)
    names = None
    for split in ("train", "val"):
        coco = json.loads((data / f"{split}.json").read_text())
        cats = sorted(coco["categories"], key=lambda c: c["id"])
        names = [c["name"] for c in cats]
        cls = {c["id"]: i for i, c in enumerate(cats)}
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "labels").mkdir(parents=True, exist_ok=True)
        anns: dict[int, list] = {}
        for a in coco["annotations"]:
            if not a.get("iscrowd"): anns.setdefault(a["image_id"], []).append(a)
        for im in coco["images"]:
            src = data / "images" / im["file_name"]
            dst = out / split / "images" / Path(im["file_name"]).name
            if not dst.exists(): os.symlink(src, dst)
            w, h = im["width"], im["height"]
            lines = []
            for a in anns.get(im["id"], []):
                seg = a["segmentation"]
                if isinstance(seg, dict) or not seg:   # RLE -> the outer contour
                    rle = seg if isinstance(seg.get("counts"), str) or isinstance(seg.get("counts"), bytes) else \
                        mask_utils.frPyObjects(seg, h, w)
                    m = mask_utils.decode(rle).astype(np.uint8)
                    cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                    if not cs: continue
                    polys = [max(cs, key=cv2.contourArea).reshape(-1).tolist()]
                else:
                    polys = [max(seg, key=len)]
                p = polys[0]
                if len(p) < 6: continue
                xy = " ".join(f"{v / (w if i % 2 == 0 else h):.6f}" for i, v in enumerate(p))
                lines.append(f"{cls[a['category_id']]} {xy}")
            (out / split / "labels" / (Path(im["file_name"]).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
    y = out / "data.yaml"
    y.write_text(json.dumps({"path": str(out), "train": "train/images", "val": "val/images",
                             "names": {i: n for i, n in enumerate(names)}}))
    return y


def coco_eval(gt_json: Path, results: list[dict]) -> dict:
    "pycocotools bbox and segm AP / AP50 / AP75 of `results` against `gt_json` (the same code for both tools)."
    import contextlib, io
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        out = {}
        for iou in ("bbox", "segm"):
            if not results:
                out[iou] = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}; continue
            dt = gt.loadRes([dict(r) for r in results])
            ev = COCOeval(gt, dt, iou)
            ev.evaluate(); ev.accumulate(); ev.summarize()
            out[iou] = {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])}
    return out


def heldout_images(gt_json: Path) -> list[tuple[int, Path]]:
    coco = json.loads(gt_json.read_text())
    return [(im["id"], gt_json.parent / im["file_name"]) if (gt_json.parent / im["file_name"]).is_file()
            else (im["id"], gt_json.parent / "images" / im["file_name"]) for im in coco["images"]]


# ---------------------------------------------------------------- roles (each in its own process)
def role_cvflow_train(spec: dict, work: Path, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    from cvflow.train import step_config, train
    data, params = Path(spec["data"]), dict(spec["params"])
    params = {k: v for k, v in params.items() if k not in ("data", "out", "heldout", "tracking", "max_steps", "epochs")}
    shutil.rmtree(work / "cvflow-run", ignore_errors=True)
    # the budget: training's own `budget_minutes` (total steps re-sized from the measured pace, evaluations included)
    cfg = step_config(data, work / "cvflow-run", tracking="none", sample_images=0, progress=False, epochs=100000,
                      max_steps=0, budget_minutes=float(spec["minutes"]), **params)
    res = train(cfg)
    return {"steps": res["step"], "train seconds": res["seconds"], "best step": res.get("best_step"),
            "run": str(work / "cvflow-run")}


def role_cvflow_predict(spec: dict, work: Path, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    from cvflow.evaluate import predict, prediction_to_coco
    from cvflow.model import model_from_checkpoint
    from torchvision.io import decode_image
    model, conf = model_from_checkpoint(Path(spec["run"]) / "model.pt", device="cpu")
    model.eval()
    gt = json.loads(Path(spec["heldout"]).read_text())
    by_name = {c["name"]: c["id"] for c in gt["categories"]}
    results = []
    with torch.inference_mode():
        for iid, p in heldout_images(Path(spec["heldout"])):
            (pred,) = predict(model, [decode_image(str(p))[:3]], "cpu")
            for r in prediction_to_coco(pred, iid, conf["model"]["mask_thresh"]):
                r["category_id"] = by_name[conf["classes"][r["category_id"] - 1]]
                results.append(r)
    return {"results": results}


def role_peer_train(spec: dict, work: Path, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS
    SETTINGS.update({k: False for k in ("sync", "mlflow", "tensorboard", "wandb", "clearml", "comet", "dvc", "neptune",
                                        "raytune", "hub") if k in SETTINGS})   # no logging integrations, no calls home
    shutil.rmtree(work / "peer", ignore_errors=True)
    model = YOLO("yolo11n-seg.yaml", task="segment")   # the architecture from its YAML: random weights, no download
    model.train(data=spec["yaml"], imgsz=320, batch=8, optimizer="AdamW", lr0=1e-3, time=float(spec["minutes"]) / 60,
                epochs=1000, device="cpu", workers=int(spec.get("workers", 1)), project=str(work / "peer"), name="run",
                exist_ok=True, pretrained=False, amp=False, plots=False, seed=0, deterministic=False, verbose=False)
    tr = model.trainer
    secs = time.time() - tr.train_time_start   # its training loop (with its per-epoch validation), as its budget counts
    best = work / "peer" / "run" / "weights" / "best.pt"
    if not best.is_file(): best = work / "peer" / "run" / "weights" / "last.pt"
    return {"train seconds": round(secs, 1), "weights": str(best), "epochs": int(getattr(model.trainer, "epoch", -1)) + 1}


def role_peer_predict(spec: dict, work: Path, threads: int) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    from pycocotools import mask as mask_utils
    from ultralytics import YOLO
    model = YOLO(spec["weights"], task="segment")
    gt = json.loads(Path(spec["heldout"]).read_text())
    by_name = {c["name"]: c["id"] for c in gt["categories"]}
    results = []
    for iid, p in heldout_images(Path(spec["heldout"])):
        (r,) = model.predict(str(p), imgsz=320, conf=0.001, iou=0.7, max_det=100, retina_masks=True, device="cpu",
                             verbose=False)
        if r.masks is None: continue
        masks = (r.masks.data.cpu().numpy() > 0.5).astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        for i, (b, s, c) in enumerate(zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())):
            results.append({"image_id": iid, "category_id": by_name[r.names[int(c)]], "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                            "segmentation": {"size": list(rles[i]["size"]), "counts": rles[i]["counts"].decode("ascii")}})
    return {"results": results}


def role_latency(spec: dict, work: Path, threads: int) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    from PIL import Image
    from cvflow.package import export_package, load_package
    from ultralytics import YOLO
    pkg = export_package(spec["run"], out=work / "cvflow-package", onnx=True, quiet=True)
    eager = load_package(pkg, device="cpu", runtime="eager")
    ort = load_package(pkg, device="cpu", runtime="onnx", threads=threads)
    peer = YOLO(spec["weights"], task="segment")
    imgs = [np.asarray(Image.open(p).convert("RGB")) for _, p in heldout_images(Path(spec["heldout"]))][: spec["n"]]
    calls = {"cvflow eager": lambda im: eager.predict([im]), "cvflow onnxruntime": lambda im: ort.predict([im]),
             # the peer takes BGR arrays (OpenCV order)
             "peer eager": lambda im: peer.predict(im[:, :, ::-1].copy(), imgsz=320, retina_masks=True, device="cpu",
                                                   verbose=False)}
    for im in imgs[:3]:
        for f in calls.values(): f(im)
    ms = {k: [] for k in calls}
    for _ in range(spec["repeat"]):
        for im in imgs:
            for k, f in calls.items():
                t = time.perf_counter(); f(im); ms[k].append((time.perf_counter() - t) * 1e3)
    return {"p50 ms": {k: statistics.median(v) for k, v in ms.items()}, "n": {k: len(v) for k, v in ms.items()},
            "input": f"{imgs[0].shape[1]}x{imgs[0].shape[0]}", "threads": torch.get_num_threads(),
            "onnx threads": ort.threads}


ROLES = {"cvflow-train": role_cvflow_train, "cvflow-predict": role_cvflow_predict, "peer-train": role_peer_train,
         "peer-predict": role_peer_predict, "latency": role_latency}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget of each tool, wall clock (default 6)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for training (default 2)")
    ap.add_argument("--latency-threads", type=int, default=1, help="threads for the latency measurement (default 1)")
    ap.add_argument("--latency-images", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--pipeline", default=str(REPO / "pipeline.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a train step parameter")
    ap.add_argument("--skip-peer", action="store_true", help="reuse the peer's results from --work (exploration only)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--role", help=argparse.SUPPRESS); ap.add_argument("--spec", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cvflow-peer-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if a.role:
        out = ROLES[a.role](json.loads(Path(a.spec).read_text()), work, a.threads)
        (work / f"{a.role}.out.json").write_text(json.dumps(out))
        return 0
    os.environ.update(_env(a.threads, work))
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        print("bench/peer.py needs the peer: .venv/bin/pip install -e \".[bench]\" (or: pip install ultralytics; "
              "AGPL-3.0, benchmark only)", file=sys.stderr)
        return 2
    import yaml
    from quality import prepare, step_params
    from cvflow.sample import make_heldout_images
    pl = yaml.safe_load(Path(a.pipeline).read_text())
    sample_p, frames_p, dataset_p = (step_params(pl, k) for k in ("sample", "frames", "dataset"))
    train_p = dict(step_params(pl, "train"))
    for kv in a.set:
        k, v = kv.split("=", 1); train_p[k] = yaml.safe_load(v)
    heldout = work / "heldout"
    if not (heldout / "instances.json").is_file():
        make_heldout_images(heldout, sample_p.get("heldout_images", 80), sample_p["seed"], sample_p["width"], sample_p["height"])
    gt_json = heldout / "instances.json"
    data = work / "data-pipeline"
    if not (data / "train.json").is_file():
        data = prepare(work, sample_p, frames_p, dataset_p, "pipeline")
    ytrain = yolo_dataset(data, work / "peer-data")
    card = json.loads((data / "dataset_card.json").read_text())["counts"]
    print(f"work folder {work}; budget {a.minutes} min each, {a.threads} threads; {card['train']['images']} training, "
          f"{card['val']['images']} validation frames; held-out: {len(heldout_images(gt_json))} frames; cvflow recipe: "
          f"{json.dumps({k: v for k, v in train_p.items() if k not in ('data', 'out', 'heldout', 'tracking', 'experiment', 'device')})}",
          flush=True)

    cv = _sub("cvflow-train", work, a.threads, {"data": str(data), "params": train_p, "minutes": a.minutes})
    print(f"cvflow trained: {json.dumps(cv)}", flush=True)
    if a.skip_peer and (work / "peer-train.out.json").is_file():
        pe = json.loads((work / "peer-train.out.json").read_text())
    else:
        pe = _sub("peer-train", work, a.threads, {"yaml": str(ytrain), "minutes": a.minutes})
    print(f"peer trained:   {json.dumps(pe)}", flush=True)

    m_cv = coco_eval(gt_json, _sub("cvflow-predict", work, a.threads, {"run": cv["run"], "heldout": str(gt_json)})["results"])
    if a.skip_peer and (work / "peer-metrics.json").is_file():
        m_pe = json.loads((work / "peer-metrics.json").read_text())
    else:
        m_pe = coco_eval(gt_json, _sub("peer-predict", work, a.threads, {"weights": pe["weights"], "heldout": str(gt_json)})["results"])
        (work / "peer-metrics.json").write_text(json.dumps(m_pe))
    lat = _sub("latency", work, a.latency_threads, {"run": cv["run"], "weights": pe["weights"], "heldout": str(gt_json),
                                                     "n": a.latency_images, "repeat": a.repeat})
    p50 = lat["p50 ms"]
    print(f"\nheld-out ({len(heldout_images(gt_json))} frames of unseen scenes, pycocotools, same code for both):")
    for name, m in (("cvflow", m_cv), ("peer (YOLO11n-seg)", m_pe)):
        print(f"  {name:20s} segm AP50 {m['segm']['AP50']:.3f}  AP {m['segm']['AP']:.3f}  AP75 {m['segm']['AP75']:.3f}   "
              f"bbox AP50 {m['bbox']['AP50']:.3f}  AP {m['bbox']['AP']:.3f}")
    print(f"latency, batch 1, {lat['input']} frames, {lat['threads']} thread(s), full-resolution masks, p50 over "
          f"{lat['n']['peer eager']} calls each, interleaved:")
    for k, v in p50.items():
        print(f"  {k:20s} {v:7.1f} ms")
    r50 = m_cv["segm"]["AP50"] / max(m_pe["segm"]["AP50"], 1e-9)
    rap = m_cv["segm"]["AP"] / max(m_pe["segm"]["AP"], 1e-9)
    le, lo = p50["cvflow eager"] / p50["peer eager"], p50["cvflow onnxruntime"] / p50["peer eager"]
    ok = lambda v, hi: "met" if (v >= 1.0 if hi else v <= 1.0) else "not met"
    print(f"\nratio cvflow / peer: segm AP50 {r50:.3f} ({ok(r50, True)}), segm AP {rap:.3f} ({ok(rap, True)}), "
          f"latency eager {le:.3f} ({ok(le, False)}), latency ONNX Runtime {lo:.3f} ({ok(lo, False)})")
    print(f"training wall time: cvflow {cv['train seconds']} s ({cv['steps']} steps), peer {pe['train seconds']} s "
          f"({pe['epochs']} epochs); budget {a.minutes * 60:.0f} s each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
