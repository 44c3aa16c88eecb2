"""Imitator fidelity on held-out random vectors, and its training time.

    .venv/bin/python scripts/bench_imitator.py [--config default|test] [--holdout 500] [--cache-dir DIR]
                                               [--set FIELD=VALUE ...] [--threads N]

``--set`` changes fields of the named configuration (a variant trains into its own weights folder
and reuses the rendered data when it changes no data field).

Held-out vectors use seeds the training set never sees (10**7 + i); their true renders are
rendered once (one process per core) and kept beside the training data, under
``data/<data_key>/bench``. Prints JSON: landmark error vs MediaPipe on the true render (units of
the true inter-ocular distance; goal <= 0.03), part mIoU at the imitator's segmentation size
(goal >= 0.85) in two definitions: ``mean`` (per sample over the classes present in either
map, then averaged over samples: strict, a class of one or two pixels counts as much as the
face) and ``dataset`` (the usual benchmark definition: each class's intersection and union
summed over all samples, then averaged over classes), per-class IoU in both, the same at 32 px
(probabilities and labels averaged down) when the imitator's size is larger, colour MAE, the
training time (from the cache record; the first run trains: data seconds, training seconds,
this process's and its render workers' CPU seconds and the load average) and the imitator's
forward time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCH_SEED = 10 ** 7


def part_iou(pred: np.ndarray, gt: np.ndarray, n_classes: int) -> dict:
    """pred, gt [N,S,S] class maps -> {"mean", "dataset", "per_class" [C] (nan: never present),
    "per_class_dataset" [C]} (definitions in the module docstring)."""
    per = [[] for _ in range(n_classes)]
    means = []
    inter, union = np.zeros(n_classes), np.zeros(n_classes)
    for p, g in zip(pred, gt):
        ious = []
        for c in range(n_classes):
            i, u = np.logical_and(p == c, g == c).sum(), np.logical_or(p == c, g == c).sum()
            inter[c] += i
            union[c] += u
            if u:
                ious.append(i / u)
                per[c].append(i / u)
        means.append(np.mean(ious))
    ds = inter / np.maximum(union, 1)
    return {"mean": float(np.mean(means)), "dataset": float(ds[union > 0].mean()),
            "per_class": [float(np.mean(v)) if v else float("nan") for v in per],
            "per_class_dataset": [float(ds[c]) if union[c] else float("nan") for c in range(n_classes)]}


def _pool(x: np.ndarray, size: int) -> np.ndarray:
    """[N,C,S,S] -> [N,C,size,size] (block mean)."""
    k = x.shape[-1] // size
    return x.reshape(*x.shape[:-2], size, k, size, k).mean((-3, -1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default")
    ap.add_argument("--holdout", type=int, default=500)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from backend.face import landmarks as LM
    from backend.photo import imitator as IM
    from backend.photo.synth import SEG_CLASSES

    t0 = time.time()
    last = [0.0]

    def prog(stage, i, n, losses=None, preview=None):
        if time.time() - last[0] > 30 or i == n:
            last[0] = time.time()
            print(f"[{stage}] {i}/{n} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)

    cfg = IM.CONFIGS[args.config]
    types = {f.name: f.type for f in dataclasses.fields(cfg)}
    over = {k: {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true")}[types[k]](v)
            for k, v in (a.split("=", 1) for a in args.set)}
    cfg = dataclasses.replace(cfg, **over)
    load_before = os.getloadavg()
    net, info = IM.load_imitator(cfg if over else args.config, args.cache_dir, prog)
    load_s = time.time() - t0
    load_after = os.getloadavg()
    cpu = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu_s = {k: round(c.ru_utime + c.ru_stime, 1) for k, c in zip(("self", "workers"), cpu)}
    torch.set_num_threads(1)   # the forward timing: one thread, as the fit runs it

    t1 = time.time()
    hcfg = dataclasses.replace(cfg, samples=args.holdout, holdout=0)
    h = IM.build_data(hcfg, IM.data_dir(cfg, args.cache_dir) / "bench", prog, first=BENCH_SEED)["train"]
    h = {k: v[:args.holdout] for k, v in h.items()}
    render_s = time.time() - t1
    x = torch.as_tensor(h["x"])
    fwd = []
    for i in range(min(50, len(x))):
        tf = time.perf_counter()
        with torch.no_grad():
            net(x[i:i + 1])
        fwd.append(time.perf_counter() - tf)
    with torch.no_grad():
        out = {k: v.numpy() for k, v in net(x).items()}
    true = h["lm"]
    iod = np.linalg.norm(true[:, LM.IRIS_CENTERS[0]] - true[:, LM.IRIS_CENTERS[1]], axis=-1)
    valid = h["lm_valid"] > 0
    lm_err = (np.linalg.norm(out["landmarks"] - true, axis=-1).mean(-1) / np.maximum(iod, 1e-6))[valid]
    cv = h["colors_valid"] > 0
    col_err = [float(np.abs(out["colors"][i] - h["colors"][i])[cv[i]].mean()) for i in range(len(x)) if cv[i].any()]

    def seg_figures(size: int) -> dict:
        gt = IM.pool_labels(h["seg"], size).argmax(-1)
        probs = torch.softmax(torch.as_tensor(out["seg"]), 1).numpy()
        r = part_iou(_pool(probs, size).argmax(1), gt, len(SEG_CLASSES))
        share = np.bincount(gt.ravel(), minlength=len(SEG_CLASSES)) / gt.size
        return {"mean": round(r["mean"], 4), "dataset": round(r["dataset"], 4), "goal": 0.85, "size": size,
                "per_class": {k: None if np.isnan(v) else round(v, 4) for k, v in zip(SEG_CLASSES, r["per_class"])},
                "per_class_dataset": {k: None if np.isnan(v) else round(v, 4)
                                      for k, v in zip(SEG_CLASSES, r["per_class_dataset"])},
                "gt_pixel_share": {k: round(float(v), 5) for k, v in zip(SEG_CLASSES, share)}}

    res = {
        "config": args.config, "overrides": over, "holdout": args.holdout, "imitator_key": info["key"],
        "data_key": IM.data_key(cfg),
        "training": {k: info.get(k) for k in ("data_seconds", "train_seconds", "trained_seconds", "samples")},
        "load_or_train_seconds_this_run": round(load_s, 1),
        "cpu_seconds_load_or_train": cpu_s, "cpu_count": os.cpu_count(),
        "loadavg_before_after_load_or_train": [round(v, 2) for v in load_before + load_after],
        "landmark_error_iod": {"mean": round(float(np.mean(lm_err)), 4), "median": round(float(np.median(lm_err)), 4),
                               "p90": round(float(np.percentile(lm_err, 90)), 4), "n": int(valid.sum()),
                               "goal": 0.03},
        "part_miou": seg_figures(cfg.seg_size),
        "color_mae": round(float(np.mean(col_err)), 4) if col_err else None,
        "rgb_psnr": None,
        "rgb_note": "no RGB head: the fit compares landmarks, parts and region colours",
        "forward_ms": round(1000 * float(np.median(fwd)), 3), "holdout_render_seconds": round(render_s, 1),
        "torch_threads": torch.get_num_threads(),
    }
    if cfg.seg_size > 32:
        res["part_miou_at_32"] = seg_figures(32)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
