"""Benchmark: `make run` on the sample with production cells only (the runner today) vs whole notebooks (the runner
before #16: papermill executed every cell, the notebooks' tests included), same code, same recipe, same machine.

Each mode runs `cvflow run` (pipeline.yaml, the sample) from an empty project home in its own process. The "before"
mode makes the runner execute, in the step's kernel, every code cell above the notebook's `## Run this step` heading
(its parameters' defaults, its exported code and its tests, as `nbdev_test` runs them) and then what a production run
executes: the same cells
the runner executed before tests were dropped from production runs, the tests first. (Executing the whole notebook in
its own order is not possible any more: tests written since reuse parameter names such as `out`, which papermill injects
into the parameters cell at the top, so the step would write to a test's scratch folder.) Printed per mode: wall time, CPU time (user + sys of the run and every kernel it
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
MODES = {"after": "production cells only (the runner today)",
         "before": "the tests too, in the step's kernel (the runner before #16)"}
CHILD = """
import copy, sys
from cvflow import pipeline
if sys.argv[1] == "before":
    production = pipeline.production_cells
    def with_tests(nb, source="notebook"):
        src = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        run = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"
                   and src(c).lstrip().startswith(pipeline.RUN_HEADING))
        above = [copy.deepcopy(c) for c in nb["cells"][:run] if c["cell_type"] == "code"]
        for c in above:   # the notebook's defaults for its tests (nbdev_test's view); papermill injects into the later copy
            c.pop("id", None); c.get("metadata", {}).pop("tags", None)
        return above + production(nb, source)
    pipeline.production_cells = with_tests
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
        done = home / f"bench-{mode}.json"
        if done.is_file():   # a mode finished earlier in this --work folder (same code): its record is reused
            out[mode] = json.loads(done.read_text())
            print(f"{mode}: reused {done}: wall {out[mode]['wall']:.0f} s, CPU {out[mode]['cpu']:.0f} s", flush=True)
            continue
        if home.exists() and any(home.iterdir()):
            raise SystemExit(f"{home} is not empty: give a new --work folder")
        home.mkdir(parents=True, exist_ok=True)
        print(f"{mode}: {MODES[mode]} in {home} ...", flush=True)
        out[mode] = r = run_mode(mode, home, a.extra)
        done.write_text(json.dumps(r))
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
