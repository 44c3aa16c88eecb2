"""Photo -> animatable avatar, end to end (shared by the CLI and the server job).

    fit = avatar_from_photo(img, face_index=None, imitator="default")   # PhotoFit
    body, arrays = result_wire(fit)                                     # the job result / params.json

Stages: analysis (MediaPipe + dlib, typed errors for bad photos) -> relaxed fit through the
imitator (expression weights fitted jointly) -> discrete search with true renders (or argmax
rounding) -> the neutral avatar (expression dropped) with the default expression track.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from shared.avatar import AvatarData, to_wire
from shared.photo import JOB_KIND, WORK_SIDE

from backend.avatar.blendshapes import ARKIT_NAMES
from backend.avatar.params import AvatarParams
from backend.avatar.sample import sample_avatar
from backend.face import analysis, identity

from . import fit as FIT
from . import imitator as IM
from . import search as S
from . import synth


@dataclass
class PhotoFit:
    params: AvatarParams
    avatar: AvatarData
    vector: np.ndarray                 # [35] strict
    relaxed_vector: np.ndarray         # [35]
    searched: dict                     # {asset: choice}
    rounded: dict
    expression: dict                   # {ARKit name: weight}
    figures: dict
    notes: list
    photo: object                      # PhotoAnalysis
    render: np.ndarray                 # [S,S,3] uint8 fitted avatar, neutral, frontal
    render_expression: np.ndarray      # the same with the fitted expression
    imitator: dict
    history: list = field(default_factory=list)
    candidates: list = field(default_factory=list)


def avatar_from_photo(img: np.ndarray, *, face_index: int | None = None, imitator: str = "default",
                      search: bool = True, fit_steps: int = 0, seed: int = 0, cache_root=None,
                      fit_config: FIT.FitConfig | None = None, texture_size: int = 1024, progress=None,
                      is_cancelled=None, photo_analysis=None) -> PhotoFit:
    """Fit the sample avatar to the face in ``img`` [H,W,3] uint8 sRGB (upright).

    Raises InvalidParams (details["reason"]) for bad photos before any model is trained.
    """
    t0 = time.time()
    report = progress or (lambda *a, **k: None)
    report("analyze", 0, 1)
    a = photo_analysis or analysis.analyze_photo(img, face_index)
    desc = identity.descriptor(a.image, a.landmarks)
    t_an = time.time() - t0
    net, info = IM.load_imitator(imitator, cache_root, report, is_cancelled)
    cfg = fit_config or (FIT.FitConfig(search_top_k=8, restarts=2) if imitator == "test" else FIT.FitConfig())
    tg = FIT.targets_from_analysis(a)
    t1 = time.time()
    torch.manual_seed(seed)
    relaxed = FIT.relaxed_fit(net, tg, cfg, seed, fit_steps or None, report, is_cancelled)
    t_fit = time.time() - t1
    rounded = FIT.rounded_choice(relaxed["vector"])
    notes = list(a.notes)
    t2 = time.time()
    if search:
        sr = S.search(net, a, desc, tg, relaxed, cfg, seed, report, is_cancelled)
        best, rnd, cands = sr["searched"], sr["rounded"], sr["candidates"]
    else:
        v = FIT.strict_vector(relaxed["vector"], rounded)
        img_r = synth.render_avatar(AvatarParams.from_vector(v), relaxed["expression"], labels=False)["image"]
        m = S.compare(a, desc, img_r)
        m.pop("render_analysis")
        best = rnd = {"choice": rounded, "names": FIT.choice_names(rounded), "vector": v,
                      "expression": relaxed["expression"], "measures": m, "rounded": True}
        cands = [best]
        notes.append("Discrete search skipped: plain argmax rounding.")
    t_search = time.time() - t2
    vec = np.asarray(best["vector"], np.float32)
    expr = np.asarray(best["expression"], np.float32)
    P = AvatarParams.from_vector(vec)
    report("build", 0, 1)
    av = sample_avatar(P, texture_size=texture_size, with_track=True)
    av.name = "metamorph_photo_avatar"
    small = sample_avatar(P, texture_size=synth.TRAIN_TEXTURE, with_track=False)
    neutral = synth.render_avatar(P, None, av=small, labels=False)["image"]
    posed = synth.render_avatar(P, expr, av=small, labels=False)["image"]
    mm = best["measures"]
    figures = {
        "landmark_error_iod": _r(mm.get("landmark_error")), "mean_iou": _r(mm.get("mean_iou")),
        "iou": {k: _r(v) for k, v in (mm.get("iou") or {}).items()}, "dlib_distance": _r(mm.get("dlib_distance")),
        "color_error": _r(mm.get("color_error")), "score": _r(mm.get("score")),
        "rounded_score": _r(rnd["measures"].get("score")),
        "rounded_landmark_error_iod": _r(rnd["measures"].get("landmark_error")),
        "rounded_dlib_distance": _r(rnd["measures"].get("dlib_distance")),
        "search_changed_choice": best["choice"] != rnd["choice"], "candidates_rendered": len(cands),
        "relaxed_losses": {k: _r(v) for k, v in relaxed["losses"].items()},
        "light_gain": _r(relaxed["light_gain"]),
        "eye_corner_px": _r(a.eye_corner_px), "yaw_degrees": _r(a.yaw, 1), "faces": a.num_faces,
        "face_index": a.face_index, "seconds": {"analysis": _r(t_an), "fit": _r(t_fit), "search": _r(t_search),
                                                "total": _r(time.time() - t0)},
    }
    report("done", 1, 1)
    return PhotoFit(P, av, vec, np.asarray(relaxed["vector"], np.float32), best["names"], rnd["names"],
                    {n: round(float(w), 4) for n, w in zip(ARKIT_NAMES, expr)}, figures, notes, a, neutral, posed,
                    {k: v for k, v in info.items() if k != "folder"}, relaxed["history"],
                    [{"names": c["names"], "score": _r(c["measures"]["score"]),
                      "imitator_loss": _r(c.get("imitator_loss")), "rounded": c["rounded"]} for c in cands])


def downscale(img: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """``img`` [H,W,3] uint8 with its longest side at most ``side`` (Lanczos; smaller ones as is)."""
    h, w = img.shape[:2]
    if max(h, w) <= side:
        return img
    from PIL import Image

    s = side / max(h, w)
    return np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))


def _r(v, nd: int = 4):
    return None if v is None else round(float(v), nd)


def params_record(fit: PhotoFit) -> dict:
    """What params.json and the job result body hold besides the avatar."""
    return {"kind": JOB_KIND, "params": fit.params.to_dict(), "vector": [round(float(x), 5) for x in fit.vector],
            "relaxed_vector": [round(float(x), 5) for x in fit.relaxed_vector], "searched": fit.searched,
            "rounded": fit.rounded, "expression": fit.expression, "figures": fit.figures, "notes": fit.notes,
            "imitator": fit.imitator, "candidates": fit.candidates}


def result_wire(fit: PhotoFit) -> tuple[dict, dict]:
    """The ``avatar_from_photo`` job result: body (see shared.photo) and the avatar's arrays."""
    body, arrays = to_wire(fit.avatar)
    rec = params_record(fit)
    rec["avatar"] = body
    return rec, arrays
