"""Keypoints (#21): the sample's corners are exact; VIA landmarks (point regions) and COCO keypoints read, written and
round-tripped; dataset targets; `cvflow train --task keypoints` trains a Keypoint R-CNN scored by COCO keypoint AP;
the package, the web service (schema, parity, bad input) and `score-video` answer landmarks; a COCO person-keypoint
weights file makes a pose package without training."""
import json
import math

import numpy as np
import pytest
import torch

from cvflow.annotation_formats import check_annotations, from_coco, to_coco, write_coco
from cvflow.annotations import simulate_annotator
from cvflow.config import ConfigError
from cvflow.dataset import CocoInstanceDataset, write_dataset
from cvflow.sample import (KEYPOINT_CLASSES, KEYPOINT_NAMES, SKELETONS, SampleObject, Scene, gt_to_coco, load_ground_truth,
                           make_sample, make_sample_images, render)

K = len(KEYPOINT_NAMES)


def _expected_corners(cls, cx, cy, size, angle):
    "Corners from the shapes' definition, written out again: squares at radius 1.1 size, triangles 1.35 size; the topmost first, then clockwise."
    n, r, t0 = (4, 1.1, angle + math.pi / 4) if cls == "square" else (3, 1.35, angle - math.pi / 2)
    pts = [(cx + r * size * math.cos(t0 + 2 * math.pi * k / n), cy + r * size * math.sin(t0 + 2 * math.pi * k / n)) for k in range(n)]
    first = min(range(n), key=lambda k: pts[k][1])          # nearest straight up = smallest y (all at one radius)
    return [pts[(first + k) % n] for k in range(n)]         # increasing angle is clockwise on screen (y down)


@pytest.mark.parametrize("cls,angle", [("square", 0.2), ("square", 1.3), ("triangle", 0.0), ("triangle", 2.5)])
def test_sample_corners_are_exact(cls, angle):
    bg = np.zeros((120, 160, 3), np.uint8)
    o = SampleObject(0, cls, 80, 60, 0, 0, 25, 0, 0, 0, angle, 0, (200, 50, 50))
    _, objs = render(Scene(bg, [o]), 0.0, 160, 120, keypoints=True)
    kp = np.array(objs[0]["keypoints"], float).reshape(K, 3)
    want = _expected_corners(cls, 80, 60, 25, angle)
    assert np.allclose(kp[:len(want), :2], want, atol=0.01)
    assert kp[:len(want), 2].tolist() == [2] * len(want) and kp[len(want):].tolist() == [[0, 0, 0]] * (K - len(want))


def test_hidden_corners_are_unlabelled():
    "A corner covered by a disc drawn over it, or outside the image, is v=0 (an annotator clicks what they see)."
    bg = np.zeros((120, 160, 3), np.uint8)
    sq = SampleObject(0, "square", 150, 60, 0, 0, 25, 0, 0, 0, 0.2, 0, (200, 50, 50))   # right half outside the image
    _, objs = render(Scene(bg, [sq]), 0.0, 160, 120, keypoints=True)
    kp = np.array(objs[0]["keypoints"]).reshape(K, 3)
    want = _expected_corners("square", 150, 60, 25, 0.2)
    for (x, y), (px, py, v) in zip(want, kp):
        assert (v == 2) == (0 <= x < 160), (x, v)
        if v == 2: assert np.allclose([px, py], [x, y], atol=0.01)
    disc = SampleObject(1, "disc", *want[0], 0, 0, 8, 0, 0, 0, 0, 0, (50, 200, 50))   # over corner 1 of a centred square
    sq = SampleObject(0, "square", 80, 60, 0, 0, 25, 0, 0, 0, 0.2, 0, (200, 50, 50))
    want = _expected_corners("square", 80, 60, 25, 0.2)
    disc.x0, disc.y0 = want[0]
    _, objs = render(Scene(bg, [sq, disc]), 0.0, 160, 120, keypoints=True)
    assert np.array(objs[0]["keypoints"]).reshape(K, 3)[:, 2].tolist() == [0, 2, 2, 2]


def test_simulated_via_landmarks_round_trip_to_coco(tmp_path):
    "Ground truth -> VIA project (outlines and corner points) -> read back -> COCO: the same corners, grouped into the same objects."
    from cvflow.frames import select_frames
    video = make_sample(tmp_path / "s", seconds=3, fps=10, width=320, height=180, seed=4, progress=False, keypoints=True)
    gt = load_ground_truth(video)
    res = select_frames(video, tmp_path / "frames", progress=False, budget=6)
    via = simulate_annotator(gt, res.file_list, tmp_path / "via.json", classes=list(KEYPOINT_CLASSES))
    points = [r for e in via["_via_img_metadata"].values() for r in e["regions"] if r["shape_attributes"]["name"] == "point"]
    assert points and all(set(r["region_attributes"]) == {"keypoint"} for r in points)
    ann = check_annotations(tmp_path / "via.json", res.frames_dir, classes=list(KEYPOINT_CLASSES), keypoints=list(KEYPOINT_NAMES),
                            skeletons=SKELETONS)
    assert not ann.errors, [str(p) for p in ann.errors]
    got = write_coco(ann, tmp_path / "kp.json")
    idx = sorted(int(n.rsplit("_", 1)[1].split(".")[0]) for n in (im["file_name"] for im in got["images"]))
    want = gt_to_coco(gt, idx)
    assert got["categories"] == [{"id": i + 1, "name": c, "supercategory": "", "keypoints": list(KEYPOINT_NAMES),
                                  "skeleton": SKELETONS[c]} for i, c in enumerate(KEYPOINT_CLASSES)]
    key = lambda d, a: ({im["id"]: im["file_name"] for im in d["images"]}[a["image_id"]], round(a["bbox"][0]), round(a["bbox"][1]))
    g = {key(got, a): a["keypoints"] for a in got["annotations"]}
    w = {key(want, a): a["keypoints"] for a in want["annotations"]}
    assert len(g) == len(w) and sum(a["num_keypoints"] for a in got["annotations"]) > 0
    for k, kp in w.items():
        match = min(g, key=lambda q: (q[0] != k[0]) * 1e9 + abs(q[1] - k[1]) + abs(q[2] - k[2]))
        assert np.allclose(g[match], kp, atol=1e-6), (k, g[match], kp)


def test_via_landmark_errors_name_file_region_field_and_value(tmp_path):
    from PIL import Image
    Image.new("RGB", (60, 50)).save(tmp_path / "a.jpg")
    regs = [({"name": "polygon", "all_points_x": [10, 30, 30, 10], "all_points_y": [10, 10, 30, 30]}, {"class": "square"}),
            ({"name": "point", "cx": 10, "cy": 10}, {"keypoint": "corner1"}),
            ({"name": "point", "cx": 55, "cy": 45}, {"keypoint": "corner2"}),     # in no object
            ({"name": "point", "cx": 20, "cy": 20}, {"keypoint": "corner9"}),     # unknown landmark
            ({"name": "point", "cx": 29, "cy": 11}, {"keypoint": "corner1"})]     # corner1 again in the same object
    meta = {"a.jpg": {"filename": "a.jpg", "size": -1, "file_attributes": {},
                      "regions": [{"shape_attributes": s, "region_attributes": r} for s, r in regs]}}
    p = tmp_path / "via.json"
    p.write_text(json.dumps(meta))
    ann = check_annotations(p, tmp_path, keypoints=list(KEYPOINT_NAMES))
    errs = {(e.kind, e.region, e.field, json.dumps(e.value)) for e in ann.errors}
    assert errs == {("landmark-outside", 2, "cx,cy", "[55.0, 45.0]"), ("unknown-landmark", 3, "keypoint", '"corner9"'),
                    ("duplicate-landmark", 4, "keypoint", '"corner1"')}
    assert all(str(p) in (e.file or "") for e in ann.errors)
    assert ann.images[0].instances[0].keypoints == [10.0, 10.0, 2] + [0] * 9


def test_coco_keypoints_in_and_out():
    d = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
         "categories": [{"id": 1, "name": "person", "keypoints": ["head", "foot"], "skeleton": [[1, 2]]}],
         "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 50], "area": 1000, "iscrowd": 0,
                          "segmentation": [[10, 10, 30, 10, 30, 60, 10, 60]], "keypoints": [20, 12, 2, 21, 58, 1], "num_keypoints": 2},
                         {"id": 6, "image_id": 1, "category_id": 1, "bbox": [50, 10, 20, 50], "area": 1000, "iscrowd": 0,
                          "segmentation": [[50, 10, 70, 10, 70, 60, 50, 60]], "keypoints": [1, 2, 3]}]}
    ann = from_coco(d)
    assert [(e.kind, e.region, e.field) for e in ann.errors] == [("bad-keypoints", 6, "keypoints")]
    out = to_coco(ann)
    assert out["categories"][0]["keypoints"] == ["head", "foot"] and out["categories"][0]["skeleton"] == [[1, 2]]
    assert out["annotations"][0]["keypoints"] == [20, 12, 2, 21, 58, 1] and out["annotations"][0]["num_keypoints"] == 2


def test_dataset_targets_follow_the_transforms(tmp_path):
    from torchvision.transforms import v2
    src = make_sample_images(tmp_path / "src", n=6, seed=2, width=160, height=120, keypoints=True)
    data = write_dataset(src, out=tmp_path / "ds", val=0.34, group_by="video", progress=False)
    card = json.loads((data / "dataset_card.json").read_text())
    assert card["categories"][0]["keypoints"] == list(KEYPOINT_NAMES)
    coco = json.loads((data / "train.json").read_text())
    ds = CocoInstanceDataset(data / "train.json", data / "images")
    img, t = ds[0]
    anns = [a for a in coco["annotations"] if a["image_id"] == ds.ids[0]]
    want = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float32).reshape(len(anns), K, 3)
    want[..., 2] = (want[..., 2] > 0).float()
    assert t["keypoints"].shape == (len(anns), K, 3) and torch.allclose(t["keypoints"], want)
    half = CocoInstanceDataset(data / "train.json", data / "images", transforms=v2.Resize((60, 80)))
    _, h = half[0]
    assert torch.allclose(h["keypoints"][..., :2], want[..., :2] / 2, atol=1e-4) and torch.equal(h["keypoints"][..., 2], want[..., 2])


def test_keypoint_ap_against_oks_by_hand():
    "Two objects; one detection exact, one 4 px off in x: AP per OKS threshold computed from the OKS definition."
    from pycocotools.coco import COCO
    from cvflow.evaluate import KEYPOINT_SIGMA, coco_metrics
    pts = lambda x, y: [x, y, 2, x + 40, y, 2, x + 40, y + 40, 2, x, y + 40, 2]
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": 200, "height": 100}],
                  "categories": [{"id": 1, "name": "square", "keypoints": list(KEYPOINT_NAMES), "skeleton": SKELETONS["square"]}],
                  "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x, 20, 40, 40], "area": 1600.0,
                                   "iscrowd": 0, "keypoints": pts(x, 20), "num_keypoints": 4} for i, x in enumerate((20, 120))]}
    gt.createIndex()
    det = lambda x, dx, s: {"image_id": 1, "category_id": 1, "bbox": [x, 20, 40, 40], "score": s,
                            "keypoints": [v + dx if i % 3 == 0 else (1 if i % 3 == 2 else v) for i, v in enumerate(pts(x, 20))]}
    oks = math.exp(-16 / (2 * 1600 * (2 * KEYPOINT_SIGMA) ** 2))
    m = coco_metrics(gt, [det(20, 0, 0.9), det(120, 4, 0.8)], ("keypoints",))["keypoints"]
    # per threshold t: the exact one always matches; the shifted one (lower score) matches when oks >= t:
    # precision 1 up to recall 1 then (both matched) AP 1, else AP is the 101-point area up to recall 0.5
    ap = lambda t: 1.0 if oks >= t else 51 / 101
    ts = np.linspace(0.5, 0.95, 10)
    assert m["AP"] == pytest.approx(np.mean([ap(t) for t in ts]), abs=1e-9)
    assert m["AP50"] == pytest.approx(ap(0.5)) and m["AP75"] == pytest.approx(ap(0.75))


def test_no_flips_for_keypoints():
    from cvflow.train import TrainConfig, load_train_config
    with pytest.raises(ConfigError, match="without flips and rotations"):
        TrainConfig(task="keypoints", hflip=0.5)
    assert load_train_config(task="keypoints").hflip == 0.0


def test_train_keypoints_cli_export_and_predict(tmp_path, home):
    import cvflow.train as T
    from cvflow.package import export_package, load_package
    from cvflow.images import read_image
    src = make_sample_images(tmp_path / "src", n=6, seed=1, width=160, height=96, keypoints=True)
    data = write_dataset(src, out=tmp_path / "ds", val=0.34, group_by="video", progress=False)
    tiny = ["--tracking", "none", "--no-progress", "--batch-size", "2", "--preset", "cpu-mobile", "--set",
            "model={min_size: 64, max_size: 96, rpn_post_nms_top_n_train: 64, box_batch_size_per_image: 32}",
            "--set", "num_workers=0", "--set", "sample_images=1", "--set", "warmup_steps=1"]
    assert T.main(["--data", str(data), "--out", str(tmp_path / "run"), "--task", "keypoints", "--max-steps", "2",
                   "--eval-every", "2", *tiny]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_metric"] == "keypoints/AP" and "keypoints/AP50" in metrics["latest"] and "bbox/AP" in metrics["latest"]
    assert not any(k.startswith("segm/") for k in metrics["latest"])
    pkg = export_package(tmp_path / "run", tmp_path / "pkg")
    meta = json.loads((pkg / "model.json").read_text())
    assert meta["task"] == "keypoints" and meta["keypoints"] == list(KEYPOINT_NAMES) and meta["skeletons"] == SKELETONS
    im = read_image(src.parent / "images" / json.loads(src.read_text())["images"][0]["file_name"])
    res = load_package(pkg, device="cpu").predict([im], score_threshold=0.0)[0]["instances"]
    assert res and all(set(i) == {"class_id", "class_name", "score", "box", "keypoints"} for i in res)
    assert all(len(i["keypoints"]) == K and all(len(p) == 3 for p in i["keypoints"]) for i in res)


def test_overlay_draws_landmarks_and_skeleton():
    from cvflow.detections import Detections
    from cvflow.viz import draw_detections
    img = np.zeros((60, 80, 3), np.uint8)
    inst = {"class_id": 1, "class_name": "square", "score": 0.9, "box": [10, 10, 50, 50],
            "keypoints": [[20, 20, 5.0], [40, 20, 5.0], [40, 40, 5.0], [20, 40, 5.0]]}
    out = draw_detections(img, Detections.from_json([inst], ["square"]), skeletons={"square": SKELETONS["square"]})
    assert (out[20, 20] == 255).all() and (out[40, 40] == 255).all()     # the landmarks, white
    assert out[30, 40].any() and not out[30, 30].any()                   # the skeleton's edge drawn; the middle untouched


@pytest.mark.slow
def test_local_keypoints_service_full_suite(home, tmp_path):
    "A Keypoint R-CNN package (task keypoints) behind the real server: landmarks in the schema, parity, load, bad input."
    from cvflow.client import response_schema, schema_errors
    from cvflow.deploy import LocalService, demo_package
    from cvflow.package import load_package
    from cvflow.client import load_test_images, run_service_tests
    package = demo_package(tmp_path / "kp" / "package", task="keypoints")
    images = make_sample_images(tmp_path / "imgs", n=2, seed=3, width=160, height=120).parent / "images"
    pred = load_package(package, device="cpu", runtime="eager")
    imgs = load_test_images(images, 2)
    local = [pred.predict([im.array], score_threshold=0.05)[0] for im in imgs]
    assert sum(len(r["instances"]) for r in local) > 0
    doc = {"model": {"name": "x", "version": "1"}, "task": "keypoints", "results": local, "timings_ms": {"total": 1.0}}
    assert schema_errors(doc, response_schema("keypoints")) == []
    bad = json.loads(json.dumps(doc)); bad["results"][0]["instances"][0]["keypoints"] = [[1.0, 2.0]]
    assert schema_errors(bad, response_schema("keypoints"))
    with LocalService(package) as svc:
        assert svc.info["model"]["task"] == "keypoints"
        rep = run_service_tests(svc.url, images, package=package, concurrency=1, duration=2, max_requests=3,
                                max_images=2, score_threshold=0.05, out=home / "rep-kp")
    assert rep["passed"], json.dumps({k: rep[k] for k in ("functional", "parity", "bad_input")}, indent=1)[:4000]
    assert rep["task"] == "keypoints" and rep["functional"]["instances"] == sum(len(r["instances"]) for r in local)
    statuses = {c["name"]: c["status"] for c in rep["bad_input"]["cases"]}
    assert statuses["polygons_without_masks"] == 400 and statuses["raw_polygons_without_masks"] == 400


@pytest.mark.slow
def test_person_pose_package_scores_a_video_without_training(tmp_path, home):
    """The COCO person-keypoint path: a weights file (here a randomly initialised 17-landmark Keypoint R-CNN's state_dict,
    saved as torchvision's file is: frozen batch norms) becomes a package; `cvflow score-video` writes the overlay and
    per-frame JSON with 17 [x, y, score] landmarks per person."""
    from cvflow.model import build_model
    from cvflow.package import COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON, person_pose_package
    from cvflow.batch_scoring import main_score_video
    torch.manual_seed(0)
    w = tmp_path / "keypointrcnn_resnet50_fpn_coco.pth"
    torch.save(build_model("r50-fpn", 2, task="keypoints", norm="frozen").state_dict(), w)
    pkg = person_pose_package(tmp_path / "pose" / "package", weights=w, min_size=96, max_size=160, box_score_thresh=0.0)
    meta = json.loads((pkg / "model.json").read_text())
    assert meta["task"] == "keypoints" and meta["classes"] == ["person"] and meta["keypoints"] == COCO_PERSON_KEYPOINTS
    assert meta["skeletons"] == {"person": COCO_PERSON_SKELETON} and meta["model_config"]["num_keypoints"] == 17
    video = make_sample(tmp_path / "v", seconds=2, fps=4, width=160, height=96, seed=1, progress=False)
    out = tmp_path / "scored"
    assert main_score_video([str(pkg), str(video), "--out", str(out), "--max-frames", "3", "--score-threshold", "0",
                             "--quiet"]) == 0
    frames = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert len(frames) == 3 and (out / "overlay.mp4").stat().st_size > 0
    insts = [i for f in frames for i in f["instances"]]
    assert insts and all(i["class_name"] == "person" and len(i["keypoints"]) == 17 and all(len(p) == 3 for p in i["keypoints"])
                         for i in insts)
    assert json.loads((out / "summary.json").read_text())["task"] == "keypoints"
