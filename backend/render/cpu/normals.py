"""Area-weighted smooth vertex normals (numba, float32, CPU) and their backward
pass: the same maths as :func:`backend.render.shade.vertex_normals`. Called per
range of views by the fused vertex stage (:mod:`.vertex_stage`).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def normals_forward(pts, faces, acc, out):  # pragma: no cover - compiled
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
def normals_backward(pts, faces, acc, out, gout, gpts):  # pragma: no cover - compiled
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
