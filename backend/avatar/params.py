"""The parameter vector of the parametric sample avatar.

A later capability fits these parameters to a selfie (an imitator network
predicts them, discrete choices relaxed to one-hot), so the vector layout is
part of the contract and documented here.

Vector layout (``AvatarParams.to_vector``), float32:

  [0:SHAPE]            continuous shape parameters, each in [-1, 1], 0 = average
  [SHAPE:SHAPE+COLOR]  continuous colours, each in [0, 1]
  then one one-hot block per discrete asset, in DISCRETE order

Shape parameters (-1 .. +1, physical meaning of the extremes):

  head_width       head half-width 0.068 .. 0.086 m
  head_depth       head front/back depth x0.90 .. x1.10
  head_height      crown height x0.92 .. x1.08
  jaw_width        jaw/cheek-bone width at mouth level x0.85 .. x1.15
  chin_length      chin drops 0.010 m higher .. 0.010 m lower
  chin_protrusion  chin point 0.008 m back .. 0.008 m forward
  cheek_fullness   cheek bulge 0 .. 0.010 m
  nose_length      bridge-to-tip 0.038 .. 0.054 m
  nose_width       alar width x0.75 .. x1.30
  nose_projection  tip projection 0.014 .. 0.026 m
  eye_size         eye opening and eyeball x0.85 .. x1.15
  eye_spacing      eye centres +-0.028 .. +-0.036 m from the midline
  eye_height       eyes 0.008 m lower .. higher
  mouth_width      mouth half-width 0.019 .. 0.029 m
  lip_fullness     lip bulge 0.002 .. 0.008 m
  ear_size         ear height x0.8 .. x1.2
  brow_height      brow ridge and eyebrows 0.006 m lower .. higher
  neck_width       neck radius x0.85 .. x1.15
  shoulder_width   shoulder half-width 0.17 .. 0.22 m

Colours (0 .. 1):

  skin_tone        0 very light .. 1 very dark
  skin_warmth      0 pink/cool .. 1 olive/warm
  hair_lightness   0 black .. 1 platinum blond
  hair_redness     0 ash .. 1 copper red
  eye_color        0 dark brown, 0.33 hazel, 0.66 green, 1 blue
  lip_tint         0 pale .. 1 deep red

Discrete assets (each a separate mesh):

  hairstyle        none, short, long, bun
  eyebrow_style    thin, medium, thick
  glasses          none, round, rectangular
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from shared.errors import InvalidParams

SHAPE_NAMES = (
    "head_width", "head_depth", "head_height", "jaw_width", "chin_length", "chin_protrusion",
    "cheek_fullness", "nose_length", "nose_width", "nose_projection", "eye_size", "eye_spacing",
    "eye_height", "mouth_width", "lip_fullness", "ear_size", "brow_height", "neck_width",
    "shoulder_width",
)
COLOR_NAMES = ("skin_tone", "skin_warmth", "hair_lightness", "hair_redness", "eye_color", "lip_tint")
DISCRETE = {
    "hairstyle": ("none", "short", "long", "bun"),
    "eyebrow_style": ("thin", "medium", "thick"),
    "glasses": ("none", "round", "rectangular"),
}
SHAPE_RANGE = (-1.0, 1.0)
COLOR_RANGE = (0.0, 1.0)
VECTOR_SIZE = len(SHAPE_NAMES) + len(COLOR_NAMES) + sum(len(v) for v in DISCRETE.values())


@dataclass(frozen=True)
class AvatarParams:
    """One point of the avatar space; the defaults give an average adult."""

    head_width: float = 0.0
    head_depth: float = 0.0
    head_height: float = 0.0
    jaw_width: float = 0.0
    chin_length: float = 0.0
    chin_protrusion: float = 0.0
    cheek_fullness: float = 0.0
    nose_length: float = 0.0
    nose_width: float = 0.0
    nose_projection: float = 0.0
    eye_size: float = 0.0
    eye_spacing: float = 0.0
    eye_height: float = 0.0
    mouth_width: float = 0.0
    lip_fullness: float = 0.0
    ear_size: float = 0.0
    brow_height: float = 0.0
    neck_width: float = 0.0
    shoulder_width: float = 0.0
    skin_tone: float = 0.35
    skin_warmth: float = 0.5
    hair_lightness: float = 0.25
    hair_redness: float = 0.3
    eye_color: float = 0.2
    lip_tint: float = 0.5
    hairstyle: str = "short"
    eyebrow_style: str = "medium"
    glasses: str = "none"

    def __post_init__(self):
        for n in SHAPE_NAMES + COLOR_NAMES:
            v = getattr(self, n)
            lo, hi = SHAPE_RANGE if n in SHAPE_NAMES else COLOR_RANGE
            if not isinstance(v, (int, float)) or not np.isfinite(v) or not lo <= v <= hi:
                raise InvalidParams(f"Avatar parameter '{n}' must be a number in [{lo}, {hi}], got {v!r}.")
        for n, choices in DISCRETE.items():
            if getattr(self, n) not in choices:
                raise InvalidParams(f"Avatar parameter '{n}' must be one of {list(choices)}, "
                                    f"got {getattr(self, n)!r}.")

    # -- conversions -------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AvatarParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidParams(f"Unknown avatar parameters {unknown}; known: {sorted(known)}.")
        return cls(**{k: (float(v) if k in SHAPE_NAMES + COLOR_NAMES and isinstance(v, (int, float))
                          else v) for k, v in d.items()})

    @classmethod
    def from_json(cls, path) -> "AvatarParams":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise InvalidParams(f"Cannot read avatar parameters from {path}: {e}") from e
        if not isinstance(d, dict):
            raise InvalidParams(f"{path}: avatar parameters must be a JSON object of name: value.")
        return cls.from_dict(d)

    def to_vector(self) -> np.ndarray:
        """``[VECTOR_SIZE]`` float32 (layout in the module docstring)."""
        parts = [getattr(self, n) for n in SHAPE_NAMES + COLOR_NAMES]
        for n, choices in DISCRETE.items():
            parts += [1.0 if getattr(self, n) == c else 0.0 for c in choices]
        return np.asarray(parts, np.float32)

    @classmethod
    def from_vector(cls, vec) -> "AvatarParams":
        """Inverse of :meth:`to_vector`; continuous values are clipped to their
        ranges and each (possibly relaxed) one-hot block is decided by argmax."""
        vec = np.asarray(vec, np.float64).reshape(-1)
        if vec.shape[0] != VECTOR_SIZE:
            raise InvalidParams(f"An avatar parameter vector has {VECTOR_SIZE} entries, got {vec.shape[0]}.")
        d, i = {}, 0
        for n in SHAPE_NAMES:
            d[n] = float(np.clip(vec[i], *SHAPE_RANGE))
            i += 1
        for n in COLOR_NAMES:
            d[n] = float(np.clip(vec[i], *COLOR_RANGE))
            i += 1
        for n, choices in DISCRETE.items():
            d[n] = choices[int(np.argmax(vec[i:i + len(choices)]))]
            i += len(choices)
        return cls(**d)


def random_params(seed: int) -> AvatarParams:
    """A reproducible random point of the space (uniform shapes/colours, uniform choices)."""
    rng = np.random.default_rng(seed)
    d = {n: float(rng.uniform(-1, 1)) for n in SHAPE_NAMES}
    d.update({n: float(rng.uniform(0, 1)) for n in COLOR_NAMES})
    d.update({n: str(rng.choice(c)) for n, c in DISCRETE.items()})
    return AvatarParams(**d)
