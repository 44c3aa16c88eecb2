"""The ``expression_from_text`` / ``expression_from_video`` job contracts, shared by the
add-on, the CLI and the server: what a request carries and what a result holds.

expression_from_text (``submit`` kind ``expression_from_text``, needs an uploaded avatar)
    params: :meth:`ExpressionFromTextRequest.to_params` -- avatar_id, text (the motion
    description, e.g. "laughing, then surprised"), fps, duration_s, start_frame, guidance,
    top_k, steps (0 = default), seed, blinks (add blinks by the prior unless the text asks
    for closed eyes), settings (optional engine overrides, see :data:`TEXT_SETTING_LIMITS`).
    arrays: none.

expression_from_video (``submit`` kind ``expression_from_video``, no avatar needed)
    params: :meth:`ExpressionFromVideoRequest.to_params` -- fps (of the source frames),
    start_frame, smoothing (Gaussian sigma in frames, 0 = none), regressor ("test" trains
    in seconds, "full" is the one for real use), head_rotation (estimate it too),
    neutral_frame (index of a frame where the face is relaxed: calibrates for the person's
    own brow height and mouth shape; -1 = none marked: a video is then calibrated against
    its own neutral estimate, a photo is not calibrated).
    arrays: ``frames`` [N,H,W,3] uint8 sRGB, row 0 at the top; 1 <= N <= limits.max_frames,
    MIN_FRAME_SIDE <= H, W <= limits.max_image_side. One photo is N = 1.

Result (both; see :class:`ExpressionResult`)
    body:   names (ARKit names of the weight columns, ARKit order), fps, start_frame,
            candidates (text only: [{rank, score, label, weights: {name: w}, phrase, frame}],
            best first; ``score`` = relative cosine with the text, ``phrase`` = the part of
            the text ("laughing" of "laughing, then surprised") that chose it, ``frame`` =
            the scene frame where the track comes closest),
            labels (one short text per frame; text: the nearest candidate's label or
            "neutral"; video: the strongest blendshape ("jawOpen 0.62"), "neutral", or
            "no face" where no face was detected),
            metadata (text: guidance, guidance_is_test_model (+ warning), phrases, losses,
            metrics {optimized, baseline_linear}: pose loss, candidate distances, motion,
            jitter, clip_score; blinks (frames), seconds, device. video: regressor,
            regressor_is_test_config, calibrated, calibration ("neutral_frame" | "auto" | "none"),
            detected_fraction, jitter, seconds)
    arrays: weights        [N,K] float32 in [0,1], column k = names[k]
            frames         [N]   float32 scene frame numbers, start_frame + i (one per frame)
            head_rotation  [N,3] float32 degrees, XYZ Euler (Blender object rotation:
                           X pitch, Y roll, Z yaw) of the head relative to facing the
                           camera; video only, when asked for
            detected       [N]   uint8 1 where a face was found (video only); frames
                           without one carry the nearest detected frame's weights

Names are ARKit names; an avatar maps them to its shape keys with
:func:`shared.arkit.match_names` (:meth:`ExpressionResult.to_track` does it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import validation as val
from .arkit import ARKIT_NAMES, apply_mapping, match_names
from .avatar import ExpressionTrack
from .errors import InvalidParams, TooLarge
from .stylize import DEFAULT_GUIDANCE, MAX_SEED

# ---------------------------------------------------------------- defaults and bounds (one home)
DEFAULT_FPS = 24.0
MIN_FPS, MAX_FPS = 1.0, 120.0
DEFAULT_DURATION_S = 4.0
MIN_DURATION_S, MAX_DURATION_S = 0.5, 20.0
DEFAULT_START_FRAME = 1
MIN_START_FRAME, MAX_START_FRAME = -1_000_000, 1_000_000
DEFAULT_TOP_K = 5
MAX_TOP_K = 10
CANDIDATE_POOL = 40            # entries kept by score before near-duplicates are dropped
DUPLICATE_DISTANCE = 0.35      # weight vectors closer than this (L2) count as near-duplicates (1.0 vs 0.7: 0.3)
RANK_WEIGHTS = (1.0, 0.8, 0.6, 0.4, 0.2)  # the published rank weighting; beyond 5, 0.2
DEFAULT_STEPS = 150
MAX_STEPS = 5000
BLINK_INTERVAL_S = (2.0, 6.0)  # the blink prior: one blink every 2-6 s
BLINK_DURATION_S = 0.25
TEXT_TEMPLATE = "a 3D render of a face, {}"   # a motion text as a CLIP prompt
NEUTRAL_TEXT = "with a neutral expression"   # the anchor of the relative text direction

MIN_FRAME_SIDE = 32
CAPTURE_MAX_SIDE = 720         # capture frames are downscaled to this longest side (the mesh works on ~192 px)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif", ".mpg", ".mpeg")
DEFAULT_SMOOTHING = 1.5        # Gaussian sigma, frames
MAX_SMOOTHING = 10.0
REGRESSORS = ("test", "full")
DEFAULT_REGRESSOR = "full"
# Capture input as clients read it (the add-on; backend/expression/media.py for the CLI).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif", ".mpg", ".mpeg")
CAPTURE_MAX_SIDE = 720         # pixels sent per frame: the face mesh works on 192-pixel crops

# Engine overrides a client may send with expression_from_text (integer ranges).
TEXT_SETTING_LIMITS = {
    "render_size": (32, 512),       # pixels of the codebook / CLIP renders
    "views": (1, 8),                # frontal views per codebook entry
    "clip_frames": (1, 16),         # frames rendered for the CLIP term per step
    "control_points": (4, 64),      # B-spline control points of the track
    "intensities": (1, 4),          # intensity levels per single / pair entry
}


def rank_weight(rank: int) -> float:
    """Weight of the candidate at ``rank`` (0-based) in the motion loss."""
    return RANK_WEIGHTS[rank] if rank < len(RANK_WEIGHTS) else RANK_WEIGHTS[-1]


def num_frames(duration_s: float, fps: float) -> int:
    """Frames of a track ``duration_s`` long at ``fps`` (at least 2)."""
    return max(2, int(round(duration_s * fps)))


def _check_settings(settings) -> dict:
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise InvalidParams("'settings' must be a mapping of engine settings, e.g. {\"render_size\": 96}.")
    for k, v in settings.items():
        if k not in TEXT_SETTING_LIMITS:
            raise InvalidParams(f"Unknown expression setting '{k}'; known: {sorted(TEXT_SETTING_LIMITS)}.")
        val.integer(f"settings.{k}", v, *TEXT_SETTING_LIMITS[k])
    return dict(settings)


def _guidance_name(name) -> str:
    # whether a *client* may name local files is the server's rule (backend.style.jobs.check_server_guidance)
    return val.text("guidance", name, 200)


@dataclass
class ExpressionFromTextRequest:
    """Animate the avatar's expression from a motion description."""

    avatar_id: str
    text: str
    fps: float = DEFAULT_FPS
    duration_s: float = DEFAULT_DURATION_S
    start_frame: int = DEFAULT_START_FRAME
    guidance: str = DEFAULT_GUIDANCE
    top_k: int = DEFAULT_TOP_K
    steps: int = 0                 # 0 = DEFAULT_STEPS
    seed: int = 0
    blinks: bool = True
    settings: dict | None = None

    def to_params(self) -> dict:
        return {"avatar_id": self.avatar_id, "text": self.text, "fps": float(self.fps),
                "duration_s": float(self.duration_s), "start_frame": int(self.start_frame),
                "guidance": self.guidance, "top_k": int(self.top_k), "steps": int(self.steps),
                "seed": int(self.seed), "blinks": bool(self.blinks),
                "settings": dict(self.settings) if self.settings else None}

    @classmethod
    def from_params(cls, p) -> "ExpressionFromTextRequest":
        if not isinstance(p, dict):
            raise InvalidParams("The expression_from_text request params must be a mapping.")
        try:
            kw = {k: p[k] for k in ("fps", "duration_s", "start_frame", "guidance", "top_k", "steps", "seed",
                                    "blinks", "settings") if k in p}
            return cls(avatar_id=p["avatar_id"], text=p["text"], **kw)
        except (KeyError, TypeError) as e:
            raise InvalidParams(f"The expression_from_text request is malformed: missing or bad {e}.") from e

    def validate(self, limits=None) -> "ExpressionFromTextRequest":
        """Check everything a client can get wrong; ``limits``: :class:`shared.protocol.Limits`."""
        max_len = getattr(limits, "max_prompt_length", 1000)
        max_frames = getattr(limits, "max_frames", 512)
        if not isinstance(self.avatar_id, str) or not self.avatar_id:
            raise InvalidParams("'avatar_id' must be the id put_avatar returned.")
        val.text("text", self.text, max_len)
        fps = val.number("fps", self.fps, MIN_FPS, MAX_FPS)
        dur = val.number("duration_s", self.duration_s, MIN_DURATION_S, MAX_DURATION_S)
        n = num_frames(dur, fps)
        if n > max_frames:
            raise InvalidParams(f"{dur:g} s at {fps:g} fps is {n} frames, more than this server's limit of "
                                f"{max_frames}; shorten the duration or lower the frame rate.")
        val.integer("start_frame", self.start_frame, MIN_START_FRAME, MAX_START_FRAME)
        _guidance_name(self.guidance)
        val.integer("top_k", self.top_k, 1, MAX_TOP_K)
        val.integer("steps", self.steps, 0, MAX_STEPS)
        val.integer("seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.blinks, bool):
            raise InvalidParams(f"'blinks' must be true or false, got {self.blinks!r}.")
        _check_settings(self.settings)
        return self

    @property
    def num_frames(self) -> int:
        return num_frames(self.duration_s, self.fps)


@dataclass
class ExpressionFromVideoRequest:
    """Capture expressions from a photo (one frame) or a video (frames travel as an array)."""

    fps: float = DEFAULT_FPS
    start_frame: int = DEFAULT_START_FRAME
    smoothing: float = DEFAULT_SMOOTHING
    regressor: str = DEFAULT_REGRESSOR
    head_rotation: bool = True
    neutral_frame: int = -1        # a frame with a relaxed face (index into frames), -1 = none marked
    avatar_id: str = ""            # optional; the result is by ARKit name either way

    def to_params(self) -> dict:
        p = {"fps": float(self.fps), "start_frame": int(self.start_frame), "smoothing": float(self.smoothing),
             "regressor": self.regressor, "head_rotation": bool(self.head_rotation),
             "neutral_frame": int(self.neutral_frame)}
        if self.avatar_id:
            p["avatar_id"] = self.avatar_id
        return p

    @classmethod
    def from_params(cls, p) -> "ExpressionFromVideoRequest":
        if not isinstance(p, dict):
            raise InvalidParams("The expression_from_video request params must be a mapping.")
        try:
            return cls(**{k: p[k] for k in ("fps", "start_frame", "smoothing", "regressor", "head_rotation",
                                            "neutral_frame", "avatar_id") if k in p})
        except TypeError as e:
            raise InvalidParams(f"The expression_from_video request is malformed: {e}.") from e

    def validate(self, limits=None, arrays: dict | None = None) -> "ExpressionFromVideoRequest":
        """Check the params, and the ``frames`` array when ``arrays`` is given."""
        val.number("fps", self.fps, MIN_FPS, MAX_FPS)
        val.integer("start_frame", self.start_frame, MIN_START_FRAME, MAX_START_FRAME)
        val.number("smoothing", self.smoothing, 0.0, MAX_SMOOTHING)
        val.choice("regressor", self.regressor, REGRESSORS)
        if not isinstance(self.head_rotation, bool):
            raise InvalidParams(f"'head_rotation' must be true or false, got {self.head_rotation!r}.")
        if not isinstance(self.avatar_id, str):
            raise InvalidParams("'avatar_id' must be text (or left out).")
        val.integer("neutral_frame", self.neutral_frame, -1, getattr(limits, "max_frames", 512) - 1)
        if arrays is not None:
            n = len(check_frames(arrays.get("frames"), limits))
            if self.neutral_frame >= n:
                raise InvalidParams(f"'neutral_frame' is {self.neutral_frame} but only {n} frame(s) were sent "
                                    f"(frames count from 0; -1 = no neutral frame).")
        return self


def check_frames(frames, limits=None) -> np.ndarray:
    """The ``frames`` array of a video request: [N,H,W,3] uint8 within the limits."""
    max_frames = getattr(limits, "max_frames", 512)
    max_side = getattr(limits, "max_image_side", 4096)
    if frames is None:
        raise InvalidParams("Send the photo or video frames as an array 'frames' [N,H,W,3] uint8 (N = 1 for a photo).")
    a = np.asarray(frames)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
        raise InvalidParams(f"'frames' must be [N,H,W,3] uint8 sRGB (row 0 at the top), got {a.dtype} "
                            f"{list(a.shape)}.")
    if a.shape[0] < 1:
        raise InvalidParams("'frames' holds no frames.")
    if a.shape[0] > max_frames:
        raise TooLarge(f"'frames' holds {a.shape[0]} frames; this server's limit is {max_frames}: send a "
                           f"shorter clip or fewer frames per second.")
    val.image("frames[0]", a[0], max_side, min_side=MIN_FRAME_SIDE)
    return a


@dataclass
class ExpressionResult:
    """Weights by ARKit name over frames (see the module docstring for the wire layout)."""

    names: list[str]
    weights: np.ndarray                  # [N,K] float32
    fps: float
    start_frame: int
    candidates: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    head_rotation: np.ndarray | None = None   # [N,3] float32 degrees
    detected: np.ndarray | None = None        # [N] uint8

    @property
    def frames(self) -> np.ndarray:
        """[N] float32 scene frames, one per row of ``weights``."""
        return (self.start_frame + np.arange(len(self.weights))).astype(np.float32)

    def check(self) -> "ExpressionResult":
        """Raise InvalidParams if the arrays disagree with the names (a malformed result)."""
        w = np.asarray(self.weights)
        if w.ndim != 2 or w.shape[1] != len(self.names):
            raise InvalidParams(f"Expression weights must be [frames, {len(self.names)}], got {list(w.shape)}.")
        if not np.isfinite(w).all() or w.min(initial=0) < 0 or w.max(initial=0) > 1:
            raise InvalidParams("Expression weights must be finite and within [0, 1].")
        bad = [n for n in self.names if n not in ARKIT_NAMES]
        if bad:
            raise InvalidParams(f"Expression result names non-ARKit blendshapes: {bad[:5]}.")
        for arr, what in ((self.head_rotation, "head_rotation"), (self.detected, "detected")):
            if arr is not None and len(arr) != len(w):
                raise InvalidParams(f"'{what}' has {len(arr)} rows for {len(w)} frames.")
        if not math.isfinite(float(self.fps)) or self.fps <= 0:
            raise InvalidParams("The result's fps must be positive.")
        return self

    def to_wire(self) -> tuple[dict, dict[str, np.ndarray]]:
        body = {"names": list(self.names), "fps": float(self.fps), "start_frame": int(self.start_frame),
                "candidates": list(self.candidates), "labels": list(self.labels), "metadata": dict(self.metadata)}
        arrays = {"weights": np.ascontiguousarray(self.weights, np.float32), "frames": self.frames}
        if self.head_rotation is not None:
            arrays["head_rotation"] = np.ascontiguousarray(self.head_rotation, np.float32)
        if self.detected is not None:
            arrays["detected"] = np.ascontiguousarray(self.detected, np.uint8)
        return body, arrays

    @classmethod
    def from_wire(cls, body: dict, arrays: dict) -> "ExpressionResult":
        try:
            return cls(names=[str(n) for n in body["names"]], weights=np.asarray(arrays["weights"], np.float32),
                       fps=float(body["fps"]), start_frame=int(body["start_frame"]),
                       candidates=list(body.get("candidates") or []), labels=list(body.get("labels") or []),
                       metadata=dict(body.get("metadata") or {}), head_rotation=arrays.get("head_rotation"),
                       detected=arrays.get("detected")).check()
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidParams(f"The expression result is incomplete or malformed ({e!r}).") from e

    def to_json(self) -> dict:
        """A JSON-able dict (the CLI's ``track.json``): the body plus the arrays as lists."""
        body, arrays = self.to_wire()
        body["weights"] = {n: [round(float(x), 5) for x in self.weights[:, k]] for k, n in enumerate(self.names)}
        body["frames"] = arrays["frames"].tolist()
        if self.head_rotation is not None:
            body["head_rotation_deg"] = np.round(self.head_rotation, 3).tolist()
        if self.detected is not None:
            body["detected"] = [bool(x) for x in self.detected]
        return body

    @classmethod
    def from_json(cls, d: dict) -> "ExpressionResult":
        try:
            names = list(d["names"])
            w = np.stack([np.asarray(d["weights"][n], np.float32) for n in names], -1) if names else \
                np.zeros((len(d.get("frames", [])), 0), np.float32)
            hr = d.get("head_rotation_deg")
            det = d.get("detected")
            return cls(names=names, weights=w, fps=float(d["fps"]), start_frame=int(d["start_frame"]),
                       candidates=list(d.get("candidates") or []), labels=list(d.get("labels") or []),
                       metadata=dict(d.get("metadata") or {}),
                       head_rotation=None if hr is None else np.asarray(hr, np.float32),
                       detected=None if det is None else np.asarray(det, np.uint8)).check()
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidParams(f"The expression track JSON is incomplete or malformed ({e!r}).") from e

    def to_track(self, avatar_names) -> tuple[ExpressionTrack, list[str]]:
        """An :class:`ExpressionTrack` over the avatar's own shape-key names, and the
        ARKit names it skipped because the avatar lacks them."""
        mapping, _ = match_names(avatar_names)
        pairs, skipped = apply_mapping(self.names, mapping)
        cols = [self.names.index(a) for a, _ in pairs]
        w = np.asarray(self.weights, np.float32)[:, cols] if cols else np.zeros((len(self.weights), 0), np.float32)
        return ExpressionTrack(frames=self.frames, names=[b for _, b in pairs], weights=w,
                               fps=float(self.fps)), skipped
