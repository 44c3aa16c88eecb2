"""Differentiable renderer that agrees with Blender's cameras.

    from backend.render import render, Lights
    passes = render(vertices, faces, uvs, uv_faces, textures, face_material, cameras,
                    passes=("color", "alpha"))

See :func:`backend.render.pipeline.render` for shapes and units, and
:func:`shared.camera.projection` for the camera conversion used everywhere.
"""

from .camera import CameraBatch, camera_batch, project, to_camera_space
from .raster import rasterize
from .pipeline import RenderSettings, render
from .shade import DEFAULT_LIGHTS, Lights, lambert, sample_texture, vertex_normals
from .validate import PASS_CHANNELS

__all__ = [
    "render", "RenderSettings", "Lights", "DEFAULT_LIGHTS", "PASS_CHANNELS", "CameraBatch", "camera_batch",
    "project", "to_camera_space", "rasterize", "sample_texture", "vertex_normals", "lambert",
]
