"""Model package (cvflow.package): export → load → predict parity, weights_only, broken packages, the CLI."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from cvflow.evaluate import predict as model_predict
from cvflow.model import build_model, model_config, model_from_checkpoint
from cvflow.package import PackageError, export_package, load_package, main_export, read_package_meta
from cvflow.train import save_checkpoint

CLASSES = ["disc", "square", "triangle"]


def write_checkpoint(model_dir: Path, which: str = "best", ap: float = 0.3, seed: int = 0) -> Path:
    "A checkpoint of an untrained cpu-small model in training's layout (written with training's own save_checkpoint)."
    torch.manual_seed(seed)
    m = build_model("cpu-small", 4, min_size=128, max_size=192)
    config = {"preset": "cpu-small", "classes": CLASSES, "category_ids": [1, 2, 3], "num_classes": 4,
              "input_size": {"min_size": 128, "max_size": 192}, "model": model_config(m), "data": "", "seed": seed}
    metrics = {"best": ap, "best_step": 4, "bad_evals": 0, "history": [], "run_id": None,
               "latest": {"step": 4, "segm/AP": ap, "bbox/AP": ap + 0.1, "segm/AP/disc": ap}}
    return save_checkpoint(model_dir / "checkpoints" / f"{which}.pt",
                           {"model": m.state_dict(), "config": config, "step": 4, "epoch": 1, "metrics": metrics})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    write_checkpoint(d / "shapes", "last", ap=0.1, seed=1)
    ck = write_checkpoint(d / "shapes", "best", ap=0.3, seed=0)
    return ck, export_package(d / "shapes", quiet=True)


def real_images(shared: Path, n: int = 2) -> list[np.ndarray]:
    files = sorted((shared / "coco_rle_labelbox" / "images").glob("*.jpg"))[:n]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def test_export_picks_best_and_records_it(exported):
    ck, pkg = exported
    meta = read_package_meta(pkg)
    assert meta["source"]["checkpoint"] == str(ck)                  # best.pt, not last.pt
    assert meta["metrics"]["segm/AP"] == pytest.approx(0.3)         # best's evaluation
    assert meta["classes"] == CLASSES and meta["num_classes"] == 4
    assert meta["input_size"] == {"min_size": 128, "max_size": 192}
    assert meta["versions"]["torch"] == torch.__version__.split("+")[0]
    assert (pkg / "requirements.txt").read_text().count("==") >= 4


def test_weights_only_state_dict(exported):
    ck, pkg = exported
    sd = torch.load(pkg / "model.pt", weights_only=True, map_location="cpu")
    ref = torch.load(ck, weights_only=True)["model"]
    assert set(sd) == set(ref)
    assert all(torch.equal(sd[k], ref[k]) for k in ref)


@pytest.mark.slow
def test_predictions_equal_in_memory_model_on_real_images(exported, shared_data):
    ck, pkg = exported
    predictor = load_package(pkg, device="cpu")
    model, _ = model_from_checkpoint(ck)
    ims = real_images(shared_data)
    got = predictor.predict(ims, score_threshold=0.0)
    for im, g in zip(ims, got):
        (o,) = model_predict(model, [torch.from_numpy(np.array(im)).permute(2, 0, 1)])
        order = torch.argsort(o["scores"], descending=True, stable=True)
        assert len(order) > 0 and len(g["instances"]) == len(order)
        assert (g["height"], g["width"]) == im.shape[:2]
        for inst, i in zip(g["instances"], order.tolist()):
            assert inst["class_id"] == int(o["labels"][i]) and inst["class_name"] == CLASSES[inst["class_id"] - 1]
            assert inst["score"] == pytest.approx(float(o["scores"][i]), abs=1e-5)
            assert inst["box"] == pytest.approx(o["boxes"][i].tolist(), abs=1e-3)
            ref_mask = (o["masks"][i, 0] >= predictor.meta["mask_threshold"]).numpy().astype(np.uint8)
            assert np.array_equal(mask_utils.decode(inst["mask"]), ref_mask)


@pytest.mark.slow
def test_score_threshold_and_batching(exported):
    _, pkg = exported
    predictor = load_package(pkg, device="cpu", batch_size=2)
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8) for _ in range(3)] + [rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)]
    together = predictor.predict(ims, score_threshold=0.0)
    alone = [predictor.predict(im, score_threshold=0.0)[0] for im in ims]
    for a, b in zip(together, alone):
        assert [i["mask"] for i in a["instances"]] == [i["mask"] for i in b["instances"]]
        assert [i["score"] for i in a["instances"]] == pytest.approx([i["score"] for i in b["instances"]], abs=1e-5)
    thr = 0.2
    kept = predictor.predict(ims[0], score_threshold=thr)[0]["instances"]
    assert len(kept) > 0
    assert [i["score"] for i in kept] == [i["score"] for i in alone[0]["instances"] if i["score"] >= thr]


@pytest.mark.parametrize("damage, message", [
    ("rm:model.pt", "is incomplete: model.pt is missing"),
    ("rm:model.json", "is incomplete: model.json is missing"),
    ("rm:requirements.txt", "is incomplete: requirements.txt is missing"),
    ("truncate:model.pt", "model.pt has"),
    ("truncate:model.json", "model.json is not valid JSON"),
    ("flip:model.pt", "model.pt does not match the sha256"),
])
def test_broken_package_names_the_file(exported, tmp_path, damage, message):
    _, pkg = exported
    bad = tmp_path / "pkg"
    shutil.copytree(pkg, bad)
    op, name = damage.split(":")
    f = bad / name
    if op == "rm":
        f.unlink()
    elif op == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    else:
        b = bytearray(f.read_bytes()); b[len(b) // 2] ^= 0xFF; f.write_bytes(bytes(b))
    with pytest.raises(PackageError, match=message.replace("(", r"\(")):
        load_package(bad, device="cpu")


def test_export_is_atomic_on_failure(tmp_path):
    "A failed export leaves the previous package untouched and no temporary folder behind."
    write_checkpoint(tmp_path / "m", "last")
    pkg = export_package(tmp_path / "m", quiet=True)
    before = (pkg / "model.json").read_text()
    config = torch.load(tmp_path / "m" / "checkpoints" / "last.pt", weights_only=True)["config"]
    torch.save({"model": {"bogus": torch.zeros(1)}, "config": config}, tmp_path / "m" / "checkpoints" / "best.pt")
    with pytest.raises(Exception, match="do not fit the architecture"):
        export_package(tmp_path / "m", quiet=True)
    assert (pkg / "model.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["checkpoints", "package"]


def test_cli_export(home, capsys):
    write_checkpoint(home / "models" / "shapes", "last")
    assert main_export([str(home / "models/shapes"), "--name", "shapes-v1", "--mask-threshold", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "name shapes-v1, preset cpu-small" in out
    meta = read_package_meta(home / "models" / "shapes" / "package")
    assert (meta["name"], meta["mask_threshold"]) == ("shapes-v1", 0.4)
    assert main_export(["models/none"]) == 2
    assert "models/none does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_same_package_on_cuda(exported):
    _, pkg = exported
    cpu, gpu = load_package(pkg, device="cpu"), load_package(pkg, device="cuda")
    assert gpu.device.type == "cuda"
    im = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    a, b = cpu.predict(im, score_threshold=0.3)[0], gpu.predict(im, score_threshold=0.3)[0]
    top_a, top_b = a["instances"][:5], b["instances"][:5]
    assert [i["class_id"] for i in top_a] == [i["class_id"] for i in top_b]
    assert [i["score"] for i in top_a] == pytest.approx([i["score"] for i in top_b], abs=1e-3)
