"""Benchmark: how good does `cpu-small` get on the synthetic shapes within a demo budget on this CPU?

Trains `cpu-small` from scratch (no pretrained weights exist here) on freshly rendered synthetic images
(`cvflow.sample.make_sample_images`, 320x240, discs/squares/triangles) for a wall-clock budget, then prints
COCO bbox and segm AP / AP50 on held-out synthetic images rendered with another seed. Goal: segm AP50 >= 0.5.
Floor measured before this module existed: a naive from-scratch ResNet-18 FPN Mask R-CNN at 160 px, batch 8,
SGD 0.02 with 100-step warm-up, 122 steps in 12 minutes, reached segm AP50 0.33 / bbox AP50 0.35 on 100
held-out images.

The step budget is calibrated: a few steps are timed first, then `max_steps` is set so the cosine schedule ends
inside the budget (and `max_minutes` caps the wall time if the machine slows down).
Usage: python bench/quality.py [--minutes 12] [--train-images 600] [--heldout 100] [--work DIR]
"""
import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from pycocotools.coco import COCO


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--train-images", type=int, default=600)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=160, help="model min_size (shorter side)")
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cvflow-quality-"))
    os.environ["CVFLOW_HOME"] = str(work)
    from cvflow.dataset import CocoInstanceDataset, collate_fn, write_dataset
    from cvflow.evaluate import evaluate
    from cvflow.model import build_model, model_from_checkpoint
    from cvflow.sample import make_sample_images
    from cvflow.train import TrainConfig, make_optimizer, to_device, train, train_step, DistInfo

    t0 = time.time()
    src = make_sample_images(work / "train-src", n=a.train_images, seed=1, width=320, height=240)
    data = write_dataset(src, out=work / "data", name="shapes", val=0.02, progress=False)
    held = make_sample_images(work / "heldout", n=a.heldout, seed=20_261_123, width=320, height=240)
    model_over = {"min_size": a.size, "max_size": a.size * 2}
    print(f"data ready in {time.time() - t0:.0f} s: {work}")

    # calibrate seconds per step on a real batch
    ds = CocoInstanceDataset(data / "train.json")
    m = build_model("cpu-small", 4, **model_over); m.train()
    cfg = TrainConfig(batch_size=a.batch, optimizer=a.optimizer, lr=a.lr, warmup_steps=0)
    opt = make_optimizer(cfg, m); sc = torch.amp.GradScaler("cuda", enabled=False)
    imgs, tgts = to_device(*collate_fn([ds[i] for i in range(a.batch)]), "cpu")
    times = []
    for s in range(3):
        t = time.time(); train_step(m, opt, sc, imgs, tgts, cfg, DistInfo(), s, False); times.append(time.time() - t)
    sps = min(times[1:])
    steps = max(10, int(a.minutes * 60 * 0.85 / sps))
    print(f"calibration: {sps:.2f} s/step -> {steps} steps in {a.minutes} min")
    del m, opt

    cfg = dict(data=str(data), out=str(work / "run"), preset="cpu-small", model=model_over, max_steps=steps,
               epochs=10_000, batch_size=a.batch, optimizer=a.optimizer, lr=a.lr,
               warmup_steps=min(100, steps // 5), eval_every=10_000_000, eval_max_images=8, tracking="none",
               max_minutes=a.minutes * 1.15, sample_images=4, num_workers=1, progress=False)
    t1 = time.time()
    res = train(cfg)
    train_s = time.time() - t1
    ck = work / "run" / "checkpoints" / "last.pt"
    model, conf = model_from_checkpoint(ck)
    hds = CocoInstanceDataset(held)
    loader = torch.utils.data.DataLoader(hds, batch_size=4, collate_fn=collate_fn)
    metrics = evaluate(model, loader, hds.coco, progress=False)
    out = {"steps": res["step"], "planned_steps": steps, "train_seconds": round(train_s), "batch": a.batch,
           "min_size": a.size, "optimizer": a.optimizer, "lr": a.lr, "train_images": a.train_images,
           "heldout_images": a.heldout,
           **{f"{t}/{k}": round(metrics[t][k], 4) for t in ("bbox", "segm") for k in ("AP", "AP50", "AP75")}}
    print(json.dumps(out, indent=1))
    print(f"segm AP50 {out['segm/AP50']:.3f} (goal >= 0.5; floor 0.33) after {res['step']} steps in {train_s / 60:.1f} min")


if __name__ == "__main__":
    main()
