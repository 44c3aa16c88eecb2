"""Small pure mesh helpers on numpy arrays used by the sample generator.

Every builder returns a :class:`Part`: vertices [V,3] float64 metres (Z up,
the character faces -Y), triangles [F,3], UVs [T,2] (atlas space, origin
bottom-left) and per-corner UV indices [F,3]. Triangles wind counter-clockwise
seen from outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Part:
    name: str
    vertices: np.ndarray   # [V,3] float64
    faces: np.ndarray      # [F,3] int64
    uvs: np.ndarray        # [T,2] float64
    uv_faces: np.ndarray   # [F,3] int64


def smoothstep(e0, e1, x):
    t = np.clip((np.asarray(x, np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(*d):
    """exp(-sum d_i^2): separable bump from normalized offsets."""
    s = 0.0
    for di in d:
        s = s + np.asarray(di, np.float64) ** 2
    return np.exp(-s)


def spline(xk, yk, x):
    """Cubic Hermite (Catmull-Rom tangents, non-uniform knots) through (xk, yk[...]).

    xk [K] ascending, yk [K,...] values, x [N] -> [N,...]. Smooth where a piecewise
    linear profile would show creases in the render."""
    xk = np.asarray(xk, np.float64)
    yk = np.asarray(yk, np.float64)
    m = np.empty_like(yk)
    m[1:-1] = ((yk[2:] - yk[:-2]).T / (xk[2:] - xk[:-2])).T
    m[0] = (yk[1] - yk[0]) / (xk[1] - xk[0])
    m[-1] = (yk[-1] - yk[-2]) / (xk[-1] - xk[-2])
    x = np.clip(np.asarray(x, np.float64), xk[0], xk[-1])
    i = np.clip(np.searchsorted(xk, x, side="right") - 1, 0, len(xk) - 2)
    h = xk[i + 1] - xk[i]
    t = (x - xk[i]) / h
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    ex = (slice(None),) + (None,) * (yk.ndim - 1)
    return (h00[ex] * yk[i] + (h10 * h)[ex] * m[i] + h01[ex] * yk[i + 1] + (h11 * h)[ex] * m[i + 1])


def grid_faces(rows: int, cols: int, wrap: bool) -> np.ndarray:
    """Two triangles per quad of a row-major ``rows x cols`` vertex grid.

    Rows run top to bottom, columns left to right seen from outside, so
    (TL, BL, BR), (TL, BR, TR) is counter-clockwise from outside. With ``wrap``
    the last column connects back to the first."""
    nc = cols if wrap else cols - 1
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(nc), indexing="ij")
    c1 = (c + 1) % cols
    tl, tr = r * cols + c, r * cols + c1
    bl, br = (r + 1) * cols + c, (r + 1) * cols + c1
    f = np.stack([np.stack([tl, bl, br], -1), np.stack([tl, br, tr], -1)], 2)
    return f.reshape(-1, 3)


def grid_uv_faces(rows: int, cols: int) -> np.ndarray:
    """Per-corner UV indices for a ``rows x (cols+1)`` UV grid (seam column duplicated)."""
    return grid_faces(rows, cols + 1, wrap=False)


def compact(vertices, faces, keep_faces, extra=()):
    """Drop faces not in ``keep_faces`` and the vertices no face uses.

    Returns (vertices, faces, kept_face_mask, old->new vertex map (-1 if dropped),
    extra arrays indexed by vertex, compacted)."""
    faces = faces[keep_faces]
    used = np.zeros(len(vertices), bool)
    used[faces.ravel()] = True
    remap = -np.ones(len(vertices), np.int64)
    remap[used] = np.arange(used.sum())
    return vertices[used], remap[faces], remap, tuple(e[used] for e in extra)


def uv_sphere(center, radii, rows: int, cols: int, uv_rect, polar_uv: bool, name: str,
              axis_front=(0.0, -1.0, 0.0)) -> Part:
    """An ellipsoid whose first pole points along ``axis_front`` (default -Y).

    ``polar_uv``: UVs form a disc in ``uv_rect`` (front pole at the centre, back
    pole on the rim) - the natural chart for an eyeball with iris at the front.
    Otherwise a lat-long rectangle filling ``uv_rect``."""
    center = np.asarray(center, np.float64)
    radii = np.asarray(radii, np.float64)
    theta = np.linspace(0, np.pi, rows + 1)[1:-1]              # ring latitudes, poles separate
    phi = np.linspace(0, 2 * np.pi, cols, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    # local frame: pole along -Y; ring parameter phi goes round X/Z
    local = np.stack([np.sin(th) * np.sin(ph), -np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
    poles = np.array([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]])
    unit = np.concatenate([poles[:1], local, poles[1:]])
    f = np.asarray(axis_front, np.float64)
    if not np.allclose(f, (0, -1, 0)):
        unit = unit @ _rotation_from_to(np.array([0.0, -1.0, 0.0]), f / np.linalg.norm(f)).T
    verts = center + unit * radii
    nr = rows - 1                                             # number of rings
    top, bot = 0, 1 + nr * cols
    ring = lambda r, c: 1 + r * cols + (c % cols)             # noqa: E731
    faces, uvf = [], []
    u0, v0, u1, v1 = uv_rect
    if polar_uv:
        cx, cy, rr = (u0 + u1) / 2, (v0 + v1) / 2, min(u1 - u0, v1 - v0) / 2
        # UV per (ring, column) with a duplicated seam column, plus centre and rim points
        tt = np.concatenate([[0.0], theta, [np.pi]]) / np.pi
        pp = np.linspace(0, 2 * np.pi, cols + 1)
        uv_ring = np.stack([cx + rr * tt[1:-1, None] * np.cos(pp)[None],
                            cy + rr * tt[1:-1, None] * np.sin(pp)[None]], -1)
        pm = (pp[:-1] + pp[1:]) / 2
        uv_rim = np.stack([cx + rr * np.cos(pm), cy + rr * np.sin(pm)], -1)
        uvs = np.concatenate([[[cx, cy]], uv_ring.reshape(-1, 2), uv_rim])
        uring = lambda r, c: 1 + r * (cols + 1) + c            # noqa: E731
        urim0 = 1 + nr * (cols + 1)
    else:
        us = np.linspace(u0, u1, cols + 1)
        vs = np.linspace(v1, v0, rows + 1)
        uv_grid = np.stack(np.meshgrid(us, vs, indexing="xy"), -1).reshape(-1, 2)
        uvs = uv_grid
        ug = lambda r, c: r * (cols + 1) + c                  # noqa: E731
    for c in range(cols):
        # top fan, rings, bottom fan; winding checked outward for the -Y pole frame
        faces.append([top, ring(0, c + 1), ring(0, c)])
        if polar_uv:
            uvf.append([0, uring(0, c + 1), uring(0, c)])
        else:
            uvf.append([ug(0, c), ug(1, c + 1), ug(1, c)])
        for r in range(nr - 1):
            a, b, cc, d = ring(r, c), ring(r, c + 1), ring(r + 1, c + 1), ring(r + 1, c)
            faces += [[a, b, cc], [a, cc, d]]
            if polar_uv:
                ua, ub, uc, ud = uring(r, c), uring(r, c + 1), uring(r + 1, c + 1), uring(r + 1, c)
            else:
                ua, ub, uc, ud = ug(r + 1, c), ug(r + 1, c + 1), ug(r + 2, c + 1), ug(r + 2, c)
            uvf += [[ua, ub, uc], [ua, uc, ud]]
        faces.append([ring(nr - 1, c), ring(nr - 1, c + 1), bot])
        if polar_uv:
            uvf.append([uring(nr - 1, c), uring(nr - 1, c + 1), urim0 + c])
        else:
            uvf.append([ug(rows - 1, c), ug(rows - 1, c + 1), ug(rows, c)])
    faces = np.asarray(faces, np.int64)
    uvf = np.asarray(uvf, np.int64)
    uvs = np.asarray(uvs, np.float64)
    uvs[:, 0] = u0 + u1 - uvs[:, 0]      # mirror u so charts read un-mirrored from outside
    flipped = _orient_outward(verts, faces, center)
    if flipped is not faces:
        uvf = uvf[:, [0, 2, 1]]          # keep corners of faces and UV faces paired
    return Part(name, verts, flipped, np.asarray(uvs, np.float64), uvf)


def _orient_outward(verts, faces, center):
    """Flip the winding of a closed convex-ish part if its normals point inward."""
    n = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    out = (n * (verts[faces].mean(1) - center)).sum(-1)
    if out.sum() < 0:
        faces = faces[:, [0, 2, 1]]
    return faces


def _rotation_from_to(a, b):
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def tube(path, radius: float, closed: bool, uv_rect, name: str, sides: int = 8) -> Part:
    """Sweep a circle of ``radius`` along ``path`` [N,3] (parallel-transported frame).

    Used for glasses frames. UVs: u along the path, v round the tube, in ``uv_rect``."""
    path = np.asarray(path, np.float64)
    n = len(path)
    tang = np.gradient(path, axis=0) if not closed else (np.roll(path, -1, 0) - np.roll(path, 1, 0))
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    nrm = np.cross(tang[0], ref)
    nrm /= np.linalg.norm(nrm)
    normals = [nrm]
    for i in range(1, n):
        nn = normals[-1] - tang[i] * np.dot(normals[-1], tang[i])
        normals.append(nn / np.linalg.norm(nn))
    normals = np.asarray(normals)
    binorm = np.cross(tang, normals)
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = (np.cos(ang)[None, :, None] * normals[:, None] + np.sin(ang)[None, :, None] * binorm[:, None])
    verts = (path[:, None] + radius * ring).reshape(-1, 3)
    rows = n if not closed else n + 1
    # rows along the path (wrapping back to row 0 when closed), columns round the tube
    f = grid_faces(rows, sides, wrap=True)
    f = f % (n * sides) if closed else f
    u0, v0, u1, v1 = uv_rect
    uv = np.stack(np.meshgrid(np.linspace(v0, v1, sides + 1), np.linspace(u0, u1, rows), indexing="xy"), -1)
    uvs = uv.reshape(-1, 2)[:, [1, 0]]
    uvs[:, 1] = v0 + v1 - uvs[:, 1]      # un-mirrored chart seen from outside
    uvf = grid_faces(rows, sides + 1, wrap=False)
    # outward winding: sweep orientation decides; flip if normals point to the path
    nrm_f = np.cross(verts[f[:, 1]] - verts[f[:, 0]], verts[f[:, 2]] - verts[f[:, 0]])
    cen = np.repeat(path, sides, 0)[f].mean(1)
    if (nrm_f * (verts[f].mean(1) - cen)).sum() < 0:
        f, uvf = f[:, [0, 2, 1]], uvf[:, [0, 2, 1]]
    return Part(name, verts, f, uvs, uvf)
