"""Benchmark: how good does `cpu-small` get on the synthetic sample within the demo budget on this machine?

Runs the pipeline's own recipe, read from `pipeline.yaml` (sample video, frame reduction, the ground truth as
annotator, a leak-free split, training with the `train` step's parameters), then scores the final model
(`model.pt`, the best checkpoint's weights) on held-out frames of scenes never seen in training, rendered as
the `sample` step renders them. Goal: held-out segm AP50 >= 0.5.

Baseline, measured in the same run unless `--no-baseline`: the recipe before it was tuned (motion-segment frame
choice, SGD at the default learning rate, horizontal flips only, same steps and input size). The issue's floor,
measured before cvflow existed: a naive from-scratch ResNet-18 FPN Mask R-CNN, 122 steps in 12 minutes, reached
segm AP50 0.33 on 100 held-out synthetic images.

Usage: .venv/bin/python bench/quality.py [--max-steps N] [--no-baseline] [--work DIR] [--pipeline pipeline.yaml]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def step_params(pipeline: dict, name: str) -> dict:
    return next(s for s in pipeline["steps"] if s["name"] == name).get("parameters", {})


def prepare(home: Path, sample_p: dict, frames_p: dict, dataset_p: dict, tag: str) -> Path:
    "Sample video -> frames -> simulated annotation -> dataset, as the pipeline's steps do; returns the dataset folder."
    from cvflow import sample
    from cvflow.annotation_formats import check_annotations, list_frames, write_coco
    from cvflow.annotations import simulate_annotator
    from cvflow.dataset import write_dataset
    from cvflow.frames import FrameOptions, reduce_videos
    video = sample.ensure_sample(home / "raw", seconds=sample_p["seconds"], fps=sample_p["fps"], width=sample_p["width"],
                                 height=sample_p["height"], seed=sample_p["seed"], progress=False)
    opts = FrameOptions(budget=frames_p.get("budget"), every_seconds=frames_p.get("every_seconds"), min_gap=frames_p.get("min_gap", 0.0))
    res = reduce_videos([video], home / f"frames-{tag}", opts, workers=int(frames_p.get("workers", 1)), progress=False)
    via = home / f"annotations-{tag}" / "via_annotated.json"
    via.parent.mkdir(parents=True, exist_ok=True)
    simulate_annotator(home / "raw" / "ground_truth.json", res.file_list, via, classes=list(sample.CLASSES))
    folder, _ = list_frames(res.file_list)
    write_coco(check_annotations(via, folder, classes=list(sample.CLASSES)), home / f"annotations-{tag}" / "instances.json")
    return write_dataset(home / f"annotations-{tag}" / "instances.json", folder, out=home / f"data-{tag}", name=tag,
                         val=dataset_p.get("val", 0.2), group_by=dataset_p.get("group_by", "scene"),
                         seed=dataset_p.get("seed", 0), progress=False)


def train_and_score(home: Path, data: Path, train_p: dict, heldout: Path, tag: str) -> dict:
    "Train as the pipeline's train step does with `train_p` (its parameters) and score the run on `heldout`."
    from cvflow.train import score_heldout, step_config, train
    params = {k: v for k, v in train_p.items() if k not in ("data", "out", "heldout", "tracking")}
    cfg = step_config(data, home / f"run-{tag}", tracking="none", sample_images=0, progress=False, **params)
    t = time.time()
    res = train(cfg)
    seconds = time.time() - t
    m = score_heldout(home / f"run-{tag}", heldout)
    card = json.loads((data / "dataset_card.json").read_text())["counts"]
    return {"recipe": tag, "train images": card["train"]["images"], "steps": res["step"], "best step": res.get("best_step"),
            "train seconds": round(seconds), "s/step": round(seconds / max(res["step"], 1), 2),
            **{f"held-out {k}/{x}": round(m[k][x], 3) for k in ("bbox", "segm") for x in ("AP", "AP50", "AP75")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default=str(REPO / "pipeline.yaml"))
    ap.add_argument("--max-steps", type=int, help="override the train step's max_steps")
    ap.add_argument("--no-baseline", action="store_true", help="skip the untuned recipe")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cvflow-quality-"))
    os.environ["CVFLOW_HOME"] = str(work)
    import torch
    from cvflow.sample import make_heldout_images
    pl = yaml.safe_load(Path(a.pipeline).read_text())
    sample_p, frames_p = step_params(pl, "sample"), step_params(pl, "frames")
    dataset_p, train_p = step_params(pl, "dataset"), dict(step_params(pl, "train"))
    if a.max_steps: train_p["max_steps"] = a.max_steps
    heldout_dir = work / "heldout"
    if not (heldout_dir / "instances.json").is_file():
        make_heldout_images(heldout_dir, sample_p.get("heldout_images", 80), sample_p["seed"], sample_p["width"],
                            sample_p["height"])
    print(f"work folder {work}; torch threads {torch.get_num_threads()}; held-out: {sample_p.get('heldout_images', 80)} frames")
    rows = []
    rows.append(train_and_score(work, prepare(work, sample_p, frames_p, dataset_p, "pipeline"), train_p,
                                heldout_dir / "instances.json", "pipeline"))
    print(json.dumps(rows[-1]))
    if not a.no_baseline:
        base_frames = {**frames_p, "every_seconds": None, "budget": 120}
        base_train = {**train_p, "optimizer": "sgd", "lr": 0.0, "augment": {"hflip": 0.5, "color": 0.0, "scale": [1.0, 1.0]}}
        rows.append(train_and_score(work, prepare(work, sample_p, base_frames, dataset_p, "untuned"), base_train,
                                    heldout_dir / "instances.json", "untuned"))
        print(json.dumps(rows[-1]))
    p = rows[0]["held-out segm/AP50"]
    print(f"\nheld-out segm AP50 {p:.3f} (goal >= 0.5; floor 0.33) with the pipeline's recipe: {rows[0]['train images']} "
          f"training images, {rows[0]['steps']} steps in {rows[0]['train seconds'] / 60:.1f} min")
    if len(rows) > 1:
        b = rows[1]["held-out segm/AP50"]
        print(f"untuned recipe: {b:.3f} ({rows[1]['train images']} training images, {rows[1]['steps']} steps); "
              f"ratio pipeline / untuned = {p / b:.2f}" if b > 0 else f"untuned recipe: {b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
