"""Annotations (02): every real annotation folder in ../shared/data is read; expected counts are computed here
with plain json/csv parsing (not by the reader); round trips compare rasterised masks; the CLI converts."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mu

from cvflow.annotation_formats import (Annotations, check_annotations, instance_mask, read_annotations, report, to_coco,
                                       to_via_project, validate_coco, via_project_for_frames)
from cvflow.annotation_widget import PolygonAnnotator
from cvflow.annotations import main, simulate_annotator
from cvflow.files import file_hash, frame_filename

ROOF_OLD = "roof_detection/b18ee20/datasets/balloon"
ROOF_NEW = "roof_detection/0bcd89c/datasets/balloon"
NP = "np_detect/datasets"
JOT = "jotanator_cells"
VIA_OFF = "via_official_testdata/via-1.x.y/tests/data"


# ---------- independent helpers (plain parsing, no cvflow code) ----------
def via_entries(path: Path) -> dict:
    d = json.loads(path.read_text(encoding="utf-8-sig"))
    return d["_via_img_metadata"] if "_via_img_metadata" in d else d


def regions_of(entry: dict) -> list:
    r = entry.get("regions") or []
    return [r[k] for k in sorted(r, key=int)] if isinstance(r, dict) else list(r)


def raw_points(region: dict) -> list:
    s = region["shape_attributes"]
    return list(zip(s["all_points_x"], s["all_points_y"]))


def distinct_ok(pts: list) -> bool:
    "A polygon VIA stored that has >= 3 distinct points, not all on one line."
    u = np.unique(np.array(pts, float), axis=0)
    return len(u) >= 3 and np.linalg.matrix_rank(u - u[0]) == 2


def kinds(ann: Annotations, kind: str) -> list:
    return [p for p in ann.problems if p.kind == kind]


def polygon_parts(ann: Annotations) -> list:
    "(file_name, class, part) for every polygon part, in order."
    return [(im.file_name, i.class_name, p) for im in ann.images for i in im.instances for p in i.polygons]


def mask_of(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    return mu.decode(mu.merge(mu.frPyObjects([pts.ravel().tolist()], h, w))).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def annotation_files(shared: Path) -> list:
    return sorted(p for p in shared.rglob("*") if p.suffix.lower() in (".json", ".csv"))


# ---------- every annotation file is read ----------
def test_every_annotation_file_reads_and_inputs_untouched(shared_data):
    files = annotation_files(shared_data)
    assert len(files) >= 18, files
    before = {f: file_hash(f) for f in files}
    formats = {}
    for f in files:
        ann = read_annotations(f)
        formats[f.relative_to(shared_data).parts[0]] = ann.format
        assert isinstance(report(ann), str)
    assert formats["via3_temporal_echo"] == "via3-project"
    assert formats["coco_rle_labelbox"] == "coco"
    assert {f: file_hash(f) for f in files} == before          # never modifies its inputs


def test_roof_mixed_dict_and_list_regions(shared_data):
    path = shared_data / ROOF_OLD / "train/via_region_data.json"
    entries = via_entries(path)
    types = {type(e["regions"]).__name__ for e in entries.values()}
    assert types == {"dict", "list"}                            # the quirk is really there
    regions = [r for e in entries.values() for r in regions_of(e)]
    valid = [r for r in regions if distinct_ok(raw_points(r))]
    ann = read_annotations(path)
    assert len(ann.images) == len({e["filename"] for e in entries.values()})
    assert ann.n_instances == len(valid)
    assert len(regions) - len(valid) == len(kinds(ann, "too-few-points")) + len(kinds(ann, "zero-area"))
    assert ann.classes == ["object"]                              # region_attributes {} everywhere: default class
    assert read_annotations(path, default_class="roof").classes == ["roof"]


def test_roof_other_export_and_rgba_png(shared_data):
    for rel in ("train/via_region_data (29).json", "val/via_region_data.json"):
        path = shared_data / ROOF_OLD / rel
        entries = via_entries(path)
        n_regions = sum(len(regions_of(e)) for e in entries.values())
        ann = read_annotations(path)
        assert (len(ann.images), ann.n_instances) == (len(entries), n_regions), rel
        assert not kinds(ann, "missing-image")
    png = read_annotations(shared_data / ROOF_OLD / "val/via_region_data.json").images[0]
    assert (png.width, png.height) == Image.open(shared_data / ROOF_OLD / "val/2.png").size


def test_roof_project_missing_and_wrong_files(shared_data):
    path, images = shared_data / ROOF_NEW / "val/JSONS.json", shared_data / ROOF_NEW / "train"
    entries = via_entries(path)
    missing = {e["filename"] for e in entries.values() if not (images / e["filename"]).exists()}
    wrong_size = {e["filename"] for e in entries.values()
                  if (images / e["filename"]).exists() and (images / e["filename"]).stat().st_size != e["size"]}
    assert missing == {"24.JPG", "25.JPG"}
    outside = 0
    for e in entries.values():
        if e["filename"] in missing: continue
        w, h = Image.open(images / e["filename"]).size
        for r in regions_of(e):
            pts = np.array(raw_points(r), float)
            outside += bool(((pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)).any())
    ann = read_annotations(path, images)
    assert {p.image for p in kinds(ann, "missing-image")} == missing
    assert {p.image for p in kinds(ann, "size-mismatch")} == wrong_size
    assert len(kinds(ann, "out-of-bounds")) == outside >= 14
    mism = kinds(ann, "image-mismatch")
    assert mism and {p.image for p in mism} <= wrong_size
    dropped = {p.image for p in mism if p.severity == "error"}
    kept = {im.file_name for im in ann.images}
    assert kept.isdisjoint(missing | dropped)
    empty = {e["filename"] for e in entries.values() if not regions_of(e)}
    assert empty and empty <= kept                               # images without regions kept as negatives
    for im in ann.images:                                        # every kept point is inside its image
        for inst in im.instances:
            for p in inst.polygons:
                assert p[:, 0].min() >= 0 and p[:, 0].max() <= im.width and p[:, 1].min() >= 0 and p[:, 1].max() <= im.height
    assert [p.severity for p in kinds(read_annotations(path, images, keep_empty=False), "empty-image")] == ["warning"]
    # the same file without the images folder it needs: every image reported missing, nothing invented
    alone = read_annotations(path)
    assert len(kinds(alone, "missing-image")) == len(entries) and not alone.images


def test_np_detect_closed_polygons_spaces_and_classes(shared_data):
    for rel in ("numberplate/1_train", "numberplate/val"):
        path = shared_data / NP / rel / "via_region_data.json"
        entries = via_entries(path)
        regions = [r for e in entries.values() for r in regions_of(e)]
        closed = sum(raw_points(r)[0] == raw_points(r)[-1] for r in regions)
        ann = read_annotations(path)
        assert len(ann.images) == len(entries) and ann.n_instances == len(regions)
        assert len(kinds(ann, "closed-polygon")) == closed
        assert ann.classes == ["Number Plate"]
        assert not kinds(ann, "missing-image")
        empty = sum(not regions_of(e) for e in entries.values())
        assert len(kinds(ann, "empty-image")) == empty
        for im in ann.images:                                    # closing point removed: no polygon repeats its first point
            for i in im.instances:
                assert not np.array_equal(i.polygons[0][0], i.polygons[0][-1])
    path = shared_data / NP / "calpis/train/via_region_data.json"
    regions = [r for e in via_entries(path).values() for r in regions_of(e)]
    labelled = [r for r in regions if str(r["region_attributes"].get("object_name", "")).strip()]
    ann = read_annotations(path)
    assert ann.classes == ["calpis water"] and ann.n_instances == len(labelled)
    assert len(kinds(ann, "no-class")) == len(regions) - len(labelled) > 0
    assert any(" " in im.file_name and "(" in im.file_name for im in ann.images)
    assert read_annotations(path, class_attribute="human").n_instances == sum(
        bool(str(r["region_attributes"].get("human", "")).strip()) for r in regions)
    val = shared_data / NP / "calpis/val/via_region_data.json"
    ann = read_annotations(val)
    assert {im.file_name for im in ann.images} == {e["filename"] for e in via_entries(val).values()}


def test_jotanator_keys_pixel_sizes_and_degenerate(shared_data):
    for rel in ("MASK-R-CNN/data/train", "MASK-R-CNN/data/val"):
        path = shared_data / JOT / rel / "via_region_data.json"
        entries = via_entries(path)
        assert all(k.endswith(".json786432") for k in entries)
        ann = read_annotations(path, default_class="cell")
        assert (len(ann.images), ann.n_instances) == (len(entries), sum(len(regions_of(e)) for e in entries.values()))
        assert not kinds(ann, "size-mismatch")                   # size = pixel count 1024*768 is recognised
        assert {(im.width, im.height) for im in ann.images} == {(1024, 768)}
    ann = read_annotations(shared_data / JOT / "val/via_region_data.json")
    assert ann.n_instances == 0 and len(ann.images) == 1 and [p.kind for p in ann.errors] == ["zero-area"]


def test_via_official_json_and_csv_agree(shared_data):
    d = shared_data / VIA_OFF
    entries = via_entries(d / "unit_test_annotation2.json")
    shapes = [r["shape_attributes"]["name"] for e in entries.values() for r in regions_of(e)]
    rows = list(csv.reader((d / "unit_test_annotation1.csv").open(encoding="utf-8")))[1:]
    assert len(rows) == len(shapes)
    a_json, a_csv = read_annotations(d / "unit_test_annotation2.json"), read_annotations(d / "unit_test_annotation1.csv")
    for ann in (a_json, a_csv):
        assert ann.n_instances == len(shapes) - shapes.count("point")
        assert len(kinds(ann, "not-a-polygon")) == shapes.count("point")
        assert len(kinds(ann, "shape-converted")) == sum(s in ("rect", "circle", "ellipse") for s in shapes)
        # names in the JSON are not the files on disk: matched by the recorded byte size, with a warning
        assert len(kinds(ann, "renamed-image")) == len(entries)
        assert sorted(im.file_name for im in ann.images) == ["unit_test_img1.jpg", "unit_test_img2.jpg", "unit_test_img3.jpg"]
        assert kinds(ann, "default-class")                      # free-text 'name' is not taken as a class
    names = {r["region_attributes"]["name"] for e in entries.values() for r in regions_of(e)
             if r["region_attributes"].get("name") and r["shape_attributes"]["name"] != "point"}
    for f in ("unit_test_annotation2.json", "unit_test_annotation1.csv"):   # quotes, £, & and commas survive as class names
        assert set(read_annotations(d / f, class_attribute="name").classes) == names
    pj, pc = polygon_parts(a_json), polygon_parts(a_csv)
    assert len(pj) == len(pc) and all(a[0] == b[0] and np.allclose(a[2], b[2]) for a, b in zip(pj, pc))


def test_via3_temporal_only_is_reported(shared_data, capsys):
    for f in sorted((shared_data / "via3_temporal_echo").rglob("*.json")):
        d = json.loads(f.read_text())
        assert all(not m["xy"] for m in d["metadata"].values())
        ann = read_annotations(f)
        assert ann.images == [] and [p.kind for p in ann.errors] == ["no-spatial-regions"]
        assert str(sum(len(m["z"]) == 2 for m in d["metadata"].values())) in ann.errors[0].message
    assert main(["convert", str(f), "--to", "coco", "/dev/null/never"]) == 1
    assert "nothing to convert" in capsys.readouterr().err


def test_coco_rle_polygons_gaps_and_round_trip(shared_data):
    from pycocotools.coco import COCO
    for name in ("rle.json", "instances.json"):
        path = shared_data / "coco_rle_labelbox" / name
        d = json.loads(path.read_text())
        crowd = [a for a in d["annotations"] if a["iscrowd"]]
        ann = read_annotations(path)
        assert (len(ann.images), ann.n_instances) == (len(d["images"]), len(d["annotations"]))
        assert sum(i.rle is not None for im in ann.images for i in im.instances) == len(crowd)
        assert ann.category_ids == {c["name"]: c["id"] for c in d["categories"]}
        assert validate_coco(d) == []                            # the input itself loads and decodes
        out = to_coco(ann)
        assert validate_coco(out, area_tolerance=0, crowd_tolerance=0) == []
        assert [c["id"] for c in out["categories"]] == sorted(c["id"] for c in d["categories"])
        orig = COCO(); orig.dataset = d; orig.createIndex()
        new = COCO(); new.dataset = out; new.createIndex()
        by_name = {im["file_name"]: im["id"] for im in out["images"]}
        for im in d["images"]:
            a_old = orig.loadAnns(orig.getAnnIds(imgIds=im["id"]))
            a_new = new.loadAnns(new.getAnnIds(imgIds=by_name[im["file_name"]]))
            assert len(a_old) == len(a_new)
            for x, y in zip(a_old, a_new):
                assert (x["category_id"], x["iscrowd"]) == (y["category_id"], y["iscrowd"])
                assert iou(orig.annToMask(x).astype(bool), new.annToMask(y).astype(bool)) >= 0.99
    multi = [a for a in json.loads((shared_data / "coco_rle_labelbox/rle.json").read_text())["annotations"]
             if isinstance(a["segmentation"], list) and len(a["segmentation"]) > 1]
    assert multi and max(len(i.polygons) for im in read_annotations(shared_data / "coco_rle_labelbox/rle.json").images
                         for i in im.instances) > 1


@pytest.mark.parametrize("rel,images", [(f"{NP}/numberplate/1_train/via_region_data.json", None),
                                        (f"{ROOF_OLD}/val/via_region_data.json", None),
                                        (f"{ROOF_OLD}/train/via_region_data (29).json", None),
                                        (f"{VIA_OFF}/unit_test_annotation1.csv", None),
                                        (f"{ROOF_NEW}/val/JSONS.json", f"{ROOF_NEW}/train")])
def test_round_trip_via_coco_via_keeps_every_polygon(shared_data, tmp_path, rel, images):
    images_dir = shared_data / (images or Path(rel).parent)
    first = read_annotations(shared_data / rel, images_dir)
    coco = to_coco(first)
    assert validate_coco(coco, area_tolerance=0, crowd_tolerance=0) == []
    (tmp_path / "c.json").write_text(json.dumps(coco))
    mid = read_annotations(tmp_path / "c.json", images_dir)
    to_via_project(mid, images_dir, tmp_path / "via.json")
    last = read_annotations(tmp_path / "via.json", images_dir)
    sizes = {im.file_name: (im.height, im.width) for im in first.images}
    a, b = polygon_parts(first), polygon_parts(last)
    assert len(a) == len(b) == first.n_polygons > 0
    for (fa, ca, pa), (fb, cb, pb) in zip(a, b):
        assert (fa, ca) == (fb, cb)
        assert iou(mask_of(pa, *sizes[fa]), mask_of(pb, *sizes[fb])) >= 0.99
    assert [im.file_name for im in last.images] == [im.file_name for im in first.images]


def test_unsafe_names_never_followed(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "outside.jpg")
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "in.jpg")
    region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 8, 8], "all_points_y": [1, 1, 8]}, "region_attributes": {}}
    via = {n: {"filename": n, "size": -1, "regions": [region]} for n in ("../outside.jpg", "in.jpg", str(tmp_path / "outside.jpg"))}
    (tmp_path / "v.json").write_text(json.dumps(via))
    ann = read_annotations(tmp_path / "v.json", tmp_path / "images")
    assert [im.file_name for im in ann.images] == ["in.jpg"]
    assert len(kinds(ann, "unsafe-filename")) == 2


def test_exif_rotated_photo_uses_displayed_size(tmp_path):
    im = Image.new("RGB", (60, 20)); ex = im.getexif(); ex[0x0112] = 6
    im.save(tmp_path / "phone.jpg", exif=ex)
    region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 19, 19], "all_points_y": [1, 1, 59]}, "region_attributes": {}}
    (tmp_path / "v.json").write_text(json.dumps({"phone.jpg": {"filename": "phone.jpg", "size": -1, "regions": [region]}}))
    ann = read_annotations(tmp_path / "v.json")
    assert (ann.images[0].width, ann.images[0].height) == (20, 60)
    assert not kinds(ann, "out-of-bounds")


def test_cli_convert_check_and_project(shared_data, tmp_path, capsys):
    src = shared_data / NP / "numberplate/val/via_region_data.json"
    out = tmp_path / "coco.json"
    r = subprocess.run([sys.executable, "-m", "cvflow.annotations", "convert", str(src), "--to", "coco", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    n_regions = sum(len(regions_of(e)) for e in via_entries(src).values())
    assert (len(d["images"]), len(d["annotations"])) == (len(via_entries(src)), n_regions)
    assert validate_coco(d) == []
    roof = shared_data / ROOF_NEW / "val/JSONS.json"
    capsys.readouterr()
    assert main(["check", str(roof), "--images", str(shared_data / ROOF_NEW / "train")]) == 1   # missing images: errors
    text = capsys.readouterr().out
    # one line per problem naming file, image, region, field and value
    assert "JSONS.json:24.JPG [filename='24.JPG']" in text
    assert any(l.startswith("WARNING out-of-bounds") and "JSONS.json:" in l and ":region " in l and "[points=" in l for l in text.splitlines())
    assert main(["check", str(roof), "--images", str(shared_data / ROOF_NEW / "train"), "--strict"]) == 1
    assert main(["convert", str(roof), "--to", "coco", str(tmp_path / "x.json"), "--strict"]) == 1
    assert not (tmp_path / "x.json").exists()
    assert main(["check", str(tmp_path / "absent.json")]) == 2
    frames = shared_data / NP / "numberplate/val"
    assert main(["via-project", str(frames), "--classes", "plate,car", "--out", str(tmp_path / "p.json")]) == 0
    p = json.loads((tmp_path / "p.json").read_text())
    assert len(p["_via_img_metadata"]) == len(list(frames.glob("*.[jJ][pP][gG]")))
    assert list(p["_via_attributes"]["region"]["class"]["options"]) == ["plate", "car"]


def test_simulated_annotator_matches_ground_truth(tmp_path):
    from cvflow.sample import gt_to_coco, load_ground_truth, make_sample
    import av
    video = make_sample(tmp_path / "s", seconds=2, fps=5, width=160, height=96, progress=False)
    gt = load_ground_truth(tmp_path / "s" / "ground_truth.json")
    frames = tmp_path / "frames"; frames.mkdir()
    chosen = [0, 3, 7]
    with av.open(str(video)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in chosen: f.to_image().save(frames / frame_filename(video, i))
    (tmp_path / "frames.txt").write_text("".join(f"frames/{frame_filename(video, i)}\n" for i in chosen[:2]))
    proj = simulate_annotator(gt, tmp_path / "frames.txt", tmp_path / "annotated.json")
    assert len(proj["_via_img_metadata"]) == 2
    simulate_annotator(tmp_path / "s" / "ground_truth.json", frames, tmp_path / "annotated.json")
    ann = check_annotations(tmp_path / "annotated.json", frames, strict=True, classes=gt["classes"])
    assert not ann.errors, report(ann)
    assert list(p["class"] for e in json.loads((tmp_path / "annotated.json").read_text())["_via_img_metadata"].values()
                for p in [r["region_attributes"] for r in e["regions"]]) == [i.class_name for im in ann.images for i in im.instances]
    truth = gt_to_coco(gt, frame_indices=chosen)
    got = {im.file_name: im for im in ann.images}
    for im in truth["images"]:
        objs = [a for a in truth["annotations"] if a["image_id"] == im["id"]]
        rec = got[im["file_name"]]
        assert (rec.width, rec.height) == (gt["width"], gt["height"])
        parts = [p for i in rec.instances for p in i.polygons]
        assert len(parts) == sum(len(a["segmentation"]) for a in objs)
        union_t = mu.decode(mu.merge([mu.merge(mu.frPyObjects(a["segmentation"], im["height"], im["width"])) for a in objs])) if objs else 0
        union_a = np.any([instance_mask(i, rec.height, rec.width) for i in rec.instances], axis=0) if rec.instances else 0
        assert iou(np.asarray(union_t, bool), np.asarray(union_a, bool)) >= 0.99
    # the saved project names its frames folder: checking it needs no --images
    assert main(["check", str(tmp_path / "annotated.json"), "--strict", "--classes", ",".join(gt["classes"])]) == 0


def test_widget_round_trip(tmp_path):
    for i in range(2): Image.new("RGB", (50, 40)).save(tmp_path / f"v_{i:06d}.jpg")
    via_project_for_frames(tmp_path, ["a", "b"], tmp_path / "p.json")
    w = PolygonAnnotator(tmp_path / "p.json")
    w.widget()
    w.goto(1); w.set_class("b")
    for xy in [(5, 5), (45, 5), (45, 35)]: w.add_point(*xy)
    w.close_polygon(); w.save()
    with pytest.raises(Exception, match="not one of"): w.set_class("zebra")
    ann = read_annotations(tmp_path / "p.json")
    assert [(im.file_name, [(i.class_name, i.polygons[0].tolist()) for i in im.instances]) for im in ann.images] == \
        [("v_000000.jpg", []), ("v_000001.jpg", [("b", [[5, 5], [45, 5], [45, 35]])])]
