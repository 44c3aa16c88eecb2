"""Capture accuracy of expression-from-video on the engine's own renders with known tracks,
and plausibility on a real photo.

    .venv/bin/python scripts/bench_capture.py [--regressor full|test] [--clips 4] [--frames 60]

Renders ``clips`` clips of ``frames`` frames (>= 200 frames in all by default), each on a
random sample avatar (seeds the regressor never saw) under random lights and
background, with a smooth random expression track (overlapping events
of one or two blendshapes or a Left/Right pair, and blinks) and a slow head turn; encodes each
as a video with PyAV, decodes it again and captures it with the face mesh in tracking
mode three times: as a user would by default ("auto": calibrated against the clip's own
neutral estimates, :func:`backend.expression.capture.predict_auto`), with the plain model
("plain", ``auto_calibrate=False``), and calibrated with the clip's opening neutral frame
marked ("cal", ``neutral_frame=0``). Prints per-blendshape weight MAE (goal <= 0.15 for
jawOpen, blinks, smiles, brows) and correlation for each, the MAE of always answering 0,
temporal jitter (mean |second difference| of the captured weights, against the true
track's), head-rotation error, and the captured weights on
``skimage.data.astronaut()`` (a real photo: mouth closed, eyes open).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NEUTRAL_LEAD = 4
GOAL_NAMES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "browInnerUp",
              "browDownLeft", "browDownRight")


def smooth_track(rng, n: int, names: list[str]) -> np.ndarray:
    """[n,K] a smooth random track: expression events (one or two blendshapes, or a Left/Right
    pair, rising and falling over 0.5-1.5 s, overlapping), plus blinks every 1-3 s."""
    from shared.arkit import mirror

    t = np.arange(n, dtype=np.float64)
    W = np.zeros((n, len(names)))

    def pulse(k, c, half, a):
        W[:, k] = np.maximum(W[:, k], np.where(np.abs(t - c) < half,
                                               a * (0.5 + 0.5 * np.cos(np.pi * (t - c) / half)), 0.0))

    other = [k for k, nm in enumerate(names) if not nm.startswith("eyeBlink")]
    c = rng.uniform(0, 8)
    while c < n:
        half, a = rng.uniform(6, 18), rng.uniform(0.4, 1.0)
        for k in rng.choice(other, size=int(rng.integers(1, 3)), replace=False):
            pulse(k, c, half, a * rng.uniform(0.7, 1.0))
            if names[k] != mirror(names[k]) and rng.random() < 0.7:
                pulse(names.index(mirror(names[k])), c, half, a)
        c += rng.uniform(8, 20)
    blinks = [k for k, nm in enumerate(names) if nm.startswith("eyeBlink")]
    c = rng.uniform(5, 30)
    while c < n:
        for k in (blinks if rng.random() < 0.85 else blinks[:1]):
            pulse(k, c, rng.uniform(2, 4), 1.0)
        c += rng.uniform(24, 72)
    return np.clip(W, 0, 1).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regressor", default="full", choices=["full", "test"])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from backend.avatar import random_params, sample_avatar
    from backend.cache import cache_dir
    from backend.expression import regressor as rg
    from backend.expression.capture import run_expression_from_video
    from backend.expression.media import read_frames, write_video
    from backend.expression.posing import Poser
    from backend.render import looks
    from shared.expression import ExpressionFromVideoRequest

    t0 = time.time()
    reg = rg.load_regressor(args.regressor, cache_dir=cache_dir("expression", args.cache_dir))
    print(f"regressor '{args.regressor}': {reg.train_figures} (loaded/trained in {time.time() - t0:.1f} s)")
    rng = np.random.default_rng(args.seed + 4242)
    truth_all, pred_all, plain_all, cal_all, rot_err, jit, jit_true = [], [], [], [], [], [], []
    t1 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.clips):
            poser = Poser(sample_avatar(random_params(900_000 + 17 * c + args.seed), texture_size=256,
                                        with_track=False))
            W = smooth_track(rng, args.frames, poser.names)
            W[:NEUTRAL_LEAD] = 0.0   # the clip opens on a relaxed face: the calibrated run's neutral frame
            yaw = rng.uniform(-15, 15) * np.sin(np.linspace(0, rng.uniform(1, 3), args.frames))
            rot = np.stack([np.zeros(args.frames), np.zeros(args.frames), yaw], -1)
            lights, bg = looks.random_lights(rng), tuple(rng.uniform(0.2, 0.8, 3))
            margin = rng.uniform(0.9, 1.2)
            imgs = np.concatenate([rg.render_batch(poser, W[i:i + 16], rot[i:i + 16], args.size, margin, lights, bg)
                                   for i in range(0, args.frames, 16)])
            path = write_video(Path(tmp) / f"clip{c}.mp4", imgs, 24)
            frames, fps, _ = read_frames(path, 1000)
            res = run_expression_from_video(frames, ExpressionFromVideoRequest(fps=fps, regressor=args.regressor),
                                            regressor=reg)
            plain = run_expression_from_video(frames, ExpressionFromVideoRequest(fps=fps, regressor=args.regressor),
                                              regressor=reg, auto_calibrate=False)
            cal = run_expression_from_video(frames, ExpressionFromVideoRequest(fps=fps, regressor=args.regressor,
                                                                               neutral_frame=0), regressor=reg)
            P = np.stack([res.weights[:, res.names.index(n)] for n in poser.names], -1)
            assert res.metadata["calibration"] == "auto" and plain.metadata["calibration"] == "none"
            plain_all.append(np.stack([plain.weights[:, plain.names.index(n)] for n in poser.names], -1))
            cal_all.append(np.stack([cal.weights[:, cal.names.index(n)] for n in poser.names], -1))
            truth_all.append(W)
            pred_all.append(P)
            rot_err.append(np.abs(res.head_rotation[:, 2] - yaw).mean())
            jit.append(res.metadata["jitter"])
            jit_true.append(float(np.abs(np.diff(W, 2, axis=0)).mean()))
            print(f"clip {c}: {len(frames)} frames, faces {res.metadata['detected_fraction']:.2f}, "
                  f"MAE {np.abs(P - W).mean():.3f}, yaw error {rot_err[-1]:.1f} deg")
    T, P, C = np.concatenate(truth_all), np.concatenate(pred_all), np.concatenate(cal_all)
    Q = np.concatenate(plain_all)
    names = poser.names
    print(f"\n{len(T)} frames on {args.clips} unseen random avatars ({time.time() - t1:.1f} s); regressor "
          f"'{args.regressor}'; 'auto' = the default (clip's own neutral estimate), 'plain' = uncalibrated, "
          f"'cal' = with the clip's first (neutral) frame marked as neutral")

    def mae_corr(A, k):
        return float(np.abs(A[:, k] - T[:, k]).mean()), (float(np.corrcoef(A[:, k], T[:, k])[0, 1])
                                                         if T[:, k].std() > 0 and A[:, k].std() > 0 else float("nan"))

    # "zero" = the MAE of always answering 0 (most frames are neutral for most blendshapes): the floor to beat
    print(f"{'blendshape':18s} {'auto':>6s} {'corr':>6s}   {'plain':>6s} {'corr':>6s}   {'cal':>6s} {'corr':>6s}  "
          f"{'zero':>5s}  goal (MAE <= 0.15: auto / plain / cal)")
    maes, plains, cals = [], [], []
    for k, n in enumerate(names):
        (m, c), (mq, cq), (mc, cc) = mae_corr(P, k), mae_corr(Q, k), mae_corr(C, k)
        maes.append(m)
        plains.append(mq)
        cals.append(mc)
        goal = " / ".join("ok" if v <= 0.15 else "MISSED" for v in (m, mq, mc)) if n in GOAL_NAMES else ""
        print(f"{n:18s} {m:6.3f} {c:6.2f}   {mq:6.3f} {cq:6.2f}   {mc:6.3f} {cc:6.2f}  "
              f"{float(np.abs(T[:, k]).mean()):5.3f}  {goal}")
    print(f"mean MAE {np.mean(maes):.3f} (plain {np.mean(plains):.3f}, marked neutral {np.mean(cals):.3f}, "
          f"always-zero {np.abs(T).mean():.3f}); "
          f"jitter (mean |2nd diff|) captured "
          f"{np.mean(jit):.4f} vs true {np.mean(jit_true):.4f}; yaw error {np.mean(rot_err):.1f} deg")

    from skimage import data

    photo = data.astronaut()
    res = run_expression_from_video(photo[None], ExpressionFromVideoRequest(regressor=args.regressor), regressor=reg)
    w = {n: round(float(res.weights[0, k]), 3) for k, n in enumerate(res.names)}
    print("\nskimage astronaut (real photo, closed-mouth smile, eyes open):")
    print(json.dumps(w))
    print(f"head rotation (deg XYZ): {np.round(res.head_rotation[0], 1).tolist()}")
    checks = {"jawOpen < 0.3": w["jawOpen"] < 0.3, "eyeBlinkLeft < 0.5": w["eyeBlinkLeft"] < 0.5,
              "eyeBlinkRight < 0.5": w["eyeBlinkRight"] < 0.5}
    print("plausibility: " + ", ".join(f"{k}: {'ok' if v else 'NO'}" for k, v in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
