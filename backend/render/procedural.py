"""Procedural test assets in plain numpy (no torch, no bpy): a UV sphere with
seams and smooth bumps, and colour textures. Used by the renderer's tests and
benchmark so both Blender and torch see exactly the same data, and so no
binary assets live in git.
"""

from __future__ import annotations

import numpy as np


def uv_sphere(segments: int = 32, rings: int = 16, radius: float = 1.0, bumps: float = 0.0):
    """A closed UV sphere, outward counter-clockwise triangles, Z up.

    Returns vertices [V,3] float32, faces [F,3] int64, uvs [T,2] float32,
    uv_faces [F,3] int64 with F = 2 * segments * (rings - 1). The UV seam at
    u=0/1 and the poles have their own UV corners (vertices are not split).
    ``bumps`` scales a smooth radial displacement (fraction of the radius).
    """
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]  # polar angle of inner rings
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")  # [rings-1, segments]
    r = radius * (1.0 + bumps * radial_bumps(th, ph))
    ring_pts = np.stack([r * np.sin(th) * np.cos(ph), r * np.sin(th) * np.sin(ph), r * np.cos(th)], -1)
    top = np.array([[0.0, 0.0, radius * (1.0 + bumps * radial_bumps(np.array(0.0), np.array(0.0)))]])
    bot = np.array([[0.0, 0.0, -radius * (1.0 + bumps * radial_bumps(np.array(np.pi), np.array(0.0)))]])
    verts = np.concatenate([top, ring_pts.reshape(-1, 3), bot]).astype(np.float32)
    n_in = rings - 1
    vid = lambda i, j: 1 + i * segments + (j % segments)  # noqa: E731
    bottom = 1 + n_in * segments
    # UV grid (segments+1) x (rings+1); row k = ring k from the top (v = 1 - k/rings).
    us = np.linspace(0.0, 1.0, segments + 1)
    vs = 1.0 - np.linspace(0.0, 1.0, rings + 1)
    uu, vv = np.meshgrid(us, vs)
    uvs = np.stack([uu, vv], -1).reshape(-1, 2).astype(np.float32)
    tid = lambda k, j: k * (segments + 1) + j  # noqa: E731
    faces, ufaces = [], []
    for j in range(segments):
        # top cap: pole, ring0[j], ring0[j+1]  (counter-clockwise from outside)
        faces.append((0, vid(0, j), vid(0, j + 1)))
        ufaces.append((tid(0, j), tid(1, j), tid(1, j + 1)))
        for i in range(n_in - 1):
            a, b_, c, d = vid(i, j), vid(i + 1, j), vid(i + 1, j + 1), vid(i, j + 1)
            ta, tb, tc, td = tid(i + 1, j), tid(i + 2, j), tid(i + 2, j + 1), tid(i + 1, j + 1)
            faces += [(a, b_, c), (a, c, d)]
            ufaces += [(ta, tb, tc), (ta, tc, td)]
        faces.append((vid(n_in - 1, j), bottom, vid(n_in - 1, j + 1)))
        ufaces.append((tid(rings - 1, j), tid(rings, j), tid(rings - 1, j + 1)))
    return verts, np.array(faces, np.int64), uvs, np.array(ufaces, np.int64)


def radial_bumps(theta, phi):
    """Smooth displacement field on the sphere, in [-1, 1]; theta polar, phi azimuth (radians)."""
    return np.sin(3 * theta) * np.cos(2 * phi) * 0.7 + 0.3 * np.cos(theta) ** 3


def checker_texture(size: int = 64, cells: int = 8) -> np.ndarray:
    """[size,size,3] float32 linear colours: a coloured checker over a smooth gradient,
    row 0 = top. Cells span several texels so bilinear filtering stays tame."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    check = ((np.floor(x * cells) + np.floor(y * cells)) % 2).astype(np.float64)
    r = 0.15 + 0.7 * x
    g = 0.2 + 0.6 * y * (0.5 + 0.5 * check)
    b = 0.8 - 0.6 * check * x + 0.1
    return np.clip(np.stack([r, g, b], -1), 0.0, 1.0).astype(np.float32)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0), roll: float = 0.0) -> np.ndarray:
    """Blender camera-to-world matrix [4,4] looking from ``eye`` at ``target``
    (local -Z forward, +Y up), rolled by ``roll`` radians about the view axis."""
    eye = np.asarray(eye, np.float64)
    fwd = np.asarray(target, np.float64) - eye
    fwd /= np.linalg.norm(fwd)
    z = -fwd
    x = np.cross(np.asarray(up, np.float64), z)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m
