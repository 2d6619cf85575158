"""`cvflow run --annotations FILE... --images DIR`: the README's example, run as written (tiny parameters) on a
VIA export shaped like the public balloon dataset (empty region attributes, `name+size` keys, polygons)."""
import json
import shlex
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from cvflow.pipeline import main as run_main

REPO = Path(__file__).resolve().parents[1]
TINY = {"eda": {"min_instances": 2}, "dataset": {"val": 0.3}, "view_dataset": {"n_images": 2},
        "train": {"epochs": 1, "max_steps": 2, "eval_every": 0, "batch_size": 2, "min_size": 96, "max_size": 128},
        "deploy": {"score_threshold": 0.0},
        "test_service": {"max_images": 2, "concurrency": 1, "duration": 2.0, "max_requests": 4, "score_threshold": 0.0}}


def readme_command() -> list[str]:
    "The README's `cvflow run --annotations ...` example as argv after `run`."
    for line in (REPO / "README.md").read_text().splitlines():
        if "cvflow run --annotations" in line and not line.lstrip().startswith(("`", "-", "(")):
            argv = shlex.split(line.strip().lstrip("$ "))
            return argv[argv.index("run") + 1:]
    raise AssertionError("the README has no `cvflow run --annotations` example")


def balloon_export(ann: Path, images: Path, n: int = 8) -> dict:
    "Photos of 1-2 'balloons' and a VIA 1 export of them, the way the public balloon dataset is written."
    images.mkdir(parents=True, exist_ok=True); ann.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    meta = {}
    for k in range(n):
        im = Image.new("RGB", (160, 120), tuple(int(v) for v in rng.integers(40, 120, 3)))
        d = ImageDraw.Draw(im)
        regions = {}
        for r in range(1 + k % 2):
            cx, cy, rad = int(rng.integers(30, 130)), int(rng.integers(30, 90)), int(rng.integers(12, 25))
            d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=(220, 40, 40))
            t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            regions[str(r)] = {"shape_attributes": {"name": "polygon", "all_points_x": (cx + rad * np.cos(t)).round().astype(int).tolist(),
                                                    "all_points_y": (cy + rad * np.sin(t)).round().astype(int).tolist()},
                               "region_attributes": {}}
        name = f"{4000000 + 1000 * k}_{k:02x}f1c3a.jpg"
        im.save(images / name, quality=90)
        size = (images / name).stat().st_size
        meta[f"{name}{size}"] = {"fileref": "", "size": size, "filename": name, "base64_img_data": "", "file_attributes": {},
                                 "regions": regions}
    ann.write_text(json.dumps(meta))
    return meta


@pytest.mark.slow
def test_readme_annotations_example_runs_as_written(tmp_path, monkeypatch, capsys):
    argv = readme_command()
    i = argv.index("--annotations")
    files = [a for a in argv[i + 1:] if not a.startswith("--")]
    files = files[:next((k for k, a in enumerate(argv[i + 1:]) if a.startswith("--")), len(files))]
    images = argv[argv.index("--images") + 1]
    home = tmp_path / "home"; home.mkdir()
    monkeypatch.setenv("CVFLOW_HOME", str(home)); monkeypatch.chdir(home)
    meta = balloon_export(home / files[0], home / images)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    y = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    for st in y["steps"]:
        st["notebook"] = str(REPO / st["notebook"])
        st["parameters"] = {**st.get("parameters", {}), **TINY.get(st["name"], {})}
        if "port" in st["parameters"]: st["parameters"]["port"] = port
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(y))
    assert run_main(argv + ["--config", str(tmp_path / "pipeline.yaml"), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "frames" not in listed and "sample " not in listed and "annotations" in listed and "test_service" in listed
    rc = run_main(argv + ["--config", str(tmp_path / "pipeline.yaml")])
    out = capsys.readouterr()
    assert rc == 0, out.out[-3000:] + out.err[-3000:]
    coco = json.loads((home / "data/interim/annotations/instances.json").read_text())
    n_regions = sum(len(e["regions"]) for e in meta.values())
    assert (len(coco["images"]), len(coco["annotations"]), [c["name"] for c in coco["categories"]]) == (len(meta), n_regions, ["balloon"])
    card = json.loads((home / "data/processed/cvflow/dataset_card.json").read_text())
    assert card["counts"]["train"]["images"] + card["counts"]["val"]["images"] == len(meta) and card["classes"] == ["balloon"]
    assert (home / "models/cvflow-maskrcnn/package/model.json").is_file()
    assert json.loads((home / "reports/service_test/report.json").read_text())["passed"]
