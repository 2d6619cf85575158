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


def test_subject_sample_labels_and_pipeline_task(tmp_path):
    "The sample's `subject` option: every frame's recorded label is its largest visible object's class (the subject), the"
    " simulated labeller and `labels_from_coco` take it; `tasks.classification` renders such a sample on paths of its own."
    from pathlib import Path

    from cvflow.labels import labels_from_coco, read_via_labels, simulate_labeller
    from cvflow.pipeline import load_pipeline, with_task
    from cvflow.sample import gt_to_coco, load_ground_truth, make_heldout_images, make_sample
    from cvflow.files import frame_filename
    import cv2
    import numpy as np
    v = make_sample(tmp_path / "s", seconds=4, fps=10, width=192, height=128, seed=5, n_scenes=4, progress=False, subject=True)
    gt = load_ground_truth(v)
    for fr in gt["frames"]:
        assert fr["label"] == max(fr["objects"], key=lambda o: o["area"])["class"]
    # the simulated labeller on some frames (written as step 01 would) labels each with its recorded label
    frames = tmp_path / "frames"; frames.mkdir()
    picks = [0, 9, 20, 39]
    for i in picks:
        cv2.imwrite(str(frames / frame_filename(gt["video"], i)), np.zeros((128, 192, 3), np.uint8))
    simulate_labeller(gt, frames, tmp_path / "via.json")
    labels = read_via_labels(tmp_path / "via.json", frames)
    assert {im.file_name: im.label for im in labels.images} == {frame_filename(gt["video"], i): gt["frames"][i]["label"] for i in picks}
    assert [im.label for im in labels_from_coco(gt_to_coco(gt, picks)).images] == [gt["frames"][i]["label"] for i in picks]
    # held-out images of unseen scenes record theirs too, the largest visible object's class
    held = json.loads(make_heldout_images(tmp_path / "h", n=24, seed=5, width=192, height=128, subject=True).read_text())
    for im in held["images"]:
        big = max((a for a in held["annotations"] if a["image_id"] == im["id"]), key=lambda a: a["area"])
        assert im["label"] == held["categories"][big["category_id"] - 1]["name"]
    assert [im.label for im in labels_from_coco(held).images] == [im["label"] for im in held["images"]]
    # the pipeline: classification's sample has subjects, on its own paths; the other tasks' sample is unchanged
    pipe = load_pipeline(Path(__file__).resolve().parents[1] / "pipeline.yaml")
    steps = {s.name: s for s in with_task(pipe, "classification").steps}
    seg = {s.name: s for s in with_task(pipe, "detection").steps}
    assert steps["sample"].parameters["subject"] is True and "subject" not in seg["sample"].parameters
    assert steps["sample"].outputs == ["data/raw/sample-subjects", "data/raw/sample-subjects-heldout"]
    assert seg["sample"].outputs == ["data/raw/sample", "data/raw/sample-heldout"]
    assert steps["train"].parameters["heldout"] == "data/raw/sample-subjects-heldout/instances.json"
    assert steps["annotations"].parameters["ground_truth"] == "data/raw/sample-subjects/ground_truth.json"
    assert steps["dataset"].parameters["images"].startswith("data/interim/frames-subjects/")
