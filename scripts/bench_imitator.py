"""Imitator fidelity on held-out random vectors, and its training time.

    .venv/bin/python scripts/bench_imitator.py [--config default|test] [--holdout 500] [--cache-dir DIR]

Held-out vectors use seeds the training set never sees. Prints JSON: landmark error vs
MediaPipe on the true render (units of the true inter-ocular distance; goal <= 0.03), part
mIoU at the imitator's segmentation size (goal >= 0.85; classes present in either map,
averaged per sample), per-class IoU, colour MAE, the training time (from the cache record; the
first run trains) and the imitator's forward time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default")
    ap.add_argument("--holdout", type=int, default=500)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from backend.face import landmarks as LM
    from backend.photo import imitator as IM
    from backend.photo.synth import SEG_CLASSES

    t0 = time.time()
    last = [0.0]

    def prog(stage, i, n, losses=None, preview=None):
        if time.time() - last[0] > 30 or i == n:
            last[0] = time.time()
            print(f"[{stage}] {i}/{n}", file=sys.stderr, flush=True)

    net, info = IM.load_imitator(args.config, args.cache_dir, prog)
    load_s = time.time() - t0
    cfg = IM.CONFIGS[args.config]
    lm_err, mious, col_err, fwd = [], [], [], []
    per_class = {c: [] for c in SEG_CLASSES}
    t1 = time.time()
    for i in range(args.holdout):
        d = IM.make_sample(10 ** 7 + i, cfg)
        x = torch.as_tensor(d["x"])[None]
        tf = time.perf_counter()
        with torch.no_grad():
            out = net(x)
        fwd.append(time.perf_counter() - tf)
        if d["lm_valid"] > 0:
            true = d["lm"]
            iod = np.linalg.norm(true[LM.IRIS_CENTERS[0]] - true[LM.IRIS_CENTERS[1]])
            lm_err.append(float(np.linalg.norm(out["landmarks"][0].numpy() - true, axis=1).mean() / iod))
        pred = out["seg"][0].argmax(0).numpy()
        gt = d["seg"].astype(np.float32).argmax(-1)
        ious = []
        for c, name in enumerate(SEG_CLASSES):
            u = np.logical_or(pred == c, gt == c).sum()
            if u:
                v = float(np.logical_and(pred == c, gt == c).sum() / u)
                ious.append(v)
                per_class[name].append(v)
        mious.append(float(np.mean(ious)))
        cv = d["colors_valid"] > 0
        if cv.any():
            col_err.append(float(np.abs(out["colors"][0].numpy() - d["colors"])[cv].mean()))
        if (i + 1) % 50 == 0:
            print(f"[holdout] {i + 1}/{args.holdout}", file=sys.stderr, flush=True)
    res = {
        "config": args.config, "holdout": args.holdout, "imitator_key": info["key"],
        "training": {k: info.get(k) for k in ("data_seconds", "train_seconds", "trained_seconds", "samples")},
        "load_or_train_seconds_this_run": round(load_s, 1),
        "landmark_error_iod": {"mean": round(float(np.mean(lm_err)), 4), "median": round(float(np.median(lm_err)), 4),
                               "p90": round(float(np.percentile(lm_err, 90)), 4), "n": len(lm_err),
                               "goal": 0.03},
        "part_miou": {"mean": round(float(np.mean(mious)), 4), "goal": 0.85,
                      "per_class": {k: round(float(np.mean(v)), 4) if v else None for k, v in per_class.items()},
                      "size": cfg.seg_size},
        "color_mae": round(float(np.mean(col_err)), 4) if col_err else None,
        "rgb_psnr": None,
        "rgb_note": "no RGB head: the fit compares landmarks, parts and region colours",
        "forward_ms": round(1000 * float(np.median(fwd)), 3), "holdout_seconds": round(time.time() - t1, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
