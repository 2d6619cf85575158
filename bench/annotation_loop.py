"""Benchmark: the annotation loop on the synthetic sample — pre-annotation work, and what model-chosen frames buy.

One run, the pipeline's own recipe (`pipeline.yaml`: sample, frame candidates, split, training parameters) at a
smaller budget:

1. round 1: `--r1-frames` frames chosen by content alone (01's `choose_frames` over the candidates), annotated by the
   ground truth (02's simulated annotator), a model trained from scratch for `--r1-steps` steps and packaged (07);
2. the round-1 model scores every candidate frame (and its mirror image);
3. round 2, twice with the same budget (`--r2-frames`) and seed, frames already annotated excluded:
   **model-chosen** (09b's ranking: uncertainty and the model's known error on round 1's frames, × content
   diversity) and **content-chosen** (09b's ranking without
   the model = 01's content score, diversity and duplicate rules). Each arm's frames are pre-annotated by the round-1
   model, corrected by the simulated annotator (ground truth), read back (kept / edited / deleted / added), merged
   with round 1's annotations, split keeping every scene on the side round 1's split gave it (04's `keep_split`, as
   `cvflow run --round` does) and trained from the round-1 weights for `--r2-steps` steps;
4. every model is scored on the held-out frames (scenes never seen in training) the `sample` step renders.

Prints (a) the annotator's work per frame with pre-annotation vs drawing from scratch (vertices placed or moved,
regions added or deleted, classes changed; goal <= 0.3) over all round-2 frames of both arms, with the model's own
masks and with them redrawn by a mask refiner (06e) trained on round 1's annotations (`--refiner-steps`, in
`--refiner-passes`; 1-4 passes are also measured), and (b) the
held-out mask AP gain of round 2 over round 1, model-chosen vs content-chosen (goal >= 1.2x), each arm's round 2
trained with `--seeds` seeds (the same seeds in both arms) and the gains averaged; a control arm trains round 1's
frames alone for the same steps and seeds, separating what the frames add from what the extra training does.

It also prints how well each of the model's uncertainty terms predicts its true error on every candidate (Spearman's rho
against the annotator's work to correct the model's own predictions, from the ground truth), and trains an **oracle**
arm (`--no-oracle` skips it): round 2's frames ranked as the model-chosen arm ranks them but with that true error in
place of the model's uncertainty, something no model can know. Its gain is what frames where the model is truly wrong
add under the same content rules, budget and training: what a better estimate of the model's errors could reach.

Usage: .venv/bin/python bench/annotation_loop.py [--every-seconds S] [--r1-frames N] [--r2-frames N] [--r1-steps N] [--r2-steps N]
       [--refiner-steps N] [--refiner-passes N] [--seeds K] [--no-control] [--no-oracle] [--oracle-weight W] [--model-weight W] [--no-novelty] [--no-known-error]
       [--work DIR] [--pipeline pipeline.yaml]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SWEEP = (0.3, 0.5, 0.7, 0.9)   # pre-annotation thresholds whose correction work is also measured


def step_params(pipeline: dict, name: str) -> dict:
    return next(s for s in pipeline["steps"] if s["name"] == name).get("parameters", {})


def train_round(home: Path, tag: str, via_files: list, images: Path, dataset_p: dict, train_p: dict, steps: int,
                heldout: Path, weights: Path | None = None, keep_split: Path | None = None) -> dict:
    "09b's `train_round` (merge, leak-free split keeping round 1's sides, the train step's recipe, held-out scores), timed."
    from cvflow import sample
    from cvflow.annotation_loop import train_round as round_model
    t = time.time()
    row = round_model(via_files, images, home / tag, train_p, steps, heldout, weights, dataset_p, list(sample.CLASSES), tag,
                      keep_split)
    return {**row, "train s": round(time.time() - t)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default=str(REPO / "pipeline.yaml"))
    ap.add_argument("--every-seconds", type=float, default=0.4, help="one candidate frame per S seconds (default 0.4; "
                    "the frame step's own is 0.2: twice the candidates to score)")
    ap.add_argument("--r1-frames", type=int, default=16, help="round 1: frames chosen by content (default 16)")
    ap.add_argument("--r2-frames", type=int, default=16, help="round 2: frames added in each arm (default 16)")
    ap.add_argument("--r1-steps", type=int, help="round 1: training steps from scratch (default: pipeline.yaml's train "
                    "max_steps, as the pipeline's own round 1 trains)")
    ap.add_argument("--r2-steps", type=int, default=200, help="round 2: training steps from the round-1 weights (default 200; "
                    "`cvflow run --round` trains pipeline.yaml's max_steps, 700: too long for 15 trainings here)")
    ap.add_argument("--refiner-steps", type=int, default=1000, help="mask refiner training steps on round 1's annotations (default 1000; 0: none)")
    ap.add_argument("--refiner-passes", type=int, help="refinements of each mask (default: 06e's REFINER_PASSES); passes 1-4 are also measured")
    ap.add_argument("--model-weight", type=float, help="model-chosen arm: weight of the model's term against content "
                    "(09b's `rank_candidates`; default 09b's MODEL_WEIGHT, as `cvflow frames --model`)")
    ap.add_argument("--no-novelty", action="store_true", help="model-chosen arm without the model-feature novelty signal")
    ap.add_argument("--no-known-error", action="store_true", help="model-chosen arm without the known error (the round-1 "
                    "model's correction work on round 1's annotated frames, carried to the candidates that look alike)")
    ap.add_argument("--seeds", type=int, default=5, help="round-2 trainings per arm, seeds 0..K-1 (default 5)")
    ap.add_argument("--no-control", action="store_true", help="skip the control arm (round 1's frames alone, trained "
                    "on for the same round-2 steps and seeds: the part of the gain that is the extra training, not the frames)")
    ap.add_argument("--no-oracle", action="store_true", help="skip the oracle arm (frames ranked by the round-1 model's true "
                    "correction work, from the ground truth, in place of its uncertainty)")
    ap.add_argument("--oracle-weight", type=float, help="oracle arm: weight of the true error against content (default: "
                    "--model-weight, the model-chosen arm's)")
    ap.add_argument("--heldout-images", type=int, default=40, help="held-out frames (default 40; the sample step renders 80)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cvflow-loop-")).resolve()
    os.environ["CVFLOW_HOME"] = str(work)
    import numpy as np
    import torch
    from cvflow import sample
    from cvflow.annotation_loop import (MODEL_WEIGHT, annotation_targets, correction_work, known_error,
                                        candidate_frames, choose_by_rank, compare_projects, empty_like, manifest_row,
                                        embedding_novelty, frame_embeddings, predict_frames, prelabel_project,
                                        percentile_ranks, rank_candidates, refine_predictions,
                                        simulate_corrections, truth_targets, PRELABEL_THRESHOLD)
    from cvflow.mask_refinement import REFINER_PASSES, load_mask_refiner, save_mask_refiner, train_mask_refiner
    from cvflow.annotations import simulate_annotator
    from cvflow.files import frame_filename
    from cvflow.frames import FrameOptions, write_manifest
    from cvflow.package import export_package, load_package

    def corrected(project, truth):
        "The read-back of `project` corrected by the simulated annotator against `truth` (kept / edited / deleted / added)."
        return compare_projects(project, simulate_corrections(project, truth))

    pl = yaml.safe_load(Path(a.pipeline).read_text())
    sample_p, frames_p = step_params(pl, "sample"), step_params(pl, "frames")
    dataset_p, train_p = step_params(pl, "dataset"), dict(step_params(pl, "train"))
    a.r1_steps = a.r1_steps or int(train_p.get("max_steps", 700))
    a.refiner_passes = a.refiner_passes or REFINER_PASSES
    a.model_weight = MODEL_WEIGHT if a.model_weight is None else a.model_weight
    n_held = a.heldout_images
    video = sample.ensure_sample(work / "raw", seconds=sample_p["seconds"], fps=sample_p["fps"], width=sample_p["width"],
                                 height=sample_p["height"], seed=sample_p["seed"], progress=False)
    gt = work / "raw" / "ground_truth.json"
    heldout = work / "heldout"
    if not (heldout / "instances.json").is_file():
        sample.make_heldout_images(heldout, n_held, sample_p["seed"], sample_p["width"], sample_p["height"])
    print(f"work folder {work}; torch threads {torch.get_num_threads()}; held-out: {n_held} frames; round 1: "
          f"{a.r1_frames} frames, {a.r1_steps} steps; round 2: +{a.r2_frames} frames, {a.r2_steps} steps from round 1", flush=True)

    # the frame step's candidates (its options), every one saved with a manifest so the split can group by scene
    cdir = work / "candidates" / "frames"
    cands = candidate_frames(video, cdir, FrameOptions(every_seconds=a.every_seconds, min_gap=frames_p.get("min_gap", 0.0)))
    write_manifest([manifest_row(c, "candidate") for c in cands], work / "candidates" / "frames.csv")   # 04 groups by scene
    names = [frame_filename(c.video, c.frame_index) for c in cands]
    print(f"{len(cands)} candidate frames in {len({c.scene for c in cands})} scenes", flush=True)

    # round 1: content-chosen frames, annotated from scratch
    r1 = choose_by_rank(cands, rank_candidates(cands), a.r1_frames)
    r1_names = [frame_filename(c.video, c.frame_index) for c, _ in r1]
    simulate_annotator(gt, [cdir / n for n in r1_names], work / "r1" / "via_annotated.json")
    r1_row = work / "r1" / "row.json"   # a finished round 1 of the same settings is reused (`--work` again: round 2 only)
    r1_key = {"frames": a.r1_frames, "steps": a.r1_steps, "every_seconds": a.every_seconds, "heldout": n_held}
    old = json.loads(r1_row.read_text()) if r1_row.is_file() else {}
    if old.get("key") == r1_key and (work / "r1" / "package" / "model.json").is_file():
        rows, pkg = [old["row"]], work / "r1" / "package"
        print("round 1 reused from " + str(work / "r1"), flush=True)
    else:
        rows = [train_round(work, "r1", [work / "r1" / "via_annotated.json"], cdir, dataset_p, train_p, a.r1_steps,
                            heldout / "instances.json")]
        pkg = export_package(work / "r1" / "run", work / "r1" / "package", name="round1", quiet=True)
        r1_row.write_text(json.dumps({"key": r1_key, "row": rows[-1]}))
    print(json.dumps(rows[-1]), flush=True)

    refiner = None
    ref_file = work / "r1" / "mask_refiner.pt"
    if a.refiner_steps > 0:   # 06e's refiner, learnt from round 1's annotations alone (reused with round 1 at the same steps)
        refiner = load_mask_refiner(ref_file) if ref_file.is_file() else None
        if refiner is None or refiner.training_info.steps != a.refiner_steps or old.get("key") != r1_key:
            refiner, info = train_mask_refiner(work / "r1" / "via_annotated.json", cdir, steps=a.refiner_steps, progress=False)
            save_mask_refiner(refiner, ref_file)
        info = refiner.training_info
        print(f"mask refiner: {info.instances} outlines of {info.images} frames, {info.steps} steps in {info.seconds:.0f} s; "
              f"held-out mask IoU {info.val_iou_coarse} -> {info.val_iou_refined}" + ("" if info.helps else ": no better, not used"), flush=True)
        if not info.helps: refiner = None   # as 09b's rounds do

    # the round-1 model on every candidate, and on its mirror image
    predictor = load_package(pkg, device="cpu")
    t = time.time()
    preds, mirrored = predict_frames(predictor, [cdir / n for n in names], flip=True)
    print(f"round-1 model scored {len(names)} candidates and their mirror images in {time.time() - t:.0f} s", flush=True)

    done = set(r1_names)
    hashes = [c.hash for c in cands if frame_filename(c.video, c.frame_index) in done]
    emb = None if a.no_novelty else frame_embeddings(predictor, [cdir / n for n in names])
    novelty = None if emb is None else embedding_novelty(emb, emb[[n in done for n in names]])
    known = None
    if not a.no_known_error:   # as `active_frames`: the round-1 model corrected into round 1's annotations, carried by image hash
        r1_work = correction_work(preds, [cdir / n for n in r1_names], annotation_targets(work / "r1" / "via_annotated.json"),
                                  predictor.classes)
        known = known_error([c.hash for c in cands], hashes, [r1_work[frame_filename(c.video, c.frame_index)] for c in cands
                                                              if frame_filename(c.video, c.frame_index) in done])
        print(f"the round-1 model's known error: {np.mean(list(r1_work.values())):.1f} actions per frame on round 1's "
              f"{len(r1_work)} annotated frames", flush=True)
    arms = {"model-chosen": rank_candidates(cands, preds, mirrored, done, hashes, a.model_weight, novelty, known),
            "content-chosen": rank_candidates(cands, None, None, done, hashes)}

    # the model's true error on every candidate: the annotator's work to correct its own predictions (ground truth)
    from scipy.stats import spearmanr
    truth_all = truth_targets(simulate_annotator(gt, [cdir / n for n in names], work / "candidates" / "via_truth.json"))
    true_work = []
    for n in names:
        pj = prelabel_project({n: preds[n]}, [cdir / n], predictor.classes, None, PRELABEL_THRESHOLD)
        true_work.append(corrected(pj, {n: truth_all.get(n, [])}).work)
    true_work = np.asarray(true_work, float)
    todo = np.array([n not in done for n in names])
    rho = {k: spearmanr([getattr(r, k) for r, t in zip(arms["model-chosen"], todo) if t], true_work[todo])[0]
           for k in ("margin", "flip", "tracks", "novelty", "known_error", "content", "priority")}
    print(f"the round-1 model's true error on the {todo.sum()} candidates not annotated: {true_work[todo].mean():.1f} actions "
          f"per frame to correct; Spearman's rho of each ranking term against it: " +
          ", ".join(f"{k} {v:+.2f}" for k, v in rho.items()), flush=True)
    if not a.no_oracle:   # the model-chosen ranking with the true error in place of the model's uncertainty
        oracle = rank_candidates(cands, None, None, done, hashes)
        oracle_w = a.model_weight if a.oracle_weight is None else a.oracle_weight
        mix = oracle_w * percentile_ranks(true_work) + (1 - oracle_w) * percentile_ranks([c.score for c in cands])
        for r, m in zip(oracle, mix):
            if r.priority >= 0:   # scaled down near annotated frames as `rank_candidates` scales every priority
                r.priority = round(float(m * np.clip(r.annotated_distance / 0.25, 0, 1)), 6)
        arms["oracle-chosen"] = oracle

    work_rows, sweep, unrefined, picked, passes, arm_work = {}, {}, {}, {}, {}, {}
    for arm, ranks in arms.items():
        scored = arm != "oracle-chosen"   # (a) is measured over the two arms a user can run
        chosen = [frame_filename(c.video, c.frame_index) for c, _ in choose_by_rank(cands, ranks, a.r2_frames)]
        assert not set(chosen) & done, "a frame already annotated was proposed again"
        picked[arm] = set(chosen)
        arm_work[arm] = float(np.mean([true_work[names.index(n)] for n in chosen]))
        d = work / f"r2-{arm}"
        for old_run in work.glob(f"r2-{arm}*"): shutil.rmtree(old_run)   # a rerun in the same --work starts round 2 afresh
        paths = [cdir / n for n in chosen]
        truth_proj = simulate_annotator(gt, paths, d / "via_truth.json")
        truth = truth_targets(truth_proj)
        own = prelabel_project({n: preds[n] for n in chosen}, paths, predictor.classes, None, PRELABEL_THRESHOLD)
        if scored: unrefined[arm] = corrected(own, truth)
        refined = {k: refine_predictions(refiner, {n: preds[n] for n in chosen}, paths, 0.0, k)
                   for k in sorted({1, 2, 3, 4, a.refiner_passes} if scored else {a.refiner_passes})} if refiner else {}
        for k in (1, 2, 3, 4) if refiner and scored else ():   # the same predictions refined in 1-4 passes, corrected the same way
            pj = prelabel_project(refined[k], paths, predictor.classes, None, PRELABEL_THRESHOLD)
            passes.setdefault(k, []).append(corrected(pj, truth).work)
        arm_preds = refined[a.refiner_passes] if refiner else {n: preds[n] for n in chosen}
        pre = prelabel_project(arm_preds, paths, predictor.classes, d / "via_project.json", PRELABEL_THRESHOLD)
        simulate_corrections(pre, truth, d / "via_annotated.json")
        corr = compare_projects(d / "via_project.json", d / "via_annotated.json")
        scratch = corrected(empty_like(truth_proj), truth)
        if scored: work_rows[arm] = (corr, scratch)
        for thr in SWEEP if scored else ():   # the same predictions pre-annotated down to other scores, corrected the same way
            pj = prelabel_project(arm_preds, paths, predictor.classes, None, thr)
            sweep.setdefault(thr, []).append(corrected(pj, truth).work)
        print(f"{arm}: {len(chosen)} frames (the round-1 model's true error on them: {arm_work[arm]:.1f} actions per frame); "
              f"pre-annotated, corrected: {corr}", flush=True)
        print(f"{arm}: from scratch: {scratch}", flush=True)
        for seed in range(a.seeds):
            rows.append(train_round(work, f"r2-{arm}" + (f"-seed{seed}" if seed else ""),
                                    [work / "r1" / "via_annotated.json", d / "via_annotated.json"], cdir, dataset_p,
                                    {**train_p, "seed": seed}, a.r2_steps, heldout / "instances.json",
                                    weights=work / "r1" / "run" / "model.pt", keep_split=work / "r1" / "data"))
            print(json.dumps(rows[-1]), flush=True)

    if not a.no_control:   # the same round-2 training without new frames: what the extra steps alone buy
        for old_run in work.glob("r2-no-new-frames*"): shutil.rmtree(old_run)
        for seed in range(a.seeds):
            rows.append(train_round(work, "r2-no-new-frames" + (f"-seed{seed}" if seed else ""), [work / "r1" / "via_annotated.json"],
                                    cdir, dataset_p, {**train_p, "seed": seed}, a.r2_steps, heldout / "instances.json",
                                    weights=work / "r1" / "run" / "model.pt", keep_split=work / "r1" / "data"))
            print(json.dumps(rows[-1]), flush=True)

    print("\n" + " | ".join(f"{k:>16}" for k in rows[0]))
    for r in rows: print(" | ".join(f"{str(v):>16}" for v in r.values()))
    pre_work = sum(c.work for c, _ in work_rows.values()); scratch_work = sum(s.work for _, s in work_rows.values())
    n_frames = sum(c.frames for c, _ in work_rows.values())
    print(f"\n(a) annotator work per frame, round 2 ({n_frames} frames, both arms): pre-annotated {pre_work / n_frames:.2f} "
          f"actions vs from scratch {scratch_work / n_frames:.2f}: ratio {pre_work / max(scratch_work, 1):.3f} (goal <= 0.3)")
    for arm, (c, s) in work_rows.items():
        cc, sc = c.counts(), s.counts()
        print(f"    {arm}: kept {cc['kept']}, edited {cc['edited']} ({cc['relabelled']} re-classed), deleted {cc['deleted']}, "
              f"added {cc['added']}, vertices {cc['vertices']} | from scratch: added {sc['added']}, vertices {sc['vertices']}")
    own_work = sum(c.work for c in unrefined.values())
    print(f"    the model's own masks, not refined: ratio {own_work / max(scratch_work, 1):.3f} (kept "
          f"{sum(c.count('kept') for c in unrefined.values())} of {sum(len(c.changes) for c in unrefined.values())} regions); "
          f"redrawn by the mask refiner in {a.refiner_passes} passes: {pre_work / max(scratch_work, 1):.3f} (kept {sum(c.count('kept') for c, _ in work_rows.values())})"
          if refiner else "    no mask refiner (--refiner-steps 0)")
    if passes: print("    refiner passes (work / from scratch): " + ", ".join(f"{k}: {sum(w) / max(scratch_work, 1):.3f}" for k, w in passes.items()))
    print("    pre-annotation threshold sweep (work / from scratch): " + ", ".join(
        f"score >= {t}: {sum(w) / max(scratch_work, 1):.3f}" for t, w in sweep.items()))
    print(f"    frames chosen by both arms: {len(picked['model-chosen'] & picked['content-chosen'])} of {a.r2_frames}")
    ap1 = rows[0]["held-out segm/AP"]
    gains = {arm: np.array([r["held-out segm/AP"] - ap1 for r in rows[1:] if r["round"].startswith(f"r2-{arm}")])
             for arm in ("model-chosen", "content-chosen", "no-new-frames", "oracle-chosen")}
    gm, gc = gains["model-chosen"].mean(), gains["content-chosen"].mean()
    ratio = f"{gm / gc:.2f}x" if gc > 0 else "undefined (content-chosen gain <= 0)"
    per_seed = ", ".join(f"seed {k}: {m:+.4f} vs {c:+.4f}" for k, (m, c) in enumerate(zip(gains["model-chosen"], gains["content-chosen"])))
    print(f"(b) held-out segm AP after round 1 {ap1:.4f}; round-2 gain (mean of {a.seeds} seeds) model-chosen {gm:+.4f} "
          f"(sd {gains['model-chosen'].std(ddof=1) if a.seeds > 1 else 0:.4f}), content-chosen {gc:+.4f} "
          f"(sd {gains['content-chosen'].std(ddof=1) if a.seeds > 1 else 0:.4f}): ratio {ratio} (goal >= 1.2x); {per_seed}")
    if len(gains["no-new-frames"]):
        g0 = gains["no-new-frames"].mean()
        fr = f"{(gm - g0) / (gc - g0):.2f}x" if gc > g0 else "undefined (content-chosen frames add nothing)"
        print(f"    control, round 1's frames alone trained on for the same steps and seeds: {g0:+.4f} (sd "
              f"{gains['no-new-frames'].std(ddof=1) if a.seeds > 1 else 0:.4f}); so the frames themselves add {gm - g0:+.4f} "
              f"(model-chosen) vs {gc - g0:+.4f} (content-chosen): {fr}")
    if len(gains["oracle-chosen"]):
        go = gains["oracle-chosen"]
        print(f"    oracle, ranked by the round-1 model's true error in place of its uncertainty (weight {oracle_w} against content; "
              f"ground truth no model has; true "
              f"error of the frames chosen: oracle {arm_work['oracle-chosen']:.1f}, model {arm_work['model-chosen']:.1f}, content "
              f"{arm_work['content-chosen']:.1f} actions per frame): {go.mean():+.4f} (sd {go.std(ddof=1) if a.seeds > 1 else 0:.4f}), "
              + (f"{go.mean() / gc:.2f}x content-chosen's gain" if gc > 0 else "content-chosen gain <= 0")
              + f"; frames shared with model-chosen {len(picked['oracle-chosen'] & picked['model-chosen'])}, "
              f"with content-chosen {len(picked['oracle-chosen'] & picked['content-chosen'])} of {a.r2_frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
