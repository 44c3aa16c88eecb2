"""Visibility: which triangle covers each pixel centre (no gradients).

A numba z-buffer over screen-space vertices, one compiled signature (float32
coordinates, int32 triangles), cached on disk so a process compiles at most
once. Gradients do not flow through visibility; :mod:`.interpolate` recomputes
barycentrics differentiably from the triangle ids found here.

Callers validate inputs first (:mod:`.validate`): nothing here checks index
ranges, so out-of-range indices must never reach it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cpu.parallel import chunks, run, threads


@njit(cache=True, nogil=True, inline="always")
def _top_left(dx, dy):  # pragma: no cover - compiled
    return dy > 0.0 or (dy == 0.0 and dx > 0.0)


@njit(cache=True, nogil=True)
def _raster_kernel(screen, depth, faces, ortho, near, far, tri_out, z_out, front_out):  # pragma: no cover - compiled
    """screen [B,V,2] f32 pixel coords (u right, v down); depth [B,V] f32 view-axis
    metres; faces [F,3] i32; ortho/near/far [B]; tri_out [B,H,W] i32 pre-filled -1;
    z_out [B,H,W] f32 pre-filled +inf; front_out [B,H,W] u8 (1: the triangle is
    counter-clockwise on screen, i.e. faces the camera). Pixel (col,row) is sampled at its centre."""
    B = screen.shape[0]
    F = faces.shape[0]
    H = tri_out.shape[1]
    W = tri_out.shape[2]
    for b in range(B):
        is_ortho = ortho[b] != 0
        zn = near[b]
        zf = far[b]
        for f in range(F):
            i0 = faces[f, 0]
            i1 = faces[f, 1]
            i2 = faces[f, 2]
            d0 = depth[b, i0]
            d1 = depth[b, i1]
            d2 = depth[b, i2]
            if not is_ortho:
                # No near-plane clipping: a triangle reaching behind the camera is
                # skipped whole (its projection would wrap around).
                if d0 <= 1e-9 or d1 <= 1e-9 or d2 <= 1e-9:
                    continue
            elif (d0 < zn and d1 < zn and d2 < zn) or (d0 > zf and d1 > zf and d2 > zf):
                continue
            x0 = screen[b, i0, 0]
            y0 = screen[b, i0, 1]
            x1 = screen[b, i1, 0]
            y1 = screen[b, i1, 1]
            x2 = screen[b, i2, 0]
            y2 = screen[b, i2, 1]
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if area == 0.0 or not np.isfinite(area):
                continue
            # v points down, so counter-clockwise as seen (front facing) is negative area.
            is_front = 1 if area < 0.0 else 0
            sgn = 1.0 if area > 0.0 else -1.0
            # Tie rule for pixel centres exactly on an edge (watertight: a shared
            # edge goes to exactly one of its two triangles). The edge direction,
            # oriented so the interior is on its positive side, is the exact negation
            # of the neighbour's; accept ties on "top-left" directions only.
            tl0 = _top_left(sgn * (x2 - x1), sgn * (y2 - y1))
            tl1 = _top_left(sgn * (x0 - x2), sgn * (y0 - y2))
            tl2 = _top_left(sgn * (x1 - x0), sgn * (y1 - y0))
            xmin = min(x0, min(x1, x2))
            xmax = max(x0, max(x1, x2))
            ymin = min(y0, min(y1, y2))
            ymax = max(y0, max(y1, y2))
            # Pixel centres c+0.5 inside [xmin, xmax].
            c0 = max(int(np.ceil(xmin - 0.5)), 0)
            c1 = min(int(np.floor(xmax - 0.5)), W - 1)
            r0 = max(int(np.ceil(ymin - 0.5)), 0)
            r1 = min(int(np.floor(ymax - 0.5)), H - 1)
            if c0 > c1 or r0 > r1:
                continue
            for r in range(r0, r1 + 1):
                py = r + 0.5
                for c in range(c0, c1 + 1):
                    px = c + 0.5
                    # Edge functions evaluated directly (never as 1 - w0 - w1): the same
                    # edge seen from the neighbouring triangle gives the exact negation.
                    e0 = sgn * ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py))
                    e1 = sgn * ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py))
                    e2 = sgn * ((x0 - px) * (y1 - py) - (x1 - px) * (y0 - py))
                    if e0 < 0.0 or e1 < 0.0 or e2 < 0.0:
                        continue
                    if (e0 == 0.0 and not tl0) or (e1 == 0.0 and not tl1) or (e2 == 0.0 and not tl2):
                        continue
                    total = e0 + e1 + e2
                    if total <= 0.0:
                        continue
                    w0 = e0 / total
                    w1 = e1 / total
                    w2 = e2 / total
                    if is_ortho:
                        z = w0 * d0 + w1 * d1 + w2 * d2
                    else:
                        z = 1.0 / (w0 / d0 + w1 / d1 + w2 / d2)
                    if z < zn or z > zf:
                        continue
                    if z < z_out[b, r, c]:
                        z_out[b, r, c] = z
                        tri_out[b, r, c] = f
                        front_out[b, r, c] = is_front


def rasterize(screen: np.ndarray, depth: np.ndarray, faces: np.ndarray, width: int, height: int,
              ortho: np.ndarray, near: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffer visibility for a batch of views.

    screen [B,V,2] pixel coordinates (u right from the left edge, v down from the
    top edge), depth [B,V] metres along the view axis, faces [F,3] int, ortho
    [B] bool, near/far [B] metres.

    Returns (tri_id [B,H,W] int32 with -1 where nothing is hit, zbuf [B,H,W]
    float32 with +inf there, front [B,H,W] bool: the visible triangle faces the
    camera). Ties keep the lower triangle index (deterministic).
    """
    screen = np.ascontiguousarray(screen, dtype=np.float32)
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    b = screen.shape[0]
    tri = np.full((b, int(height), int(width)), -1, dtype=np.int32)
    zbuf = np.full((b, int(height), int(width)), np.inf, dtype=np.float32)
    front = np.zeros((b, int(height), int(width)), dtype=np.uint8)
    if faces.shape[0] > 0:
        ortho = np.ascontiguousarray(ortho, dtype=np.uint8)
        near = np.ascontiguousarray(near, dtype=np.float32)
        far = np.ascontiguousarray(far, dtype=np.float32)
        # Views are independent: split them over threads (the kernel releases the GIL).
        run(lambda a=a, c=c: _raster_kernel(screen[a:c], depth[a:c], faces, ortho[a:c], near[a:c], far[a:c],
                                            tri[a:c], zbuf[a:c], front[a:c]) for a, c in chunks(b, threads()))
    return tri, zbuf, front.view(np.bool_)
