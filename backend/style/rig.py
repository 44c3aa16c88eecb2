"""Default camera rigs (Blender cameras) around an avatar's head."""

from __future__ import annotations

import numpy as np

from shared.camera import Camera


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world ``[4,4]`` for a Blender camera at ``eye`` looking at
    ``target`` (camera -Z towards the target, +Y up)."""
    eye = np.asarray(eye, np.float64)
    f = np.asarray(target, np.float64) - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    if np.linalg.norm(r) < 1e-8:
        r = np.cross(f, (0.0, 1.0, 0.0))
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, u, -f, eye
    return m


def head_bounds(vertices: np.ndarray, blendshapes: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Centre ``[3]`` and radius (metres) of a sphere around the head.

    ``vertices`` [V,3]; ``blendshapes`` [K,V,3] deltas, optional. The vertices the
    expressions move (over 1 mm) mark the face; the head sphere is centred on
    their bounding box with 1.5x its half diagonal as radius (room for the
    skull, hair and ears), so shoulders, torso or a full body don't shrink the
    face to a few pixels of every view. Without expressions, the whole mesh's
    bounding sphere is used.
    """
    lo, hi = vertices.min(0), vertices.max(0)
    if blendshapes is not None and len(blendshapes):
        moving = np.linalg.norm(blendshapes, axis=2).max(0) > 1e-3
        if moving.sum() >= 10:
            f_lo, f_hi = vertices[moving].min(0), vertices[moving].max(0)
            r = 0.75 * float(np.linalg.norm(f_hi - f_lo))
            return (f_lo + f_hi) / 2, min(r, float(np.linalg.norm(hi - lo)) / 2)
    return (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2


def turntable(vertices: np.ndarray, n: int = 8, elevations=(0.0,), arc: float = 360.0, lens: float = 50.0,
              resolution: int = 224, margin: float = 1.15, blendshapes: np.ndarray | None = None) -> list[Camera]:
    """``n`` views per elevation (degrees) on an ``arc`` (degrees, centred on the
    front, -Y) around the head, framed so the bounding sphere fits with ``margin``."""
    c, r = head_bounds(vertices, blendshapes)
    fov = 2 * np.arctan(36.0 / 2 / lens)
    dist = margin * r / np.sin(fov / 2)
    cams = []
    for el in elevations:
        for i in range(n):
            az = (-arc / 2 + arc * (i + 0.5) / n) if arc < 360 else 360.0 * i / n
            a, e = np.radians(az), np.radians(el)
            eye = c + dist * np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
            cams.append(Camera(matrix_world=look_at(eye, c), lens=lens, sensor_width=36.0, sensor_height=36.0,
                               clip_start=max(dist - 3 * r, 1e-3), clip_end=dist + 3 * r,
                               resolution_x=resolution, resolution_y=resolution,
                               name=f"turntable_{int(round(el))}_{i}"))
    return cams


def default_rig(vertices: np.ndarray, resolution: int = 224,
                blendshapes: np.ndarray | None = None) -> list[Camera]:
    """The CLI's rig: 8 views around the head at eye level plus 4 from 20 deg
    above over the front half."""
    return (turntable(vertices, 8, (0.0,), 360.0, resolution=resolution, blendshapes=blendshapes)
            + turntable(vertices, 4, (20.0,), 180.0, resolution=resolution, blendshapes=blendshapes))
