"""Benchmark: cvflow's training step vs a bare torchvision loop (same model, batch, data in memory).

cvflow's step (`cvflow.train.train_step` + `to_device`) adds the uint8->float conversion, the finite-loss guard
(a stack of the losses and an isfinite check), GradScaler calls (disabled on CPU), and gradient clipping. The
baseline is the torchvision reference's inner loop without them: `loss = sum(model(images, targets).values());
optimizer.zero_grad(); loss.backward(); optimizer.step()`, on the same float images prepared once.

Steps alternate A/B on two copies of the model, each step starting from the same weights, optimizer state and
seed (so both do identical detection work, and machine load hits both alike); the ratio of median step times is
printed. Goal: ratio <= 1.05. Usage: python bench/train_step.py [--steps 12] [--size 160]
"""
import argparse
import copy
import statistics
import time

import torch

from cvflow.model import build_model
from cvflow.train import TrainConfig, make_optimizer, new_train_state, to_device, train_step


def batch(n: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = size, size * 4 // 3
    images, targets = [], []
    for i in range(n):
        images.append((torch.rand(3, h, w, generator=g) * 255).to(torch.uint8))
        masks = torch.zeros(3, h, w, dtype=torch.uint8)
        boxes = []
        for j in range(3):
            x, y = int(torch.randint(0, w - 40, (1,), generator=g)), int(torch.randint(0, h - 40, (1,), generator=g))
            masks[j, y:y + 30, x:x + 30] = 1
            boxes.append([x, y, x + 30, y + 30])
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor([1, 2, 3]),
                        "masks": masks, "image_id": i})
    return images, targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    torch.manual_seed(0)
    base = build_model("cpu-small", 4, min_size=a.size, max_size=a.size * 4 // 3)
    m_cv, m_tv = base, copy.deepcopy(base)
    cfg = TrainConfig(lr=0.005, warmup_steps=0)
    state = new_train_state(cfg, m_cv, total=a.steps + 2)   # cvflow's optimizer, schedule, scaler (off on CPU)
    opt_cv, opt_tv = state.optimizer, make_optimizer(cfg, m_tv)
    images, targets = batch(a.batch, a.size)
    float_images = [i.float() / 255 for i in images]
    m_cv.train(); m_tv.train()

    def step_cv(s):
        imgs, tgts = to_device(images, targets, "cpu")
        state.step = s
        train_step(state, imgs, tgts)

    def step_tv(s):
        loss = sum(m_tv(float_images, targets).values())
        opt_tv.zero_grad(); loss.backward(); opt_tv.step()

    # every timed step starts both copies from the same weights, optimizer state and RNG seed, so both do the
    # same detection work (same proposals, same sampled RoIs) and only the loop around it differs
    sd0, osd0 = copy.deepcopy(base.state_dict()), copy.deepcopy(opt_cv.state_dict())
    t_cv, t_tv = [], []
    for s in range(a.steps + 2):
        for fn, acc in ((step_cv, t_cv), (step_tv, t_tv)) if s % 2 == 0 else ((step_tv, t_tv), (step_cv, t_cv)):
            m, o = (m_cv, opt_cv) if fn is step_cv else (m_tv, opt_tv)
            m.load_state_dict(sd0); o.load_state_dict(osd0); torch.manual_seed(s)
            t = time.perf_counter(); fn(s); dt = time.perf_counter() - t
            if s >= 2: acc.append(dt)   # 2 warm-up steps each
    mc, mt = statistics.median(t_cv), statistics.median(t_tv)
    print(f"cpu-small, batch {a.batch} x {a.size}px, {a.steps} timed steps each, threads {torch.get_num_threads()}")
    print(f"bare torchvision loop: median {mt:.3f} s/step")
    print(f"cvflow train_step:     median {mc:.3f} s/step")
    print(f"ratio cvflow / torchvision = {mc / mt:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
