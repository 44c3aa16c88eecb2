"""Fused barycentric interpolation at the covered pixels (numba, float32, CPU),
with its hand-written backward pass: the same maths as
:func:`backend.render.interpolate.fragments` followed by
:func:`~backend.render.interpolate.interpolate`, in one pass per pixel with no
temporaries. The per-pixel corner rows are prefetched a few pixels ahead.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable

from .parallel import PREFETCH_AHEAD, chunks, prefetch, run, threads, view_chunks


@njit(cache=True, nogil=True, inline="always")
def _fdiv(a, b, inv_b):  # pragma: no cover - compiled
    """a // b for 0 <= a < 2**50 and b > 0 (inv_b = 1.0 / b), exactly, with a float
    multiply and a correction instead of a slow integer division."""
    q = np.int64(np.float64(a) * inv_b)
    if q * b > a:
        q -= 1
    elif (q + 1) * b <= a:
        q += 1
    return q


@njit(cache=True, nogil=True, inline="always")
def _corners(p, pixel, tri_flat, faces, uv_faces, v_count, hw, inv_hw):  # pragma: no cover - compiled
    pix = pixel[p]
    t = tri_flat[pix]
    view = _fdiv(pix, hw, inv_hw)
    base = view * v_count
    return (view, base + faces[t, 0], base + faces[t, 1], base + faces[t, 2],
            uv_faces[t, 0], uv_faces[t, 1], uv_faces[t, 2])


@njit(cache=True, nogil=True, inline="always")
def _prefetch_corners(q, pixel, tri_flat, faces, v_count, hw, inv_hw, rows):  # pragma: no cover - compiled
    """Prefetch the rows of ``rows`` [M,K] for the corners of pixel q."""
    pix = pixel[q]
    t = tri_flat[pix]
    base = _fdiv(pix, hw, inv_hw) * v_count
    prefetch(rows, base + faces[t, 0], 0)
    prefetch(rows, base + faces[t, 1], 0)
    prefetch(rows, base + faces[t, 2], 0)


@njit(cache=True, nogil=True, inline="always")
def _edges(vattr, rem, width, inv_w, c0, c1, c2):  # pragma: no cover - compiled
    """Corner offsets from the centre of pixel ``rem`` (index within its view) and
    the three edge functions, shared by the forward and backward kernels so both
    see bit-identical barycentrics: (x0, y0, x1, y1, x2, y2, e0, e1, e2)."""
    r = _fdiv(rem, width, inv_w)
    py = np.float32(r) + np.float32(0.5)
    px = np.float32(rem - r * width) + np.float32(0.5)
    x0 = vattr[c0, 0] - px
    y0 = vattr[c0, 1] - py
    x1 = vattr[c1, 0] - px
    y1 = vattr[c1, 1] - py
    x2 = vattr[c2, 0] - px
    y2 = vattr[c2, 1] - py
    return x0, y0, x1, y1, x2, y2, x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0


@njit(cache=True, nogil=True)
def _interp_fwd(vattr, faces, uvs, uv_faces, pixel, tri_flat, v_count, height, width, ortho,
                out_depth, out_bary, out_uv, out_attr, start, stop):  # pragma: no cover - compiled
    """vattr [M,K] f32 rows (u, v, depth, attrs...) for M = B*V; faces/uv_faces [F,3] i64;
    uvs [T,2] f32; pixel [N] i64 flat covered pixels; tri_flat [B*H*W] i32; ortho [B] u8.
    Channel-first outputs: out_depth [N], out_bary [3,N], out_uv [2,N] (texture u, v),
    out_attr [K-3,N] (interpolated attributes).
    Only pixels start..stop-1 are processed (threads split the range)."""
    k = vattr.shape[1]
    hw = height * width
    inv_hw = 1.0 / hw
    inv_w = 1.0 / width
    for p in range(start, stop):
        if p + 2 * PREFETCH_AHEAD < stop:
            prefetch(faces, tri_flat[pixel[p + 2 * PREFETCH_AHEAD]], 0)
        if p + PREFETCH_AHEAD < stop:
            _prefetch_corners(p + PREFETCH_AHEAD, pixel, tri_flat, faces, v_count, hw, inv_hw, vattr)
        view, c0, c1, c2, t0, t1, t2 = _corners(p, pixel, tri_flat, faces, uv_faces, v_count, hw, inv_hw)
        x0, y0, x1, y1, x2, y2, e0, e1, e2 = _edges(vattr, pixel[p] - view * hw, width, inv_w, c0, c1, c2)
        inv_a = np.float32(1.0) / (e0 + e1 + e2)
        l0 = e0 * inv_a
        l1 = e1 * inv_a
        l2 = e2 * inv_a
        d0 = vattr[c0, 2]
        d1 = vattr[c1, 2]
        d2 = vattr[c2, 2]
        if ortho[view]:
            b0, b1, b2 = l0, l1, l2
            z = l0 * d0 + l1 * d1 + l2 * d2
        else:
            w0 = l0 / d0
            w1 = l1 / d1
            w2 = l2 / d2
            z = np.float32(1.0) / (w0 + w1 + w2)
            b0, b1, b2 = w0 * z, w1 * z, w2 * z
        out_depth[p] = z
        out_bary[0, p] = b0
        out_bary[1, p] = b1
        out_bary[2, p] = b2
        out_uv[0, p] = b0 * uvs[t0, 0] + b1 * uvs[t1, 0] + b2 * uvs[t2, 0]
        out_uv[1, p] = b0 * uvs[t0, 1] + b1 * uvs[t1, 1] + b2 * uvs[t2, 1]
        for j in range(3, k):
            out_attr[j - 3, p] = b0 * vattr[c0, j] + b1 * vattr[c1, j] + b2 * vattr[c2, j]


@njit(cache=True, nogil=True)
def _interp_bwd(vattr, faces, uvs, uv_faces, pixel, tri_flat, v_count, height, width, ortho,
                g_depth, g_bary, g_uv, g_attr, has_depth, has_bary, has_uv, has_attr,
                gvattr, start, stop):  # pragma: no cover - compiled
    """Accumulate d(loss)/d(vattr) into gvattr [M,K] given the gradients of the outputs
    (g_depth [1,N], g_bary [3,N], g_uv [2,N], g_attr [K-3,N]; each read only when its
    ``has_`` flag is set: an output nobody used has no gradient, never a zero-filled
    block), for pixels start..stop-1 (threads take whole views, whose vattr rows are
    disjoint)."""
    zero = np.float32(0.0)
    k = vattr.shape[1]
    hw = height * width
    inv_hw = 1.0 / hw
    inv_w = 1.0 / width
    for p in range(start, stop):
        if p + 2 * PREFETCH_AHEAD < stop:
            prefetch(faces, tri_flat[pixel[p + 2 * PREFETCH_AHEAD]], 0)
        if p + PREFETCH_AHEAD < stop:
            _prefetch_corners(p + PREFETCH_AHEAD, pixel, tri_flat, faces, v_count, hw, inv_hw, vattr)
            _prefetch_corners(p + PREFETCH_AHEAD, pixel, tri_flat, faces, v_count, hw, inv_hw, gvattr)
        view, c0, c1, c2, t0, t1, t2 = _corners(p, pixel, tri_flat, faces, uv_faces, v_count, hw, inv_hw)
        x0, y0, x1, y1, x2, y2, e0, e1, e2 = _edges(vattr, pixel[p] - view * hw, width, inv_w, c0, c1, c2)
        inv_a = 1.0 / (e0 + e1 + e2)
        l0 = e0 * inv_a
        l1 = e1 * inv_a
        l2 = e2 * inv_a
        d0 = vattr[c0, 2]
        d1 = vattr[c1, 2]
        d2 = vattr[c2, 2]
        gz = g_depth[0, p] if has_depth else zero
        gu = g_uv[0, p] if has_uv else zero
        gv = g_uv[1, p] if has_uv else zero
        if has_bary:
            gb0 = g_bary[0, p] + gu * uvs[t0, 0] + gv * uvs[t0, 1]
            gb1 = g_bary[1, p] + gu * uvs[t1, 0] + gv * uvs[t1, 1]
            gb2 = g_bary[2, p] + gu * uvs[t2, 0] + gv * uvs[t2, 1]
        else:
            gb0 = gu * uvs[t0, 0] + gv * uvs[t0, 1]
            gb1 = gu * uvs[t1, 0] + gv * uvs[t1, 1]
            gb2 = gu * uvs[t2, 0] + gv * uvs[t2, 1]
        is_ortho = ortho[view] != 0
        if is_ortho:
            b0, b1, b2 = l0, l1, l2
            w0 = w1 = w2 = z = 0.0
        else:
            w0 = l0 / d0
            w1 = l1 / d1
            w2 = l2 / d2
            z = 1.0 / (w0 + w1 + w2)
            b0, b1, b2 = w0 * z, w1 * z, w2 * z
        # Interpolated attributes: o = sum b_i a_i.
        for j in range(3, k if has_attr else 3):
            g = g_attr[j - 3, p]
            if g != 0.0:
                gb0 += g * vattr[c0, j]
                gb1 += g * vattr[c1, j]
                gb2 += g * vattr[c2, j]
                gvattr[c0, j] += b0 * g
                gvattr[c1, j] += b1 * g
                gvattr[c2, j] += b2 * g
        if is_ortho:
            gl0 = gb0 + gz * d0
            gl1 = gb1 + gz * d1
            gl2 = gb2 + gz * d2
            gd0 = gz * l0
            gd1 = gz * l1
            gd2 = gz * l2
        else:
            # b_i = w_i z, z = 1 / sum w, w_i = l_i / d_i
            z2 = z * z
            common = (gb0 * w0 + gb1 * w1 + gb2 * w2) * z2 + gz * z2
            gl0 = (gb0 * z - common) / d0
            gl1 = (gb1 * z - common) / d1
            gl2 = (gb2 * z - common) / d2
            gd0 = -gl0 * l0 / d0  # = -gw0 * l0 / d0^2
            gd1 = -gl1 * l1 / d1
            gd2 = -gl2 * l2 / d2
        # l_i = e_i / A, A = e0 + e1 + e2
        t = (gl0 * e0 + gl1 * e1 + gl2 * e2) * inv_a * inv_a
        ge0 = gl0 * inv_a - t
        ge1 = gl1 * inv_a - t
        ge2 = gl2 * inv_a - t
        gvattr[c0, 0] += -ge1 * y2 + ge2 * y1
        gvattr[c0, 1] += ge1 * x2 - ge2 * x1
        gvattr[c0, 2] += gd0
        gvattr[c1, 0] += ge0 * y2 - ge2 * y0
        gvattr[c1, 1] += -ge0 * x2 + ge2 * x0
        gvattr[c1, 2] += gd1
        gvattr[c2, 0] += -ge0 * y1 + ge1 * y0
        gvattr[c2, 1] += ge0 * x1 - ge1 * x0
        gvattr[c2, 2] += gd2


class _Interp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vattr, faces, uvs, uv_faces, pixel, tri_flat, v_count, height, width, ortho):
        va = vattr.detach().contiguous()
        n, k = pixel.shape[0], vattr.shape[1]
        # Separate outputs (no copies; autograd never zero-fills a block for unused parts).
        outs = (np.empty(n, np.float32), np.empty((3, n), np.float32), np.empty((2, n), np.float32),
                np.empty((k - 3, n), np.float32))
        args = (va.numpy(), faces.numpy(), uvs.numpy(), uv_faces.numpy(), pixel.numpy(), tri_flat.numpy(),
                v_count, height, width, ortho.numpy(), *outs)
        run(lambda a=a, b=b: _interp_fwd(*args, a, b) for a, b in chunks(n, threads()))
        ctx.save_for_backward(va, faces, uvs, uv_faces, pixel, tri_flat, ortho)
        ctx.dims = (v_count, height, width)
        ctx.set_materialize_grads(False)  # unused outputs: None, not zero-filled tensors
        return tuple(torch.from_numpy(o) for o in outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_depth, g_bary, g_uv, g_attr):
        va, faces, uvs, uv_faces, pixel, tri_flat, ortho = ctx.saved_tensors
        n = pixel.shape[0]
        if n == 0:
            return (torch.zeros(va.shape, dtype=va.dtype),) + (None,) * 9
        grads = [np.ascontiguousarray(g.detach().reshape(-1, n).numpy(), dtype=np.float32) if g is not None
                 else np.zeros((1, 1), np.float32) for g in (g_depth, g_bary, g_uv, g_attr)]
        has = [g is not None for g in (g_depth, g_bary, g_uv, g_attr)]
        gv = np.zeros(va.shape, np.float32)
        pix = pixel.numpy()
        args = (va.numpy(), faces.numpy(), uvs.numpy(), uv_faces.numpy(), pix, tri_flat.numpy(),
                *ctx.dims, ortho.numpy(), *grads, *has, gv)
        v_count, height, width = ctx.dims
        views = va.shape[0] // v_count
        run(lambda a=a, b=b: _interp_bwd(*args, a, b)
            for a, b in view_chunks(pix, views, height * width, threads()))
        return (torch.from_numpy(gv),) + (None,) * 9


def interp_cpu(vattr: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, uv_faces: torch.Tensor,
               pixel: torch.Tensor, tri_id: torch.Tensor, ortho: torch.Tensor):
    """Barycentric interpolation at the covered pixel centres, fused.

    vattr [B*V,K] float32 per-vertex rows (screen u, v in pixels, depth in
    metres, then K-3 attributes); faces, uv_faces [F,3] int64; uvs [T,2]
    float32; pixel [N] int64 flat covered pixels; tri_id [B,H,W] int32;
    ortho [B] bool. Returns channel-first (depth [N], perspective-correct
    barycentrics [3,N], texture uv [2,N], interpolated attributes [K-3,N]),
    differentiable with respect to ``vattr``.
    """
    b, h, w = tri_id.shape
    return _Interp.apply(vattr, faces.contiguous(), uvs.contiguous(), uv_faces.contiguous(), pixel.contiguous(),
                         tri_id.reshape(-1).contiguous(), vattr.shape[0] // b, h, w, ortho.to(torch.uint8).contiguous())
