"""Fused CPU kernels (numba, float32) for the renderer's hot spots, by stage, each
with a hand-written backward pass (first derivatives only):

    vertex_stage  projection, smooth normals, their rotation: the per-vertex column layout
    normals       smooth area-weighted vertex normals (kernels used by the vertex stage)
    interpolate   perspective-correct barycentric interpolation at covered pixels
    texture       bilinear texture lookup (Repeat / Clamp)
    shade         deferred Lambert shading straight into the image
    parallel      the thread pool, work splits and the prefetch intrinsic they share

They compute exactly what :mod:`backend.render.camera`,
:mod:`backend.render.interpolate` and :mod:`backend.render.shade` compute with
torch ops (tests check values and gradients against them), but in one pass per
pixel without temporaries, which is several times faster on a 2-core CPU.
:mod:`backend.render.kernels` picks them for float32 tensors on the CPU.

Why it is fast on a 2-core CPU: few torch ops (whose OpenMP workers would spin
against the kernels' threads), no full-size temporaries, the backward pass never
re-reads the texture (the forward pass saves the albedo derivatives), and the
random memory reads are prefetched a few pixels ahead. Work is split by whole
views, pixel ranges or texture row bands (:mod:`.parallel`): results are
bit-identical for any thread count.
"""

from .interpolate import interp_cpu
from .shade import shade_cpu
from .texture import sample_texture_cpu
from .vertex_stage import vertex_columns_cpu

__all__ = ["interp_cpu", "shade_cpu", "sample_texture_cpu", "vertex_columns_cpu"]
