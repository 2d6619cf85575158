"""The annotation loop through the `cvflow` command, as a person runs it: frames chosen by a model, pre-annotated into a
VIA 2 project, corrected, read back; the project checked field by field against a project VIA 2 itself saved."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cvflow.annotation_loop import compare_projects, simulate_corrections, truth_targets
from cvflow.annotation_formats import read_annotations
from cvflow.annotations import simulate_annotator
from cvflow.config import load_settings
from cvflow.deploy import demo_package
from cvflow.sample import make_sample

REPO = Path(__file__).resolve().parents[1]
VIA2_SAVED = REPO.parent / "shared" / "data" / "roof_detection" / "0bcd89c" / "datasets" / "balloon" / "val" / "JSONS.json"


def cvflow(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "cvflow"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    "A 4-second sample, a tiny untrained package, two frames already annotated; then `frames --model` and `prelabel`."
    d = tmp_path_factory.mktemp("loop")
    make_sample(d / "s", seconds=4, fps=15, width=320, height=180, seed=0, progress=False)
    pkg = demo_package(d / "pkg", min_size=96, max_size=128)
    r = cvflow("frames", "--model", pkg, d / "s" / "sample.mp4", "--out", d / "next", "--budget", 3, "--every-seconds", 0.5,
               cwd=d)
    assert r.returncode == 0 and "3 of " in r.stdout, r.stderr
    cands = sorted(p.name for p in (d / "next" / "candidates").iterdir())
    simulate_annotator(d / "s" / "ground_truth.json", [d / "next" / "candidates" / n for n in cands[:2]], d / "done.json")
    r = cvflow("frames", "--model", pkg, d / "s" / "sample.mp4", "--out", d / "next", "--budget", 3, "--every-seconds", 0.5,
               "--annotated", d / "done.json", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "(2 already annotated)" in r.stdout
    r = cvflow("annotations", "prelabel", pkg, d / "next" / "frames.txt", "--out", d / "pre.json", "--threshold", 0.0, cwd=d)
    assert r.returncode == 0, r.stderr
    return d, cands


def test_frames_never_proposed_again(loop):
    d, cands = loop
    chosen = (d / "next" / "frames.txt").read_text().split()
    assert 0 < len(chosen) <= 3 and not set(chosen) & set(cands[:2])   # 01 drops near-duplicates of a chosen frame
    ranking = (d / "next" / "ranking.csv").read_text().splitlines()
    assert len(ranking) == 1 + len(cands)
    header = ranking[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in ranking[1:]]
    assert {r["file"] for r in rows if float(r["priority"]) < 0} == set(cands[:2])
    assert {r["file"] for r in rows if r["chosen"] == "True"} == set(chosen)


def test_frames_model_refuses_when_every_candidate_is_annotated(loop):
    d, cands = loop
    simulate_annotator(d / "s" / "ground_truth.json", [d / "next" / "candidates" / n for n in cands], d / "all.json")
    r = cvflow("frames", "--model", d / "pkg", d / "s" / "sample.mp4", "--out", d / "none", "--budget", 3, "--every-seconds",
               0.5, "--annotated", d / "all.json", cwd=d)
    assert r.returncode == 2 and f"all {len(cands)} candidate frames of" in r.stderr and "nothing left to propose" in r.stderr, r.stderr
    assert not (d / "none" / "frames.txt").exists() and not (d / "none" / "frames").exists()


def test_frames_model_takes_01s_options_and_checks(loop):
    "`frames --model` declares no option of its own for the candidates: 01's FrameOptions, with its checks."
    d, _ = loop
    r = cvflow("frames", "--model", d / "pkg", d / "s" / "sample.mp4", "--out", d / "bad", "--min-gap", -1, cwd=d)
    assert r.returncode == 2 and "min_gap must be >= 0 seconds, got -1.0" in r.stderr, r.stderr
    assert not (d / "bad" / "frames.csv").exists()


def test_prelabel_reads_back_as_annotations(loop):
    d, _ = loop
    proj = json.loads((d / "pre.json").read_text())
    regions = [r for e in proj["_via_img_metadata"].values() for r in e["regions"]]
    assert regions, "the untrained demo model predicts something at threshold 0"
    for r in regions:
        assert set(r["region_attributes"]) == {"class", "score"}
        assert 0.0 <= float(r["region_attributes"]["score"]) <= 1.0
        assert 3 <= len(r["shape_attributes"]["all_points_x"]) <= 24
    ann = read_annotations(d / "pre.json", d / "next" / "frames", class_attribute="class")
    assert not ann.errors
    assert ann.n_polygons == len(regions)


def _schema(v):
    "The shape of a JSON value: keys and value types, recursively (lists by their first item)."
    if isinstance(v, dict): return {k: _schema(x) for k, x in v.items()}
    if isinstance(v, list): return [_schema(v[0])] if v else []
    return "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__


@pytest.mark.skipif(not VIA2_SAVED.is_file(), reason=f"{VIA2_SAVED} (a project VIA 2 saved) is not there")
def test_project_has_the_layout_via2_saves(loop):
    "Settings, image entries (key = file name + size) and polygon regions shaped exactly as in a project VIA 2 saved."
    d, _ = loop
    ours, via = json.loads((d / "pre.json").read_text()), json.loads(VIA2_SAVED.read_text())
    s_ours, s_via = _schema(ours["_via_settings"]), _schema(via["_via_settings"])
    assert s_ours == s_via
    entry_via = next(iter(via["_via_img_metadata"].values()))
    entry_ours = next(e for e in ours["_via_img_metadata"].values() if e["regions"])
    assert set(entry_ours) == set(entry_via)
    for k, e in ours["_via_img_metadata"].items():
        assert k == f"{e['filename']}{e['size']}" and isinstance(e["size"], int)
    poly_via = next(r for r in entry_via["regions"] if r["shape_attributes"]["name"] == "polygon")
    assert _schema(entry_ours["regions"][0]["shape_attributes"]) == _schema(poly_via["shape_attributes"])
    assert set(ours["_via_attributes"]) == set(via["_via_attributes"]) == {"region", "file"}


def test_corrections_read_back_through_the_command(loop):
    "The simulated annotator corrects the pre-annotation; `annotations corrections --json` reports what it did."
    d, _ = loop
    truth_proj = simulate_annotator(d / "s" / "ground_truth.json", d / "next" / "frames.txt", d / "truth.json")
    truth = truth_targets(truth_proj)
    simulate_corrections(d / "pre.json", truth, d / "corrected.json")
    r = cvflow("annotations", "corrections", d / "pre.json", d / "corrected.json", "--json", cwd=d)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)["counts"]
    assert counts == compare_projects(d / "pre.json", d / "corrected.json").counts()
    n_true = sum(len(v) for v in truth.values())
    n_pred = sum(len(e["regions"]) for e in json.loads((d / "pre.json").read_text())["_via_img_metadata"].values())
    assert counts["kept"] + counts["edited"] + counts["deleted"] == n_pred        # every prediction accounted for
    assert counts["kept"] + counts["edited"] + counts["added"] == n_true         # the corrected project holds the truth
    corrected = read_annotations(d / "corrected.json", d / "next" / "frames", class_attribute="class")
    assert corrected.n_polygons == n_true
    r = cvflow("annotations", "corrections", d / "pre.json", d / "missing.json", cwd=d)
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_mask_refiner_trains_on_annotations_and_redraws_the_prelabels(loop):
    "`annotations refiner` learns from the frames already annotated; `prelabel --refiner` redraws the masks with it."
    d, cands = loop
    r = cvflow("annotations", "refiner", d / "done.json", "--images", d / "next" / "candidates", "--out", d / "ref.pt",
               "--steps", 3, cwd=d)
    assert r.returncode == 0, r.stderr
    assert f"wrote {d / 'ref.pt'}" in r.stdout and "3 steps" in r.stdout and (d / "ref.pt").is_file()
    assert "held-out images, mask IoU" in r.stdout
    r = cvflow("annotations", "prelabel", d / "pkg", d / "next" / "frames.txt", "--out", d / "pre-ref.json", "--threshold", 0.0,
               "--refiner", "ref.pt", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "masks redrawn by ref.pt" in r.stdout and "{a.out}" not in r.stdout
    r = cvflow("annotations", "prelabel", d / "pkg", d / "next" / "frames.txt", "--out", d / "x.json", "--refiner", "ref.pt",
               "--refiner-passes", 0, cwd=d)
    assert r.returncode == 2 and "--refiner-passes must be at least 1" in r.stderr and not (d / "x.json").exists()
    ann = read_annotations(d / "pre-ref.json", d / "next" / "frames")
    assert len(ann.images) == len(json.loads((d / "pre.json").read_text())["_via_img_metadata"]) and not ann.errors
    (d / "bad.pt").write_text("no")
    r = cvflow("annotations", "prelabel", d / "pkg", d / "next" / "frames.txt", "--out", d / "x.json", "--refiner", "bad.pt", cwd=d)
    assert r.returncode == 2 and "bad.pt: not a mask refiner file" in r.stderr and not (d / "x.json").exists()
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cvflow("annotations", "prelabel", "pkg", d / "next" / "frames.txt", "--out", d / "x.json", "--refiner", "nope.pt", cwd=d)
    assert r.returncode == 2 and "nope.pt: no such mask refiner file" in r.stderr   # the package: the current directory's
    # a detection model predicts boxes: nothing to redraw, and it says so
    from cvflow.deploy import demo_package as _demo
    det = _demo(d / "detpkg", min_size=96, max_size=128, task="detection")
    r = cvflow("annotations", "prelabel", det, d / "next" / "frames.txt", "--out", d / "det.json", "--threshold", 0.0,
               "--refiner", "ref.pt", cwd=d)
    assert r.returncode == 0 and "ref.pt not used: the model predicts boxes" in r.stdout, r.stdout + r.stderr
    # ten steps train (the warm-up is never zero steps); a folder as --out is refused before training
    r = cvflow("annotations", "refiner", d / "done.json", "--images", d / "next" / "candidates", "--out", d / "ten.pt",
               "--steps", 10, cwd=d)
    assert r.returncode == 0 and (d / "ten.pt").is_file(), r.stderr
    (d / "adir").mkdir()
    r = cvflow("annotations", "refiner", d / "done.json", "--images", d / "next" / "candidates", "--out", "adir", "--steps", 1, cwd=d)
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    r = cvflow("annotations", "refiner", d / "done.json", "--images", d / "nowhere", "--out", d / "r2.pt", "--steps", 1, cwd=d)
    assert r.returncode == 2 and "cvflow annotations refiner:" in r.stderr and not (d / "r2.pt").exists()
    assert "nowhere does not exist" in r.stderr, r.stderr
    r = cvflow("annotations", "refiner", d / "done.json", "--images", d / "s", "--out", d / "r2.pt", "--steps", 1, cwd=d)
    assert r.returncode == 2 and "error(s) to fix" in r.stderr and "missing" in r.stderr, r.stderr   # the wrong folder: said


def test_bad_model_package_is_refused(loop):
    d, _ = loop
    r = cvflow("annotations", "prelabel", d / "nope", d / "next" / "frames.txt", "--out", d / "x.json", cwd=d)
    assert r.returncode == 2 and "cvflow annotations prelabel:" in r.stderr
    assert not (d / "x.json").exists()


@pytest.fixture(scope="module")
def round1_home(tmp_path_factory):
    "A project home after a (tiny) round 1: sample, frames, simulated annotations (COCO), a model package, held-out frames."
    from cvflow.annotation_formats import check_annotations, write_coco
    from cvflow.dataset import write_dataset
    from cvflow.frames import reduce_videos
    from cvflow.sample import make_heldout_images
    home = tmp_path_factory.mktemp("home")
    (home / "cvflow.yaml").write_text("seed: 0\n")
    make_sample(home / "data/raw/sample", seconds=4, fps=15, width=320, height=180, seed=0, progress=False)
    res = reduce_videos([home / "data/raw/sample/sample.mp4"], home / "data/interim/frames", budget=4, every_seconds=0.5,
                        progress=False)
    via = simulate_annotator(home / "data/raw/sample/ground_truth.json", res.file_list, home / "r1.json")
    write_coco(check_annotations(home / "r1.json", res.frames_dir), home / "data/interim/annotations/instances.json")
    write_dataset(home / "data/interim/annotations/instances.json", res.frames_dir, out=home / "data/processed/cvflow",
                  val=0.25, group_by="image", progress=False)   # round 1's dataset step (pipeline.yaml's name: cvflow)
    demo_package(home / "models" / load_settings(home=home).model_name / "package", min_size=96, max_size=128)
    make_heldout_images(home / "data/raw/sample-heldout", 3, 0, 320, 180)
    pl = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    for s in pl["steps"]:
        if s["name"] == "train": s["parameters"].update(batch_size=2, min_size=96, max_size=128)
        if s["name"] == "dataset": s["parameters"].update(group_by="image", val=0.25)
    (home / "pipeline.yaml").write_text(yaml.safe_dump(pl))
    assert via["_via_img_metadata"]
    return home


def test_round_pauses_for_the_annotator(round1_home):
    home = round1_home
    env = {**os.environ, "CVFLOW_HOME": str(home)}
    r = subprocess.run([str(Path(sys.executable).parent / "cvflow"), "run", "--round", "2", "--budget", "2", "--every-seconds",
                        "0.5", "--refiner-steps", "3", "--config", str(home / "pipeline.yaml")], cwd=home, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 3, r.stderr
    assert "mask refiner:" in r.stdout and (home / "data/interim/round2/mask_refiner.pt").is_file()   # learnt from round 1
    learnt = json.loads((home / "data/interim/round2/mask_refiner.json").read_text())
    assert learnt["steps"] == 3 and list(learnt["annotations"]) == [str(home / "data/interim/annotations/instances.json")]
    again = lambda: subprocess.run([str(Path(sys.executable).parent / "cvflow"), "run", "--round", "2", "--budget", "2",
                                    "--every-seconds", "0.5", "--refiner-steps", "3", "--config", str(home / "pipeline.yaml")],
                                   cwd=home, env=env, capture_output=True, text=True, timeout=900)
    r2 = again()
    assert r2.returncode == 3 and "mask refiner:" in r2.stdout and "training a mask refiner" not in r2.stdout   # reused
    ann = home / "data/interim/annotations/instances.json"   # the earlier rounds' annotations changed: learnt afresh
    ann.write_text(json.dumps(json.loads(ann.read_text()), indent=1))
    r2 = again()
    assert r2.returncode == 3 and "training a mask refiner" in r2.stdout, r2.stdout
    assert "via_annotated.json" in r.stdout and (home / "data/interim/round2/via_project.json").is_file()
    done = {im["file_name"] for im in json.loads((home / "data/interim/annotations/instances.json").read_text())["images"]}
    assert not done & set((home / "data/interim/round2/frames.txt").read_text().split())


def test_round_trains_from_the_previous_weights_and_registers_only_if_better(round1_home):
    home = round1_home
    env = {**os.environ, "CVFLOW_HOME": str(home)}
    shutil.rmtree(home / "data/interim/round2", ignore_errors=True)
    run = home / "reports/runs/20260101-000000"   # the round-1 run's manifest (its summary page gets the rounds)
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": run.name, "status": "done", "started": "2026-01-01T00:00:00",
                                                   "finished": "2026-01-01T00:10:00", "home": str(home), "steps": []}))
    r = subprocess.run([str(Path(sys.executable).parent / "cvflow"), "run", "--round", "2", "--budget", "2", "--every-seconds",
                        "0.5", "--steps", "2", "--refiner-steps", "0", "--simulate", "data/raw/sample/ground_truth.json", "--config",
                        str(home / "pipeline.yaml")], cwd=home, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "round 2 corrections:" in r.stdout and "held-out segm AP" in r.stdout
    cfg = json.loads((home / "data/interim/round2/train/run/config.json").read_text())
    name = load_settings(home=home).model_name
    assert cfg["train"]["weights"] == str(home / "models" / name / "package" / "model.pt")   # from the previous model
    card1 = json.loads((home / "data/processed/cvflow/dataset_card.json").read_text())
    card2 = json.loads((home / "data/interim/round2/train/data/dataset_card.json").read_text())
    assert card2["kept_split"] == str(home / "data/processed/cvflow/dataset_card.json")   # round 1's frames keep their side
    for side in ("train", "val"): assert set(card1["groups"][side]) <= set(card2["groups"][side]), (card1["groups"], card2["groups"])
    rows = json.loads((home / "reports/rounds/rounds.json").read_text())
    assert [r["round"] for r in rows] == ["round 1", "round 2"]
    new, old = rows[1]["held-out segm/AP"], rows[1]["previous held-out segm/AP"]
    assert rows[1]["registered"].startswith(name) == (new > old)
    assert (home / "models" / f"{name}-round2" / "package" / "model.json").is_file() == (new > old)
    html = (home / "reports/rounds/rounds.html").read_text()
    assert "<th>round 1</th><th>round 2</th>" in html
    summary = (run / "summary.html").read_text()   # the run's summary page shows the rounds side by side
    assert "Annotation rounds" in summary and "<th>round 1</th><th>round 2</th>" in summary
    assert f"summary: {run / 'summary.html'}" in r.stdout
