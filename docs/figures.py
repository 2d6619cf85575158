"""Render the README's figure: frames of the synthetic sample `make run` starts from, with their ground truth.

    .venv/bin/python docs/figures.py [--sample DIR] [--out docs/_static/sample_frames.png]

Uses the sample of a `make run` (`data/raw/sample`, production parameters) when it exists; otherwise makes one
with the same parameters in a temporary folder. The sample is deterministic (seed 0), so the figure is too.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from cvflow.config import get_paths
from cvflow.files import atomic_path  # noqa: E402
from cvflow.sample import load_ground_truth, make_sample  # noqa: E402

COLOURS = {"disc": "tab:red", "square": "tab:blue", "triangle": "tab:green"}


def sample_figure(sample_dir: Path, out: Path, n: int = 4) -> Path:
    "One frame from each of the first `n` scenes of the sample in `sample_dir`, ground-truth polygons on top."
    gt = load_ground_truth(sample_dir / "ground_truth.json")
    starts = list(gt["scene_starts"])[:n]
    ends = [*starts[1:], gt["n_frames"]]
    picks = {(s + e) // 2 for s, e in zip(starts, ends)}
    frames = {}
    with av.open(str(sample_dir / gt["video"])) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i in picks:
                frames[i] = f.to_ndarray(format="rgb24")
            if len(frames) == len(picks):
                break
    fig, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 2.6))
    for ax, (i, img) in zip(np.atleast_1d(axes), sorted(frames.items())):
        ax.imshow(img)
        objs = gt["frames"][i]["objects"]
        for o in objs:
            for poly in o["polygons"]:
                ax.add_patch(Polygon(np.reshape(poly, (-1, 2)), fill=False, lw=1.6, ec=COLOURS.get(o["class"], "k")))
        ax.set_title(f"t = {gt['frames'][i]['time']:.1f} s · {len(objs)} objects", fontsize=10)
        ax.axis("off")
    fig.suptitle("the synthetic sample with its exact ground truth (disc, square, triangle)", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=Path, default=get_paths().raw / "sample")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "_static" / "sample_frames.png")
    a = ap.parse_args(argv)
    if (a.sample / "ground_truth.json").exists():
        print(sample_figure(a.sample, a.out))
        return 0
    with tempfile.TemporaryDirectory() as tmp:  # the parameters of pipeline.yaml's `sample` step
        make_sample(tmp, seconds=40.0, fps=15, width=640, height=360, seed=0)
        print(sample_figure(Path(tmp), a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
