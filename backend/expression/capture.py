"""Expression capture from a photo or a video: face mesh -> features -> regressor -> smoothed track.

:func:`run_expression_from_video` is the one entry point (CLI and server job). Frames
are ``[N,H,W,3]`` uint8 sRGB; a single photo is N = 1. The weights are by ARKit name
(the regressor's names); the head rotation is kept apart (an object rotation track).

Calibration (metadata ``calibration``): with a marked ``neutral_frame``, the regressor's
calibrated model against that frame (``"neutral_frame"``); a video of at least
:data:`AUTO_NEUTRAL_MIN_FRAMES` frames with a face and no marked frame, the same model
against the clip's own neutral estimates (``"auto"``, :func:`predict_auto`:
:func:`.regressor.auto_neutral` over its frames, as most frames of an animation are near
neutral for each feature, and for the mouth blendshapes :func:`clip_neutral`, as people
smile for much of a clip); a photo or unrelated images, the plain model (``"none"``).
"""

from __future__ import annotations

import time

import numpy as np

from shared import expression as X
from shared.errors import InvalidParams

from backend.face import landmarks as fl

from . import features as ft
from .regressor import Regressor, auto_neutral, load_regressor

# Fewest frames with a face for the per-clip neutral estimate: below it the median of a short
# clip is mostly its expression, not the person.
AUTO_NEUTRAL_MIN_FRAMES = 8
# clip_neutral: a frame is mouth-neutral when the plain model gives no mouth blendshape this
# much; when too few frames are, the quietest of this fraction of the frames stand in
MOUTH_QUIET_WEIGHT = 0.1
MOUTH_QUIET_MIN_FRACTION = 0.15
_MOUTH_BLENDSHAPES = ("mouth", "jaw", "cheek")
# landmarks that mouth blendshapes move: lips, cheeks, the sides of the nose, the chin
_MOUTH_POINTS = frozenset(fl.LIPS_OUTER + fl.LIPS_INNER + (50, 280, 205, 425, 98, 327, 152, 175))


def mouth_blendshapes(names: list[str]) -> np.ndarray:
    """[K] bool: which of ``names`` move the mouth (jaw, mouth and cheek blendshapes)."""
    return np.array([n.startswith(_MOUTH_BLENDSHAPES) for n in names])


def mouth_features() -> np.ndarray:
    """[F] bool: the features mouth blendshapes move (the moving mouth points' displacements and the
    mouth opening and width of :func:`.features.features`; its layout)."""
    m = np.zeros(ft.num_features(), bool)
    for i, p in enumerate(ft.MOVING):
        m[3 * i:3 * i + 3] = p in _MOUTH_POINTS
    m[3 * len(ft.MOVING) + 2:3 * len(ft.MOVING) + 4] = True     # ratios: eye L, eye R, mouth opening, width
    return m


def clip_neutral(reg: Regressor, feats: np.ndarray) -> np.ndarray:
    """[N,F] one person's features over a clip -> [F] an estimate of their neutral face's:
    :func:`.regressor.auto_neutral` (the per-feature median), except the mouth features, taken
    as the median over the frames the plain model (which needs no reference) calls mouth-neutral.
    A person who smiles in more than half of the frames moves the median of the mouth features
    onto the smile, and the calibrated model then misses it; blinks and brow moves are short,
    and the plain model sees them less well, so eyes and brows keep the median."""
    ref = auto_neutral(feats)
    activity = reg.predict(feats)[:, mouth_blendshapes(reg.names)].max(1)
    quiet = activity < MOUTH_QUIET_WEIGHT
    least = int(np.ceil(MOUTH_QUIET_MIN_FRACTION * len(feats)))
    if quiet.sum() < least:
        quiet = np.zeros(len(feats), bool)
        quiet[np.argsort(activity, kind="stable")[:least]] = True
    m = mouth_features()
    ref[m] = np.median(np.asarray(feats)[quiet][:, m], axis=0)
    return ref


def predict_auto(reg: Regressor, feats: np.ndarray) -> np.ndarray:
    """[N,F] one person's features over a clip (N >= :data:`AUTO_NEUTRAL_MIN_FRAMES`) -> [N,K]: the
    calibrated model against :func:`.regressor.auto_neutral`, and for the mouth blendshapes against
    :func:`clip_neutral` (each region against the reference estimated for it: the mouth part of the
    reference also nudges the eye and brow outputs, which the median serves better)."""
    w = reg.predict(feats, auto_neutral(feats))
    mouth = mouth_blendshapes(reg.names)
    w[:, mouth] = reg.predict(feats, clip_neutral(reg, feats))[:, mouth]
    return w


def gaussian_smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth [N,...] along axis 0 with a Gaussian of ``sigma`` frames (edges reflected)."""
    if sigma <= 0 or len(a) < 2:
        return a.copy()
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(a, [(r, r)] + [(0, 0)] * (a.ndim - 1), mode="reflect" if len(a) > r else "edge")
    out = np.zeros_like(a, dtype=np.float64)
    for i, w in enumerate(k):
        out += w * pad[i:i + len(a)]
    return out.astype(a.dtype)


def fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Rows where ``found`` is False take the nearest found row's values."""
    idx = np.flatnonzero(found)
    near = idx[np.abs(np.arange(len(values))[:, None] - idx[None]).argmin(1)]
    return values[near]


def frame_landmarks(frames: np.ndarray, still: bool) -> np.ndarray:
    """[N,478,3] landmarks (NaN rows where no face): a still-image mesh per frame for photos and
    unrelated images, MediaPipe's tracking mode for a video."""
    from backend.face.landmarks import NUM_LANDMARKS, face_landmarks, landmarks_sequence

    if not still and len(frames) > 1:
        return landmarks_sequence(frames)
    out = []
    for f in frames:
        lm = face_landmarks(np.ascontiguousarray(f))
        out.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32) if lm is None else lm)
    return np.stack(out)


def _frame_label(names: list[str], w: np.ndarray, found: bool) -> str:
    if not found:
        return "no face"
    k = int(np.argmax(w))
    return "neutral" if w[k] < 0.15 else f"{names[k]} {w[k]:.2f}"


def run_expression_from_video(frames: np.ndarray, req: X.ExpressionFromVideoRequest, *, still: bool | None = None,
                              cache_dir=None, limits=None, regressor: Regressor | None = None, progress=None,
                              is_cancelled=None, auto_calibrate: bool = True) -> X.ExpressionResult:
    """Capture a track from ``frames`` [N,H,W,3] uint8. ``still``: treat frames as unrelated
    images (default: only for N = 1). ``auto_calibrate``: estimate a video's neutral face
    when no neutral frame is marked (see the module docstring; False = the plain model, for
    comparisons). Raises InvalidParams when no frame shows a face."""
    t0 = time.time()
    req.validate(limits, {"frames": frames})
    reg = regressor or load_regressor(req.regressor, cache_dir=cache_dir, progress=progress,
                                      is_cancelled=is_cancelled)
    still = len(frames) == 1 if still is None else still
    lms = frame_landmarks(frames, still)
    if progress:
        progress("landmarks", len(frames), len(frames))
    feats, rot, found = ft.features_batch(lms, reg.template, frames)
    if not found.any():
        raise InvalidParams(f"No face was found in any of the {len(frames)} frame(s): use a photo or video where "
                            f"one face is visible, lit and at least ~100 pixels wide.")
    neutral, calibration = None, "none"
    if req.neutral_frame >= 0:
        if not found[req.neutral_frame]:
            raise InvalidParams(f"No face was found in the neutral frame {req.neutral_frame}; mark another frame "
                                f"with a relaxed face, or none.")
        neutral, calibration = feats[req.neutral_frame], "neutral_frame"
    elif auto_calibrate and not still and found.sum() >= AUTO_NEUTRAL_MIN_FRAMES:
        calibration = "auto"
    w = np.zeros((len(frames), len(reg.names)), np.float32)
    w[found] = predict_auto(reg, feats[found]) if calibration == "auto" else reg.predict(feats[found], neutral)
    w = fill_missing(w, found)
    rot = fill_missing(rot, found)
    raw_jitter = float(np.abs(np.diff(w, 2, axis=0)).mean()) if len(w) > 2 else 0.0
    w = np.clip(gaussian_smooth(w, req.smoothing), 0.0, 1.0).astype(np.float32)
    rot = gaussian_smooth(np.unwrap(np.radians(rot), axis=0), req.smoothing)
    rot = np.degrees(rot).astype(np.float32)
    md = {"regressor": req.regressor, "calibrated": calibration != "none",
          "calibration": calibration, "regressor_config": reg.config,
          "regressor_training": reg.train_figures, "regressor_is_test_config": req.regressor == "test",
          "frames": int(len(frames)), "detected_fraction": float(found.mean()), "still_images": bool(still),
          "smoothing": float(req.smoothing), "jitter_raw": raw_jitter,
          "jitter": float(np.abs(np.diff(w, 2, axis=0)).mean()) if len(w) > 2 else 0.0,
          "guidance_is_test_model": False, "seconds": round(time.time() - t0, 3)}
    return X.ExpressionResult(names=list(reg.names), weights=w, fps=float(req.fps), start_frame=int(req.start_frame),
                              labels=[_frame_label(reg.names, w[i], bool(found[i])) for i in range(len(w))],
                              metadata=md, head_rotation=rot if req.head_rotation else None,
                              detected=found.astype(np.uint8)).check()
