"""Real users' annotation files and images, kind by kind (issue: every kind handled right at every step, or refused
clearly at the first): each input is generated here, small, in the shape public exports and bug reports have."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cvflow.annotation_formats import AnnotationError, read_annotations, to_coco
from cvflow.annotations import main as annotations_main
from cvflow.dataset import CocoInstanceDataset, main as dataset_main, write_dataset
from cvflow.images import ImageReadError, check_image, image_size, read_image

REPO = Path(__file__).resolve().parents[1]


def _scene(w=64, h=48, seed=0) -> np.ndarray:
    "An RGB test picture with structure (gradients and a block), so that every format has content to get wrong."
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) * 255 // (w + h)], -1).astype(np.uint8)
    a[h // 4:h // 2, w // 4:w // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
    return a


# ------------------------------------------------------------------------------------------------ 1. one decoder

def _formats(d: Path) -> dict[str, np.ndarray | None]:
    "File name -> the RGB array every reader must give (None: the reference is whatever read_image gives, compared across readers)."
    rgb = _scene()
    files = {}
    Image.fromarray(rgb).save(d / "rgb.png"); files["rgb.png"] = rgb
    Image.fromarray(rgb).save(d / "rgb.bmp"); files["rgb.bmp"] = rgb
    Image.fromarray(rgb).save(d / "rgb.tif"); files["rgb.tif"] = rgb
    Image.fromarray(rgb).save(d / "rgb.tiff", compression="tiff_lzw"); files["rgb.tiff"] = rgb
    Image.fromarray(rgb).save(d / "rgb.webp", lossless=True); files["rgb.webp"] = rgb
    grey = rgb[..., 0]
    Image.fromarray(grey).save(d / "grey.png"); files["grey.png"] = np.repeat(grey[..., None], 3, 2)
    g16 = (grey.astype(np.uint16) * 257)                        # 16-bit scan: the full range maps back to 0..255
    Image.fromarray(g16).save(d / "grey16.png"); files["grey16.png"] = np.repeat(grey[..., None], 3, 2)
    Image.fromarray(g16).save(d / "grey16.tif"); files["grey16.tif"] = np.repeat(grey[..., None], 3, 2)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(d / "rgba.png"); files["rgba.png"] = rgb   # alpha dropped, colour kept
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(d / "palette.png"); files["palette.png"] = np.asarray(pal.convert("RGB"))
    pal.save(d / "anim.gif", save_all=True, append_images=[pal.transpose(Image.FLIP_LEFT_RIGHT)])
    files["anim.gif"] = np.asarray(pal.convert("RGB"))          # the first frame
    Image.fromarray(rgb).save(d / "base.jpg", quality=95); files["base.jpg"] = None
    Image.fromarray(rgb).save(d / "prog.jpg", quality=95, progressive=True); files["prog.jpg"] = None
    Image.fromarray(grey).save(d / "grey.jpg", quality=95); files["grey.jpg"] = None
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", quality=95); files["cmyk.jpg"] = None
    im = Image.fromarray(rgb); ex = im.getexif(); ex[0x0112] = 6   # a phone held upright: stored landscape
    im.save(d / "phone.jpg", exif=ex, quality=95); files["phone.jpg"] = None
    return files


def test_every_reader_gives_identical_arrays_for_each_format(tmp_path):
    "Annotation sizing, the dataset (training, viewer), cvflow score, score.py in the service: one array per file."
    import cvflow.images
    import cvflow.batch_scoring
    from cvflow.score import decode_image
    assert cvflow.batch_scoring.read_image is cvflow.images.read_image             # `cvflow score` decodes with the shared reader
    files = _formats(tmp_path)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for k, name in enumerate(files, 1):
        w, h = image_size(tmp_path / name)
        coco["images"].append({"id": k, "file_name": name, "width": w, "height": h})
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    ds = CocoInstanceDataset(tmp_path / "coco.json", tmp_path)
    ann = read_annotations(tmp_path / "coco.json", tmp_path)
    assert not ann.errors, [str(p) for p in ann.errors]            # every format passes the first step
    for k, (name, want) in enumerate(files.items()):
        ref = read_image(tmp_path / name)
        assert ref.dtype == np.uint8 and ref.ndim == 3 and ref.shape[2] == 3, name
        if want is not None: np.testing.assert_array_equal(ref, want, err_msg=name)
        assert (ref.shape[1], ref.shape[0]) == image_size(tmp_path / name) == check_image(tmp_path / name), name
        np.testing.assert_array_equal(ds.read_image(k).permute(1, 2, 0).numpy(), ref, err_msg=f"dataset: {name}")
        np.testing.assert_array_equal(decode_image((tmp_path / name).read_bytes(), 10 ** 8, name), ref, err_msg=f"score.py: {name}")
        ctype = {"jpg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
                 "webp": "image/webp", "gif": "image/gif"}[name.rsplit(".", 1)[1]]
        np.testing.assert_array_equal(decode_image((tmp_path / name).read_bytes(), 10 ** 8, name, ctype), ref, err_msg=f"raw {ctype}: {name}")
    assert read_image(tmp_path / "phone.jpg").shape == (64, 48, 3)  # displayed upright, as annotated
    jpeg = read_image(tmp_path / "base.jpg").astype(int)
    assert np.abs(jpeg - _scene().astype(int)).mean() < 4          # and lossy formats still hold the picture


def test_undecodable_images_are_refused_at_the_first_step_naming_file_and_reason(tmp_path):
    Image.fromarray(_scene()).save(tmp_path / "ok.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:300])
    (tmp_path / "page.png").write_text("<html>saved page</html>")
    via = {f"{n}1": {"filename": n, "size": 1, "regions": [{"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 9, "height": 9},
                                                              "region_attributes": {}}]} for n in ("ok.jpg", "truncated.jpg", "page.png")}
    (tmp_path / "via.json").write_text(json.dumps(via))
    ann = read_annotations(tmp_path / "via.json")
    assert [im.file_name for im in ann.images] == ["ok.jpg"]
    bad = {p.image: p.message for p in ann.errors if p.kind == "unreadable-image"}
    assert set(bad) == {"truncated.jpg", "page.png"}
    assert "truncated" in bad["truncated.jpg"].lower() and "not an image" in bad["page.png"]
    with pytest.raises(ImageReadError, match="truncated.jpg"): read_image(tmp_path / "truncated.jpg")


# ------------------------------------------------------------------------------ 2. images without objects train

def _via2_project(d: Path, regions: dict[str, list], attributes: dict | None = None) -> Path:
    meta = {}
    for name, regs in regions.items():
        size = (d / name).stat().st_size if (d / name).exists() else -1
        meta[f"{name}{size}"] = {"filename": name, "size": size, "regions": regs, "file_attributes": {}}
    proj = {"_via_settings": {"ui": {"image": {"region_label": "__via_region_id__"}}, "core": {"default_filepath": ""}},
            "_via_img_metadata": meta, "_via_attributes": attributes or {"region": {}, "file": {}}}
    p = d / "via_project.json"
    p.write_text(json.dumps(proj))
    return p


def _poly(x, y, w, h, **attrs) -> dict:
    return {"shape_attributes": {"name": "polygon", "all_points_x": [x, x + w, x + w, x], "all_points_y": [y, y, y + h, y + h]},
            "region_attributes": attrs}


def test_a_via2_project_with_empty_images_trains_evaluates_and_scores(tmp_path, home):
    import cvflow.train as T
    from cvflow.package import export_package, load_package
    d = tmp_path / "imgs"; d.mkdir()
    for k in range(3):
        im = Image.new("RGB", (96, 72), (40, 40, 40 + 60 * k))                   # three different photos
        if k == 0: ImageDraw.Draw(im).rectangle([20, 16, 60, 50], fill=(220, 60, 30))
        im.save(d / f"photo{k}.jpg")
    proj = _via2_project(d, {"photo0.jpg": [_poly(20, 16, 40, 34, label="box")], "photo1.jpg": [], "photo2.jpg": []})
    data = write_dataset(proj, images=d, out=tmp_path / "ds", val=0.34, group_by="image", seed=0, progress=False)
    card = json.loads((data / "dataset_card.json").read_text())
    assert card["counts"]["train"]["images_without_instances"] + card["counts"]["val"]["images_without_instances"] == 2
    tiny = ["--tracking", "none", "--no-progress", "--batch-size", "2", "--set", "model={min_size: 64, max_size: 96, "
            "rpn_post_nms_top_n_train: 64, box_batch_size_per_image: 32, rpn_post_nms_top_n_test: 32, box_detections_per_img: 20}",
            "--set", "num_workers=0", "--set", "sample_images=0", "--set", "warmup_steps=1"]
    assert T.main(["--data", str(data), "--out", str(tmp_path / "run"), "--max-steps", "3", "--eval-every", "3", *tiny]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["step"] == 3 and "segm/n_detections" in metrics["latest"]   # evaluated (val: an image without objects)
    pkg = export_package(tmp_path / "run", tmp_path / "pkg")
    preds = load_package(pkg, device="cpu").predict([read_image(d / f"photo{k}.jpg") for k in range(3)])
    assert len(preds) == 3                                                  # scored, empty images included


# ------------------------------------------------------------------------------- 3. the class attribute by evidence

VIA2_DEFAULT_ATTRIBUTES = {   # what a new VIA 2 project starts with
    "region": {"name": {"type": "text", "description": "Name of the object", "default_value": "not_defined"},
               "type": {"type": "dropdown", "description": "Category of object",
                        "options": {"bird": "Bird", "human": "Human", "cup": "Cup (object)", "unknown": "Unknown (object)"},
                        "default_options": {"unknown": True}},
               "image_quality": {"type": "checkbox", "description": "Quality of image region",
                                 "options": {"blur": "Blurred region", "good_illumination": "Good Illumination", "frontal": "Object in frontal view"},
                                 "default_options": {"good": True, "frontal": True, "good_illumination": True}}},
    "file": {}}
QUALITY = {"good_illumination": True, "frontal": True}


def test_via2_default_attributes_take_the_class_from_what_the_annotator_typed(tmp_path):
    Image.fromarray(_scene(96, 72)).save(tmp_path / "a.jpg")
    regs = [_poly(5, 5, 20, 20, name="mask", type="unknown", image_quality=QUALITY),
            _poly(40, 5, 20, 20, name="mask", type="unknown", image_quality=QUALITY),
            _poly(5, 40, 20, 20, name="face", type="unknown", image_quality={"blur": True})]
    ann = read_annotations(_via2_project(tmp_path, {"a.jpg": regs}, VIA2_DEFAULT_ATTRIBUTES))
    assert ann.class_counts() == {"mask": 2, "face": 1}
    assert ann.classes == ["mask", "face"]                                   # no empty 'bird'/'human'/'cup' categories
    unused = next(p for p in ann.problems if p.kind == "unused-option") if any(p.kind == "unused-option" for p in ann.problems) else None
    assert unused is None                                                   # options of another attribute are not the class's


def test_via2_demo_like_project_with_two_candidate_attributes_is_refused_listing_both(tmp_path, capsys):
    "VIA 2's demo: `name` typed and `type` picked on each region, `image_quality` ticked twice: ask, never pick."
    Image.fromarray(_scene(96, 72)).save(tmp_path / "a.jpg")
    regs = [_poly(5, 5, 20, 20, name="swan", type="bird", image_quality=QUALITY),
            _poly(40, 5, 20, 20, name="swan", type="bird", image_quality=QUALITY),
            _poly(5, 40, 20, 20, name="boy", type="human", image_quality=QUALITY),
            _poly(40, 40, 20, 20, name="boy", type="human", image_quality={"frontal": True})]
    p = _via2_project(tmp_path, {"a.jpg": regs}, VIA2_DEFAULT_ATTRIBUTES)
    with pytest.raises(AnnotationError) as e: read_annotations(p)
    msg = str(e.value)
    assert "'name' on 4 regions {'swan': 2, 'boy': 2}" in msg and "'type' on 4 regions {'bird': 2, 'human': 2}" in msg
    assert "--class-attribute" in msg and "image_quality" not in msg
    assert annotations_main(["check", str(p)]) == 2
    assert "--class-attribute" in capsys.readouterr().err
    ann = read_annotations(p, class_attribute="type")                        # the user decides: all 4 regions kept
    assert ann.class_counts() == {"bird": 2, "human": 2} and ann.classes == ["bird", "human"]
    assert any(p.kind == "unused-option" and p.value == ["cup", "unknown"] for p in ann.problems)
    # --class-attribute works on `cvflow dataset` too
    rc = dataset_main([str(p), "--images", str(tmp_path), "--out", str(tmp_path / "ds"), "--val", "0", "--class-attribute", "name"])
    assert rc == 0, capsys.readouterr().out
    assert json.loads((tmp_path / "ds" / "dataset_card.json").read_text())["classes"] == ["swan", "boy"]
    assert dataset_main([str(p), "--images", str(tmp_path), "--out", str(tmp_path / "ds2"), "--val", "0"]) == 2
    assert "--class-attribute" in capsys.readouterr().out and not (tmp_path / "ds2").exists()


def test_via2_demo_project_with_url_file_names_uses_downloaded_copies(tmp_path):
    "VIA 2's demo project names its images by URL; with the images downloaded beside it, every region is kept."
    url = "http://www.robots.ox.ac.uk/~vgg/software/via/images/swan.jpg"
    Image.fromarray(_scene(96, 72)).save(tmp_path / "swan.jpg")
    regs = [_poly(5, 5, 20, 20, name="swan", type="bird", image_quality=QUALITY),
            _poly(40, 5, 20, 20, name="swan", type="bird", image_quality={"frontal": True})]
    p = _via2_project(tmp_path, {url: regs}, VIA2_DEFAULT_ATTRIBUTES)
    ann = read_annotations(p, tmp_path, class_attribute="type")
    assert [im.file_name for im in ann.images] == ["swan.jpg"] and ann.class_counts() == {"bird": 2}
    assert any(q.kind == "url-filename" for q in ann.problems) and not ann.errors
    (tmp_path / "swan.jpg").unlink()
    err = next(q for q in read_annotations(p, tmp_path, class_attribute="type").errors if q.kind == "unsafe-filename")
    assert "download it into the images folder as 'swan.jpg'" in err.message


# ------------------------------------------------------------------------ 4. masks are what the annotator drew

def _even_odd(poly, h, w) -> np.ndarray:
    "Pixel centres inside `poly` by the crossing-number (even-odd) rule, independently of cvflow and pycocotools."
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    inside = np.zeros((h, w), bool)
    P = np.asarray(poly, float)
    for (x1, y1), (x2, y2) in zip(P, np.roll(P, -1, 0)):
        crosses = (y1 > ys) != (y2 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < xi)
    return inside


def test_a_self_intersecting_outline_becomes_its_even_odd_mask_and_the_warning_agrees(tmp_path):
    "A face mask with its ear loops drawn as one outline (VIA tutorial data): the loops enclose holes."
    Image.new("RGB", (120, 80)).save(tmp_path / "face.jpg")
    outline = [(30, 20), (90, 20), (90, 60), (30, 60), (30, 30), (40, 30), (40, 50), (80, 50), (80, 30), (30, 30)]
    xs, ys = zip(*outline)
    via = {"face.jpg1": {"filename": "face.jpg", "size": 1, "regions": {
        "7": {"shape_attributes": {"name": "polygon", "all_points_x": list(xs), "all_points_y": list(ys)}, "region_attributes": {}}}}}
    (tmp_path / "via.json").write_text(json.dumps(via))
    ann = read_annotations(tmp_path / "via.json")
    coco = to_coco(ann)
    from pycocotools import mask as mu
    rle = mu.merge(mu.frPyObjects(coco["annotations"][0]["segmentation"], 80, 120))
    mask = mu.decode(rle).astype(bool)
    truth = _even_odd(outline, 80, 120)
    assert truth.sum() == 60 * 40 - 40 * 20                                 # the hole the loop encloses stays empty
    assert (mask ^ truth).sum() <= 0.05 * truth.sum()                       # the written mask is the even-odd fill
    assert not mask[35:45, 45:75].any()
    w = next(p for p in ann.problems if p.kind == "self-intersection")
    assert f"{int(coco['annotations'][0]['area'])} px²" in w.message       # the warning reports the mask's own area
    assert w.region == 7 and w.field == "parts" and "part(s)" in w.message and "region 7" in str(w)


# ---------------------------------------------------------------------------------- 5. COCO from other tools

def _coco_images(d: Path, names: list[str]) -> None:
    for n in names:
        (d / n).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_scene(96, 72)).save(d / n)


def test_coco_from_other_tools_at_every_entry_point(tmp_path, capsys):
    d = tmp_path / "export"; d.mkdir()
    _coco_images(d, ["JPEGImages/a.jpg", "JPEGImages/b.jpg", "c.jpg"])
    sq = lambda x, y: [x, y, x + 20, y, x + 20, y + 20, x, y + 20]
    coco = {"images": [{"id": "0", "file_name": "JPEGImages/a.jpg", "width": 96, "height": 72},   # VIA's COCO export: strings
                       {"id": "1", "file_name": "JPEGImages\\b.jpg", "width": 96, "height": 72},  # labelme2coco on Windows
                       {"id": "2", "file_name": "../outside.jpg", "width": 96, "height": 72},
                       {"id": "3", "file_name": "c.jpg", "width": 96, "height": 72}],
            "annotations": [{"id": 1, "image_id": "0", "category_id": "1", "segmentation": [sq(5, 5)], "iscrowd": 0},
                            {"id": 2, "image_id": "0", "category_id": "2", "segmentation": sq(40, 5), "iscrowd": 0},  # flat list
                            {"id": 3, "image_id": "1", "category_id": "1", "segmentation": [sq(5, 30)], "iscrowd": 0},
                            {"id": 4, "image_id": "2", "category_id": "1", "segmentation": [sq(5, 30)], "iscrowd": 0},
                            {"id": 5, "image_id": "3", "category_id": "0", "segmentation": [sq(5, 30)], "iscrowd": 0},
                            {"id": 6, "image_id": "3", "category_id": "2", "segmentation": [sq(50, 30)], "iscrowd": 0}],
            "categories": [{"id": 0, "name": "_background_"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (d / "annotations.json").write_text(json.dumps(coco))
    ann = read_annotations(d / "annotations.json", d)
    assert [im.file_name for im in ann.images] == ["JPEGImages/a.jpg", "JPEGImages/b.jpg", "c.jpg"]
    assert [[i.class_name for i in im.instances] for im in ann.images] == [["cat", "dog"], ["cat"], ["dog"]]
    assert ann.classes == ["cat", "dog"]                                    # no background category
    kinds = {p.kind: p for p in ann.problems}
    assert kinds["flat-segmentation"].region == 2 and kinds["flat-segmentation"].field == "segmentation"
    assert kinds["unsafe-filename"].value == "../outside.jpg"
    assert kinds["background-annotation"].region == 5 and kinds["background-annotation"].value == "0"
    assert "category_id '0'" in kinds["background-annotation"].message     # the value as written: '0', not 0
    # convert, dataset and training all take it
    assert annotations_main(["convert", str(d / "annotations.json"), "--images", str(d), "--to", "coco", str(tmp_path / "c.json")]) == 0
    out = json.loads((tmp_path / "c.json").read_text())
    assert (len(out["images"]), len(out["annotations"]), [c["name"] for c in out["categories"]]) == (3, 4, ["cat", "dog"])
    data = write_dataset(d / "annotations.json", images=d, out=tmp_path / "ds", val=0, progress=False)
    assert (data / "images" / "JPEGImages" / "a.jpg").is_file()
    ds = CocoInstanceDataset(data / "train.json")
    assert [ds[i][1]["labels"].tolist() for i in range(len(ds))] == [[1, 2], [1], [2]]
    bad = dict(coco, annotations=[dict(coco["annotations"][0], segmentation={"counts": "x"})])   # RLE without size
    (d / "bad.json").write_text(json.dumps(bad))
    err = next(p for p in read_annotations(d / "bad.json", d).errors if p.kind == "bad-rle")
    assert (err.kind, err.region, err.field) == ("bad-rle", 1, "segmentation")


# ------------------------------------------------------------------------------------------------- 6. labelme

def test_labelme_folder_and_via_like_width_height(tmp_path, capsys):
    d = tmp_path / "labelme"; (d / "images").mkdir(parents=True)
    for k in range(4):
        Image.fromarray(_scene(80, 60, seed=k)).save(d / "images" / f"im{k}.jpg")
        shapes = [{"label": "bolt", "points": [[5, 5], [25, 5], [25, 20]], "group_id": None, "shape_type": "polygon", "flags": {}},
                  {"label": "nut", "points": [[40, 30], [60, 50]], "group_id": None, "shape_type": "rectangle", "flags": {}}]
        (d / f"im{k}.json").write_text(json.dumps({"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": f"images/im{k}.jpg",
                                                   "imageData": None, "imageHeight": 60, "imageWidth": 80}))
    ann = read_annotations(d, d)
    assert (ann.format, len(ann.images), ann.class_counts()) == ("labelme", 4, {"bolt": 4, "nut": 4})
    data = write_dataset(d, images=d, out=tmp_path / "ds", val=0.25, group_by="image", progress=False)
    card = json.loads((data / "dataset_card.json").read_text())
    assert card["counts"]["train"]["images"] + card["counts"]["val"]["images"] == 4 and card["classes"] == ["bolt", "nut"]
    # a VIA-like file carrying width/height instead of size: sizes used when the images are absent
    vialike = {"x.jpg": {"filename": "x.jpg", "width": 640, "height": 480, "regions": [_poly(1, 1, 10, 10, label="a")]}}
    (tmp_path / "vialike.json").write_text(json.dumps(vialike))
    a = read_annotations(tmp_path / "vialike.json", False)
    assert (a.images[0].width, a.images[0].height) == (640, 480)
    assert annotations_main(["convert", str(tmp_path / "vialike.json"), "--no-images", "--to", "coco", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["images"][0]["width"] == 640


# ----------------------------------------------------------------------------- 7. a split decided from facts

def _named_dataset(d: Path, names: list[str], videos: dict[str, str] | None = None) -> Path:
    (d / "images").mkdir(parents=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for k, n in enumerate(names, 1):
        Image.fromarray(_scene(48, 32, seed=k)).save(d / "images" / n)
        coco["images"].append({"id": k, "file_name": n, "width": 48, "height": 32} | ({"video": videos[n]} if videos else {}))
        coco["annotations"].append({"id": k, "image_id": k, "category_id": 1, "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]],
                                    "area": 324.0, "bbox": [2, 2, 18, 18], "iscrowd": 0})
    (d / "instances.json").write_text(json.dumps(coco))
    return d / "instances.json"


def _split(out: Path):
    card = json.loads((out / "dataset_card.json").read_text())
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    return card, [im["file_name"] for im in tr["images"]], [im["file_name"] for im in va["images"]]


def test_frames_named_video1image0_are_flagged_and_the_suggested_pattern_groups_them(tmp_path, capsys):
    names = [f"video{v}image{i}.jpg" for v in range(1, 6) for i in range(4)]
    src = _named_dataset(tmp_path / "s", names)
    out = write_dataset(src, out=tmp_path / "ds", val=0.2, seed=0)
    printed = capsys.readouterr().out
    assert "groups: 20 images in 20 groups by video; 20 image(s) with no video information" in printed
    card, _, _ = _split(out)
    w = next(x for x in card["warnings"] if "no video information" in x)
    pat = w.split("--group-by '")[1].split("'")[0]
    out = write_dataset(src, out=tmp_path / "ds2", val=0.2, seed=0, group_by=pat, progress=False)
    card, tr, va = _split(out)
    vid = lambda n: n.split("image")[0]
    assert {vid(n) for n in tr}.isdisjoint({vid(n) for n in va}) and va   # one video never on both sides
    assert card["counts"]["train"]["groups"] + card["counts"]["val"]["groups"] == 5


def test_phone_photos_and_year_prefixed_names_are_not_one_fake_video(tmp_path):
    for sub, names in (("phone", [f"IMG_{1000 + i}.jpg" for i in range(10)]),
                       ("voc", [f"2011_{i:06d}.jpg" for i in range(10)])):
        out = write_dataset(_named_dataset(tmp_path / sub, names), out=tmp_path / f"ds-{sub}", val=0.2, seed=0, progress=False)
        card, tr, va = _split(out)
        assert len(va) == 2 and len(tr) == 8, (sub, va)                       # independent images: 20% in val
        assert card["counts"]["val"]["groups"] == 2


def test_one_video_is_refused_with_a_suggestion_that_works(tmp_path, capsys):
    names = [f"clip_{i:06d}.jpg" for i in range(12)]
    src = _named_dataset(tmp_path / "s", names, videos={n: "data/raw/clip.mp4" for n in names})
    with open(tmp_path / "s" / "frames.csv", "w") as f:                    # the frame step's manifest, with scenes
        f.write("video,frame_index,scene,file\n" + "".join(f"data/raw/clip.mp4,{i},{i // 3},{n}\n" for i, n in enumerate(names)))
    rc = dataset_main([str(src), "--out", str(tmp_path / "ds"), "--val", "0.25"])
    msg = capsys.readouterr().out
    assert rc == 2 and not (tmp_path / "ds").exists()
    assert "val is empty: 12 images in 1 groups by video: 1 known (sizes 12)" in msg and "--group-by scene" in msg
    assert dataset_main([str(src), "--out", str(tmp_path / "ds"), "--val", "0.25", "--group-by", "scene"]) == 0
    card, tr, va = _split(tmp_path / "ds")
    assert va and tr and card["counts"]["val"]["groups"] >= 1


def test_split_from_keeps_the_users_split_and_identical_copies_stay_on_one_side(tmp_path, capsys):
    root = tmp_path / "balloon"
    for side, names in (("train", ["a.jpg", "b.jpg", "c.jpg"]), ("val", ["d.jpg", "c_copy.jpg"])):
        (root / side).mkdir(parents=True)
        via = {}
        for n in names:
            seed = 3 if n.startswith("c") else ord(n[0])
            Image.fromarray(_scene(48, 32, seed=seed)).save(root / side / n)
            via[n] = {"filename": n, "size": (root / side / n).stat().st_size, "regions": [_poly(2, 2, 10, 10, label="balloon")]}
        (root / side / "via_region_data.json").write_text(json.dumps(via))
    assert dataset_main(["--split-from", str(root), "--out", str(tmp_path / "ds")]) == 0
    card, tr, va = _split(tmp_path / "ds")
    assert sorted(tr) == ["a.jpg", "b.jpg", "c.jpg", "c_copy.jpg"] and va == ["d.jpg"]   # the copy leaves val
    assert any("byte-identical copies on both sides" in w for w in card["warnings"])


# ------------------------------------------------------------------------------------- 9. commands that compose

@pytest.mark.slow
def test_relative_paths_resolve_against_the_current_directory(tmp_path, home, monkeypatch):
    "`dataset --out out/ds` then `train --data out/ds` from the same shell: the same folder."
    _named_dataset(tmp_path / "work" / "src", [f"p{i}.jpg" for i in range(6)])
    monkeypatch.chdir(tmp_path / "work")
    r = subprocess.run([sys.executable, "-c", "import sys; from cvflow.cli import main; sys.exit(main(sys.argv[1:]))",
                        "dataset", "src/instances.json", "--out", "out/ds", "--group-by", "image"],
                       capture_output=True, text=True, env=os.environ | {"CVFLOW_HOME": str(home)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "work" / "out" / "ds" / "train.json").is_file()
    import cvflow.train as T
    rc = T.main(["--data", "out/ds", "--out", "runs/t", "--max-steps", "1", "--tracking", "none", "--no-progress",
                 "--set", "model={min_size: 32, max_size: 48}", "--set", "num_workers=0", "--set", "sample_images=0",
                 "--set", "warmup_steps=1"])
    assert rc == 0
    assert (tmp_path / "work" / "runs" / "t" / "checkpoints" / "last.pt").is_file()


def test_cli_usage_errors_and_help(tmp_path, capsys):
    import cvflow.train as T
    (tmp_path / "empty").mkdir()
    assert dataset_main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2   # a folder: a usage error
    assert "cvflow dataset:" in capsys.readouterr().out
    with pytest.raises(SystemExit): T.main(["--help"])
    help_text = capsys.readouterr().out
    for key in ("warmup_steps", "num_workers", "hflip", "eval_max_images", "model"):
        assert key in help_text, key
