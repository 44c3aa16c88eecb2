"""The renderer's options: :class:`RenderSettings`, the one place they are named,
defaulted, documented and checked. ``render(..., passes=("color",))`` keywords are
the same fields, turned into a :class:`RenderSettings` by :func:`settings_from`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .shade import DEFAULT_LIGHTS, Lights
from .validate import PASS_CHANNELS

TEXTURE_WRAPS = ("repeat", "clamp")
LIGHT_SPACES = ("camera", "world")


@dataclass(frozen=True)
class RenderSettings:
    """How :func:`backend.render.render` draws a batch (all fields optional).

    size            (W,H) pixels for every view, overriding the cameras' resolution; None keeps it
    lights          :class:`Lights` (None: camera-space key + fill + ambient, ``DEFAULT_LIGHTS``)
    background      None (black), a colour [3] or images [B,H,W,3] behind color/grey/albedo
    passes          any of color (Lambert+ambient, textured), grey (same lighting, constant
                    albedo ``grey_albedo``), albedo, normal_camera, normal_world (unit
                    vectors, turned to face the viewer when ``two_sided``), depth (metres
                    along the view axis, Blender's Z pass; 0 on background), alpha
                    (coverage 0/1), uv, tri_id (int64, -1 on background)
    grey_albedo     albedo of the grey pass
    texture_wrap    "repeat" (Blender's default image extension) or "clamp"
    smooth_normals  interpolate area-weighted vertex normals (else flat face normals)
    two_sided       back faces seen through open meshes are shaded like front faces
    antialias       blend colour, grey, albedo and alpha across silhouettes by analytic
                    coverage (:mod:`.antialias`): outlines become smooth and gradients
                    reach them; composite with ``background=`` (colours are blended with
                    what is behind them), the alpha pass becomes the coverage
    fused           use the fused numba kernels for float32 on the CPU (same results;
                    False forces the plain torch ops used on other devices/dtypes)

    Raises ValueError naming the problem for an unknown pass, wrap mode or light space.
    """

    size: tuple[int, int] | None = None
    lights: Lights | None = DEFAULT_LIGHTS
    background: object = None
    passes: tuple[str, ...] = ("color",)
    grey_albedo: float = 0.8
    texture_wrap: str = "repeat"
    smooth_normals: bool = True
    two_sided: bool = True
    antialias: bool = False
    fused: bool = True

    def __post_init__(self):
        object.__setattr__(self, "passes", tuple(self.passes))
        if self.lights is None:
            object.__setattr__(self, "lights", DEFAULT_LIGHTS)
        unknown = [p for p in self.passes if p not in PASS_CHANNELS]
        if unknown:
            raise ValueError(f"unknown render passes {unknown}; available: {sorted(PASS_CHANNELS)}")
        if self.texture_wrap not in TEXTURE_WRAPS:
            raise ValueError(f"texture_wrap must be 'repeat' or 'clamp', got {self.texture_wrap!r}")
        if self.lights.space not in LIGHT_SPACES:
            raise ValueError(f"lights.space must be 'camera' or 'world', got {self.lights.space!r}")


OPTION_NAMES = tuple(f.name for f in fields(RenderSettings))


def settings_from(settings: RenderSettings | None, options: dict) -> RenderSettings:
    """The settings of one ``render`` call: ``settings`` or the keyword ``options``
    (the fields of :class:`RenderSettings`), never both."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"render() got unknown options {unknown}; the options are the fields of "
                        f"RenderSettings: {list(OPTION_NAMES)}")
    if settings is None:
        return RenderSettings(**options)
    if options:
        raise ValueError(f"pass either settings= or the keywords {sorted(options)}, not both")
    if not isinstance(settings, RenderSettings):
        raise TypeError(f"settings must be a RenderSettings, got {type(settings).__name__}")
    return settings
