"""Cameras exactly as Blender defines them.

A :class:`Camera` carries the raw Blender camera settings (world matrix, lens,
sensor, fit, shift, clip range, render resolution, pixel aspect) rather than a
derived projection, so the add-on can fill it straight from ``bpy`` data and the
backend converts it once, in :func:`shared.camera.projection` (added by the
renderer work), used everywhere.

Conventions: Blender world space, Z up, metres. The camera looks down its local
-Z axis with +Y up. ``matrix_world`` is camera-to-world, row-major ``[4,4]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict

import numpy as np

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
CAMERA_TYPES = ("PERSP", "ORTHO")


@dataclass(frozen=True)
class Camera:
    """One Blender camera at one moment.

    Units: lens and sensor sizes in millimetres, shift as a fraction of the
    larger sensor dimension (Blender's convention), ortho_scale and clip range in
    metres, resolution in pixels (already multiplied by the render percentage).
    """

    matrix_world: np.ndarray  # [4,4] float64, camera-to-world
    type: str = "PERSP"  # "PERSP" | "ORTHO"
    lens: float = 50.0
    sensor_width: float = 36.0
    sensor_height: float = 24.0
    sensor_fit: str = "AUTO"  # "AUTO" | "HORIZONTAL" | "VERTICAL"
    shift_x: float = 0.0
    shift_y: float = 0.0
    ortho_scale: float = 6.0
    clip_start: float = 0.1
    clip_end: float = 100.0
    resolution_x: int = 224
    resolution_y: int = 224
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    name: str = field(default="Camera", compare=False)

    def to_dict(self) -> dict:
        """Plain msgpack-able dict (the matrix as a nested list of 16 floats)."""
        d = asdict(self)
        d["matrix_world"] = np.asarray(self.matrix_world, dtype=np.float64).reshape(4, 4).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        d = dict(d)
        d["matrix_world"] = np.asarray(d["matrix_world"], dtype=np.float64).reshape(4, 4)
        return cls(**d)
