"""The two implementations of the renderer's differentiable stages, as kernel sets.

``TORCH``: plain torch ops, any device and dtype. ``CPU_NUMBA``: the fused numba
kernels of :mod:`backend.render.cpu` for float32 on the CPU (the same maths,
several times faster). :func:`kernel_set` picks one from the device and dtype;
:func:`backend.render.pipeline.render` runs the stages in one fixed order and never
asks which set it holds.

Stages (per-pixel tensors are channel-first ``[C,N]``, see :mod:`.interpolate`):

    vertex_columns(vertices, faces, cams, columns) -> (vattr [B*V,K], screen [B,V,2], depth [B,V])
        per-vertex rows (screen u, v in pixels, depth in metres, then the 3-wide
        blocks named in ``columns``: n_world, n_cam unit normals, pos_world), and
        detached numpy copies of screen and depth for the z-buffer
    fragments(vattr, faces, vertices, uvs, uv_faces, tri_id, front, cams, columns, need_ids) -> Pixels
        barycentrics, depth and interpolated columns at the covered pixels, from the
        z-buffer's tri_id [B,H,W] int32 and front [B,H,W] bool (numpy); need_ids: the
        shading needs triangle and view ids per pixel (several materials)
    texture_uv(pixels, uvs, uv_faces) -> [2,N] texture coordinates
    sample_texture(texture [H,W,C], uv [2,N], wrap) -> [C,N]
    shade: fused deferred shading into the image (:func:`.cpu.shade_cpu`), or None
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .camera import project, rotate, to_camera_space
from .cpu import interp_cpu, sample_texture_cpu, shade_cpu, vertex_columns_cpu
from .interpolate import fragments, interpolate
from .shade import sample_texture, vertex_normals


@dataclass
class Pixels:
    """The covered pixels of a batch (N of them), as the shading stages read them.

    pixel [N] int64 flat index into B*H*W; depth [N] metres; bary [3,N]
    perspective-correct barycentrics; front [N] bool (the triangle faces the camera);
    attr {column name: [3,N]} interpolated smooth normals; corners: 3 x [3,N] world
    positions of the triangle corners (flat normals) or None; tri, view [N] int64
    (triangle and batch index; None where the kernel set did not need them); uv
    [2,N] texture coordinates when the fragments stage made them, else None.
    """

    pixel: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor
    front: torch.Tensor
    attr: dict
    corners: tuple | None
    tri: torch.Tensor | None
    view: torch.Tensor | None
    uv: torch.Tensor | None


@dataclass(frozen=True)
class KernelSet:
    """One implementation of every differentiable stage (signatures: module docstring)."""

    name: str
    vertex_columns: Callable
    fragments: Callable
    texture_uv: Callable
    sample_texture: Callable
    shade: Callable | None


def _torch_vertex_columns(vertices, faces, cams, columns):
    screen, depth = project(to_camera_space(vertices, cams), cams)  # [B,V,2], [B,V]
    screen_np, depth_np = screen.detach().cpu().numpy(), depth.detach().cpu().numpy()
    cols = [screen[..., 0:1], screen[..., 1:2], depth[..., None]]
    if "n_world" in columns or "n_cam" in columns:
        n_world_v = vertex_normals(vertices, faces)  # [B,V,3]
        if "n_world" in columns:
            cols.append(n_world_v)
        if "n_cam" in columns:
            cols.append(rotate(n_world_v, cams.world_to_camera[:, :3, :3]))
    if "pos_world" in columns:
        cols.append(vertices)
    b, v = vertices.shape[:2]
    return torch.cat(cols, dim=-1).reshape(b * v, -1), screen_np, depth_np  # [B*V,K]


def _torch_fragments(vattr, faces, vertices, uvs, uv_faces, tri_np, front_np, cams, columns, need_ids):
    tri_id = torch.from_numpy(tri_np).to(vattr.device)
    frag = fragments(tri_id, faces.T.contiguous(), vattr.T.contiguous(), cams.ortho)
    attr, corners = {}, None
    for name, i in columns.items():
        block = [a[i - 3:i] for a in frag.corner_attrs]  # corner_attrs skip u, v, depth
        if name == "pos_world":
            corners = tuple(block)
        else:
            attr[name] = interpolate(block, frag.bary)
    return Pixels(pixel=frag.pixel, depth=frag.depth, bary=frag.bary, front=frag.front, attr=attr, corners=corners,
                  tri=frag.tri, view=frag.view, uv=None)


def _torch_texture_uv(px: Pixels, uvs, uv_faces):
    uvs_ = uvs.to(device=px.bary.device, dtype=px.bary.dtype)
    uvc = uv_faces.to(device=px.bary.device, dtype=torch.int64).index_select(0, px.tri)  # [N,3]
    corners_uv = uvs_.index_select(0, uvc.reshape(-1)).reshape(-1, 3, 2)
    return (corners_uv * px.bary.T[:, :, None]).sum(1).T  # [2,N]


def _cpu_vertex_columns(vertices, faces, cams, columns):
    # One fused numba stage for normals, projection, normal rotation and the column
    # layout: few torch ops, so torch's worker threads do not compete with the kernels.
    vattr3 = vertex_columns_cpu(vertices, faces, cams, with_world="n_world" in columns, with_cam="n_cam" in columns,
                                with_pos="pos_world" in columns)  # [B,V,K]
    va_np = vattr3.detach().numpy()
    b, v, k = vattr3.shape
    return vattr3.reshape(b * v, k), va_np[..., :2], va_np[..., 2]


def _cpu_fragments(vattr, faces, vertices, uvs, uv_faces, tri_np, front_np, cams, columns, need_ids):
    b, h, w = tri_np.shape
    tri_id = torch.from_numpy(tri_np)
    pixel_np = np.flatnonzero(tri_np.reshape(-1) >= 0)
    pixel = torch.from_numpy(pixel_np)
    depth, bary, uv, attrs = interp_cpu(vattr, faces, uvs.to(dtype=vattr.dtype), uv_faces.to(dtype=torch.int64),
                                        pixel, tri_id, cams.ortho)
    # attrs skip u, v, depth; a block that is all of attrs is used whole (a slice's
    # backward would zero-fill and copy a gradient of the same size).
    attr = {name: attrs if attrs.shape[0] == 3 else attrs[i - 3:i]
            for name, i in columns.items() if name != "pos_world"}
    front = torch.from_numpy(front_np.reshape(-1)[pixel_np])
    tri = view = corners = None
    if need_ids or "pos_world" in columns:  # these need triangle ids per pixel
        tri = tri_id.reshape(-1).index_select(0, pixel).long()
        view = torch.div(pixel, h * w, rounding_mode="floor")
        if "pos_world" in columns:  # flat normals need the corners themselves: gather them (rare path)
            corner = faces.index_select(0, tri) + (view * vertices.shape[1])[:, None]
            pts = vertices.reshape(-1, 3).T  # [3,B*V]
            corners = tuple(pts.index_select(1, corner[:, i]) for i in range(3))
    return Pixels(pixel=pixel, depth=depth, bary=bary, front=front, attr=attr, corners=corners, tri=tri, view=view,
                  uv=uv)


TORCH = KernelSet(name="torch", vertex_columns=_torch_vertex_columns, fragments=_torch_fragments,
                  texture_uv=_torch_texture_uv, sample_texture=sample_texture, shade=None)
CPU_NUMBA = KernelSet(name="cpu-numba", vertex_columns=_cpu_vertex_columns, fragments=_cpu_fragments,
                      texture_uv=lambda px, uvs, uv_faces: px.uv,
                      sample_texture=lambda tex, uv, wrap: sample_texture_cpu(tex, uv.T, wrap).T, shade=shade_cpu)


def kernel_set(device: torch.device, dtype: torch.dtype, fused: bool = True) -> KernelSet:
    """``CPU_NUMBA`` for float32 on the CPU when ``fused``, else ``TORCH``."""
    return CPU_NUMBA if fused and device.type == "cpu" and dtype == torch.float32 else TORCH
