"""The fused per-vertex stage (numba, float32, CPU) with its backward pass:
smooth vertex normals (:mod:`.normals`), projection to pixels and depth,
camera-space normal rotation and the column layout the pixels read, the same
maths as :func:`backend.render.shade.vertex_normals`,
:func:`backend.render.camera.project` of :func:`~backend.render.camera.to_camera_space`
and :func:`~backend.render.camera.rotate`. Threads take whole views; one autograd
node, so a vertex's two gradients (through its position and its normal) are summed
here rather than by a torch op.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable

from .normals import normals_backward, normals_forward
from .parallel import chunks, run, threads


@njit(cache=True, nogil=True)
def _vstage_fwd(pts, w2c, fx, fy, cx, cy, ortho, normals, with_world, with_cam, with_pos,
                out):  # pragma: no cover - compiled
    """Per-vertex columns for the pixels, for views in the arrays given: pts [B,V,3]
    world positions; w2c [B,4,4]; fx, fy, cx, cy [B]; ortho [B] u8; normals [B,V,3]
    unit world normals (when with_world or with_cam). out [B,V,K]: screen u, v
    (pixels), depth (metres), then world normals, camera normals, world positions
    (each only when asked). Same maths as camera.to_camera_space, camera.project
    and camera.rotate."""
    one = np.float32(1.0)
    for b in range(pts.shape[0]):
        for v in range(pts.shape[1]):
            x = pts[b, v, 0]
            y = pts[b, v, 1]
            z = pts[b, v, 2]
            c0 = (x * w2c[b, 0, 0] + y * w2c[b, 0, 1] + z * w2c[b, 0, 2]) + w2c[b, 0, 3]
            c1 = (x * w2c[b, 1, 0] + y * w2c[b, 1, 1] + z * w2c[b, 1, 2]) + w2c[b, 1, 3]
            c2 = (x * w2c[b, 2, 0] + y * w2c[b, 2, 1] + z * w2c[b, 2, 2]) + w2c[b, 2, 3]
            depth = -c2
            if ortho[b]:
                scale = one
            else:
                safe = depth if abs(depth) > np.float32(1e-9) else np.float32(1e-9)
                scale = one / safe
            out[b, v, 0] = cx[b] + fx[b] * c0 * scale
            out[b, v, 1] = cy[b] - fy[b] * c1 * scale
            out[b, v, 2] = depth
            k = 3
            if with_world:
                for c in range(3):
                    out[b, v, k + c] = normals[b, v, c]
                k += 3
            if with_cam:
                nx = normals[b, v, 0]
                ny = normals[b, v, 1]
                nz = normals[b, v, 2]
                for c in range(3):
                    out[b, v, k + c] = nx * w2c[b, c, 0] + ny * w2c[b, c, 1] + nz * w2c[b, c, 2]
                k += 3
            if with_pos:
                out[b, v, k] = x
                out[b, v, k + 1] = y
                out[b, v, k + 2] = z


@njit(cache=True, nogil=True)
def _vstage_bwd(pts, w2c, fx, fy, ortho, with_world, with_cam, with_pos, gout,
                gpts, gnormals):  # pragma: no cover - compiled
    """Backward of :func:`_vstage_fwd`: gout [B,V,K] -> gpts [B,V,3], gnormals [B,V,3]."""
    one = np.float32(1.0)
    for b in range(pts.shape[0]):
        for v in range(pts.shape[1]):
            x = pts[b, v, 0]
            y = pts[b, v, 1]
            z = pts[b, v, 2]
            c0 = (x * w2c[b, 0, 0] + y * w2c[b, 0, 1] + z * w2c[b, 0, 2]) + w2c[b, 0, 3]
            c1 = (x * w2c[b, 1, 0] + y * w2c[b, 1, 1] + z * w2c[b, 1, 2]) + w2c[b, 1, 3]
            c2 = (x * w2c[b, 2, 0] + y * w2c[b, 2, 1] + z * w2c[b, 2, 2]) + w2c[b, 2, 3]
            depth = -c2
            gu = gout[b, v, 0]
            gv = gout[b, v, 1]
            gdepth = gout[b, v, 2]
            if ortho[b]:
                scale = one
                gc0 = gu * fx[b] * scale
                gc1 = -gv * fy[b] * scale
            else:
                big = abs(depth) > np.float32(1e-9)
                safe = depth if big else np.float32(1e-9)
                scale = one / safe
                gc0 = gu * fx[b] * scale
                gc1 = -gv * fy[b] * scale
                gscale = gu * fx[b] * c0 - gv * fy[b] * c1
                if big:
                    gdepth += -gscale * scale * scale
            gc2 = -gdepth
            for j in range(3):
                gpts[b, v, j] = gc0 * w2c[b, 0, j] + gc1 * w2c[b, 1, j] + gc2 * w2c[b, 2, j]
            k = 3
            if with_world:
                for c in range(3):
                    gnormals[b, v, c] = gout[b, v, k + c]
                k += 3
            elif with_cam:
                for c in range(3):
                    gnormals[b, v, c] = 0.0
            if with_cam:
                g0 = gout[b, v, k]
                g1 = gout[b, v, k + 1]
                g2 = gout[b, v, k + 2]
                for j in range(3):
                    gnormals[b, v, j] += g0 * w2c[b, 0, j] + g1 * w2c[b, 1, j] + g2 * w2c[b, 2, j]
                k += 3
            if with_pos:
                for j in range(3):
                    gpts[b, v, j] += gout[b, v, k + j]


@njit(cache=True, nogil=True)
def _add_into(a, b):  # pragma: no cover - compiled
    """a += b for [B,V,3] arrays (the two gradients a vertex gets: through its
    position and through its normal; float addition commutes, so this equals the
    sum autograd would form, without a torch op)."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for c in range(3):
                a[i, j, c] += b[i, j, c]


class _VertexColumns(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pts, faces, w2c, fx, fy, cx, cy, ortho, with_world, with_cam, with_pos):
        p = pts.detach().contiguous()
        has_n = with_world or with_cam
        k = 3 + 3 * (int(with_world) + int(with_cam) + int(with_pos))
        out = np.empty(tuple(p.shape[:2]) + (k,), np.float32)
        arrs = [t.detach().contiguous().numpy() for t in (w2c, fx, fy, cx, cy)]
        orth = ortho.to(torch.uint8).contiguous().numpy()
        pn, fn = p.numpy(), faces.numpy()
        # Smooth normals (summed face normals acc, unit normals nrm) for the normal columns.
        acc = np.zeros(p.shape if has_n else (1, 1, 3), np.float32)
        nrm = np.empty(acc.shape, np.float32)

        def views(a, b):
            if has_n:
                normals_forward(pn[a:b], fn, acc[a:b], nrm[a:b])
            _vstage_fwd(pn[a:b], *(x[a:b] for x in arrs), orth[a:b], nrm[a:b] if has_n else nrm,
                        with_world, with_cam, with_pos, out[a:b])

        run(lambda a=a, b=b: views(a, b) for a, b in chunks(p.shape[0], threads()))
        ctx.save_for_backward(p, faces, torch.from_numpy(acc), torch.from_numpy(nrm), w2c.detach().contiguous(),
                              fx.detach().contiguous(), fy.detach().contiguous(), ortho.to(torch.uint8).contiguous())
        ctx.flags = (with_world, with_cam, with_pos)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        p, faces, acc, nrm, w2c, fx, fy, ortho = ctx.saved_tensors
        if any(ctx.needs_input_grad[2:8]):
            raise RuntimeError("fused vertex stage: gradients with respect to cameras are not supported")
        with_world, with_cam, with_pos = ctx.flags
        has_n = with_world or with_cam
        g = np.ascontiguousarray(gout.detach().numpy(), dtype=np.float32)
        gp = np.empty(p.shape, np.float32)  # through the positions
        gn = np.empty(p.shape if has_n else (1, 1, 3), np.float32)  # d/d(unit normals)
        gv = np.zeros(p.shape if has_n else (1, 1, 3), np.float32)  # through the normals, then the total
        pn, fn, an, nn = p.numpy(), faces.numpy(), acc.numpy(), nrm.numpy()
        wn, fxn, fyn, on = w2c.numpy(), fx.numpy(), fy.numpy(), ortho.numpy()

        def views(a, b):
            _vstage_bwd(pn[a:b], wn[a:b], fxn[a:b], fyn[a:b], on[a:b], with_world, with_cam, with_pos, g[a:b],
                        gp[a:b], gn[a:b] if has_n else gn)
            if has_n:
                normals_backward(pn[a:b], fn, an[a:b], nn[a:b], gn[a:b], gv[a:b])
                _add_into(gv[a:b], gp[a:b])

        run(lambda a=a, b=b: views(a, b) for a, b in chunks(p.shape[0], threads()))
        if not ctx.needs_input_grad[0]:
            return (None,) * 11
        return (torch.from_numpy(gv if has_n else gp),) + (None,) * 10


def vertex_columns_cpu(vertices: torch.Tensor, faces: torch.Tensor, cams, *, with_world: bool = False,
                       with_cam: bool = False, with_pos: bool = False) -> torch.Tensor:
    """Fused per-vertex stage: vertices [B,V,3] float32 world positions, faces [F,3]
    int64 and a :class:`..camera.CameraBatch` -> [B,V,K] float32 columns: screen u, v
    in pixels (u right, v down), depth in metres (as :func:`..camera.project` of
    :func:`..camera.to_camera_space`), then area-weighted unit world normals (as
    :func:`..shade.vertex_normals`), the same rotated to camera space, world
    positions (each only when asked). Differentiable in vertices (not in the cameras)."""
    return _VertexColumns.apply(vertices, faces.contiguous(), cams.world_to_camera, cams.fx, cams.fy, cams.cx,
                                cams.cy, cams.ortho, bool(with_world), bool(with_cam), bool(with_pos))
