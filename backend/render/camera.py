"""Blender cameras on the torch side.

Everything derives from :func:`shared.camera.projection` (the one conversion
from Blender settings); this module only stacks a batch of projections into
tensors and applies them to vertices, differentiably.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shared.camera import Camera, Projection, projection


@dataclass(frozen=True)
class CameraBatch:
    """B projections of one common image size, as tensors on one device.

    world_to_camera [B,4,4]; fx, fy, cx, cy, near, far [B]; ortho [B] bool;
    width, height ints; projections: the source :class:`Projection` objects.
    """

    world_to_camera: torch.Tensor
    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    ortho: torch.Tensor
    width: int
    height: int
    projections: tuple[Projection, ...]


def camera_batch(cameras, size=None, *, device="cpu", dtype=torch.float32) -> CameraBatch:
    """Stack Blender cameras into a :class:`CameraBatch`.

    cameras: sequence of :class:`shared.camera.Camera` (or already converted
    :class:`Projection`). size: optional (W,H) override for all views. All
    views must share one image size (raises ``ValueError`` naming both sizes).
    """
    projs = []
    for i, cam in enumerate(cameras):
        if isinstance(cam, Projection):
            p = cam
        elif isinstance(cam, Camera):
            try:
                p = projection(cam, size)
            except ValueError as exc:
                raise ValueError(f"camera {i}: {exc}") from None
        else:
            raise ValueError(f"camera {i}: expected shared.camera.Camera, got {type(cam).__name__}")
        projs.append(p)
    if not projs:
        raise ValueError("no cameras given: pass one camera per batch item")
    w, h = projs[0].width, projs[0].height
    for i, p in enumerate(projs):
        if (p.width, p.height) != (w, h):
            raise ValueError(
                f"camera {i} renders {p.width}x{p.height} but camera 0 renders {w}x{h}; "
                "a batch needs one image size (pass size=(W,H) to override)")

    def t(vals):
        return torch.tensor(np.asarray(vals, dtype=np.float64), dtype=dtype, device=device)

    return CameraBatch(
        world_to_camera=t([p.world_to_camera for p in projs]),
        fx=t([p.fx for p in projs]), fy=t([p.fy for p in projs]),
        cx=t([p.cx for p in projs]), cy=t([p.cy for p in projs]),
        near=t([p.clip_start for p in projs]), far=t([p.clip_end for p in projs]),
        ortho=torch.tensor([p.orthographic for p in projs], dtype=torch.bool, device=device),
        width=int(w), height=int(h), projections=tuple(projs),
    )


def rotate(points: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """points [B,V,3], rot [B,3,3] -> rot @ p for every point, [B,V,3].

    A broadcast sum: bmm/einsum with an inner size of 3 is very slow on CPU."""
    return (points[:, :, None, :] * rot[:, None, :, :]).sum(-1)


def to_camera_space(vertices: torch.Tensor, cams: CameraBatch) -> torch.Tensor:
    """World-space vertices [B,V,3] -> Blender camera space [B,V,3] (x right, y up, looking -Z)."""
    return rotate(vertices, cams.world_to_camera[:, :3, :3]) + cams.world_to_camera[:, None, :3, 3]


def project(cam_points: torch.Tensor, cams: CameraBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space points [B,V,3] -> (screen [B,V,2] pixels (u right, v down), depth [B,V] metres).

    Perspective divides by depth = -z; orthographic does not. Points at or
    behind a perspective camera get large/non-finite coordinates (the raster
    skips triangles touching them).
    """
    depth = -cam_points[..., 2]
    ortho = cams.ortho[:, None]
    if bool(cams.ortho.all()):
        scale = torch.ones_like(depth)
    else:
        # Avoid dividing by ~0 for points at the eye; those triangles are culled anyway.
        safe = torch.where(depth.abs() > 1e-9, depth, torch.full_like(depth, 1e-9))
        scale = torch.where(ortho, torch.ones_like(depth), 1.0 / safe)
    u = cams.cx[:, None] + cams.fx[:, None] * cam_points[..., 0] * scale
    v = cams.cy[:, None] - cams.fy[:, None] * cam_points[..., 1] * scale
    return torch.stack([u, v], dim=-1), depth
