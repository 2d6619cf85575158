"""Detection (#20), the steps where it differs from segmentation: VIA rectangles (and polygons) become exactly
their boxes in COCO and in the training targets; `cvflow train --task detection` trains a Faster R-CNN on them,
scored on COCO bbox AP only; the exported package answers boxes only."""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cvflow.annotation_formats import read_annotations, to_coco
from cvflow.dataset import CocoInstanceDataset, write_dataset


def _rect(x, y, w, h, label):
    return {"shape_attributes": {"name": "rect", "x": x, "y": y, "width": w, "height": h}, "region_attributes": {"class": label}}


def _triangle(xs, ys, label):
    return {"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys}, "region_attributes": {"class": label}}


def _project(d: Path, n: int = 4) -> tuple[Path, dict]:
    "`n` 96x72 photos, each with a rectangle (nut) and a triangle (bolt) drawn where its VIA 2 regions say."
    meta, boxes = {}, {}
    for k in range(n):
        name = f"photo{k}.jpg"
        x, y = 6 + 4 * k, 8 + 2 * k
        im = Image.new("RGB", (96, 72), (30, 30 + 20 * k, 60))
        dr = ImageDraw.Draw(im)
        dr.rectangle([x, y, x + 29, y + 19], fill=(230, 200, 40))
        dr.polygon([(50, 10 + k), (86, 10 + k), (68, 50 + k)], fill=(40, 200, 230))
        im.save(d / name)
        regs = [_rect(x, y, 30, 20, "nut"), _triangle([50, 86, 68], [10 + k, 10 + k, 50 + k], "bolt")]
        meta[f"{name}{(d / name).stat().st_size}"] = {"filename": name, "size": (d / name).stat().st_size,
                                                       "regions": regs, "file_attributes": {}}
        boxes[name] = {"nut": [x, y, 30, 20], "bolt": [50, 10 + k, 36, 40]}
    attrs = {"region": {"class": {"type": "dropdown", "options": {"nut": "nut", "bolt": "bolt"}, "default_options": {}}}, "file": {}}
    p = d / "via_project.json"
    p.write_text(json.dumps({"_via_settings": {"core": {"default_filepath": ""}}, "_via_img_metadata": meta, "_via_attributes": attrs}))
    return p, boxes


def test_rectangles_and_polygons_become_exact_boxes(tmp_path):
    d = tmp_path / "imgs"; d.mkdir()
    proj, boxes = _project(d)
    ann = read_annotations(proj)
    assert not ann.errors
    coco = to_coco(ann)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    got = {(files[a["image_id"]], names[a["category_id"]]): [round(v, 3) for v in a["bbox"]] for a in coco["annotations"]}
    want = {(f, c): b for f, bx in boxes.items() for c, b in bx.items()}
    assert set(got) == set(want)
    for key, b in want.items():   # a rectangle is its box exactly; a polygon, its rasterised extent (within a pixel)
        assert np.allclose(got[key], b, atol=0 if key[1] == "nut" else 1.0), (key, got[key], b)
    # the training targets: XYXY boxes with exclusive ends, exactly the drawn rectangles and the triangles' extents
    data = write_dataset(proj, images=d, out=tmp_path / "ds", val=0.25, group_by="image", seed=0, progress=False)
    for split in ("train", "val"):
        ds = CocoInstanceDataset(data / f"{split}.json", data / "images")
        for i in range(len(ds)):
            t = ds.target(i)
            fname = ds.coco.imgs[ds.ids[i]]["file_name"]
            cls = [ds.classes[int(k) - 1] for k in t["labels"]]
            want = [[x, y, x + w, y + h] for x, y, w, h in (boxes[Path(fname).name][c] for c in cls)]
            assert torch.allclose(t["boxes"].as_subclass(torch.Tensor), torch.tensor(want, dtype=torch.float32), atol=1.0), (fname, t["boxes"], want)


def test_train_detection_cli_export_and_predict(tmp_path, home):
    import cvflow.train as T
    from cvflow.package import export_package, load_package
    from cvflow.images import read_image
    d = tmp_path / "imgs"; d.mkdir()
    proj, _ = _project(d, n=6)
    data = write_dataset(proj, images=d, out=tmp_path / "ds", val=0.34, group_by="image", seed=0, progress=False)
    tiny = ["--tracking", "none", "--no-progress", "--batch-size", "2", "--set", "model={min_size: 64, max_size: 96, "
            "rpn_post_nms_top_n_train: 64, box_batch_size_per_image: 32, rpn_post_nms_top_n_test: 32, box_detections_per_img: 20}",
            "--set", "num_workers=0", "--set", "sample_images=0", "--set", "warmup_steps=1"]
    assert T.main(["--data", str(data), "--out", str(tmp_path / "run"), "--task", "detection", "--max-steps", "3",
                   "--eval-every", "3", *tiny]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_metric"] == "bbox/AP" and "bbox/AP50" in metrics["latest"]
    assert not any(k.startswith("segm/") for k in metrics["latest"])
    pkg = export_package(tmp_path / "run", tmp_path / "pkg")
    meta = json.loads((pkg / "model.json").read_text())
    assert meta["task"] == "detection" and meta["model_config"]["task"] == "detection"
    res = load_package(pkg, device="cpu").predict([read_image(d / "photo0.jpg")], score_threshold=0.0)
    assert res[0]["instances"] and all(set(i) == {"class_id", "class_name", "score", "box"} for i in res[0]["instances"])
    assert np.all([0 <= v <= 96 for i in res[0]["instances"] for v in i["box"][::2]])
