"""The ``stylize`` / ``prepare`` job contract, shared by the add-on, the CLI and the
server: what a request carries and what a result holds.

Request (``submit`` with kind ``stylize``): ``params`` from :meth:`StylizeRequest.to_params`
plus arrays ``style_image_<i>`` ([H,W,3] uint8 sRGB, row 0 top) for image terms.

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
init ("meta"|"fitted"), losses (per step dicts), seconds, device, expression_dampening
(mean over blendshapes of |stylized delta|/|original delta|), avatar_hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .camera import Camera
from .errors import InvalidParams

PASS_NAMES = ("color", "albedo", "normal", "depth", "alpha", "original")
QUALITY_PRESETS = ("draft", "quality")


@dataclass
class StyleTerm:
    """One weighted style prompt: text, or a reference image (index into the
    request's ``style_image_<i>`` arrays)."""

    kind: str  # "text" | "image"
    weight: float = 1.0
    text: str = ""
    image_index: int = -1


@dataclass
class StylizeRequest:
    avatar_id: str
    terms: list[StyleTerm]
    cameras: list[Camera]
    frames: list[float] = field(default_factory=lambda: [0.0])  # expression-track frames to use
    identity: float = 0.5  # 0 = free restyle, 1 = keep the original as much as possible
    steps: int = 0  # 0 = the preset's default
    preset: str = "draft"
    seed: int = 0
    guidance: str = "ViT-B-32:laion2b_s34b_b79k"
    texture_size: int = 1024
    passes: list[str] = field(default_factory=lambda: list(PASS_NAMES))
    pass_resolution: int = 512
    name: str = ""  # style name for the result (defaults to the first text prompt)
    time_budget_s: float = 0.0  # 0 = no budget
    track: dict | None = None  # optional {"names": [...], "frames": [...], "weights": [[...]]}
    settings: dict | None = None  # optional engine overrides, e.g. {"resolution": 64, "fit_steps": 50}

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
        try:
            terms = [StyleTerm(**t) for t in p["terms"]]
            cams = [Camera.from_dict(c) for c in p["cameras"]]
            kw = {k: p[k] for k in ("frames", "identity", "steps", "preset", "seed", "guidance",
                                    "texture_size", "passes", "pass_resolution", "name",
                                    "time_budget_s", "track", "settings") if k in p}
            return cls(avatar_id=str(p["avatar_id"]), terms=terms, cameras=cams, **kw)
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidParams(f"The stylize request is malformed: {e}.") from e


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
