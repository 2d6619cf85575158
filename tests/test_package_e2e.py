"""Integration: a real (2-step) training run's checkpoint → export → load → predict → register, so a change of the
training checkpoint layout (06d) that breaks export or the registry fails here."""
import numpy as np
import pytest
from PIL import Image

from cvflow.files import file_hash
from cvflow.dataset import write_dataset
from cvflow.package import export_package, load_package
from cvflow.registry import register_package, show_model
from cvflow.sample import make_sample_images
from cvflow.train import train

pytestmark = pytest.mark.slow   # servers, subprocesses, whole runs: `make test` runs it, `make test-quick` skips it


def test_trained_checkpoint_exports_and_registers(home):
    (home / "cvflow.yaml").write_text("backend: local\n")
    ann = make_sample_images(home / "data" / "interim" / "imgs", n=6, seed=2, width=160, height=120)
    ds = write_dataset(ann, out=home / "data" / "processed" / "tiny", name="tiny", progress=False)
    res = train({"data": str(ds), "out": "models/tiny", "max_steps": 2, "batch_size": 2, "eval_every": 2,
                 "model": {"min_size": 96, "max_size": 128}, "tracking": "mlflow", "sample_images": 0,
                 "progress": False, "num_workers": 0, "warmup_steps": 1})
    pkg = export_package("models/tiny", quiet=True)
    assert pkg == home / "models" / "tiny" / "package"
    p = load_package(pkg, device="cpu")
    assert p.classes == ["disc", "square", "triangle"]
    assert p.meta["source"]["checkpoint"].endswith("checkpoints/best.pt")
    assert p.meta["source"]["run_id"] == res["run_id"]                     # link to the training run
    assert p.meta["dataset_card_hash"] == file_hash(ds / "dataset_card.json")
    assert "segm/AP" in p.meta["metrics"] and "bbox/AP" in p.meta["metrics"]
    im = np.asarray(Image.open(sorted((ds / "images").iterdir())[0]).convert("RGB"))
    (r,) = p.predict(im, score_threshold=0.0)
    assert (r["height"], r["width"]) == im.shape[:2] and len(r["instances"]) > 0
    rec = register_package(pkg, alias="production")
    shown = show_model("tiny", "production")
    assert (rec["version"], shown["version"]) == (1, 1)
    assert shown["tags"]["training_run_id"] == res["run_id"]
    assert shown["metrics"]["segm/AP"] == pytest.approx(p.meta["metrics"]["segm/AP"])
