"""Benchmark: `make run` on the sample with production cells only (the runner today) vs whole notebooks (the runner
before #16: papermill executed every cell, the notebooks' tests included), same code, same recipe, same machine.

Each mode runs `cvflow run` (pipeline.yaml, the sample) from an empty project home in its own process; the "before"
mode swaps `cvflow.pipeline.production_cells` for "every cell", which is exactly what the runner did before tests were
dropped from production runs. Printed per mode: wall time, CPU time (user + sys of the run and every kernel it
started: less sensitive to other load on the machine than wall time), per-step wall time from the run manifest, and
the held-out figures the train step recorded (the same training either way: the AP must match to the digit).

Usage: .venv/bin/python bench/make_run.py [--work DIR] [--order after,before] [-- extra cvflow run arguments]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {"after": "production cells only (the runner today)", "before": "every cell, tests included (the runner before #16)"}
CHILD = """
import sys
from cvflow import pipeline
if sys.argv[1] == "before":
    pipeline.production_cells = lambda nb, source="notebook": nb["cells"]
sys.exit(pipeline.main(sys.argv[2:]))
"""


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_mode(mode: str, home: Path, extra: list[str]) -> dict:
    env = {**os.environ, "CVFLOW_HOME": str(home), "MPLBACKEND": "Agg"}
    cpu0, t0 = children_cpu(), time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, mode, *extra], cwd=REPO, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    (home / f"bench-{mode}.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"{mode}: cvflow run exited {p.returncode}; log: {home / f'bench-{mode}.log'}\n{p.stderr[-3000:]}")
    manifest = json.loads(sorted((home / "reports" / "runs").glob("*/manifest.json"))[-1].read_text())
    train = json.loads((home / "reports" / "results" / "train.json").read_text())
    return {"wall": wall, "cpu": cpu, "manifest": manifest, "train": train.get("results", train)}


def step_seconds(manifest: dict) -> dict[str, float]:
    "step name -> its wall seconds, from the run manifest."
    out = {}
    for s in manifest.get("steps", []):
        secs = s.get("seconds", s.get("duration_s"))
        if secs is not None:
            out[s["name"]] = float(secs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="folder for the two project homes (default: a temporary one)")
    ap.add_argument("--order", default="after,before", help="modes in the order they run (default after,before)")
    ap.add_argument("extra", nargs="*", help="arguments passed on to cvflow run (after --)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cvflow-makerun-")).resolve()
    order = [m.strip() for m in a.order.split(",")]
    if set(order) != set(MODES):
        ap.error(f"--order must name both modes {sorted(MODES)}, got {a.order!r}")
    out = {}
    for mode in order:
        home = work / mode
        if home.exists() and any(home.iterdir()):
            raise SystemExit(f"{home} is not empty: give a new --work folder")
        home.mkdir(parents=True, exist_ok=True)
        print(f"{mode}: {MODES[mode]} in {home} ...", flush=True)
        out[mode] = r = run_mode(mode, home, a.extra)
        print(f"{mode}: wall {r['wall']:.0f} s, CPU {r['cpu']:.0f} s", flush=True)
    steps = sorted({k for r in out.values() for k in step_seconds(r["manifest"])},
                   key=lambda k: [s["name"] for s in out["after"]["manifest"]["steps"]].index(k)
                   if k in step_seconds(out["after"]["manifest"]) else 99)
    print(f"\n{'step':>14} | {'before s':>9} | {'after s':>8}")
    for k in steps:
        b, f = step_seconds(out["before"]["manifest"]).get(k), step_seconds(out["after"]["manifest"]).get(k)
        print(f"{k:>14} | {b if b is None else round(b):>9} | {f if f is None else round(f):>8}")
    b, f = out["before"], out["after"]
    print(f"\nwhole run: wall {b['wall']:.0f} s -> {f['wall']:.0f} s ({b['wall'] / f['wall']:.2f}x, "
          f"{b['wall'] - f['wall']:.0f} s less); CPU {b['cpu']:.0f} s -> {f['cpu']:.0f} s ({b['cpu'] / f['cpu']:.2f}x, "
          f"{b['cpu'] - f['cpu']:.0f} s less)")
    keys = [k for k in f["train"] if "held-out" in k]
    for k in keys:
        print(f"{k}: before {b['train'].get(k)}  after {f['train'].get(k)}" + ("" if b["train"].get(k) == f["train"].get(k)
                                                                               else "  (DIFFERENT)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
