"""cvflow.eda: counts, warnings and the report, on the synthetic sample and on real VIA/COCO data."""
import json
import os
import subprocess
import sys
from collections import Counter


from cvflow.eda import class_counts, coco_tables, eda_warnings, load_tables, write_eda

PNG = b"\x89PNG"


def test_counts_per_class_video_and_split_on_the_sample(tmp_path):
    from cvflow.sample import make_sample_images
    src = make_sample_images(tmp_path / "s", n=12, seed=3, width=160, height=120)
    coco = json.loads(src.read_text())
    # independent expectations straight from the JSON
    name = {c["id"]: c["name"] for c in coco["categories"]}
    video = {im["id"]: im["file_name"].rsplit("_", 1)[0] for im in coco["images"]}
    split = {im["file_name"]: ("val" if k % 3 == 0 else "train") for k, im in enumerate(coco["images"])}
    images, inst = coco_tables(coco, split)
    classes = [c["name"] for c in coco["categories"]]
    want = Counter(name[a["category_id"]] for a in coco["annotations"])
    assert class_counts(inst, classes)["total"].to_dict() == {c: want.get(c, 0) for c in classes}
    by_video = class_counts(inst, classes, "video")
    for (v, c), n in Counter((video[a["image_id"]], name[a["category_id"]]) for a in coco["annotations"]).items():
        assert by_video.loc[c, v] == n
    by_split = class_counts(inst, classes, "split")
    fsplit = {im["id"]: split[im["file_name"]] for im in coco["images"]}
    for (s, c), n in Counter((fsplit[a["image_id"]], name[a["category_id"]]) for a in coco["annotations"]).items():
        assert by_split.loc[c, s] == n
    s = write_eda(images, inst, classes, tmp_path / "r")
    assert s["per_split"]["val"]["images"] == sum(v == "val" for v in split.values())
    for f in s["figures"].values(): assert (tmp_path / "r" / f).read_bytes()[:4] == PNG


def test_rare_class_from_one_video_is_named_in_words():
    coco = {"categories": [{"id": 1, "name": "dent"}, {"id": 2, "name": "rust"}],
            "images": [{"id": i, "file_name": f"{v}_{i:06d}.jpg", "width": 100, "height": 80}
                       for i, v in enumerate(["a", "a", "b", "c", "c"], 1)],
            "annotations": [{"id": k, "image_id": i, "category_id": c, "area": 900.0, "bbox": [0, 0, 30, 30]}
                            for k, (i, c) in enumerate([(1, 2), (1, 2), (2, 2), (2, 2)] + [(i, 1) for i in (1, 2, 3, 4, 5)] * 3, 1)]}
    images, inst = coco_tables(coco)
    w = eda_warnings(images, inst, ["dent", "rust"])
    assert "class `rust` has 4 instances, all from one video (`a`); fewer than 10 is too few to learn from" in w
    assert not any("`dent`" in x for x in w)


def test_real_numberplate_via_images_without_regions(shared_data, tmp_path):
    d = shared_data / "np_detect" / "datasets" / "numberplate" / "1_train"
    raw = json.loads((d / "via_region_data.json").read_text())
    n_empty = sum(1 for e in raw.values() if not e["regions"])
    n_regions = sum(len(e["regions"]) for e in raw.values())
    images, inst, classes = load_tables(d / "via_region_data.json")
    assert len(images) == len(raw) == 68 and n_empty == 2
    assert int((images["instances"] == 0).sum()) == n_empty
    assert len(inst) == n_regions
    assert classes == ["Number Plate"]
    assert images["video"].isna().all()                     # photos: no source video
    s = write_eda(images, inst, classes, tmp_path / "r")
    assert s["images_without_instances"] == n_empty
    html = (tmp_path / "r" / "summary.html").read_text()
    assert "Number Plate" in html and "<img src='class_counts.png'" in html


def test_cli_on_a_prepared_dataset_renders_without_a_display(shared_data, tmp_path):
    "Two roof VIA files for one folder -> `cvflow dataset` -> `cvflow eda` on the folder, in a process without DISPLAY."
    from cvflow.dataset import write_dataset
    d = shared_data / "roof_detection" / "b18ee20" / "datasets" / "balloon" / "train"
    files = [d / "via_region_data.json", d / "via_region_data (29).json"]
    ds = write_dataset(files, out=tmp_path / "ds", val=0.2, progress=False)
    n_train = len(json.loads((ds / "train.json").read_text())["images"])
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    r = subprocess.run([sys.executable, "-c", "import sys; from cvflow.eda import main; sys.exit(main(sys.argv[1:]))",
                        str(ds), "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "r" / "eda.json").read_text())
    assert s["per_split"]["train"]["images"] == n_train
    assert s["images"] == 49
    for f in ("class_counts.png", "mask_area.png", "aspect_ratio.png", "image_sizes.png", "instances_per_image.png"):
        assert (tmp_path / "r" / f).read_bytes()[:4] == PNG
    assert (tmp_path / "r" / "summary.md").read_text().startswith("# Class distribution")
    bad = subprocess.run([sys.executable, "-c", "import sys; from cvflow.eda import main; sys.exit(main(sys.argv[1:]))",
                          str(tmp_path / "missing.json")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stdout
