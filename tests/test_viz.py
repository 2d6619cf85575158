"""cvflow.viz: drawing in class colours, grids written without a display, the browser driven headless."""
import json

import pytest
import torch

from cvflow.dataset import CocoInstanceDataset, write_dataset
from cvflow.detections import Detections
from cvflow.viz import DatasetBrowser, class_color, draw_detections, save_grid


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from cvflow.sample import make_sample_images
    d = tmp_path_factory.mktemp("viz")
    src = make_sample_images(d / "s", n=8, seed=4, width=160, height=120)
    out = write_dataset(src, out=d / "ds", val=0.25, progress=False)
    return CocoInstanceDataset(out / "train.json")


def test_masks_painted_in_the_class_colour_only_where_the_mask_is():
    img = torch.zeros((3, 50, 50), dtype=torch.uint8)
    m = torch.zeros((1, 50, 50), dtype=torch.bool); m[0, 10:20, 10:20] = True
    out = draw_detections(img, Detections([[10, 10, 20, 20]], [3], mask=m, class_names=["a", "b", "c"]), alpha=1.0)
    assert out[:, 15, 15].tolist() == list(class_color(3))
    assert out[:, 40, 40].tolist() == [0, 0, 0]
    # predictions: same colour for the same class, scores below the threshold not drawn
    pred = draw_detections(img, Detections.from_torchvision({"boxes": [[10, 10, 20, 20]], "masks": m.float()[:, None] * 0.9,
                                                             "labels": [3], "scores": [0.95]}, ["a", "b", "c"]), alpha=1.0)
    assert pred[:, 15, 15].tolist() == list(class_color(3))
    low = Detections([[10, 10, 20, 20]], [3], [0.1], mask=m)
    none = draw_detections(img, low[low.confidence >= 0.5])
    assert torch.equal(none, img)


def test_grid_png_for_a_split(ds, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    p = save_grid(ds, tmp_path / "grid.png", n=4, cols=2)
    from PIL import Image
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_browser_next_previous_filter_augment_headless(ds):
    b = DatasetBrowser(ds)
    assert b.indices == list(range(len(ds)))
    seen = [b.index]
    for _ in range(len(ds)): seen.append(b.next().index)
    assert seen[-1] == seen[0] and sorted(set(seen)) == list(range(len(ds)))
    assert b.previous().index == len(ds) - 1
    # class filter: exactly the images holding that class, counted from the JSON
    data = json.loads(ds.coco_json.read_text())
    for k, c in enumerate(ds.classes, 1):
        want = sorted({a["image_id"] for a in data["annotations"] if a["category_id"] == k})
        assert sorted(ds.ids[i] for i in b.set_class(c).indices) == want
    b.set_class(None)
    plain = b.render()
    assert plain.dtype == torch.uint8 and tuple(plain.shape[-2:]) == ds.get_height_and_width(b.index)
    assert b.png()[:4] == b"\x89PNG"
    torch.manual_seed(1)
    b.set_augment(True)
    assert any(not torch.equal(b.render(), plain) for _ in range(3))
    # the ipywidgets front end drives the same methods
    w = b.widget
    b._next.click()
    assert b.position == 1 and b._label.value.startswith("2/")
    b._classes.value = ds.classes[0]
    assert b.class_name == ds.classes[0] and b.position == 0
    assert b._image.value[:4] == b"\x89PNG"


def test_real_roof_grid(shared_data, tmp_path):
    d = shared_data / "roof_detection" / "b18ee20" / "datasets" / "balloon"
    out = write_dataset(d / "val" / "via_region_data.json", out=tmp_path / "ds", val=0.0, progress=False)
    ds = CocoInstanceDataset(out / "train.json")
    assert len(ds) == 1                                # the RGBA PNG, drawn as RGB
    image, t = ds[0]
    img = draw_detections(image, Detections.from_torchvision(t, ds.classes))
    assert tuple(img.shape) == (3, 800, 1280)
    assert save_grid(ds, tmp_path / "g.png", n=1).read_bytes()[:4] == b"\x89PNG"
