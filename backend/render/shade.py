"""Normals, lights, texture lookup and Lambert shading (all differentiable).

Per-pixel tensors are channel-first ``[C,N]`` (see :mod:`.interpolate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Lights:
    """Directional lights plus ambient, linear RGB.

    directions [L,3]: vectors from the surface *towards* each light (normalised
    here); colors [L,3]: irradiance per light; ambient [3].
    space: "camera" (directions in Blender camera space: x right, y up, +z
    towards the viewer; the rig follows every view) or "world" (Z up).
    """

    directions: tuple = ((-0.45, 0.55, 0.7), (0.6, -0.1, 0.8))
    colors: tuple = ((0.75, 0.75, 0.75), (0.25, 0.25, 0.25))
    ambient: tuple = (0.25, 0.25, 0.25)
    space: str = "camera"


DEFAULT_LIGHTS = Lights()


def _cross(a, b):
    """Row-wise cross product of [3,M] tensors (faster than linalg.cross on CPU)."""
    return torch.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def vertex_normals_t(points_t: torch.Tensor, corner_t: torch.Tensor) -> torch.Tensor:
    """Area-weighted smooth vertex normals, channel-first.

    points_t [3,M] positions of M = B*V vertices; corner_t [3,B*F] flat vertex
    index of each triangle corner -> [3,M] unit normals (isolated or
    zero-area vertices get a zero vector, never NaN).
    """
    p0, p1, p2 = (points_t.index_select(1, corner_t[k]) for k in range(3))
    fn = _cross(p1 - p0, p2 - p0)  # [3,B*F], length = 2 * area
    acc = torch.zeros_like(points_t)
    for k in range(3):
        acc = acc.index_add(1, corner_t[k], fn)
    return unit_rows(acc)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """vertices [B,V,3], faces [F,3] int64 -> [B,V,3] area-weighted unit vertex normals."""
    b, v = vertices.shape[:2]
    pts = vertices.reshape(-1, 3).T
    corner = (faces.T[:, None, :] + (torch.arange(b, device=faces.device) * v)[None, :, None]).reshape(3, -1)
    return vertex_normals_t(pts, corner).T.reshape(b, v, 3)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor, wrap: str = "repeat") -> torch.Tensor:
    """Bilinear lookup like Blender's Linear image interpolation.

    texture [H,W,C] (row 0 = top), uv [2,N] with Blender's origin at the
    bottom-left -> [C,N]. Texel (i,j) is centred at ((j+0.5)/W, 1-(i+0.5)/H).
    wrap: "repeat" (Blender's default extension) or "clamp" (edge texels extend).
    Gradients reach the texture (and the UVs).
    """
    if wrap not in ("repeat", "clamp"):
        raise ValueError(f"texture wrap must be 'repeat' or 'clamp', got {wrap!r}")
    h, w, c = texture.shape
    x = uv[0] * w - 0.5  # continuous texel coordinates (column, row from the top)
    y = (1.0 - uv[1]) * h - 0.5
    x0f = torch.floor(x.detach())
    y0f = torch.floor(y.detach())
    fx = x - x0f
    fy = y - y0f
    x0 = x0f.long()
    y0 = y0f.long()
    if wrap == "repeat":
        x0 = torch.remainder(x0, w)
        y0 = torch.remainder(y0, h)
        x1 = torch.where(x0 + 1 == w, 0, x0 + 1)
        y1 = torch.where(y0 + 1 == h, 0, y0 + 1)
    else:
        x1 = (x0 + 1).clamp(0, w - 1)
        y1 = (y0 + 1).clamp(0, h - 1)
        x0 = x0.clamp(0, w - 1)
        y0 = y0.clamp(0, h - 1)
    flat = texture.reshape(h * w, c)
    n = uv.shape[1]
    r0 = y0 * w
    r1 = y1 * w
    # One gather for the four taps: its backward is a single scatter into one
    # texture-sized buffer (four separate gathers would zero-fill four of them).
    taps = flat.index_select(0, torch.cat([r0 + x0, r0 + x1, r1 + x0, r1 + x1])).view(4, n, c)
    fx_ = fx[:, None]
    fy_ = fy[:, None]
    top = taps[0] + (taps[1] - taps[0]) * fx_
    bot = taps[2] + (taps[3] - taps[2]) * fx_
    return (top + (bot - top) * fy_).T


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Normalise the columns of a [3,N] tensor (zero vectors stay zero).

    Written out by component: ``norm(dim=0)`` is ~50x slower on CPU for this layout."""
    length = (x[0] * x[0] + x[1] * x[1] + x[2] * x[2]).clamp_min(1e-24).sqrt()
    return x / length


def lambert(albedo: torch.Tensor, normal: torch.Tensor, lights: Lights) -> torch.Tensor:
    """albedo [C,N] (or [C,1]), unit normal [3,N] in ``lights.space`` ->
    albedo * (ambient + sum_l max(0, n.l) * color_l), [C,N]."""
    d = torch.as_tensor(lights.directions, dtype=normal.dtype, device=normal.device).reshape(-1, 3)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    col = torch.as_tensor(lights.colors, dtype=normal.dtype, device=normal.device).reshape(-1, 3)
    amb = torch.as_tensor(lights.ambient, dtype=normal.dtype, device=normal.device).reshape(3, 1)
    # Explicit sums: a [N,L] x [L,3] matmul is slow on CPU for such skinny shapes.
    irradiance = amb.expand(3, normal.shape[1])
    for i in range(d.shape[0]):
        ndl = (normal[0] * d[i, 0] + normal[1] * d[i, 1] + normal[2] * d[i, 2]).clamp_min(0.0)  # [N]
        irradiance = irradiance + col[i][:, None] * ndl[None]
    return albedo * irradiance
