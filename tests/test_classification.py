"""Classification (#20) across the steps: labels from an ImageFolder layout and a CSV, the leak-free stratified split,
`cvflow train --task classification` on it, the exported package answering top-k labels."""
import json

from PIL import Image

from cvflow.dataset import ImageLabelDataset, write_label_dataset
from cvflow.labels import read_image_labels, write_labels

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def _image_folder(root, per_class=6):
    "An ImageFolder layout: root/<class>/<video>_<index>.jpg, the class a colour, two 'videos' per class."
    for c, rgb in COLOURS.items():
        (root / c).mkdir(parents=True)
        for k in range(per_class):
            Image.new("RGB", (40, 30), tuple(max(0, v - 6 * k) for v in rgb)).save(root / c / f"{c}{k % 2}_{k:06d}.jpg")


def test_image_folder_and_csv_read_alike(tmp_path):
    _image_folder(tmp_path / "tree", 2)
    lf = read_image_labels(tmp_path / "tree")
    rows = "\n".join(f"{im.file_name},{im.label}" for im in lf.images)
    (tmp_path / "tree" / "labels.csv").write_text("file_name,label\n" + rows + "\n")
    lc = read_image_labels(tmp_path / "tree" / "labels.csv")
    assert [(i.file_name, i.label, i.width, i.height) for i in lc.images] == [(i.file_name, i.label, 40, 30) for i in lf.images]
    assert lf.classes == ["blue", "green", "red"] and lf.counts() == {"blue": 2, "green": 2, "red": 2}


def test_train_classification_cli_export_and_predict(tmp_path, home):
    import cvflow.train as T
    from cvflow.images import read_image
    from cvflow.package import export_package, load_package
    _image_folder(tmp_path / "tree")
    labels = read_image_labels(tmp_path / "tree")
    for im in labels.images: im.video = im.file_name.split("/")[1].split("_")[0]   # e.g. red0: one video per colour and parity
    write_labels(labels, tmp_path / "tree" / "labels.json")
    data = write_label_dataset(tmp_path / "tree" / "labels.json", tmp_path / "tree", tmp_path / "ds", val=0.5, group_by="video",
                               progress=False)
    card = json.loads((data / "dataset_card.json").read_text())
    assert all(n > 0 for s in ("train", "val") for n in card["counts"][s]["per_class"].values())   # every class on both sides
    train_videos = {im["video"] for im in json.loads((data / "train.json").read_text())["images"]}
    assert not train_videos & {im["video"] for im in json.loads((data / "val.json").read_text())["images"]}
    assert len(ImageLabelDataset(data / "val.json")) == 9
    args = ["--data", str(data), "--out", str(tmp_path / "run"), "--task", "classification", "--preset", "cpu-mobile",
            "--max-steps", "3", "--eval-every", "3", "--tracking", "none", "--no-progress", "--batch-size", "4",
            "--set", "model={image_size: 64}", "--set", "num_workers=0", "--set", "sample_images=0", "--set", "warmup_steps=1"]
    assert T.main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_metric"] == "cls/accuracy" and 0 <= metrics["latest"]["cls/accuracy"] <= 1
    pkg = export_package(tmp_path / "run", tmp_path / "pkg")
    meta = json.loads((pkg / "model.json").read_text())
    assert (meta["task"], meta["classes"], meta["num_classes"]) == ("classification", ["blue", "green", "red"], 3)
    (res,) = load_package(pkg, device="cpu").predict([read_image(tmp_path / "tree" / "red" / "red0_000000.jpg")])
    assert [set(l) for l in res["labels"]] == [{"class_id", "class_name", "score"}] * 3
    assert abs(sum(l["score"] for l in res["labels"]) - 1) < 1e-4
