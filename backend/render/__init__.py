"""Differentiable renderer that agrees with Blender's cameras.

    from backend.render import render, RenderSettings, Lights
    passes = render(vertices, faces, uvs, uv_faces, textures, face_material, cameras,
                    passes=("color", "alpha"), size=(224, 224))          # keywords = RenderSettings fields
    passes = render(vertices, faces, uvs, uv_faces, textures, face_material, cameras,
                    settings=RenderSettings(passes=("color", "alpha")))

Shapes and units: :func:`backend.render.pipeline.render`. Cameras are
:class:`shared.camera.Camera` converted by :func:`shared.camera.projection` (the
one conversion, used everywhere).

Modules:
    validate     input checks (ValueError naming the problem) before anything runs
    camera       batches of Blender cameras as tensors; projection to pixels
    raster       numba z-buffer: triangle id per pixel centre (no gradients, watertight)
    interpolate  differentiable perspective-correct barycentrics (torch, any device)
    shade        normals, bilinear texture lookup (Blender's Linear + Repeat), Lambert
    cpu/         the same maths as numba kernels by stage (vertex stage, normals,
                 interpolation, texture, shading) with hand-written backward passes
    kernels      the two kernel sets (torch ops; numba for float32 on the CPU), picked per call
    antialias    analytic coverage across silhouettes (``antialias=True``): gradients at outlines
    settings     RenderSettings: every option of render(), its default and its check
    pipeline     render(): ties them together; deferred shading; passes
    procedural   numpy test assets (UV sphere with seams, textures, look-at cameras)

Gradients reach vertex positions (through visible geometry, depth, normals and
UVs; through silhouettes only with ``antialias=True``), textures and background images.
"""

from .camera import CameraBatch, camera_batch, project, to_camera_space
from .pipeline import render
from .raster import rasterize
from .settings import RenderSettings
from .shade import DEFAULT_LIGHTS, Lights, lambert, sample_texture, vertex_normals
from .validate import PASS_CHANNELS

__all__ = [
    "render", "RenderSettings", "Lights", "DEFAULT_LIGHTS", "PASS_CHANNELS", "CameraBatch", "camera_batch",
    "project", "to_camera_space", "rasterize", "sample_texture", "vertex_normals", "lambert",
]
