"""cvflow.dataset: leak-free stable split (property-tested), dataset writing, the torch Dataset and v2 transforms."""
import json
import re
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from PIL import Image, ImageDraw
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from cvflow.files import file_hash
from cvflow.dataset import CocoInstanceDataset, collate_fn, main, split_coco, split_groups, write_dataset

FRAME = re.compile(r"^(.+)_(\d{6})\.jpg$")


def video_of(name: str) -> str:
    "Independent of cvflow: the video of a `<video>_<index:06d>.jpg` frame, else the file name itself."
    m = FRAME.match(name)
    return m.group(1) if m else name


def extent(mask: np.ndarray) -> list[float]:
    "Independent of cvflow: [x0, y0, x1, y1] (right/bottom exclusive) of a 2-D mask's pixels."
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


# ---------------------------------------------------------------- split properties (hypothesis)

videos = st.lists(st.text("abcdefgh xyz-", min_size=1, max_size=6).map(lambda s: s.strip() or "v"), min_size=1,
                  max_size=12, unique=True)


@st.composite
def coco_structures(draw):
    "A COCO dict whose images are frames of random videos (1..8 frames each) plus loose photos, random classes."
    vids = draw(videos)
    classes = ["a", "b", "c"]
    images, anns = [], []
    for v in vids:
        for i in range(draw(st.integers(1, 8))):
            images.append((f"{v}_{i:06d}.jpg", f"data/raw/{v}.mp4"))      # the source video is a fact of the image
    images += [(f"photo ({k}).jpg", None) for k in range(draw(st.integers(0, 4)))]
    coco = {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}
    for iid, (fn, video) in enumerate(images, 1):
        coco["images"].append({"id": iid, "file_name": fn, "width": 10, "height": 10} | ({"video": video} if video else {}))
        for c in draw(st.lists(st.integers(1, 3), max_size=3)):
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": iid, "category_id": c,
                                        "bbox": [0, 0, 2, 2], "area": 4.0, "iscrowd": 0})
    return coco


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco_structures(), st.floats(0.0, 0.9), st.integers(0, 10 ** 6))
def test_split_never_puts_a_video_on_both_sides(coco, val, seed):
    tr, va, split = split_coco(coco, val=val, seed=seed)
    v_tr = {video_of(im["file_name"]) for im in tr["images"]}
    v_va = {video_of(im["file_name"]) for im in va["images"]}
    assert v_tr.isdisjoint(v_va)
    assert sorted(im["id"] for im in tr["images"] + va["images"]) == [im["id"] for im in coco["images"]]
    assert len(tr["annotations"]) + len(va["annotations"]) == len(coco["annotations"])
    n_groups = len({video_of(im["file_name"]) for im in coco["images"]})
    if val > 0 and n_groups >= 2:
        assert tr["images"] and va["images"], "both sides must be non-empty when two groups exist"
    if val == 0:
        assert not va["images"]


group_stats = st.dictionaries(st.text("abcdefghij", min_size=1, max_size=5),
                              st.fixed_dictionaries({"images": st.integers(1, 30),
                                                     "classes": st.dictionaries(st.sampled_from("xyz"), st.integers(1, 9))}),
                              min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(group_stats, st.text("klmnop", min_size=1, max_size=5), st.integers(1, 30), st.floats(0.05, 0.5),
       st.integers(0, 1000))
def test_adding_a_group_does_not_reshuffle_the_others(stats, new, n_new, val, seed):
    new = "new-" + new
    more = {**stats, new: {"images": n_new, "classes": {"x": 1}}}
    # the hash rule alone is strictly stable
    a, b = split_groups(stats, val, seed, rebalance=False), split_groups(more, val, seed, rebalance=False)
    assert all(a.side[g] == b.side[g] for g in stats)
    # with rebalancing, only groups the rebalance flipped (in either run) may change side
    a, b = split_groups(stats, val, seed), split_groups(more, val, seed)
    changed = {g for g in stats if a.side[g] != b.side[g]}
    assert changed <= set(a.moved) | set(b.moved)
    assert set(b.side) == set(more)


@settings(max_examples=200, deadline=None)
@given(group_stats, group_stats, st.floats(0.05, 0.5), st.integers(0, 1000))
def test_kept_groups_never_change_side(stats, more, val, seed):
    "A round adds groups (and frames to old ones): with `keep`, every group of the earlier split stays where it was."
    first = split_groups(stats, val, seed)
    grown = {**{f"new-{g}": s for g, s in more.items()}, **{g: {"images": s["images"] + 3, "classes": s["classes"]} for g, s in stats.items()}}
    second = split_groups(grown, val, seed, keep=first.side)
    assert {g: second.side[g] for g in stats} == first.side
    assert not set(second.moved) & set(stats)
    assert set(second.side) == set(grown)


def test_cli_keep_split_keeps_the_earlier_sides(tmp_path, capsys):
    from cvflow.sample import make_sample_images
    src = make_sample_images(tmp_path / "s", n=24, seed=3, width=96, height=64)
    coco = json.loads(src.read_text())
    first = dict(coco, images=coco["images"][:12], annotations=[a for a in coco["annotations"] if a["image_id"] in
                                                                 {im["id"] for im in coco["images"][:12]}])
    (tmp_path / "s" / "first.json").write_text(json.dumps(first))
    assert main([str(tmp_path / "s" / "first.json"), "--out", str(tmp_path / "ds1"), "--val", "0.3"]) == 0
    assert main([str(src), "--out", str(tmp_path / "ds2"), "--val", "0.3", "--keep-split", str(tmp_path / "ds1")]) == 0
    c1, c2 = (json.loads((tmp_path / d / "dataset_card.json").read_text()) for d in ("ds1", "ds2"))
    for side in ("train", "val"): assert set(c1["groups"][side]) <= set(c2["groups"][side])
    assert c2["kept_groups"] == sorted(c1["groups"]["train"] + c1["groups"]["val"])
    capsys.readouterr()
    assert main([str(src), "--out", str(tmp_path / "ds3"), "--group-by", "image", "--keep-split", str(tmp_path / "ds1")]) == 2
    assert "field group_by is 'video' but this split groups by 'image'" in capsys.readouterr().out
    assert not (tmp_path / "ds3").exists()


def test_split_achieves_the_asked_ratio_with_many_groups():
    stats = {f"video{i:03d}": {"images": 20, "classes": {"k": 5}} for i in range(200)}
    s = split_groups(stats, 0.2, seed=3)
    assert abs(s.achieved["images"] - 0.2) <= 0.05
    assert s.side == split_groups(stats, 0.2, seed=3).side          # seeded: same answer twice
    assert s.side != split_groups(stats, 0.2, seed=4).side          # and the seed matters


# ---------------------------------------------------------------- writing the synthetic sample

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from cvflow.sample import make_sample_images
    d = tmp_path_factory.mktemp("sample")
    src = make_sample_images(d / "src", n=16, seed=5, width=160, height=120)
    out = write_dataset(src, out=d / "ds", val=0.25, seed=0, progress=False)
    return src, out


def test_write_dataset_on_the_sample(sample):
    src, out = sample
    orig = json.loads(src.read_text())
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    card = json.loads((out / "dataset_card.json").read_text())
    # videos never on both sides (from the names, independently)
    assert {video_of(i["file_name"]) for i in tr["images"]}.isdisjoint({video_of(i["file_name"]) for i in va["images"]})
    # every image and annotation kept, counts in the card match the files
    assert len(tr["images"]) + len(va["images"]) == len(orig["images"])
    assert len(tr["annotations"]) + len(va["annotations"]) == len(orig["annotations"])
    per = Counter(c["name"] for c in orig["categories"] for a in orig["annotations"] if a["category_id"] == c["id"])
    assert {k: card["counts"]["train"]["per_class"][k] + card["counts"]["val"]["per_class"][k] for k in per} == dict(per)
    assert card["classes"] == [c["name"] for c in sorted(orig["categories"], key=lambda c: c["id"])]
    assert [c["id"] for c in tr["categories"]] == list(range(1, len(card["classes"]) + 1))
    assert card["sources"][0]["sha256"] == file_hash(src)
    assert card["val_achieved"]["images"] == pytest.approx(len(va["images"]) / len(orig["images"]))
    # images linked or copied byte for byte
    for im in tr["images"] + va["images"]:
        assert file_hash(out / "images" / im["file_name"]) == file_hash(src.parent / "images" / im["file_name"])


def polygon_mask(polys, h, w) -> np.ndarray:
    "Independent of pycocotools: rasterize COCO polygons with PIL."
    im = Image.new("L", (w, h), 0)
    for p in polys:
        ImageDraw.Draw(im).polygon([(p[i], p[i + 1]) for i in range(0, len(p), 2)], fill=1)
    return np.array(im, dtype=bool)


def polygon_outline(polys, h, w) -> np.ndarray:
    "Pixels within about one pixel of the polygons' edges."
    from scipy.ndimage import binary_dilation
    im = Image.new("L", (w, h), 0)
    for p in polys:
        pts = [(p[i], p[i + 1]) for i in range(0, len(p), 2)]
        ImageDraw.Draw(im).line(pts + pts[:1], fill=1, width=1)
    return binary_dilation(np.array(im, dtype=bool), iterations=1)


def test_dataset_items_shapes_dtypes_and_masks_match_polygons(sample):
    src, out = sample
    ds = CocoInstanceDataset(out / "train.json")
    tr = json.loads((out / "train.json").read_text())
    assert len(ds) == len(tr["images"])
    n_checked = 0
    for i in range(len(ds)):
        img, t = ds[i]
        h, w = ds.get_height_and_width(i)
        assert img.dtype == torch.uint8 and tuple(img.shape) == (3, h, w)
        n = len(t["labels"])
        assert t["boxes"].dtype == torch.float32 and tuple(t["boxes"].shape) == (n, 4)
        assert t["boxes"].format.name == "XYXY" and tuple(t["boxes"].canvas_size) == (h, w)
        assert t["masks"].dtype == torch.uint8 and tuple(t["masks"].shape) == (n, h, w)
        assert t["labels"].dtype == torch.int64 and t["iscrowd"].dtype == torch.int64
        assert t["area"].dtype == torch.float32 and isinstance(t["image_id"], int)
        anns = [a for a in tr["annotations"] if a["image_id"] == t["image_id"]]
        kept = [a for a in anns if polygon_mask(a["segmentation"], h, w).any()]
        assert n == len(kept)
        for k, a in enumerate(kept):
            ref = polygon_mask(a["segmentation"], h, w)
            got = t["masks"][k].numpy().astype(bool)
            # the two rasterizers may disagree only on pixels the outline passes through
            assert not (ref ^ got)[~polygon_outline(a["segmentation"], h, w)].any(), (i, k)
            assert (ref & got).sum() / (ref | got).sum() > 0.5
            assert int(t["labels"][k]) == a["category_id"]
            assert t["boxes"][k].tolist() == extent(got)
            n_checked += 1
    assert n_checked > 10


def test_flip_and_crop_move_masks_and_boxes_together(sample):
    _, out = sample
    plain = CocoInstanceDataset(out / "train.json")
    # a fixed flip + crop: expected masks computed with numpy from the untransformed ones
    top, left, ch, cw = 20, 30, 70, 90

    def crop(img, tgt):
        tv = (tv_tensors.BoundingBoxes, tv_tensors.Mask)
        return F.crop(img, top, left, ch, cw), {k: F.crop(v, top, left, ch, cw) if isinstance(v, tv) else v for k, v in tgt.items()}

    fixed = CocoInstanceDataset(out / "train.json", transforms=v2.Compose([v2.RandomHorizontalFlip(p=1.0), crop]))
    for i in range(len(plain)):
        img0, t0 = plain[i]
        img1, t1 = fixed[i]
        expect_img = img0.numpy()[:, top:top + ch, ::-1][:, :, left:left + cw]
        assert np.array_equal(img1.numpy(), expect_img)
        exp = [m[:, ::-1][top:top + ch, left:left + cw] for m in t0["masks"].numpy()]
        keep = [k for k, m in enumerate(exp) if m.sum() > 0 and (extent(m)[2] - extent(m)[0]) >= 1]
        assert t1["labels"].tolist() == [int(t0["labels"][k]) for k in keep]
        for j, k in enumerate(keep):
            assert np.array_equal(t1["masks"][j].numpy(), exp[k])
            assert t1["boxes"][j].tolist() == extent(exp[k])
        # v2's own box transform agrees with the masks for the flip (right/bottom-exclusive boxes)
        fl_img, fl_t = v2.RandomHorizontalFlip(p=1.0)(img0, plain.target(i))
        for b, m in zip(fl_t["boxes"], fl_t["masks"].numpy()):
            if m.any(): assert b.tolist() == extent(m)
    # random flips and crops: no empty instance survives, per-instance fields stay aligned
    aug = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), v2.RandomCrop((60, 60)),
                      v2.RandomCrop((40, 50), padding=8)])
    ds = CocoInstanceDataset(out / "train.json", transforms=aug)
    torch.manual_seed(0)
    dropped = 0
    for rep in range(3):
        for i in range(len(ds)):
            img, t = ds[i]
            n = len(t["labels"])
            assert t["masks"].shape[0] == t["boxes"].shape[0] == t["area"].shape[0] == t["iscrowd"].shape[0] == n
            dropped += len(plain.target(i)["labels"]) - n
            for b, m, a in zip(t["boxes"], t["masks"].numpy(), t["area"]):
                assert m.sum() == a.item() > 0
                assert b.tolist() == extent(m)
                assert b[2] <= img.shape[-1] and b[3] <= img.shape[-2]
    assert dropped > 0, "the crops should have removed some instances"


def test_dataloader_batches_with_collate_fn(sample):
    _, out = sample
    ds = CocoInstanceDataset(out / "val.json")
    imgs, tgts = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_fn)))
    assert len(imgs) == len(tgts) == min(2, len(ds))
    assert all("masks" in t for t in tgts)


def test_images_missing_or_of_another_size_are_left_out_with_a_warning(tmp_path):
    from cvflow.sample import make_sample_images
    src = make_sample_images(tmp_path / "src", n=8, seed=2, width=96, height=64)
    coco = json.loads(src.read_text())
    names = [im["file_name"] for im in coco["images"]]
    (src.parent / "images" / names[0]).unlink()
    Image.new("RGB", (50, 50)).save(src.parent / "images" / names[1])
    out = write_dataset(src, out=tmp_path / "ds", val=0.5, progress=False)
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["counts"]["train"]["images"] + card["counts"]["val"]["images"] == 6
    assert any(names[0] in w and "not found" in w for w in card["warnings"])
    assert any(names[1] in w and "50x50 on disk" in w for w in card["warnings"])


def test_cli_failure_leaves_nothing(tmp_path, capsys):
    assert main([str(tmp_path / "none.json"), "--out", str(tmp_path / "ds")]) == 2
    assert "does not exist" in capsys.readouterr().out
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- real data

def test_real_coco_two_files_one_folder_rle_and_id_gaps(shared_data, tmp_path):
    d = shared_data / "coco_rle_labelbox"
    files = [d / "instances.json", d / "rle.json"]
    srcs = [json.loads(f.read_text()) for f in files]
    out = write_dataset(files, images=d / "images", out=tmp_path / "ds", val=0.3, seed=1, progress=False)
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    n_img = sum(len(s["images"]) for s in srcs)
    assert len(tr["images"]) + len(va["images"]) == n_img == 20
    assert len(tr["annotations"]) + len(va["annotations"]) == sum(len(s["annotations"]) for s in srcs)
    assert {i["file_name"] for i in tr["images"]}.isdisjoint({i["file_name"] for i in va["images"]})
    ids = [c["id"] for c in tr["categories"]]
    assert ids == list(range(1, len(ids) + 1))                     # contiguous 1..K
    # class names survive the renumbering: per-class counts equal the sources'
    by_name = Counter(next(c["name"] for c in s["categories"] if c["id"] == a["category_id"])
                      for s in srcs for a in s["annotations"])
    names = {c["id"]: c["name"] for c in tr["categories"]}
    assert Counter(names[a["category_id"]] for a in tr["annotations"] + va["annotations"]) == by_name
    # crowd RLE masks decode to the annotated area
    ds = CocoInstanceDataset(out / ("train.json" if any(a["iscrowd"] for a in tr["annotations"]) else "val.json"))
    n_crowd = 0
    for i in range(len(ds)):
        _, t = ds[i]
        if t["iscrowd"].sum() == 0: continue
        anns = [a for a in ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=[t["image_id"]]))]
        for k, a in enumerate(anns):
            if a["iscrowd"]:
                assert abs(t["area"][k].item() - a["area"]) <= 0.01 * a["area"] + 1
                n_crowd += 1
        break
    assert n_crowd > 0


def test_real_via_numberplate_train_and_val_overlap_is_one_group(shared_data, tmp_path):
    "np_detect's numberplate val/ repeats some train/ photos byte for byte: they must not end up on both sides."
    import hashlib
    d = shared_data / "np_detect" / "datasets" / "numberplate"
    files = [d / "1_train" / "via_region_data.json", d / "val" / "via_region_data.json"]
    raw = [json.loads(f.read_text()) for f in files]
    # independent expectations from the VIA files and the bytes on disk
    n_regions = sum(len(e["regions"]) for r in raw for e in r.values())
    names = [(f.parent, e["filename"]) for f, r in zip(files, raw) for e in r.values()]
    digest = {(p, n): hashlib.sha256((p / n).read_bytes()).hexdigest() for p, n in names}
    by_name = {}
    for (p, n), h in digest.items(): by_name.setdefault(n, set()).add(h)
    same = {n for n, hs in by_name.items() if len(hs) == 1 and sum(1 for q, m in names if m == n) == 2}
    assert same, "np_detect numberplate val/ is expected to repeat train/ images"
    out = write_dataset(files, out=tmp_path / "ds", val=0.2, seed=0, progress=False)
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    card = json.loads((out / "dataset_card.json").read_text())
    h = lambda im: hashlib.sha256((out / "images" / im["file_name"]).read_bytes()).hexdigest()
    assert {h(im) for im in tr["images"]}.isdisjoint({h(im) for im in va["images"]})     # no image on both sides
    assert len(tr["images"]) + len(va["images"]) == len({n for _, n in names})            # repeats kept once
    assert card["classes"] == ["Number Plate"]
    assert card["counts"]["train"]["images_without_instances"] + card["counts"]["val"]["images_without_instances"] >= 2
    assert 0 < card["val_achieved"]["images"] < 0.5
    kept = sum(len(e["regions"]) for e in raw[0].values())                                 # train's regions, all kept
    assert kept <= len(tr["annotations"]) + len(va["annotations"]) <= n_regions
    ds = CocoInstanceDataset(out / "val.json")
    img, t = ds[0]
    assert tuple(img.shape[-2:]) == ds.get_height_and_width(0) and t["masks"].shape[0] == len(t["labels"])


def test_real_via_roof_two_files_for_one_folder(shared_data, tmp_path):
    d = shared_data / "roof_detection" / "b18ee20" / "datasets" / "balloon" / "train"
    files = [d / "via_region_data.json", d / "via_region_data (29).json"]
    raw = [json.loads(f.read_text()) for f in files]
    n_files = len({e["filename"] for r in raw for e in r.values()})
    out = write_dataset(files, out=tmp_path / "ds", val=0.2, seed=0, progress=False)
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    assert len(tr["images"]) + len(va["images"]) == n_files == 49
    assert {i["file_name"] for i in tr["images"]}.isdisjoint({i["file_name"] for i in va["images"]})
    assert va["images"] and tr["images"]
    ds = CocoInstanceDataset(out / "train.json")
    img, t = ds[0]
    assert img.dtype == torch.uint8 and img.shape[0] == 3
    assert t["masks"].shape[0] == len(t["labels"]) > 0


def test_frame_manifest_beside_the_images_groups_opaque_names(tmp_path):
    "Frames whose names say nothing about their video are grouped by the frame step's frames.csv."
    import csv
    import shutil
    from cvflow.sample import make_sample_images
    src = make_sample_images(tmp_path / "s", n=16, seed=6, width=96, height=64)
    coco = json.loads(src.read_text())
    d = tmp_path / "frames"; (d / "frames").mkdir(parents=True)
    truth = {}
    for k, im in enumerate(coco["images"]):
        new = f"img{k:03d}.jpg"
        shutil.copy(src.parent / "images" / im["file_name"], d / "frames" / new)
        truth[new] = video_of(im["file_name"])
        im["file_name"] = new
        im.pop("video", None)
    (d / "instances.json").write_text(json.dumps(coco))
    with open(d / "frames.csv", "w", newline="") as f:
        w = csv.writer(f); w.writerow(["video", "frame_index", "scene", "file"])
        for k, (name, v) in enumerate(truth.items()): w.writerow([f"data/raw/{v}.mp4", 0, k % 2, f"frames/{name}"])
    scene = {name: (v, k % 2) for k, (name, v) in enumerate(truth.items())}
    out = write_dataset(d / "instances.json", images=d / "frames", out=tmp_path / "ds", val=0.3, seed=2, progress=False)
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    assert tr["images"] and va["images"]
    assert {truth[i["file_name"]] for i in tr["images"]}.isdisjoint({truth[i["file_name"]] for i in va["images"]})
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["manifest"] == str((d / "frames.csv").resolve())
    assert card["counts"]["train"]["groups"] + card["counts"]["val"]["groups"] == len(set(truth.values()))
    # group_by="scene": (video, scene) pairs stay together, videos may be split between their scenes
    out = write_dataset(d / "instances.json", images=d / "frames", out=tmp_path / "ds2", val=0.3, seed=2,
                        group_by="scene", progress=False)
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    assert {scene[i["file_name"]] for i in tr["images"]}.isdisjoint({scene[i["file_name"]] for i in va["images"]})
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["counts"]["train"]["groups"] + card["counts"]["val"]["groups"] == len(set(scene.values()))
    with pytest.raises(ValueError, match="needs the frame manifest"):
        write_dataset(src, out=tmp_path / "ds3", group_by="scene", progress=False)


def test_exif_rotated_photo_is_read_as_displayed(tmp_path):
    "A phone photo stored landscape with EXIF orientation 6 is annotated (in VIA, in a browser) as portrait."
    import json
    from PIL import Image
    from cvflow.dataset import CocoInstanceDataset
    stored = Image.new("RGB", (40, 20), (200, 0, 0))          # pixels: 40 wide, 20 high
    exif = Image.Exif(); exif[0x0112] = 6                      # "rotate 90° clockwise to display"
    (tmp_path / "images").mkdir()
    stored.save(tmp_path / "images" / "phone_000001.jpg", exif=exif)
    poly = [2.0, 2.0, 17.0, 2.0, 17.0, 37.0, 2.0, 37.0]        # drawn on the displayed 20 x 40 image
    coco = {"images": [{"id": 1, "file_name": "phone_000001.jpg", "width": 20, "height": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [poly], "area": 525.0,
                             "bbox": [2.0, 2.0, 15.0, 35.0], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    ds = CocoInstanceDataset(tmp_path / "ann.json", tmp_path / "images")
    img, target = ds[0]
    assert tuple(img.shape) == (3, 40, 20)
    assert tuple(target["masks"].shape) == (1, 40, 20)
