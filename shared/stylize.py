"""The ``stylize`` / ``prepare`` job contracts, shared by the add-on, the CLI and the
server: what a request carries, the bounds and defaults of every field (defined once,
here), and what a result holds.

Constants (UPPER_CASE below) are the one home of each default and bound: the add-on's
property definitions (min/max/default/enum items), the CLI's argparse defaults and
choices, the server's job validation and the engine all read them from this module.

``stylize`` request (``submit`` with job ``stylize``): ``params`` =
:meth:`StylizeRequest.to_params`:
    avatar_id        str                      the uploaded avatar's content hash
    terms            [{kind, weight, text, image_index}]  1..MAX_PROMPTS style terms;
                     kind "text" (text: non-blank, <= MAX_PROMPT_LENGTH characters) or
                     "image" (image_index i names array ``style_image_<i>``);
                     weight in [MIN_WEIGHT, MAX_WEIGHT] (negative = away from the style)
    cameras          [Camera.to_dict()]       1..MAX_CAMERAS Blender cameras
    frames           [float]                  1..MAX_FRAMES expression-track frames
    identity         float in [MIN_IDENTITY, MAX_IDENTITY] (0 = free restyle, 1 = keep)
    steps            int in [MIN_STEPS, MAX_STEPS] adaptation steps (0 = the preset's)
    preset           one of PRESET_NAMES
    seed             int in [0, MAX_SEED]
    guidance         str <= MAX_GUIDANCE_LENGTH (open_clip name:tag or TEST_GUIDANCE)
    texture_size     int in [MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE] pixels
    passes           [str] subset of PASS_NAMES
    pass_resolution  int in [MIN_PASS_RESOLUTION, MAX_PASS_RESOLUTION] pixels, longer side
    name             str <= MAX_NAME_LENGTH (result name; "" = the first text prompt)
    time_budget_s    float in [0, MAX_TIME_BUDGET_S] seconds (0 = none)
    track            optional {"names": [str], "frames": [float], "weights": [[float]]}
                     (weights [len(frames), len(names)], finite)
    settings         optional {name: int} engine overrides (names and bounds: the
                     backend's style config, ``backend/style/config.py``)
arrays ``style_image_<i>`` ([H,W,3] uint8 sRGB, row 0 top) for image terms.

``prepare`` request: ``params`` = :meth:`PrepareRequest.to_params`: avatar_id, guidance,
preset, iterations (Reptile iterations in [MIN_ITERATIONS, MAX_ITERATIONS], 0 = the
preset's), seed, optional styles (1..MAX_STYLES prompts, each <= MAX_PROMPT_LENGTH; None =
the shipped list), optional settings; arrays ``style_image_<i>``. Result body: the
summary of ``backend.style.meta.prepare`` (checkpoint, iterations, resumed_from, styles,
seconds, guidance, guidance_is_test_model, avatar_hash, final_inner_style_loss, device).

Result arrays (see :class:`StylizeResult`):
    texture_<i>          [H,W,3] uint8 sRGB   stylized base colour of texture set i
    neutral_offsets      [V,3]   float32      metres; stylized rest = vertices + neutral_offsets
    blendshape_offsets   [K,V,3] float32      metres; stylized delta k = blendshapes[k] + blendshape_offsets[k]
                                              (order = the avatar's blendshape_names)
    pass_<name>          [C,N,h,w,c]          one array per pass over C cameras x N frames;
                                              color/albedo/original: uint8 sRGB c=3;
                                              normal: float16 c=3 (world space, [-1,1]);
                                              depth: float32 c=1 (Blender Z pass: metres along the
                                              view axis, 0 on background);
                                              alpha: uint8 c=1
                                              (color/albedo/original are black where alpha = 0)

Result body: ``name``, ``texture_sets`` (names, order of texture_<i>), ``blendshape_names``,
``cameras`` (dicts), ``frames``, ``passes`` (names) and ``metadata``: prompts, identity,
guidance, guidance_is_test_model (+ ``warning``), steps, stopped ("done"|"time_budget"),
init ("meta"|"identity"), losses (per step dicts), seconds, device, expression_dampening
(mean over blendshapes of |stylized delta|/|original delta|), avatar_hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import validation as check
from .camera import Camera, projection
from .errors import InvalidParams, MetamorphError
from .protocol import Limits

# --- Defaults and bounds (the one home of each; read at call time, never copied) -------------

DEFAULT_GUIDANCE = "ViT-B-32:laion2b_s34b_b79k"  # open_clip name:tag the engine guides with
TEST_GUIDANCE = "test-tiny"     # the labelled test guidance model (untrained, seeded weights)
MAX_GUIDANCE_LENGTH = 256       # characters of a guidance name

PRESET_DESCRIPTIONS = {         # quality presets: name -> one line for menus (order = menu order)
    "draft": "Fast, for iteration (CPU)",
    "quality": "Slower, for finals (GPU)",
}
PRESET_NAMES = tuple(PRESET_DESCRIPTIONS)
QUALITY_PRESETS = PRESET_NAMES  # older name of PRESET_NAMES
DEFAULT_PRESET = "draft"

PASS_NAMES = ("color", "albedo", "normal", "depth", "alpha", "original")
TERM_KINDS = ("text", "image")

DEFAULT_WEIGHT = 1.0            # weight of one style term; negative = away from that style
MIN_WEIGHT = -10.0
MAX_WEIGHT = 10.0

DEFAULT_IDENTITY = 0.5          # identity strength: 0 = free restyle, 1 = keep the original
MIN_IDENTITY = 0.0
MAX_IDENTITY = 1.0

DEFAULT_STEPS = 0               # adaptation steps; 0 = the preset's
MIN_STEPS = 0
MAX_STEPS = 10000

DEFAULT_ITERATIONS = 0          # prepare: Reptile iterations; 0 = the preset's
MIN_ITERATIONS = 0
MAX_ITERATIONS = 100000

DEFAULT_SEED = 0
MAX_SEED = 2 ** 31 - 1          # fits Blender's IntProperty

DEFAULT_TEXTURE_SIZE = 1024     # pixels, side of each stylized texture
MIN_TEXTURE_SIZE = 16
MAX_TEXTURE_SIZE = 4096

DEFAULT_PASS_RESOLUTION = 512   # pixels, longer side of each rendered pass
MIN_PASS_RESOLUTION = 16
MAX_PASS_RESOLUTION = 4096

MAX_FRAMES = 256                # frames per stylize request (each one is rendered for every camera)
MAX_FRAME_NUMBER = 1048574      # |frame| (Blender's own frame range)
MAX_TRACK_KEYS = 100000         # keyframes in a request's expression track
MAX_TRACK_WEIGHT = 10.0         # |blendshape weight| in a request's track

MAX_PROMPTS = Limits.max_prompts              # style terms per request (the server may lower it)
MAX_PROMPT_LENGTH = Limits.max_prompt_length  # characters per prompt (the server may lower it)
MAX_CAMERAS = Limits.max_cameras              # cameras per request (the server may lower it)
MAX_STYLES = 256                # prepare: meta-training prompts (the shipped list has ~120)
MAX_NAME_LENGTH = 256           # characters of a result name
MAX_AVATAR_ID_LENGTH = 128
MAX_TIME_BUDGET_S = 7 * 24 * 3600.0
MAX_SETTING_NAME_LENGTH = 64    # engine override names (their values are checked by the engine)

STYLE_IMAGE_PREFIX = "style_image_"  # request array name of style image i: f"{STYLE_IMAGE_PREFIX}{i}"


def _limits(limits: Limits | None) -> Limits:
    return limits if limits is not None else Limits()


def _labelled(label: str, fn, *args, **kw):
    """Run a :mod:`shared.validation` check; prefix its sentence with the field's
    label as the panel shows it (so a user knows which control to fix)."""
    try:
        return fn(*args, **kw)
    except MetamorphError as e:
        raise type(e)(f"{label}: {e.message}", details=e.details) from None


def style_images(arrays: dict, limits: Limits | None = None) -> dict[int, np.ndarray]:
    """The request's style images ``{i: [H,W,3] uint8}`` from arrays named
    ``style_image_<i>``, each checked (dtype, shape, size). Other arrays are ignored."""
    lim = _limits(limits)
    out = {}
    for k, a in (arrays or {}).items():
        if not k.startswith(STYLE_IMAGE_PREFIX):
            continue
        tail = k[len(STYLE_IMAGE_PREFIX):]
        if not tail.isdigit() or int(tail) >= max(MAX_PROMPTS, MAX_STYLES):
            raise InvalidParams(f"Bad style image array name '{k}': use '{STYLE_IMAGE_PREFIX}<index>'.")
        out[int(tail)] = check.image(k, a, lim.max_image_side)
    return out


def check_settings(settings) -> dict | None:
    """Engine overrides: None or a mapping of names to whole numbers. Which names exist and
    their bounds belong to the engine (``backend.style.config.resolve`` checks them)."""
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise InvalidParams("'settings' must be a mapping of engine setting names to whole numbers.")
    for k, val in settings.items():
        check.text("settings name", k, MAX_SETTING_NAME_LENGTH)
        if isinstance(val, bool) or not isinstance(val, int):
            raise InvalidParams(f"Engine setting '{k}' must be a whole number, got {val!r}.")
    return dict(settings)


def check_guidance_name(name) -> str:
    return _labelled("Guidance", check.text, "guidance", name, MAX_GUIDANCE_LENGTH)


def check_track(track, limits: Limits | None = None) -> None:
    """An optional request track ``{"names", "frames", "weights" [F][N]}``: finite, consistent."""
    if track is None:
        return
    lim = _limits(limits)
    if not isinstance(track, dict) or not {"names", "frames", "weights"} <= set(track):
        raise InvalidParams("'track' must be a mapping with 'names', 'frames' and 'weights'.")
    names = check.text_list("track.names", track["names"], 0, lim.max_blendshapes, 256)
    frames = check.sequence("track.frames", track["frames"], 1, MAX_TRACK_KEYS)
    try:
        f = np.asarray(frames, np.float64)
        w = np.asarray(check.sequence("track.weights", track["weights"], len(frames), len(frames)), np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidParams(f"'track' frames and weights must be numbers: {e}.") from None
    if f.ndim != 1 or w.shape != (len(frames), len(names)):
        raise InvalidParams(f"'track.weights' must be [{len(frames)} frames][{len(names)} names], "
                            f"got shape {list(w.shape)}.")
    if not np.isfinite(f).all() or np.abs(f).max() > MAX_FRAME_NUMBER:
        raise InvalidParams(f"'track.frames' must be finite frame numbers within +-{MAX_FRAME_NUMBER}.")
    if w.size and (not np.isfinite(w).all() or np.abs(w).max() > MAX_TRACK_WEIGHT):
        raise InvalidParams(f"'track.weights' must be finite and within +-{MAX_TRACK_WEIGHT}.")


@dataclass
class StyleTerm:
    """One weighted style prompt: text, or a reference image (index into the
    request's ``style_image_<i>`` arrays)."""

    kind: str  # "text" | "image"
    weight: float = DEFAULT_WEIGHT
    text: str = ""
    image_index: int = -1

    def validate(self, i: int, limits: Limits | None = None) -> None:
        lim = _limits(limits)
        label = f"Style term {i}"
        _labelled(label, check.choice, "kind", self.kind, TERM_KINDS)
        _labelled(label, check.number, "weight", self.weight, MIN_WEIGHT, MAX_WEIGHT)
        if self.kind == "text":
            if isinstance(self.text, str) and not self.text.strip():
                raise InvalidParams(f"{label} has an empty prompt: type a style description.")
            _labelled(label, check.text, "text", self.text, min(MAX_PROMPT_LENGTH, lim.max_prompt_length))
        else:
            _labelled(label, check.integer, "image_index", self.image_index, 0, max(MAX_PROMPTS, MAX_STYLES) - 1)


def _terms_from(p) -> list[StyleTerm]:
    terms = p["terms"]
    if not isinstance(terms, (list, tuple)) or not all(isinstance(t, dict) for t in terms):
        raise TypeError("'terms' must be a list of {kind, weight, text, image_index} maps")
    return [StyleTerm(**t) for t in terms]


def _cameras_from(p) -> list[Camera]:
    cams = p["cameras"]
    if not isinstance(cams, (list, tuple)) or not all(isinstance(c, dict) for c in cams):
        raise TypeError("'cameras' must be a list of camera maps")
    return [Camera.from_dict(c) for c in cams]


@dataclass
class StylizeRequest:
    avatar_id: str
    terms: list[StyleTerm]
    cameras: list[Camera]
    frames: list[float] = field(default_factory=lambda: [0.0])  # expression-track frames to use
    identity: float = DEFAULT_IDENTITY  # 0 = free restyle, 1 = keep the original as much as possible
    steps: int = DEFAULT_STEPS  # 0 = the preset's default
    preset: str = DEFAULT_PRESET
    seed: int = DEFAULT_SEED
    guidance: str = DEFAULT_GUIDANCE
    texture_size: int = DEFAULT_TEXTURE_SIZE
    passes: list[str] = field(default_factory=lambda: list(PASS_NAMES))
    pass_resolution: int = DEFAULT_PASS_RESOLUTION
    name: str = ""  # style name for the result (defaults to the first text prompt)
    time_budget_s: float = 0.0  # 0 = no budget
    track: dict | None = None  # optional {"names": [...], "frames": [...], "weights": [[...]]}
    settings: dict | None = None  # optional engine overrides, e.g. {"resolution": 64, "steps": 10}

    def to_params(self) -> dict:
        return {
            "avatar_id": self.avatar_id,
            "terms": [vars(t).copy() for t in self.terms],
            "cameras": [c.to_dict() for c in self.cameras],
            "frames": [float(f) for f in self.frames],
            "identity": float(self.identity), "steps": int(self.steps), "preset": self.preset,
            "seed": int(self.seed), "guidance": self.guidance, "texture_size": int(self.texture_size),
            "passes": list(self.passes), "pass_resolution": int(self.pass_resolution),
            "name": self.name, "time_budget_s": float(self.time_budget_s), "track": self.track,
            "settings": dict(self.settings) if self.settings else None,
        }

    @classmethod
    def from_params(cls, p: dict) -> "StylizeRequest":
        """The request from wire params (types as sent: :meth:`validate` checks them)."""
        try:
            if not isinstance(p, dict):
                raise TypeError("the params must be a map")
            kw = {k: p[k] for k in ("frames", "identity", "steps", "preset", "seed", "guidance",
                                    "texture_size", "passes", "pass_resolution", "name",
                                    "time_budget_s", "track", "settings") if k in p}
            return cls(avatar_id=p["avatar_id"], terms=_terms_from(p), cameras=_cameras_from(p), **kw)
        except KeyError as e:
            raise InvalidParams(f"The stylize request is malformed: {e} is missing.") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise InvalidParams(f"The stylize request is malformed: {e}.") from None

    def validate(self, limits: Limits | None = None, images: dict | None = None) -> "StylizeRequest":
        """Check every field against the bounds above and ``limits`` (the server's; None =
        defaults). ``images``: the request's :func:`style_images`, when known, so image terms
        are checked against what was sent. Raises InvalidParams / TooLarge; returns self."""
        lim = _limits(limits)
        check.text("avatar_id", self.avatar_id, MAX_AVATAR_ID_LENGTH)
        terms = _labelled("Style terms", check.sequence, "terms", self.terms, 1,
                          min(MAX_PROMPTS, lim.max_prompts))
        for i, t in enumerate(terms):
            if not isinstance(t, StyleTerm):
                raise InvalidParams(f"Style term {i} must be a StyleTerm, got {type(t).__name__}.")
            t.validate(i, lim)
            if t.kind == "image" and images is not None and t.image_index not in images:
                raise InvalidParams(f"Style term {i} names image {t.image_index} but no "
                                    f"'{STYLE_IMAGE_PREFIX}{t.image_index}' array was sent.")
        if sum(abs(float(t.weight)) for t in terms) == 0:
            raise InvalidParams("Give at least one style prompt or style image with a non-zero weight.")
        cams = _labelled("Cameras", check.sequence, "cameras", self.cameras, 1, min(MAX_CAMERAS, lim.max_cameras))
        for i, cam in enumerate(cams):
            try:
                projection(cam)
            except (ValueError, TypeError, AttributeError) as e:
                raise InvalidParams(f"Camera {i} ('{getattr(cam, 'name', '?')}') cannot be used: {e}.") from None
        _labelled("Frames", check.numbers, "frames", self.frames, -MAX_FRAME_NUMBER, MAX_FRAME_NUMBER, 1,
                  min(MAX_FRAMES, lim.max_frames))
        _labelled("Identity strength", check.number, "identity", self.identity, MIN_IDENTITY, MAX_IDENTITY)
        _labelled("Steps", check.integer, "steps", self.steps, MIN_STEPS, MAX_STEPS)
        check.choice("preset", self.preset, PRESET_NAMES)
        _labelled("Seed", check.integer, "seed", self.seed, 0, MAX_SEED)
        check_guidance_name(self.guidance)
        _labelled("Texture size", check.integer, "texture_size", self.texture_size,
                  MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE)
        passes = check.sequence("passes", self.passes, 1, len(PASS_NAMES))
        for p in passes:
            check.choice("passes", p, PASS_NAMES)
        if len(set(passes)) != len(passes):
            raise InvalidParams(f"'passes' names a pass twice: {list(passes)}.")
        _labelled("Pass resolution", check.integer, "pass_resolution", self.pass_resolution,
                  MIN_PASS_RESOLUTION, MAX_PASS_RESOLUTION)
        check.text("name", self.name, MAX_NAME_LENGTH, allow_empty=True)
        _labelled("Time budget", check.number, "time_budget_s", self.time_budget_s, 0.0, MAX_TIME_BUDGET_S)
        check_track(self.track, lim)
        check_settings(self.settings)
        return self

    def style_name(self) -> str:
        """The result's name: ``name``, else the first text prompt."""
        return self.name or next((t.text for t in self.terms if t.kind == "text" and t.text), "image style")


@dataclass
class PrepareRequest:
    """Fit the style network to an avatar and meta-train its initialization (Reptile)."""

    avatar_id: str
    guidance: str = DEFAULT_GUIDANCE
    preset: str = DEFAULT_PRESET
    iterations: int = DEFAULT_ITERATIONS  # 0 = the preset's
    seed: int = DEFAULT_SEED
    styles: list[str] | None = None  # None = the shipped meta-training list
    settings: dict | None = None  # engine overrides, as for stylize

    def to_params(self) -> dict:
        p = {"avatar_id": self.avatar_id, "guidance": self.guidance, "preset": self.preset,
             "iterations": int(self.iterations), "seed": int(self.seed)}
        if self.styles is not None:
            p["styles"] = list(self.styles)
        if self.settings:
            p["settings"] = dict(self.settings)
        return p

    @classmethod
    def from_params(cls, p: dict) -> "PrepareRequest":
        try:
            if not isinstance(p, dict):
                raise TypeError("the params must be a map")
            kw = {k: p[k] for k in ("guidance", "preset", "iterations", "seed", "styles", "settings")
                  if k in p and p[k] is not None}
            return cls(avatar_id=p.get("avatar_id", ""), **kw)
        except (TypeError, ValueError) as e:
            raise InvalidParams(f"The prepare request is malformed: {e}.") from None

    def validate(self, limits: Limits | None = None, images: dict | None = None) -> "PrepareRequest":
        """Check every field (as :meth:`StylizeRequest.validate`); the style list is under
        the prompt length limit and MAX_STYLES. Raises InvalidParams / TooLarge; returns self."""
        lim = _limits(limits)
        check.text("avatar_id", self.avatar_id, MAX_AVATAR_ID_LENGTH, allow_empty=True)
        check_guidance_name(self.guidance)
        check.choice("preset", self.preset, PRESET_NAMES)
        _labelled("Iterations", check.integer, "iterations", self.iterations, MIN_ITERATIONS, MAX_ITERATIONS)
        _labelled("Seed", check.integer, "seed", self.seed, 0, MAX_SEED)
        if self.styles is not None:
            _labelled("Styles", check.text_list, "styles", self.styles, 1, MAX_STYLES,
                      min(MAX_PROMPT_LENGTH, lim.max_prompt_length))
        if images is not None and len(images) > MAX_STYLES:
            raise InvalidParams(f"Send at most {MAX_STYLES} style images, got {len(images)}.")
        check_settings(self.settings)
        return self


@dataclass
class StylizeResult:
    body: dict  # {"name", "metadata", "texture_sets": [names], "blendshape_names", "cameras", "frames", "passes"}
    textures: list[np.ndarray]
    neutral_offsets: np.ndarray
    blendshape_offsets: np.ndarray
    passes: dict[str, np.ndarray]

    def to_wire(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"texture_{i}": t for i, t in enumerate(self.textures)}
        arrays["neutral_offsets"] = self.neutral_offsets
        arrays["blendshape_offsets"] = self.blendshape_offsets
        arrays.update({f"pass_{k}": v for k, v in self.passes.items()})
        return dict(self.body), arrays

    @classmethod
    def from_wire(cls, body: dict, arrays: dict[str, np.ndarray]) -> "StylizeResult":
        n = len(body.get("texture_sets", []))
        return cls(body=dict(body), textures=[arrays[f"texture_{i}"] for i in range(n)],
                   neutral_offsets=arrays["neutral_offsets"],
                   blendshape_offsets=arrays["blendshape_offsets"],
                   passes={k[5:]: v for k, v in arrays.items() if k.startswith("pass_")})
