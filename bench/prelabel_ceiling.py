"""Benchmark: the least correction work pre-annotation can leave with a Mask R-CNN mask head of M x M cells, against
drawing from scratch — the ceiling for `bench/annotation_loop.py`'s (a).

On frames of the synthetic sample, every object's *true* mask is made into what a perfect mask head would answer:
`roi_align`ed onto its true box at M x M (exactly the target torchvision's mask loss trains the head towards,
`project_masks_on_boxes`), pasted back into the frame as torchvision pastes predictions (`paste_masks_in_image`), and
thresholded at 0.5. Recall, boxes and classes are perfect; only the mask resolution is lost. These "predictions" go
through 09b's pre-annotation (`prelabel_project`, outlines fitted within `--fit-tolerance` px) and its simulated
annotator (`simulate_corrections`, `TOLERANCE` px), exactly as in the annotation-loop bench. Printed: the work per
frame against drawing the same frames from scratch, for each M and fitting tolerance. M = 0: the true mask itself at
the image's resolution (what a perfect mask refiner, 06e, would give back).

Usage: .venv/bin/python bench/prelabel_ceiling.py [--frames N] [--sizes 28,56,112,0] [--fit-tolerance 2,1.5,1] [--work DIR]
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def perfect_head(ann, size: int) -> dict[str, list[dict]]:
    "File name -> instances a perfect `size` x `size` mask head would answer for `ann`'s true objects."
    import torch
    from pycocotools import mask as mask_utils
    from torchvision.models.detection.roi_heads import paste_masks_in_image
    from torchvision.ops import roi_align
    from cvflow.annotation_formats import instance_mask
    out = {}
    for im in ann.images:
        masks, boxes, names = [], [], []
        for inst in im.instances:
            m = instance_mask(inst, im.height, im.width).astype(np.float32)
            ys, xs = np.nonzero(m)
            if len(xs) == 0: continue
            masks.append(m); boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
            names.append(inst.class_name)
        out[im.file_name] = []
        if not masks: continue
        b = torch.tensor(boxes)
        if size == 0:   # the true masks, at full resolution
            for k, m in enumerate(masks):
                rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8))); rle["counts"] = rle["counts"].decode()
                out[im.file_name].append({"class_name": names[k], "score": 1.0, "box": boxes[k], "mask": rle})
            continue
        rois = torch.cat([torch.arange(len(b), dtype=torch.float32)[:, None], b], 1)
        head = roi_align(torch.from_numpy(np.stack(masks))[:, None], rois, (size, size), 1.0)   # the mask loss's target
        pasted = (paste_masks_in_image(head, b, (im.height, im.width), padding=1)[:, 0] >= 0.5).numpy()
        for k in range(len(b)):
            rle = mask_utils.encode(np.asfortranarray(pasted[k].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            out[im.file_name].append({"class_name": names[k], "score": 1.0, "box": boxes[k], "mask": rle})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="sample frames scored (default 40, every 10th frame)")
    ap.add_argument("--sizes", default="28,56,112,0", help="mask head sizes M (default 28,56,112,0; torchvision's is 28; "
                    "0: the true mask at full resolution)")
    ap.add_argument("--fit-tolerance", default="2,1.5,1", help="outline fitting tolerances in px (default 2,1.5,1; 09b's "
                    "FIT_TOLERANCE is 1.5)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cvflow-ceiling-")).resolve()
    os.environ["CVFLOW_HOME"] = str(work)
    import yaml
    from cvflow import sample
    from cvflow.annotation_formats import read_annotations
    from cvflow.annotation_loop import TOLERANCE, compare_projects, empty_like, prelabel_project, simulate_corrections, truth_targets
    from cvflow.annotations import simulate_annotator
    from cvflow.files import frame_filename
    from cvflow.images import read_image

    p = next(s for s in yaml.safe_load((REPO / "pipeline.yaml").read_text())["steps"] if s["name"] == "sample")["parameters"]
    video = sample.ensure_sample(work / "raw", seconds=p["seconds"], fps=p["fps"], width=p["width"], height=p["height"],
                                 seed=p["seed"], progress=False)
    gt = sample.load_ground_truth(work / "raw" / "ground_truth.json")
    frames = work / "frames"; frames.mkdir(exist_ok=True)
    import av
    want = set(range(0, 10 * a.frames, 10))
    with av.open(str(video)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in want:
                from PIL import Image
                Image.fromarray(f.to_ndarray(format="rgb24")).save(frames / frame_filename(video, i), quality=95)
            if i >= max(want): break
    paths = sorted(frames.glob("*.jpg"))
    truth_proj = simulate_annotator(gt, paths, work / "via_truth.json")
    truth = truth_targets(truth_proj)
    ann = read_annotations(work / "via_truth.json", frames)
    scratch = compare_projects(empty_like(truth_proj), simulate_corrections(empty_like(truth_proj), truth))
    print(f"{len(paths)} frames, {scratch.count('added')} objects; from scratch: {scratch.work / len(paths):.2f} actions per frame "
          f"(annotator tolerance {TOLERANCE} px); {read_image(paths[0]).shape[1]}x{read_image(paths[0]).shape[0]} px")
    print(f"{'mask head':>10} | {'fit tol px':>10} | {'kept':>5} | {'edited':>6} | {'work/frame':>10} | {'ratio to scratch':>16}")
    for size in [int(s) for s in a.sizes.split(",")]:
        preds = perfect_head(ann, size)
        for tol in [float(t) for t in a.fit_tolerance.split(",")]:
            pj = prelabel_project(preds, paths, ann.classes, None, 0.0, tolerance=tol)
            c = compare_projects(pj, simulate_corrections(pj, truth))
            print(f"{f'{size}x{size}' if size else 'full res':>10} | {tol:>10} | {c.count('kept'):>5} | {c.count('edited'):>6} | "
                  f"{c.work / len(paths):>10.2f} | {c.work / max(scratch.work, 1):>16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
