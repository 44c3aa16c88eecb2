"""The sample avatar's shared vocabulary: atlas, part names, feature layout, skin profile.

Geometry (:mod:`backend.avatar.sample`), albedo (:mod:`backend.avatar.texture`) and
blendshapes (:mod:`backend.avatar.blendshapes`) all read the head from the same
analytic description; it lives here so that each of them imports this module
and none imports another.

Conventions: metres, Z up, the character faces -Y, its left is +X (ARKit
"Left" names the character's left). UV origin bottom-left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import gauss, smoothstep, spline
from .params import AvatarParams

# Atlas regions (u0, v0, u1, v1), UV origin bottom-left; kept disjoint.
ATLAS = {
    "skin": (0.0, 0.30, 1.0, 1.0),
    "eye_L": (0.005, 0.155, 0.145, 0.295),
    "eye_R": (0.005, 0.005, 0.145, 0.145),
    "ear_L": (0.15, 0.155, 0.25, 0.295),
    "ear_R": (0.15, 0.005, 0.25, 0.145),
    "brows": (0.26, 0.005, 0.40, 0.295),
    "glasses": (0.41, 0.005, 0.445, 0.295),
    "mouth": (0.45, 0.005, 0.495, 0.20),
    "teeth": (0.45, 0.205, 0.495, 0.295),
    "hair": (0.50, 0.005, 0.995, 0.295),
}
PART_NAMES = ("skin", "eye_L", "eye_R", "ear_L", "ear_R", "mouth", "hair", "brows", "glasses",
              "teeth_upper", "teeth_lower")

ROWS, COLS = 120, 112          # skin grid; rows include the crown pole row
COL_WARP = 0.55                # > 0 puts more columns on the face than at the back
TEXTURE_SIZE = 1024


@dataclass
class Layout:
    """Where things are, shared by the geometry, texture and blendshape code."""
    P: AvatarParams
    eye_z: float
    eye_x: float
    eye_w: float                 # half-width of the eye opening
    eye_h: float                 # half-height of the eye opening
    eye_r: float                 # eyeball radius
    mouth_z: float
    mouth_w: float
    brow_z: float
    chin_z: float
    nose_tip_z: float
    hairline: dict = field(default_factory=dict)
    eye_center_y: float = 0.0
    mouth_front_y: float = 0.0


def eye_z(P: AvatarParams) -> float:
    """Height of the eye line (m): the anchor the profile and every feature are placed from."""
    return 0.385 + 0.008 * P.eye_height


def make_layout(P: AvatarParams) -> Layout:
    """Feature positions for parameters ``P`` (metres; eye centres, mouth line, brows, chin)."""
    ez = eye_z(P)
    s = 1.0 + 0.15 * P.eye_size
    mz = ez - 0.078
    return Layout(P=P, eye_z=ez, eye_x=0.032 + 0.004 * P.eye_spacing, eye_w=0.0118 * s, eye_h=0.0051 * s,
                  eye_r=0.0128 * s, mouth_z=mz, mouth_w=0.024 + 0.005 * P.mouth_width,
                  brow_z=ez + 0.021 + 0.006 * P.brow_height, chin_z=mz - 0.036 - 0.010 * P.chin_length,
                  nose_tip_z=ez - 0.046 - 0.008 * P.nose_length)


# s (row parameter 0 crown .. 1 chest cut), z, half-width x, front depth, back depth,
# centre y offset, superellipse exponent. Tuned by eye against an adult head.
PROFILE = np.array([
    # s     z      ax     yf     yb     yc     n
    [0.00, 0.500, 0.000, 0.000, 0.000, 0.000, 2.2],
    [0.04, 0.497, 0.032, 0.036, 0.042, 0.004, 2.2],
    [0.10, 0.483, 0.058, 0.068, 0.078, 0.006, 2.2],
    [0.18, 0.456, 0.073, 0.087, 0.097, 0.006, 2.3],
    [0.26, 0.421, 0.077, 0.094, 0.101, 0.006, 2.4],
    [0.34, 0.386, 0.077, 0.092, 0.100, 0.006, 2.4],
    [0.42, 0.350, 0.073, 0.089, 0.092, 0.008, 2.4],
    [0.50, 0.318, 0.065, 0.085, 0.080, 0.010, 2.4],
    [0.57, 0.291, 0.053, 0.077, 0.066, 0.012, 2.3],
    [0.63, 0.270, 0.041, 0.064, 0.056, 0.016, 2.2],
    [0.68, 0.257, 0.044, 0.038, 0.050, 0.020, 2.2],
    [0.74, 0.230, 0.054, 0.047, 0.052, 0.018, 2.2],
    [0.82, 0.188, 0.059, 0.052, 0.057, 0.018, 2.2],
    [0.88, 0.155, 0.098, 0.060, 0.066, 0.016, 2.6],
    [0.94, 0.112, 0.170, 0.082, 0.078, 0.012, 3.0],
    [1.00, 0.030, 0.195, 0.098, 0.092, 0.010, 3.2],
])


def profile(P: AvatarParams) -> np.ndarray:
    """The profile table with the shape parameters applied: [K,7]."""
    t = PROFILE.copy()
    s = t[:, 0]
    head = smoothstep(0.72, 0.62, s)            # 1 on the head, 0 on neck and shoulders
    t[:, 2] *= 1 + 0.11 * P.head_width * head
    t[:, 3] *= 1 + 0.10 * P.head_depth * head
    t[:, 4] *= 1 + 0.10 * P.head_depth * head
    jaw = gauss((s - 0.55) / 0.07)
    t[:, 2] *= 1 + 0.15 * P.jaw_width * jaw
    ez = eye_z(P)
    above = s < 0.34
    t[above, 1] = ez + (t[above, 1] - ez) * (1 + 0.08 * P.head_height)
    chin = smoothstep(0.50, 0.60, s) * smoothstep(0.76, 0.66, s)
    t[:, 1] -= 0.010 * P.chin_length * chin
    neck = gauss((s - 0.78) / 0.06)
    t[:, 2:5] *= 1 + (0.15 * P.neck_width * neck)[:, None]
    sh = smoothstep(0.86, 0.94, s)
    t[:, 2] *= 1 + 0.13 * P.shoulder_width * sh
    return t


def col_phi(u):
    """Column parameter u in [0,1) -> angle round the head (0 = front, +pi/2 = +X)."""
    a = 2 * np.pi * (np.asarray(u, np.float64) - 0.5)
    return a - COL_WARP * np.sin(a)


def ring_points(prof_row: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Superellipse cross-section points. prof_row [...,7] broadcast with phi -> [...,3]."""
    z, ax, yf, yb, yc, n = (prof_row[..., k] for k in range(1, 7))
    sn, cs = np.sin(phi), np.cos(phi)
    e = 2.0 / n
    x = ax * np.sign(sn) * np.abs(sn) ** e
    y = yc - np.where(cs > 0, yf, -yb) * np.abs(cs) ** e
    return np.stack([x, y, np.broadcast_to(z, x.shape)], -1)


def base_surface(P: AvatarParams, s, phi):
    """Undeformed skin point for row parameter s and angle phi (any broadcastable shapes)."""
    prof = profile(P)
    rows = spline(prof[:, 0], prof[:, 1:], np.ravel(s)).reshape(np.shape(s) + (6,))
    rows = np.concatenate([np.asarray(s, np.float64)[..., None], rows], -1)
    return ring_points(rows, phi)


@dataclass
class SkinGrid:
    vertices: np.ndarray   # [V,3]
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    phi: np.ndarray        # [V] angle per vertex
    s: np.ndarray          # [V] row parameter per vertex
    upper_lip_rim: np.ndarray  # vertex indices
    lower_lip_rim: np.ndarray
    eye_rims: dict         # side -> vertex indices


# hairline height (relative to the eyes, or absolute for long hair) over |phi|
HAIR_PHI = np.array([0.0, 0.6, 1.1, 1.5, 1.9, 2.4, np.pi])


def hair_end_z(L: Layout, style: str, aphi):
    ez = L.eye_z
    if style == "long":
        zs = [ez + 0.062, ez + 0.050, ez - 0.010, 0.215, 0.190, 0.175, 0.168]
    else:
        zs = [ez + 0.062, ez + 0.056, ez + 0.036, ez + 0.020, ez + 0.002, ez - 0.030, ez - 0.052]
    return spline(HAIR_PHI, np.asarray(zs), aphi)


BROW_WIDTH = {"thin": 0.0022, "medium": 0.0036, "thick": 0.0054}


@dataclass
class Built:
    """The joined mesh plus what the blendshape and texture code need to know."""
    layout: Layout
    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    part_of_vertex: np.ndarray      # [V] index into PART_NAMES
    skin: SkinGrid
    skin_range: tuple[int, int]
