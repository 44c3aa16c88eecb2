"""Fused CPU kernels (numba) for the hot spots, with hand-written backward
passes: the per-vertex stage (projection, normal rotation), barycentric
interpolation at the covered pixels, bilinear texture lookup, deferred Lambert
shading straight into the image, and smooth vertex normals.

They compute exactly what :mod:`.interpolate`, :func:`.shade.sample_texture` and
:func:`.shade.vertex_normals` compute with torch ops (tests check values and
gradients against them; first derivatives only), but in
one pass per pixel without temporaries, which is several times faster on a
2-core CPU. Used for float32 tensors on the CPU; every other case uses the
torch code. Work is split over ``torch.get_num_threads()`` Python threads (the
kernels release the GIL) by whole views, pixel ranges or texture row bands, so no
two threads write the same memory and every sum runs in the same order whatever
the thread count: results are bit-identical for 1 or N threads.

Why it is fast on a 2-core CPU: few torch ops (whose OpenMP workers would spin
against the kernels' threads), no full-size temporaries, the backward pass never
re-reads the texture (the forward pass saves the albedo derivatives), and the
random texture reads are prefetched a few pixels ahead.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable

def _make_prefetch():
    """``prefetch(a, i, j)``: hint the CPU to fetch the cache line of a[i, j] (a 2-d
    array) or a[i, j, 0] (3-d), with LLVM's prefetch intrinsic. Texture lookups are
    random memory reads; issuing them a few pixels ahead overlaps their latency.
    Falls back to a no-op where the intrinsic cannot be built (results never depend on it)."""
    try:
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic

        @intrinsic
        def prefetch(typingctx, arr, row, col):
            if not isinstance(arr, types.Array) or arr.ndim not in (2, 3):
                return None

            def codegen(context, builder, signature, args):
                aryty = signature.args[0]
                ary = context.make_array(aryty)(context, builder, args[0])
                idx = [context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2)]
                idx += [context.get_constant(types.intp, 0)] * (aryty.ndim - 2)
                ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
                i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
                fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
                fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
                builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])  # read, keep, data
                return context.get_dummy_value()

            return types.void(arr, row, col), codegen

        @njit(nogil=True)
        def _check(a):
            prefetch(a, 0, 0)

        _check(np.zeros((1, 1, 1), np.float32))
        return prefetch
    except Exception:  # pragma: no cover - depends on the llvmlite build
        @njit(nogil=True, inline="always")
        def prefetch(arr, row, col):
            pass

        return prefetch


_prefetch = _make_prefetch()
_PREFETCH_AHEAD = 8  # pixels; measured 4..32 equally good

_POOL: ThreadPoolExecutor | None = None
_CPUS = os.cpu_count() or 1  # a system call: read once
_POOL_PID = -1  # a forked child must not reuse its parent's (thread-less) pool


def _threads() -> int:
    """Kernel threads: ``METAMORPH_RENDER_THREADS`` if set, else torch's CPU thread
    setting; capped at the CPU count and 8."""
    env = os.environ.get("METAMORPH_RENDER_THREADS", "").strip()
    n = int(env) if env.isdigit() else torch.get_num_threads()
    return max(1, min(n, _CPUS, 8))


def _run(jobs) -> None:
    """Run callables; on several threads when allowed. The kernels release the GIL."""
    global _POOL, _POOL_PID
    jobs = list(jobs)
    if len(jobs) <= 1:
        for job in jobs:
            job()
        return
    if _POOL is None or _POOL_PID != os.getpid():
        _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="metamorph-render")
        _POOL_PID = os.getpid()
    for fut in [_POOL.submit(job) for job in jobs]:
        fut.result()


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """Split range(n) into at most ``parts`` contiguous (start, stop) pieces."""
    parts = max(1, min(parts, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _view_chunks(pixel: np.ndarray, views: int, hw: int, parts: int) -> list[tuple[int, int]]:
    """Pixel ranges made of whole views (pixels are sorted by flat index, so by view)."""
    out = []
    for b0, b1 in _chunks(views, parts):
        lo, hi = np.searchsorted(pixel, [b0 * hw, b1 * hw])
        if hi > lo:
            out.append((int(lo), int(hi)))
    return out


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
    _prefetch(rows, base + faces[t, 0], 0)
    _prefetch(rows, base + faces[t, 1], 0)
    _prefetch(rows, base + faces[t, 2], 0)


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
        if p + 2 * _PREFETCH_AHEAD < stop:
            _prefetch(faces, tri_flat[pixel[p + 2 * _PREFETCH_AHEAD]], 0)
        if p + _PREFETCH_AHEAD < stop:
            _prefetch_corners(p + _PREFETCH_AHEAD, pixel, tri_flat, faces, v_count, hw, inv_hw, vattr)
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
                grad, gvattr, start, stop):  # pragma: no cover - compiled
    """Accumulate d(loss)/d(vattr) into gvattr [M,K] given grad [K+3, N] of the outputs,
    for pixels start..stop-1 (threads take whole views, whose vattr rows are disjoint)."""
    k = vattr.shape[1]
    hw = height * width
    inv_hw = 1.0 / hw
    inv_w = 1.0 / width
    for p in range(start, stop):
        if p + 2 * _PREFETCH_AHEAD < stop:
            _prefetch(faces, tri_flat[pixel[p + 2 * _PREFETCH_AHEAD]], 0)
        if p + _PREFETCH_AHEAD < stop:
            _prefetch_corners(p + _PREFETCH_AHEAD, pixel, tri_flat, faces, v_count, hw, inv_hw, vattr)
            _prefetch_corners(p + _PREFETCH_AHEAD, pixel, tri_flat, faces, v_count, hw, inv_hw, gvattr)
        view, c0, c1, c2, t0, t1, t2 = _corners(p, pixel, tri_flat, faces, uv_faces, v_count, hw, inv_hw)
        x0, y0, x1, y1, x2, y2, e0, e1, e2 = _edges(vattr, pixel[p] - view * hw, width, inv_w, c0, c1, c2)
        inv_a = 1.0 / (e0 + e1 + e2)
        l0 = e0 * inv_a
        l1 = e1 * inv_a
        l2 = e2 * inv_a
        d0 = vattr[c0, 2]
        d1 = vattr[c1, 2]
        d2 = vattr[c2, 2]
        gz = grad[0, p]
        gu = grad[4, p]
        gv = grad[5, p]
        gb0 = grad[1, p] + gu * uvs[t0, 0] + gv * uvs[t0, 1]
        gb1 = grad[2, p] + gu * uvs[t1, 0] + gv * uvs[t1, 1]
        gb2 = grad[3, p] + gu * uvs[t2, 0] + gv * uvs[t2, 1]
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
        for j in range(3, k):
            g = grad[j + 3, p]
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
        _run(lambda a=a, b=b: _interp_fwd(*args, a, b) for a, b in _chunks(n, _threads()))
        ctx.save_for_backward(va, faces, uvs, uv_faces, pixel, tri_flat, ortho)
        ctx.dims = (v_count, height, width)
        ctx.set_materialize_grads(False)  # unused outputs: None, not zero-filled tensors
        return tuple(torch.from_numpy(o) for o in outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_depth, g_bary, g_uv, g_attr):
        va, faces, uvs, uv_faces, pixel, tri_flat, ortho = ctx.saved_tensors
        n, k = pixel.shape[0], va.shape[1]
        if n == 0:
            return (torch.zeros(va.shape, dtype=va.dtype),) + (None,) * 9
        grad = np.zeros((k + 3, n), np.float32)
        for rows, g in ((slice(0, 1), g_depth), (slice(1, 4), g_bary), (slice(4, 6), g_uv), (slice(6, k + 3), g_attr)):
            if g is not None:
                grad[rows] = g.detach().reshape(-1, n).numpy()
        gv = np.zeros(va.shape, np.float32)
        pix = pixel.numpy()
        args = (va.numpy(), faces.numpy(), uvs.numpy(), uv_faces.numpy(), pix, tri_flat.numpy(),
                *ctx.dims, ortho.numpy(), grad, gv)
        v_count, height, width = ctx.dims
        views = va.shape[0] // v_count
        _run(lambda a=a, b=b: _interp_bwd(*args, a, b)
             for a, b in _view_chunks(pix, views, height * width, _threads()))
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


@njit(cache=True, nogil=True, inline="always")
def _taps(u, v, h, w, repeat):  # pragma: no cover - compiled
    x = u * np.float32(w) - np.float32(0.5)
    y = (np.float32(1.0) - v) * np.float32(h) - np.float32(0.5)
    xf = np.floor(x)
    yf = np.floor(y)
    fx = x - xf
    fy = y - yf
    ix0 = int(xf)
    iy0 = int(yf)
    if repeat:
        # Python-style modulo only when needed: an integer division costs ~40 cycles.
        if ix0 < 0 or ix0 >= w:
            ix0 %= w
        if iy0 < 0 or iy0 >= h:
            iy0 %= h
        ix1 = ix0 + 1 if ix0 + 1 < w else 0
        iy1 = iy0 + 1 if iy0 + 1 < h else 0
    else:
        ix1 = min(max(ix0 + 1, 0), w - 1)
        iy1 = min(max(iy0 + 1, 0), h - 1)
        ix0 = min(max(ix0, 0), w - 1)
        iy0 = min(max(iy0, 0), h - 1)
    return ix0, ix1, iy0, iy1, fx, fy


@njit(cache=True, nogil=True)
def _tex_fwd(tex, uv, repeat, out, start, stop):  # pragma: no cover - compiled
    """tex [H,W,C] f32 row 0 = top; uv [N,2]; out [N,C]; pixels start..stop-1."""
    h, w, c = tex.shape
    for p in range(start, stop):
        ix0, ix1, iy0, iy1, fx, fy = _taps(uv[p, 0], uv[p, 1], h, w, repeat)
        w00 = (1 - fx) * (1 - fy)
        w01 = fx * (1 - fy)
        w10 = (1 - fx) * fy
        w11 = fx * fy
        for ch in range(c):
            out[p, ch] = (w00 * tex[iy0, ix0, ch] + w01 * tex[iy0, ix1, ch]
                          + w10 * tex[iy1, ix0, ch] + w11 * tex[iy1, ix1, ch])


@njit(cache=True, nogil=True)
def _tex_bwd_uv(tex, uv, repeat, grad, guv, start, stop):  # pragma: no cover - compiled
    """Pixels start..stop-1: gradients of the lookup with respect to uv, into guv [N,2]."""
    h, w, c = tex.shape
    for p in range(start, stop):
        ix0, ix1, iy0, iy1, fx, fy = _taps(uv[p, 0], uv[p, 1], h, w, repeat)
        gfx = np.float32(0.0)
        gfy = np.float32(0.0)
        for ch in range(c):
            g = grad[p, ch]
            t00 = tex[iy0, ix0, ch]
            t01 = tex[iy0, ix1, ch]
            t10 = tex[iy1, ix0, ch]
            t11 = tex[iy1, ix1, ch]
            gfx += g * ((t01 - t00) * (1 - fy) + (t11 - t10) * fy)
            gfy += g * ((t10 - t00) * (1 - fx) + (t11 - t01) * fx)
        guv[p, 0] = gfx * w
        guv[p, 1] = -gfy * h


@njit(cache=True, nogil=True)
def _tex_bwd_scatter(uv, repeat, grad, gtex, row0, row1):  # pragma: no cover - compiled
    """Texture gradient rows row0..row1-1 of gtex [H,W,C] (zeroed here first): every
    pixel's bilinear weights times grad [N,C] (uv [2,N] channel-first), added in pixel
    order. Threads own disjoint row bands, so there are no atomics and no per-thread
    texture-sized buffers, and each texel sums its contributions in the same order
    whatever the thread count (bit-identical results)."""
    h, w, c = gtex.shape
    for r in range(row0, row1):
        for x in range(w):
            for ch in range(c):
                gtex[r, x, ch] = 0.0
    n = uv.shape[1]
    for p in range(n):
        q = p + _PREFETCH_AHEAD
        if q < n:
            jx0, _, jy0, jy1, _, _ = _taps(uv[0, q], uv[1, q], h, w, repeat)
            if jy0 >= row0 and jy0 < row1:
                _prefetch(gtex, jy0, jx0)
            if jy1 >= row0 and jy1 < row1:
                _prefetch(gtex, jy1, jx0)
        ix0, ix1, iy0, iy1, fx, fy = _taps(uv[0, p], uv[1, p], h, w, repeat)
        in0 = iy0 >= row0 and iy0 < row1
        in1 = iy1 >= row0 and iy1 < row1
        if not (in0 or in1):
            continue
        w00 = (1 - fx) * (1 - fy)
        w01 = fx * (1 - fy)
        w10 = (1 - fx) * fy
        w11 = fx * fy
        for ch in range(c):
            g = grad[p, ch]
            if in0:
                gtex[iy0, ix0, ch] += g * w00
                gtex[iy0, ix1, ch] += g * w01
            if in1:
                gtex[iy1, ix0, ch] += g * w10
                gtex[iy1, ix1, ch] += g * w11


def _texture_grad(shape, uv_t: np.ndarray, repeat: bool, grad: np.ndarray) -> np.ndarray:
    """Dense texture gradient [H,W,C] of bilinear lookups at uv_t [2,N] given grad [N,C];
    texture rows are split into bands over the threads."""
    gtex = np.empty(shape, np.float32)
    _run(lambda a=a, b=b: _tex_bwd_scatter(uv_t, repeat, grad, gtex, a, b) for a, b in _chunks(shape[0], _threads()))
    return gtex


class _Texture(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tex, uv, repeat):
        t = tex.detach().contiguous()
        u = uv.detach().contiguous()
        out = np.empty((u.shape[0], t.shape[2]), np.float32)
        tn, un = t.numpy(), u.numpy()
        _run(lambda a=a, b=b: _tex_fwd(tn, un, repeat, out, a, b) for a, b in _chunks(u.shape[0], _threads()))
        ctx.save_for_backward(t, u)
        ctx.repeat = repeat
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        t, u = ctx.saved_tensors
        tn, un = t.numpy(), u.numpy()
        gn = np.ascontiguousarray(grad.detach().numpy(), dtype=np.float32)
        gtex = guv = None
        if ctx.needs_input_grad[0]:
            gtex = torch.from_numpy(_texture_grad(t.shape, np.ascontiguousarray(un.T), ctx.repeat, gn))
        if ctx.needs_input_grad[1]:
            guv_np = np.empty(u.shape, np.float32)
            _run(lambda a=a, b=b: _tex_bwd_uv(tn, un, ctx.repeat, gn, guv_np, a, b)
                 for a, b in _chunks(u.shape[0], _threads()))
            guv = torch.from_numpy(guv_np)
        return gtex, guv, None


def sample_texture_cpu(texture: torch.Tensor, uv: torch.Tensor, wrap: str = "repeat") -> torch.Tensor:
    """Fused bilinear lookup, same contract as :func:`.shade.sample_texture` but
    with uv [N,2] -> [N,C] (float32, CPU). Differentiable in texture and uv."""
    if wrap not in ("repeat", "clamp"):
        raise ValueError(f"texture wrap must be 'repeat' or 'clamp', got {wrap!r}")
    return _Texture.apply(texture, uv, wrap == "repeat")


@njit(cache=True, nogil=True)
def _normals_fwd(pts, faces, acc, out):  # pragma: no cover - compiled
    """pts [B,V,3] f32, faces [F,3] i64 -> acc [B,V,3] summed face normals (length
    2*area), out [B,V,3] unit normals (0 where acc is 0)."""
    for b in range(pts.shape[0]):
        for f in range(faces.shape[0]):
            i0 = faces[f, 0]
            i1 = faces[f, 1]
            i2 = faces[f, 2]
            ax = pts[b, i1, 0] - pts[b, i0, 0]
            ay = pts[b, i1, 1] - pts[b, i0, 1]
            az = pts[b, i1, 2] - pts[b, i0, 2]
            bx = pts[b, i2, 0] - pts[b, i0, 0]
            by = pts[b, i2, 1] - pts[b, i0, 1]
            bz = pts[b, i2, 2] - pts[b, i0, 2]
            nx = ay * bz - az * by
            ny = az * bx - ax * bz
            nz = ax * by - ay * bx
            for i in (i0, i1, i2):
                acc[b, i, 0] += nx
                acc[b, i, 1] += ny
                acc[b, i, 2] += nz
        for v in range(pts.shape[1]):
            ln = np.sqrt(acc[b, v, 0] ** 2 + acc[b, v, 1] ** 2 + acc[b, v, 2] ** 2)
            inv = np.float32(1.0) / max(ln, np.float32(1e-12))
            for c in range(3):
                out[b, v, c] = acc[b, v, c] * inv


@njit(cache=True, nogil=True)
def _normals_bwd(pts, faces, acc, out, gout, gpts):  # pragma: no cover - compiled
    gacc = np.empty_like(acc)
    for b in range(pts.shape[0]):
        for v in range(pts.shape[1]):
            ln = np.sqrt(acc[b, v, 0] ** 2 + acc[b, v, 1] ** 2 + acc[b, v, 2] ** 2)
            if ln < 1e-12:
                # Below the clamp the output is acc * 1e12, linear in acc.
                for c in range(3):
                    gacc[b, v, c] = gout[b, v, c] * np.float32(1e12)
                continue
            dot = out[b, v, 0] * gout[b, v, 0] + out[b, v, 1] * gout[b, v, 1] + out[b, v, 2] * gout[b, v, 2]
            for c in range(3):
                gacc[b, v, c] = (gout[b, v, c] - out[b, v, c] * dot) / ln
        for f in range(faces.shape[0]):
            i0 = faces[f, 0]
            i1 = faces[f, 1]
            i2 = faces[f, 2]
            gx = gacc[b, i0, 0] + gacc[b, i1, 0] + gacc[b, i2, 0]
            gy = gacc[b, i0, 1] + gacc[b, i1, 1] + gacc[b, i2, 1]
            gz = gacc[b, i0, 2] + gacc[b, i1, 2] + gacc[b, i2, 2]
            ax = pts[b, i1, 0] - pts[b, i0, 0]
            ay = pts[b, i1, 1] - pts[b, i0, 1]
            az = pts[b, i1, 2] - pts[b, i0, 2]
            bx = pts[b, i2, 0] - pts[b, i0, 0]
            by = pts[b, i2, 1] - pts[b, i0, 1]
            bz = pts[b, i2, 2] - pts[b, i0, 2]
            # n = a x b:  dL/da = b x g,  dL/db = g x a
            gax = by * gz - bz * gy
            gay = bz * gx - bx * gz
            gaz = bx * gy - by * gx
            gbx = gy * az - gz * ay
            gby = gz * ax - gx * az
            gbz = gx * ay - gy * ax
            gpts[b, i1, 0] += gax
            gpts[b, i1, 1] += gay
            gpts[b, i1, 2] += gaz
            gpts[b, i2, 0] += gbx
            gpts[b, i2, 1] += gby
            gpts[b, i2, 2] += gbz
            gpts[b, i0, 0] -= gax + gbx
            gpts[b, i0, 1] -= gay + gby
            gpts[b, i0, 2] -= gaz + gbz


class _Normals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pts, faces):
        p = pts.detach().contiguous()
        acc = np.zeros(p.shape, np.float32)
        out = np.empty(p.shape, np.float32)
        pn, fn = p.numpy(), faces.numpy()
        _run(lambda a=a, b=b: _normals_fwd(pn[a:b], fn, acc[a:b], out[a:b]) for a, b in _chunks(p.shape[0], _threads()))
        ctx.save_for_backward(p, faces, torch.from_numpy(acc), torch.from_numpy(out))
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        p, faces, acc, out = ctx.saved_tensors
        g = np.zeros(p.shape, np.float32)
        pn, fn, an, on = p.numpy(), faces.numpy(), acc.numpy(), out.numpy()
        gn = gout.detach().contiguous().numpy().astype(np.float32, copy=False)
        _run(lambda a=a, b=b: _normals_bwd(pn[a:b], fn, an[a:b], on[a:b], gn[a:b], g[a:b])
             for a, b in _chunks(p.shape[0], _threads()))
        return torch.from_numpy(g), None


def vertex_normals_cpu(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Fused area-weighted unit vertex normals: vertices [B,V,3] float32, faces [F,3]
    int64 -> [B,V,3], same as :func:`.shade.vertex_normals`; differentiable."""
    return _Normals.apply(vertices, faces.contiguous())


@njit(cache=True, nogil=True, inline="always")
def _shade_normal(normal, front, two_sided, p):  # pragma: no cover - compiled
    """Unit normal at pixel p, turned to the viewer for back faces when two-sided
    (as :func:`.shade.unit_rows` then the sign flip); also returns the raw vector,
    its squared length and length for the backward pass."""
    x = normal[0, p]
    y = normal[1, p]
    z = normal[2, p]
    s = x * x + y * y + z * z
    ln = np.sqrt(max(s, np.float32(1e-24)))
    sign = np.float32(-1.0) if (two_sided and front[p] == 0) else np.float32(1.0)
    return x / ln * sign, y / ln * sign, z / ln * sign, x, y, z, s, ln, sign


@njit(cache=True, nogil=True)
def _shade_fwd(normal, front, two_sided, dirs, cols, amb, tex, uv, repeat, albedo_const, use_tex,
               pixel, out, saved, start, stop):  # pragma: no cover - compiled
    """Deferred Lambert shading of pixels start..stop-1, written into the image.

    normal [3,N] f32 raw (unnormalised) normals in the lights' space; front [N] u8;
    dirs [L,3] unit directions towards the lights; cols [L,3]; amb [3]; tex [H,W,C]
    (row 0 = top) sampled bilinearly at uv [2,N] when use_tex, else albedo_const [C];
    pixel [N] i64 rows of out [M,C] to write. Same maths as :func:`.shade.lambert` of
    :func:`.shade.unit_rows` normals and :func:`_tex_fwd` albedo.
    saved [N,3C] keeps, for the backward pass, the albedo and (with a texture) its
    derivatives along the texel offsets fx, fy, so the backward pass never reads the
    texture again (random texture reads are the slow part on the CPU)."""
    n_lights = dirs.shape[0]
    h, w, c = tex.shape
    for p in range(start, stop):
        nx, ny, nz, _, _, _, _, _, _ = _shade_normal(normal, front, two_sided, p)
        row = pixel[p]
        if use_tex:
            q = p + _PREFETCH_AHEAD
            if q < stop:
                jx0, _, jy0, jy1, _, _ = _taps(uv[0, q], uv[1, q], h, w, repeat)
                _prefetch(tex, jy0, jx0)
                _prefetch(tex, jy1, jx0)
            ix0, ix1, iy0, iy1, fx, fy = _taps(uv[0, p], uv[1, p], h, w, repeat)
            w00 = (1 - fx) * (1 - fy)
            w01 = fx * (1 - fy)
            w10 = (1 - fx) * fy
            w11 = fx * fy
        for ch in range(c):
            if use_tex:
                t00 = tex[iy0, ix0, ch]
                t01 = tex[iy0, ix1, ch]
                t10 = tex[iy1, ix0, ch]
                t11 = tex[iy1, ix1, ch]
                a = np.float32(w00 * t00 + w01 * t01 + w10 * t10 + w11 * t11)
                saved[p, c + ch] = (t01 - t00) * (1 - fy) + (t11 - t10) * fy
                saved[p, 2 * c + ch] = (t10 - t00) * (1 - fx) + (t11 - t01) * fx
            else:
                a = albedo_const[ch]
            saved[p, ch] = a
            irr = amb[ch]
            for i in range(n_lights):
                ndl = nx * dirs[i, 0] + ny * dirs[i, 1] + nz * dirs[i, 2]
                irr = irr + cols[i, ch] * max(ndl, np.float32(0.0))
            out[row, ch] = a * irr


@njit(cache=True, nogil=True)
def _shade_bwd(normal, front, two_sided, dirs, cols, amb, h, w, use_tex, pixel, saved,
               gimg, gnormal, guv, galbedo, start, stop):  # pragma: no cover - compiled
    """Backward of :func:`_shade_fwd` for pixels start..stop-1 (texture size h x w):
    gimg [M,C] image gradient -> gnormal [3,N] (raw normals), guv [2,N] and
    galbedo [N,C] (the texture scatter is done separately, by texture row bands)."""
    n_lights = dirs.shape[0]
    c = gimg.shape[1]
    for p in range(start, stop):
        nx, ny, nz, x, y, z, s, ln, sign = _shade_normal(normal, front, two_sided, p)
        row = pixel[p]
        gnx = np.float32(0.0)
        gny = np.float32(0.0)
        gnz = np.float32(0.0)
        gfx = 0.0
        gfy = 0.0
        for ch in range(c):
            g = gimg[row, ch]
            irr = amb[ch]
            for i in range(n_lights):
                ndl = nx * dirs[i, 0] + ny * dirs[i, 1] + nz * dirs[i, 2]
                irr = irr + cols[i, ch] * max(ndl, np.float32(0.0))
            ga = g * irr
            galbedo[p, ch] = ga
            if use_tex:
                gfx += ga * saved[p, c + ch]
                gfy += ga * saved[p, 2 * c + ch]
            girr = g * saved[p, ch]
            for i in range(n_lights):
                ndl = nx * dirs[i, 0] + ny * dirs[i, 1] + nz * dirs[i, 2]
                if ndl >= 0.0:  # torch's clamp_min passes the gradient at the kink
                    gl = girr * cols[i, ch]
                    gnx += gl * dirs[i, 0]
                    gny += gl * dirs[i, 1]
                    gnz += gl * dirs[i, 2]
        # n = sign * x / ln,  ln = sqrt(max(s, 1e-24)),  s = |x|^2
        gnx *= sign
        gny *= sign
        gnz *= sign
        inv = np.float32(1.0) / ln
        gs = np.float32(0.0)
        if s >= np.float32(1e-24):  # clamp_min passes the gradient at the bound
            gs = -(gnx * x + gny * y + gnz * z) * inv * inv * np.float32(0.5) * inv
        gnormal[0, p] = gnx * inv + np.float32(2.0) * x * gs
        gnormal[1, p] = gny * inv + np.float32(2.0) * y * gs
        gnormal[2, p] = gnz * inv + np.float32(2.0) * z * gs
        if use_tex:
            guv[0, p] = gfx * w
            guv[1, p] = -gfy * h


class _Shade(torch.autograd.Function):
    @staticmethod
    def forward(ctx, normal, uv, tex, background, pixel, front, two_sided, dirs, cols, amb, albedo_const, repeat):
        n_raw = normal.detach().contiguous()
        use_tex = tex is not None
        t = tex.detach().contiguous() if use_tex else torch.zeros(1, 1, albedo_const.shape[0])
        u = uv.detach().contiguous() if use_tex else torch.zeros(2, 1)
        # A numpy copy (any strides, e.g. an expanded colour): no torch worker threads.
        out = torch.from_numpy(np.array(background.detach().numpy(), dtype=np.float32, order="C"))
        n = pixel.shape[0]
        saved = np.empty((n, 3 * t.shape[2]), np.float32)
        args = (n_raw.numpy(), front.numpy(), two_sided, dirs.numpy(), cols.numpy(), amb.numpy(), t.numpy(),
                u.numpy(), repeat, albedo_const.numpy(), use_tex, pixel.numpy(), out.numpy(), saved)
        _run(lambda a=a, b=b: _shade_fwd(*args, a, b) for a, b in _chunks(n, _threads()))
        ctx.save_for_backward(n_raw, u, pixel, front, dirs, cols, amb, torch.from_numpy(saved))
        ctx.flags = (two_sided, repeat, use_tex, tuple(t.shape))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, gimg):
        n_raw, u, pixel, front, dirs, cols, amb, saved = ctx.saved_tensors
        two_sided, repeat, use_tex, tex_shape = ctx.flags
        n = pixel.shape[0]
        # Any strides (e.g. the expanded gradient of a mean): no image-sized copy.
        g = gimg.detach().to(torch.float32).numpy()
        gnormal = np.empty((3, n), np.float32)
        guv = np.empty((2, n) if use_tex else (2, 1), np.float32)
        galbedo = np.empty((n, tex_shape[2]), np.float32)
        args = (n_raw.numpy(), front.numpy(), two_sided, dirs.numpy(), cols.numpy(), amb.numpy(),
                tex_shape[0], tex_shape[1], use_tex, pixel.numpy(), saved.numpy(), g, gnormal, guv, galbedo)
        _run(lambda a=a, b=b: _shade_bwd(*args, a, b) for a, b in _chunks(n, _threads()))
        need = ctx.needs_input_grad
        gtex = gbg = None
        if use_tex and need[2]:
            gtex = torch.from_numpy(_texture_grad(tex_shape, u.numpy(), repeat, galbedo))
        if need[3]:
            gbg = gimg.detach().index_fill(0, pixel, 0.0)
        return (torch.from_numpy(gnormal) if need[0] else None, torch.from_numpy(guv) if use_tex and need[1] else None,
                gtex, gbg) + (None,) * 8


def shade_cpu(normal: torch.Tensor, front: torch.Tensor, lights, background: torch.Tensor, pixel: torch.Tensor,
              *, texture: torch.Tensor | None = None, uv: torch.Tensor | None = None, wrap: str = "repeat",
              albedo: float = 0.8, two_sided: bool = True) -> torch.Tensor:
    """Fused deferred shading, the same maths as the torch path
    ``emit(lambert(sample_texture(texture, uv), sign * unit_rows(normal), lights), background)``.

    normal [3,N] float32 raw (unnormalised) normals in ``lights.space``; front [N]
    bool (back faces are turned to the viewer when ``two_sided``); background
    [M,C] image rows (M = B*H*W); pixel [N] int64 covered rows; texture [H,W,C]
    sampled at uv [2,N] (``wrap`` "repeat" or "clamp"), or None for a constant
    albedo. Returns [M,C]: the background with the shaded pixels written in.
    Differentiable in normal, uv, texture and background.
    """
    d = torch.as_tensor(lights.directions, dtype=torch.float32).reshape(-1, 3)
    d = (d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)).contiguous()
    col = torch.as_tensor(lights.colors, dtype=torch.float32).reshape(-1, 3).contiguous()
    amb = torch.as_tensor(lights.ambient, dtype=torch.float32).reshape(3).contiguous()
    c = background.shape[1]
    const = torch.full((c,), float(albedo), dtype=torch.float32)
    return _Shade.apply(normal, uv, texture, background, pixel.contiguous(), front.to(torch.uint8).contiguous(),
                        bool(two_sided), d, col, amb, const, wrap == "repeat")


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


class _VertexStage(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pts, normals, w2c, fx, fy, cx, cy, ortho, with_world, with_cam, with_pos):
        p = pts.detach().contiguous()
        has_n = with_world or with_cam
        nrm = normals.detach().contiguous() if has_n else torch.zeros(1, 1, 3)
        k = 3 + 3 * (int(with_world) + int(with_cam) + int(with_pos))
        out = np.empty(tuple(p.shape[:2]) + (k,), np.float32)
        arrs = [t.detach().contiguous().numpy() for t in (w2c, fx, fy, cx, cy)]
        orth = ortho.to(torch.uint8).contiguous().numpy()
        pn, nn = p.numpy(), nrm.numpy()
        _run(lambda a=a, b=b: _vstage_fwd(pn[a:b], *(x[a:b] for x in arrs), orth[a:b], nn[a:b] if has_n else nn,
                                          with_world, with_cam, with_pos, out[a:b])
             for a, b in _chunks(p.shape[0], _threads()))
        ctx.save_for_backward(p, w2c.detach().contiguous(), fx.detach().contiguous(), fy.detach().contiguous(),
                              ortho.to(torch.uint8).contiguous())
        ctx.flags = (with_world, with_cam, with_pos)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        p, w2c, fx, fy, ortho = ctx.saved_tensors
        with_world, with_cam, with_pos = ctx.flags
        has_n = with_world or with_cam
        g = np.ascontiguousarray(gout.detach().numpy(), dtype=np.float32)
        gp = np.empty(p.shape, np.float32)
        gn = np.empty(p.shape if has_n else (1, 1, 3), np.float32)
        pn, wn, fxn, fyn, on = p.numpy(), w2c.numpy(), fx.numpy(), fy.numpy(), ortho.numpy()
        _run(lambda a=a, b=b: _vstage_bwd(pn[a:b], wn[a:b], fxn[a:b], fyn[a:b], on[a:b], with_world, with_cam,
                                          with_pos, g[a:b], gp[a:b], gn[a:b] if has_n else gn)
             for a, b in _chunks(p.shape[0], _threads()))
        if any(ctx.needs_input_grad[2:8]):
            raise RuntimeError("fused vertex stage: gradients with respect to cameras are not supported")
        return (torch.from_numpy(gp) if ctx.needs_input_grad[0] else None,
                torch.from_numpy(gn) if has_n and ctx.needs_input_grad[1] else None) + (None,) * 9


def vertex_stage_cpu(vertices: torch.Tensor, cams, normals: torch.Tensor | None = None, *,
                     with_world: bool = False, with_cam: bool = False, with_pos: bool = False) -> torch.Tensor:
    """Fused per-vertex stage: vertices [B,V,3] float32 world positions, a
    :class:`.camera.CameraBatch` and (for the normal columns) unit world normals
    [B,V,3] -> [B,V,K] float32 columns: screen u, v in pixels (u right, v down),
    depth in metres (as :func:`.camera.project` of :func:`.camera.to_camera_space`),
    then world normals, camera-space normals, world positions (each only when
    asked). Differentiable in vertices and normals (not in the cameras)."""
    return _VertexStage.apply(vertices, normals, cams.world_to_camera, cams.fx, cams.fy, cams.cx, cams.cy,
                              cams.ortho, bool(with_world), bool(with_cam), bool(with_pos))
