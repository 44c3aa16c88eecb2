"""Discrete search: from the relaxed vector to a strict one, scored with true renders.

Every combination of the searched assets (``FitConfig.search_assets``: eyebrow style x glasses
= 9 by default, the hairstyle kept at the relaxed fit's argmax; all three = 36) gets a short
continuous re-fit through the imitator with its one-hot blocks fixed; the best
``top_k`` by imitator loss (plus plain argmax rounding, always) are rendered by the true engine
and scored with non-differentiable measures (:func:`compare`): landmark error, region IoU,
dlib identity distance and colour error. The rounded choice's score is always reported.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from scipy import ndimage

from backend.avatar.params import AvatarParams
from backend.face import analysis, identity
from backend.face import landmarks as LM
from backend.face.regions import COLOR_REGIONS, iou

from . import fit as FIT
from . import synth

IOU_REGIONS = ("hair", "brows", "glasses", "eyes", "lips")
SCORED_LANDMARKS = sorted({i for g in LM.GROUPS.values() for i in g})
# score = W_LM * landmark error (IOD) + (1 - mean IoU) + dlib distance + colour error
W_LM = 10.0


def all_choices() -> list[tuple]:
    return list(itertools.product(*[range(n) for _, n in FIT.BLOCKS]))


def searched_choices(rounded: tuple, assets) -> list[tuple]:
    """The combinations that agree with ``rounded`` on every asset not in ``assets``."""
    fixed = [i for i, (name, _) in enumerate(FIT.BLOCKS) if name not in assets]
    return [c for c in all_choices() if all(c[i] == rounded[i] for i in fixed)]


def landmark_error(src: np.ndarray, dst: np.ndarray, idx=None) -> float:
    """Mean distance (units of dst's inter-ocular distance) of src [478,2+] landmarks aligned onto
    dst by a least-squares similarity over ``idx`` (default: the scored groups)."""
    idx = SCORED_LANDMARKS if idx is None else list(idx)
    aligned, _ = LM.similarity_align(src[idx, :2], dst[idx, :2])
    return float(np.linalg.norm(aligned - dst[idx, :2], axis=1).mean() / max(LM.interocular(dst), 1e-6))


def warp_mask_to(mask: np.ndarray, src_lm: np.ndarray, dst_lm: np.ndarray, shape) -> np.ndarray:
    """``mask`` (in src's pixels) moved into dst's pixels by the landmark similarity."""
    _, (s, R, t) = LM.similarity_align(src_lm[SCORED_LANDMARKS, :2], dst_lm[SCORED_LANDMARKS, :2])
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    pts = np.stack([xx.ravel(), yy.ravel()], 1) - t
    src = (pts @ R) / s                                      # R^T (x - t) / s, rows = points
    out = ndimage.map_coordinates(mask.astype(np.float32), [src[:, 1], src[:, 0]], order=1, cval=0.0)
    return out.reshape(shape) > 0.5


def compare(photo, photo_desc, render_img: np.ndarray) -> dict:
    """Measures of a true render against the photo's analysis (``photo``: PhotoAnalysis).
    Returns {"face_found", "landmark_error", "iou" {region: v}, "mean_iou", "dlib_distance",
    "color_error", "score", "render_analysis"} (score: lower is better; inf when no face)."""
    ra = analysis.analyze_render(render_img)
    if ra is None:
        return {"face_found": False, "score": float("inf"), "landmark_error": None, "iou": {}, "mean_iou": None,
                "dlib_distance": None, "color_error": None, "render_analysis": None}
    lm_err = landmark_error(photo.landmarks, ra.landmarks)
    ious = {}
    for k in IOU_REGIONS:
        if k in photo.unseen or k in ra.unseen:
            continue
        pm = warp_mask_to(photo.masks[k], photo.landmarks, ra.landmarks, render_img.shape[:2])
        v = iou(pm, ra.masks[k])
        ious[k] = 1.0 if v is None else v
    miou = float(np.mean(list(ious.values())))
    dd = identity.distance(photo_desc, identity.descriptor(render_img, ra.landmarks))
    ce = [np.abs(photo.colors[k] - ra.colors[k]).mean() for k in COLOR_REGIONS
          if photo.colors.get(k) is not None and ra.colors.get(k) is not None]
    cerr = float(np.mean(ce)) if ce else 0.0
    score = W_LM * lm_err + (1 - miou) + (dd if dd is not None else 1.0) + cerr
    return {"face_found": True, "landmark_error": lm_err, "iou": ious, "mean_iou": miou, "dlib_distance": dd,
            "color_error": cerr, "score": float(score), "render_analysis": ra}


def search(net, photo, photo_desc, tg: FIT.Targets, relaxed: dict, cfg: FIT.FitConfig, seed: int = 0,
           progress=None, is_cancelled=None) -> dict:
    """Returns {"searched": {...}, "rounded": {...}} each with "choice" (indices), "names",
    "vector" [35], "expression" [11], "measures" (compare() without the analysis), and
    "candidates" (all scored ones), "seconds"."""
    t0 = time.time()
    vec = relaxed["vector"]
    rounded = FIT.rounded_choice(vec)
    choices = searched_choices(rounded, cfg.search_assets)
    st = FIT.init_state(len(choices), seed, shape=vec[:FIT.NS], color=vec[FIT.NS:FIT.NS + FIT.NC],
                        onehot=np.stack([FIT.onehot_of(c) for c in choices]), expr=relaxed["expression"])
    r = FIT.run_fit(net, tg, st, cfg, cfg.refit_steps, anneal=False, is_cancelled=is_cancelled)
    loss = r["losses"]["total"].numpy()
    order = [int(i) for i in np.argsort(loss)]
    keep = order[:max(1, cfg.search_top_k)]
    ri = choices.index(rounded)
    if ri not in keep:
        keep.append(ri)
    cands = []
    for n, i in enumerate(keep):
        if is_cancelled and is_cancelled():
            from shared.errors import Cancelled
            raise Cancelled("The photo fit was cancelled.")
        v = r["vector"][i]
        P = AvatarParams.from_vector(v)
        img = synth.render_avatar(P, r["expression"][i], labels=False)["image"]
        m = compare(photo, photo_desc, img)
        m.pop("render_analysis")
        cands.append({"index": i, "choice": choices[i], "names": FIT.choice_names(choices[i]),
                      "imitator_loss": float(loss[i]), "vector": v, "expression": r["expression"][i],
                      "measures": m, "rounded": i == ri})
        if progress:
            progress("search", n + 1, len(keep), {"score": m["score"]})
    best = min(cands, key=lambda c: c["measures"]["score"])
    rnd = next(c for c in cands if c["rounded"])
    return {"searched": best, "rounded": rnd, "candidates": cands, "seconds": time.time() - t0}
