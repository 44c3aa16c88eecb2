"""Fused bilinear texture lookup (numba, float32, CPU) with its backward pass:
the same maths as :func:`backend.render.shade.sample_texture` (Blender's Linear
interpolation, Repeat or Clamp extension). The texture gradient is scattered by
texture row bands, one band per thread (no atomics, bit-identical for any
thread count).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable

from .parallel import PREFETCH_AHEAD, chunks, prefetch, run, threads


@njit(cache=True, nogil=True, inline="always")
def taps(u, v, h, w, repeat):  # pragma: no cover - compiled
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
        ix0, ix1, iy0, iy1, fx, fy = taps(uv[p, 0], uv[p, 1], h, w, repeat)
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
        ix0, ix1, iy0, iy1, fx, fy = taps(uv[p, 0], uv[p, 1], h, w, repeat)
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
def _tex_rows(uv, h, w, repeat, rows, start, stop):  # pragma: no cover - compiled
    """rows [2,N] i32: the two texture rows (iy0, iy1) pixel p's bilinear lookup at uv
    [2,N] touches, for pixels start..stop-1."""
    for p in range(start, stop):
        _, _, iy0, iy1, _, _ = taps(uv[0, p], uv[1, p], h, w, repeat)
        rows[0, p] = iy0
        rows[1, p] = iy1


@njit(cache=True, nogil=True, inline="always")
def _in_band(rows, p, row0, row1):  # pragma: no cover - compiled
    return (rows[0, p] >= row0 and rows[0, p] < row1) or (rows[1, p] >= row0 and rows[1, p] < row1)


@njit(cache=True, nogil=True)
def _tex_bwd_scatter(uv, repeat, grad, gtex, row0, row1, rows, use_rows):  # pragma: no cover - compiled
    """Texture gradient rows row0..row1-1 of gtex [H,W,C] (zeroed here first): every
    pixel's bilinear weights times grad [N,C] (uv [2,N] channel-first), added in pixel
    order. Threads own disjoint row bands, so there are no atomics and no per-thread
    texture-sized buffers, and each texel sums its contributions in the same order
    whatever the thread count (bit-identical results). With ``use_rows``, rows [2,N]
    (from :func:`_tex_rows`) skip the pixels outside the band without a lookup."""
    h, w, c = gtex.shape
    for r in range(row0, row1):
        for x in range(w):
            for ch in range(c):
                gtex[r, x, ch] = 0.0
    n = uv.shape[1]
    for p in range(n):
        if use_rows and not _in_band(rows, p, row0, row1):
            continue
        q = p + PREFETCH_AHEAD
        if q < n and not (use_rows and not _in_band(rows, q, row0, row1)):
            jx0, _, jy0, jy1, _, _ = taps(uv[0, q], uv[1, q], h, w, repeat)
            if jy0 >= row0 and jy0 < row1:
                prefetch(gtex, jy0, jx0)
            if jy1 >= row0 and jy1 < row1:
                prefetch(gtex, jy1, jx0)
        ix0, ix1, iy0, iy1, fx, fy = taps(uv[0, p], uv[1, p], h, w, repeat)
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


def texture_grad(shape, uv_t: np.ndarray, repeat: bool, grad: np.ndarray) -> np.ndarray:
    """Dense texture gradient [H,W,C] of bilinear lookups at uv_t [2,N] given grad [N,C];
    texture rows are split into bands over the threads. With several bands, the rows
    each pixel touches are found once (in parallel), so no thread repeats every
    pixel's lookup to find its own."""
    gtex = np.empty(shape, np.float32)
    n = uv_t.shape[1]
    bands = chunks(shape[0], threads())
    rows = np.empty((2, n if len(bands) > 1 else 1), np.int32)
    if len(bands) > 1:
        run(lambda a=a, b=b: _tex_rows(uv_t, shape[0], shape[1], repeat, rows, a, b) for a, b in chunks(n, len(bands)))
    run(lambda a=a, b=b: _tex_bwd_scatter(uv_t, repeat, grad, gtex, a, b, rows, len(bands) > 1) for a, b in bands)
    return gtex


class _Texture(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tex, uv, repeat):
        t = tex.detach().contiguous()
        u = uv.detach().contiguous()
        out = np.empty((u.shape[0], t.shape[2]), np.float32)
        tn, un = t.numpy(), u.numpy()
        run(lambda a=a, b=b: _tex_fwd(tn, un, repeat, out, a, b) for a, b in chunks(u.shape[0], threads()))
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
            gtex = torch.from_numpy(texture_grad(t.shape, np.ascontiguousarray(un.T), ctx.repeat, gn))
        if ctx.needs_input_grad[1]:
            guv_np = np.empty(u.shape, np.float32)
            run(lambda a=a, b=b: _tex_bwd_uv(tn, un, ctx.repeat, gn, guv_np, a, b)
                for a, b in chunks(u.shape[0], threads()))
            guv = torch.from_numpy(guv_np)
        return gtex, guv, None


def sample_texture_cpu(texture: torch.Tensor, uv: torch.Tensor, wrap: str = "repeat") -> torch.Tensor:
    """Fused bilinear lookup, same contract as :func:`..shade.sample_texture` but
    with uv [N,2] -> [N,C] (float32, CPU). Differentiable in texture and uv."""
    if wrap not in ("repeat", "clamp"):
        raise ValueError(f"texture wrap must be 'repeat' or 'clamp', got {wrap!r}")
    return _Texture.apply(texture, uv, wrap == "repeat")
