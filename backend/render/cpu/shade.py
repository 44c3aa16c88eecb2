"""Fused deferred Lambert shading (numba, float32, CPU) written straight into
the image, with its backward pass: the same maths as
``lambert(sample_texture(texture, uv), sign * unit_rows(normal), lights)``
scattered over the background (:mod:`backend.render.shade`). The forward pass
saves the albedo and its texel derivatives so the backward pass never reads the
texture again (random texture reads are the slow part on the CPU).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable

from .parallel import PREFETCH_AHEAD, chunks, prefetch, run, threads
from .texture import taps, texture_grad


@njit(cache=True, nogil=True, inline="always")
def _shade_normal(normal, front, two_sided, p):  # pragma: no cover - compiled
    """Unit normal at pixel p, turned to the viewer for back faces when two-sided
    (as :func:`..shade.unit_rows` then the sign flip); also returns the raw vector,
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
               pixel, background, out, saved, keep, row0, row1, start, stop):  # pragma: no cover - compiled
    """Deferred Lambert shading of pixels start..stop-1, written into the image out
    [M,C] after copying its rows row0..row1-1 from background [M,C] (any strides: an
    expanded colour is never copied whole; each thread fills the rows around its pixels).

    normal [3,N] f32 raw (unnormalised) normals in the lights' space; front [N] u8;
    dirs [L,3] unit directions towards the lights; cols [L,3]; amb [3]; tex [H,W,C]
    (row 0 = top) sampled bilinearly at uv [2,N] when use_tex, else albedo_const [C];
    pixel [N] i64 rows of out [M,C] to write. Same maths as :func:`..shade.lambert` of
    :func:`..shade.unit_rows` normals and :func:`.texture.taps` bilinear albedo.
    saved [N,3C] keeps (when ``keep``), for the backward pass, the albedo and (with a
    texture) its derivatives along the texel offsets fx, fy, so the backward pass never
    reads the texture again (random texture reads are the slow part on the CPU)."""
    n_lights = dirs.shape[0]
    h, w, c = tex.shape
    for r in range(row0, row1):
        for ch in range(c):
            out[r, ch] = background[r, ch]
    for p in range(start, stop):
        nx, ny, nz, _, _, _, _, _, _ = _shade_normal(normal, front, two_sided, p)
        row = pixel[p]
        if use_tex:
            q = p + PREFETCH_AHEAD
            if q < stop:
                jx0, _, jy0, jy1, _, _ = taps(uv[0, q], uv[1, q], h, w, repeat)
                prefetch(tex, jy0, jx0)
                prefetch(tex, jy1, jx0)
            ix0, ix1, iy0, iy1, fx, fy = taps(uv[0, p], uv[1, p], h, w, repeat)
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
                if keep:
                    saved[p, c + ch] = (t01 - t00) * (1 - fy) + (t11 - t10) * fy
                    saved[p, 2 * c + ch] = (t10 - t00) * (1 - fx) + (t11 - t01) * fx
            else:
                a = albedo_const[ch]
            if keep:
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
    def forward(ctx, normal, uv, tex, background, pixel, front, two_sided, dirs, cols, amb, albedo_const, repeat,
                keep):
        n_raw = normal.detach().contiguous()
        use_tex = tex is not None
        t = tex.detach().contiguous() if use_tex else torch.zeros(1, 1, albedo_const.shape[0])
        u = uv.detach().contiguous() if use_tex else torch.zeros(2, 1)
        n, (m, c) = pixel.shape[0], background.shape
        pix = pixel.numpy()
        out = np.empty((m, c), np.float32)
        # keep: some input needs a gradient, so save what the backward pass reads.
        saved = np.empty((n if keep else 1, 3 * t.shape[2]), np.float32)
        args = (n_raw.numpy(), front.numpy(), two_sided, dirs.numpy(), cols.numpy(), amb.numpy(), t.numpy(),
                u.numpy(), repeat, albedo_const.numpy(), use_tex, pix, background.detach().numpy(), out, saved, keep)
        # Pixels are sorted by image row: each thread also fills the background rows
        # from its first pixel to the next thread's (all rows when nothing is covered).
        parts = chunks(n, threads()) or [(0, 0)]
        rows = [0] + [int(pix[a]) for a, _ in parts[1:]] + [m]
        run(lambda k=k, a=a, b=b: _shade_fwd(*args, rows[k], rows[k + 1], a, b) for k, (a, b) in enumerate(parts))
        out = torch.from_numpy(out)
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
        run(lambda a=a, b=b: _shade_bwd(*args, a, b) for a, b in chunks(n, threads()))
        need = ctx.needs_input_grad
        gtex = gbg = None
        if use_tex and need[2]:
            gtex = torch.from_numpy(texture_grad(tex_shape, u.numpy(), repeat, galbedo))
        if need[3]:
            gbg = gimg.detach().index_fill(0, pixel, 0.0)
        return (torch.from_numpy(gnormal) if need[0] else None, torch.from_numpy(guv) if use_tex and need[1] else None,
                gtex, gbg) + (None,) * 9


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
    # Under no_grad (or with nothing to differentiate) the backward's inputs are not saved.
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (normal, uv, texture, background))
    # A bool tensor's bytes as uint8 without a copy (a torch conversion would wake its worker threads).
    front_u8 = (torch.from_numpy(front.contiguous().numpy().view(np.uint8)) if front.dtype == torch.bool
                else front.to(torch.uint8).contiguous())
    return _Shade.apply(normal, uv, texture, background, pixel.contiguous(), front_u8,
                        bool(two_sided), d, col, amb, const, wrap == "repeat", keep)
