"""Avatar-from-photo accuracy on synthetic targets with known parameters, and on real photos.

    .venv/bin/python scripts/bench_selfie.py [--n 100] [--pairs 10] [--random-avatars 200]
                                             [--imitator default] [--cache-dir DIR] [--top-k 36]

Synthetic targets: random avatars (random_params) with random expressions, lighting and
backgrounds, rendered frontally at 512 px by the true engine. Printed (JSON), with the goals:
  shape MAE over the 9 parameters a frontal view shows (goal <= 0.15), colour MAE (<= 0.08),
  discrete accuracy per asset for searched vs rounded (search >= rounding; hairstyle and
  glasses >= 0.9), dlib distance fitted vs target neutral render (<= 0.15), expression
  invariance: the same avatar fitted from an expressive and a neutral render (shape MAE <= 0.1),
  and beside it the floor under it: the same neutral avatar fitted under two looks (shape and
  colour). Also the shape and colour MAE per parameter and the searched choices' confusion
  per asset (true -> searched: which choices a frontal photo tells apart).
Real photo: scikit-image's astronaut (upscaled 2x: the original has 61 px between the eye
corners, under the 80 px minimum): landmark error after similarity alignment on eyes, brows,
mouth and jaw (goal <= 0.06 IOD and >= 30% lower than the default avatar's; of the neutral
fitted avatar, and beside it with the fitted expression put back), the dlib rank of
the fitted avatar among N random avatars (goal: top 5%), wall time per photo (goal <= 60 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OBSERVABLE = ("eye_spacing", "mouth_width", "nose_length", "head_width", "jaw_width", "brow_height", "eye_size",
              "lip_fullness", "chin_length")


def _target(seed: int, size: int, expressive: bool | None = None, P=None, expr=None):
    from backend.avatar.params import random_params
    from backend.photo import synth
    from backend.render import looks

    rng = np.random.default_rng([seed, 99])
    P = P or random_params(seed)
    if expr is None:
        expr = synth.random_expression(rng, 0.3, 0.8) if (expressive is None and rng.random() < 0.7) or expressive \
            else np.zeros(synth.NUM_EXPR, np.float32)
    lights, bg = looks.random_lights(rng), looks.random_background(rng, size)
    img = synth.render_avatar(P, expr, camera=synth.frontal_camera(size), lights=lights, background=bg,
                              labels=False)["image"]
    return P, expr, img


def _fit(img, args):
    from backend.face import analysis
    from backend.photo import pipeline
    from backend.photo.fit import FitConfig

    a = analysis.analyze_photo(img)
    cfg = FitConfig(search_top_k=args.top_k) if args.imitator == "default" else FitConfig(search_top_k=args.top_k,
                                                                                           restarts=2)
    return pipeline.avatar_from_photo(img, imitator=args.imitator, cache_root=args.cache_dir, fit_config=cfg,
                                      texture_size=256, photo_analysis=a)


def _neutral_desc(P):
    from backend.face import identity
    from backend.photo import synth

    img = synth.render_avatar(P, None, labels=False)["image"]
    return identity.descriptor(img)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--random-avatars", type=int, default=200)
    ap.add_argument("--imitator", default="default")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--top-k", type=int, default=36)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from backend.avatar.params import COLOR_NAMES, DISCRETE, SHAPE_NAMES, AvatarParams, random_params
    from backend.face import identity
    from backend.photo import imitator as IM
    from backend.photo import search, synth
    from shared.errors import InvalidParams

    IM.load_imitator(args.imitator, args.cache_dir)
    obs = [SHAPE_NAMES.index(n) for n in OBSERVABLE]
    shape_err, col_err, dlib_d, walls, failed = [], [], [], [], 0
    shape_per, col_per = [], []
    nc = slice(len(SHAPE_NAMES), len(SHAPE_NAMES) + len(COLOR_NAMES))
    acc = {k: {"searched": [], "rounded": []} for k in DISCRETE}
    # confusion[asset][true][searched]: which choices a frontal photo tells apart
    confusion = {k: {t: {c: 0 for c in ch} for t in ch} for k, ch in DISCRETE.items()}
    t0 = time.time()
    for i in range(args.n):
        P, expr, img = _target(20000 + i, args.size)
        try:
            fit = _fit(img, args)
        except InvalidParams as e:
            failed += 1
            print(f"[synthetic] {i}: {e.message}", file=sys.stderr)
            continue
        tv, fv = P.to_vector(), fit.vector
        shape_per.append(np.abs(tv[obs] - fv[obs]))
        shape_err.append(shape_per[-1].mean())
        col_per.append(np.abs(tv[nc] - fv[nc]))
        col_err.append(col_per[-1].mean())
        for k in DISCRETE:
            confusion[k][getattr(P, k)][fit.searched[k]] += 1
            acc[k]["searched"].append(fit.searched[k] == getattr(P, k))
            acc[k]["rounded"].append(fit.rounded[k] == getattr(P, k))
        dlib_d.append(identity.distance(_neutral_desc(P), _neutral_desc(fit.params)))
        walls.append(fit.figures["seconds"]["total"])
        print(f"[synthetic] {i + 1}/{args.n} shape {shape_err[-1]:.3f} colour {col_err[-1]:.3f} "
              f"dlib {dlib_d[-1]} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    inv, retest, retest_col = [], [], []
    for j in range(args.pairs):
        P = random_params(30000 + j)
        e = np.zeros(synth.NUM_EXPR, np.float32)
        rng = np.random.default_rng(j)
        e[[1, 2]] = rng.uniform(0.5, 1.0)
        e[0] = rng.uniform(0.0, 0.5)
        try:
            f_neutral = _fit(_target(30000 + j, args.size, P=P, expr=np.zeros_like(e))[2], args)
            f_expr = _fit(_target(30000 + j, args.size, P=P, expr=e)[2], args)
        except InvalidParams as err:
            print(f"[pairs] {j}: {err.message}", file=sys.stderr)
            continue
        inv.append(float(np.abs(f_neutral.vector[obs] - f_expr.vector[obs]).mean()))
        # the floor under it: the same neutral avatar under another light and background
        try:
            f_other = _fit(_target(31000 + j, args.size, P=P, expr=np.zeros_like(e))[2], args)
            retest.append(float(np.abs(f_neutral.vector[obs] - f_other.vector[obs]).mean()))
            retest_col.append(float(np.abs(f_neutral.vector[nc] - f_other.vector[nc]).mean()))
        except InvalidParams as err:
            print(f"[pairs] {j} (other look): {err.message}", file=sys.stderr)
        print(f"[pairs] {j + 1}/{args.pairs} {inv[-1]:.3f} (other look: {retest[-1] if retest else None})",
              file=sys.stderr, flush=True)

    # real photo
    from PIL import Image
    import skimage.data

    from backend.face import landmarks as LM

    photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((1024, 1024), Image.LANCZOS))
    tw = time.time()
    fit = _fit(photo, args)
    wall = time.time() - tw
    groups = sorted({i for g in ("eyes", "brows", "mouth", "jaw") for i in LM.GROUPS[g]})
    fitted_lm = LM.face_landmarks(fit.render)
    default_img = synth.render_avatar(AvatarParams(), None, labels=False)["image"]
    default_lm = LM.face_landmarks(default_img)
    e_fit = search.landmark_error(fit.photo.landmarks, fitted_lm, groups)
    e_def = search.landmark_error(fit.photo.landmarks, default_lm, groups)
    # the neutral avatar's error includes the photo's expression, which the fit drops on purpose;
    # with the fitted expression put back it measures how well the fit explains the photo
    posed_lm = LM.face_landmarks(fit.render_expression)
    e_posed = None if posed_lm is None else round(search.landmark_error(fit.photo.landmarks, posed_lm, groups), 4)
    pd = identity.descriptor(photo, fit.photo.landmarks)
    d_fit = identity.distance(pd, identity.descriptor(fit.render, fitted_lm))
    rand, rand_glasses = [], []
    for s in range(args.random_avatars):
        Pr = random_params(40000 + s)
        d = identity.distance(pd, _neutral_desc(Pr))
        if d is not None:
            rand.append(d)
            rand_glasses.append(Pr.glasses)
    rank = 1 + sum(r < d_fit for r in rand)
    # dlib finds the engine's faces with glasses nearer to a photo without them (on the
    # astronaut, 80 random avatars: rectangular glasses 0.686 mean distance, none 0.769), so the
    # rank is also given among the random avatars whose glasses match the fit's
    same = [r for r, g in zip(rand, rand_glasses) if g == fit.params.glasses]
    rank_same = 1 + sum(r < d_fit for r in same)

    def m(v):
        return None if not v else round(float(np.mean(v)), 4)

    res = {
        "imitator": args.imitator, "targets": args.n, "no_face_or_refused": failed, "size": args.size,
        "search_top_k": args.top_k,
        "shape_mae_observable": m(shape_err), "shape_goal": 0.15,
        "shape_mae_per_parameter": dict(zip(OBSERVABLE, np.round(np.mean(shape_per, 0), 3).tolist()))
        if shape_per else None,
        "color_mae": m(col_err), "color_goal": 0.08,
        "color_mae_per_parameter": dict(zip(COLOR_NAMES, np.round(np.mean(col_per, 0), 3).tolist()))
        if col_per else None,
        "discrete_confusion_searched": confusion,
        "discrete_accuracy": {k: {"searched": m(v["searched"]), "rounded": m(v["rounded"])} for k, v in acc.items()},
        "dlib_fitted_vs_target": m([d for d in dlib_d if d is not None]), "dlib_goal": 0.15,
        "expression_invariance_shape_mae": m(inv), "invariance_pairs": len(inv), "invariance_goal": 0.1,
        "lighting_retest_shape_mae": m(retest), "lighting_retest_color_mae": m(retest_col),
        "wall_seconds_per_synthetic": m(walls),
        "astronaut": {"landmark_error_iod_fitted": round(e_fit, 4), "landmark_error_iod_default": round(e_def, 4),
                      "landmark_error_iod_fitted_with_expression": e_posed,
                      "reduction_vs_default": round(1 - e_fit / e_def, 4), "goal": "<= 0.06 and >= 30% lower",
                      "dlib_distance": d_fit, "dlib_rank": rank, "random_avatars": len(rand),
                      "dlib_rank_fraction": round(rank / (len(rand) + 1), 4),
                      "dlib_rank_same_glasses": rank_same, "random_avatars_same_glasses": len(same),
                      "dlib_rank_fraction_same_glasses": round(rank_same / (len(same) + 1), 4),
                      "dlib_random_distance_mean": round(float(np.mean(rand)), 4), "wall_seconds": round(wall, 1),
                      "searched": fit.searched, "expression": {k: v for k, v in fit.expression.items() if v > 0.05}},
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
