"""Training (06d) as a command: the CLI, evaluation against pycocotools, checkpoints that survive a kill, resume, DDP."""
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from cvflow.dataset import CocoInstanceDataset, collate_fn, write_dataset
from cvflow.evaluate import evaluate
from cvflow.model import load_checkpoint, model_from_checkpoint
from cvflow.sample import make_sample_images
import cvflow.train as T

REPO = Path(__file__).resolve().parents[1]
TINY = ["--tracking", "none", "--no-progress", "--batch-size", "2", "--set", "model={min_size: 64, max_size: 96, rpn_post_nms_top_n_train: 64, box_batch_size_per_image: 32, "
        "rpn_post_nms_top_n_test: 32, box_detections_per_img: 20}",
        "--set", "num_workers=0", "--set", "sample_images=0", "--set", "warmup_steps=1", "--set", "eval_max_images=2"]


@pytest.fixture(autouse=True)
def _run_in_home(request, monkeypatch):
    "The CLI reads --data/--out relative to the current directory: tests with a project home run inside it, as a user would."
    if "home" in request.fixturenames:
        monkeypatch.chdir(request.getfixturevalue("home"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    "A synthetic dataset folder: 8 images of 160x120 in groups of 4 (one video each) -> 6 train / 2 val or so."
    root = tmp_path_factory.mktemp("data")
    src = make_sample_images(root / "src", n=8, seed=1, width=160, height=120)
    return write_dataset(src, out=root / "tiny", name="tiny", val=0.25, progress=False)


def test_cli_trains_writes_run_folder(tiny_data, home, capsys):
    out = home / "models" / "t"
    rc = T.main(["--data", str(tiny_data), "--out", "models/t", "--max-steps", "2", *TINY])
    assert rc == 0, capsys.readouterr().err
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] == 2
    classes = [c["name"] for c in sorted(json.loads((tiny_data / "train.json").read_text())["categories"], key=lambda c: c["id"])]
    assert ck["config"]["classes"] == classes == ["disc", "square", "triangle"]
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "step", "epoch", "rng", "config", "metrics"}
    # the checkpoint and model.pt hold only tensors and plain data
    torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    m = torch.load(out / "model.pt", weights_only=True)
    assert m["config"]["model"]["min_size"] == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 2 and "segm/AP" in metrics["latest"]
    assert json.loads((out / "config.json").read_text())["train"]["max_steps"] == 2
    assert "done after 2/2 steps" in capsys.readouterr().out
    model, conf = model_from_checkpoint(out / "checkpoints" / "best.pt")
    assert model.roi_heads.box_predictor.cls_score.out_features == 4 and conf["num_classes"] == 4


def test_cli_errors_name_the_problem(tiny_data, home, capsys):
    assert T.main(["--data", str(home / "nope"), "--out", "models/x", *TINY]) == 2
    assert f"{home / 'nope'}: train.json is missing" in capsys.readouterr().err
    assert T.main(["--data", str(tiny_data), "--out", "models/x", "--set", "optimizer=adam", *TINY]) == 2
    assert "'adam' is not one of sgd, adamw" in capsys.readouterr().err
    assert T.main(["--data", str(tiny_data), "--out", "models/x", "--resume", *TINY]) == 2
    assert "last.pt does not exist" in capsys.readouterr().err


def test_nonfinite_loss_stops_with_image_ids(tiny_data, home, capsys, monkeypatch):
    real = T.train_step
    def poisoned(state, images, targets):
        return real(state, [i * float("nan") for i in images], targets)
    monkeypatch.setattr(T, "train_step", poisoned)
    assert T.main(["--data", str(tiny_data), "--out", "models/nan", "--max-steps", "2", *TINY]) == 1
    err = capsys.readouterr().err
    train_ids = {im["id"] for im in json.loads((tiny_data / "train.json").read_text())["images"]}
    assert "step 0: the loss is not finite" in err and "image ids [" in err
    ids = json.loads(err.split("image ids ")[1].split("]")[0] + "]")
    assert len(ids) == 2 and set(ids) <= train_ids


def test_evaluate_agrees_with_cocoeval(tiny_data):
    "evaluate() on the dataset loader equals COCOeval run directly on the same (noisy) predictions."
    ds = CocoInstanceDataset(tiny_data / "val.json")
    rng = np.random.default_rng(0)
    preds = {}
    for iid in ds.ids:   # ground truth, jittered, with a spurious instance per image, random scores
        anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=[iid]))
        masks = [np.roll(ds.coco.annToMask(a), int(rng.integers(-4, 5)), axis=1) for a in anns]
        h, w = masks[0].shape
        fake = np.zeros((h, w), np.uint8); fake[5:25, 5:30] = 1
        masks.append(fake)
        labels = [a["category_id"] for a in anns] + [1]
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m); boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        preds[iid] = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
                      "scores": torch.tensor(rng.uniform(0.3, 1.0, len(masks)), dtype=torch.float32),
                      "masks": torch.from_numpy(np.stack(masks)).float()[:, None]}

    class Replay(torch.nn.Module):
        def __init__(self): super().__init__(); self.order = iter(ds.ids)
        def forward(self, images): return [preds[next(self.order)] for _ in images]

    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_fn)
    ours = evaluate(Replay(), loader, ds.coco, progress=False)
    for iou_type in ("bbox", "segm"):
        res = []
        for iid, p in preds.items():
            for b, l, s, m in zip(p["boxes"].tolist(), p["labels"].tolist(), p["scores"].tolist(), p["masks"][:, 0].numpy()):
                r = {"image_id": iid, "category_id": l, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                if iou_type == "segm":
                    rle = mask_utils.encode(np.asfortranarray((m >= 0.5).astype(np.uint8))); rle["counts"] = rle["counts"].decode()
                    r["segmentation"] = rle
                res.append(r)
        ev = COCOeval(ds.coco, ds.coco.loadRes(copy.deepcopy(res)), iou_type)
        ev.evaluate(); ev.accumulate(); ev.summarize()
        assert 0.05 < ev.stats[0] < 0.95    # a non-trivial score
        np.testing.assert_allclose([ours[iou_type][k] for k in ("AP", "AP50", "AP75")], ev.stats[:3], atol=1e-9)


@pytest.mark.slow
def test_failed_save_keeps_last_checkpoint_and_resume_finishes(tiny_data, home, monkeypatch):
    "A save that dies midway (after writing half a file) leaves the previous last.pt readable; --resume then finishes."
    real_save, calls = torch.save, []
    def dying_save(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:
            Path(f).write_bytes(b"PK\x03\x04 truncated")
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(T.torch, "save", dying_save)
    args = ["--data", str(tiny_data), "--out", "models/k", "--max-steps", "3", "--set", "checkpoint_every=1",
            "--set", "eval_every=3", *TINY]
    with pytest.raises(OSError, match="disk full"):
        T.main(args)
    ckdir = home / "models" / "k" / "checkpoints"
    assert load_checkpoint(ckdir / "last.pt")["step"] == 1
    assert sorted(p.name for p in ckdir.iterdir()) == ["last.pt"]
    monkeypatch.setattr(T.torch, "save", real_save)
    assert T.main(args + ["--resume"]) == 0
    assert load_checkpoint(ckdir / "last.pt")["step"] == 3


def _env(home):
    return {**os.environ, "CVFLOW_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_sigkill_during_training_leaves_a_loadable_checkpoint(tiny_data, home):
    "kill -9 a training process that saves every step, at an arbitrary moment: last.pt is always complete."
    out = home / "models" / "killed"
    cmd = [sys.executable, "-m", "cvflow.train", "--data", str(tiny_data), "--out", str(out), "--max-steps", "200",
           "--set", "checkpoint_every=1", "--set", "eval_every=1000", *TINY]
    p = subprocess.Popen(cmd, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = out / "checkpoints" / "last.pt"
    t0 = time.time()
    while time.time() - t0 < 240 and p.poll() is None:
        if last.exists() and load_checkpoint(last)["step"] >= 2:
            break
        time.sleep(0.2)
    assert p.poll() is None, p.stderr.read().decode()[-2000:]
    time.sleep(0.37)   # mid-step or mid-write: either way
    p.send_signal(signal.SIGKILL); p.wait()
    ck = load_checkpoint(last)
    assert ck["step"] >= 2
    rc = T.main(["--data", str(tiny_data), "--out", str(out), "--resume", "--max-steps", str(ck["step"] + 1), *TINY])
    assert rc == 0 and load_checkpoint(last)["step"] == ck["step"] + 1


@pytest.mark.slow
def test_ddp_two_processes_gloo(tiny_data, home):
    "torchrun with 2 CPU processes (gloo): DDP trains 2 steps, rank 0 alone writes the run folder."
    out = home / "models" / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cvflow.train",
           "--data", str(tiny_data), "--out", str(out), "--max-steps", "2", "--device", "cpu", *TINY]
    r = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] == 2 and ck["config"]["world_size"] == 2
    assert len(ck["rng"]["process"]) == 2
    assert not any(k.startswith("module.") for k in ck["model"])
    assert r.stdout.count("cvflow train: done") == 1


@pytest.mark.slow
def test_a_few_steps_on_real_coco_data(shared_data, home, capsys):
    "Real COCO val2017 photos (polygons, crowd RLE, category-id gaps renumbered by the dataset step): 2 steps train."
    d = shared_data / "coco_rle_labelbox"
    data = write_dataset([d / "instances.json", d / "rle.json"], images=d / "images", out=home / "data" / "coco",
                         val=0.3, seed=1, progress=False)
    rc = T.main(["--data", str(data), "--out", "models/real", "--max-steps", "2", *TINY])
    assert rc == 0, capsys.readouterr().err
    ck = load_checkpoint(home / "models" / "real" / "checkpoints" / "last.pt")
    cats = json.loads((data / "train.json").read_text())["categories"]
    assert ck["config"]["classes"] == [c["name"] for c in sorted(cats, key=lambda c: c["id"])]
    assert ck["model"]["roi_heads.box_predictor.cls_score.weight"].shape[0] == len(cats) + 1
    assert "segm/AP" in json.loads((home / "models" / "real" / "metrics.json").read_text())["latest"]


@pytest.mark.slow
def test_cpu_mobile_resume_is_bit_exact(tiny_data, home, capsys):
    "The pipeline's default preset (MobileNetV3 FPN): 3 steps in one go equal 1 step + --resume to 3, weight for weight."
    base = ["--data", str(tiny_data), "--preset", "cpu-mobile", "--max-steps", "3", "--set", "eval_every=3", *TINY]
    assert T.main([*base, "--out", str(home / "models" / "m-full")]) == 0, capsys.readouterr().err
    assert T.main([*base, "--out", str(home / "models" / "m-cut"), "--set", "stop_after_steps=1"]) == 0, capsys.readouterr().err
    assert load_checkpoint(home / "models" / "m-cut" / "checkpoints" / "last.pt")["step"] == 1
    assert T.main([*base, "--out", str(home / "models" / "m-cut"), "--resume"]) == 0, capsys.readouterr().err
    full = load_checkpoint(home / "models" / "m-full" / "checkpoints" / "last.pt")
    cut = load_checkpoint(home / "models" / "m-cut" / "checkpoints" / "last.pt")
    assert full["config"]["model"]["arch"] == "mobilenet_fpn" and cut["step"] == full["step"] == 3
    for k, v in full["model"].items():
        assert torch.equal(v, cut["model"][k]), k
