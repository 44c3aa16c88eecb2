"""From 478 face-mesh landmarks to pose-free expression features and a head rotation.

Landmarks come from :mod:`backend.face.landmarks` (pixels, x right, y down, z depth in
pixel units, smaller = nearer). Each frame is aligned to a frontal template by a 3-D
similarity transform fitted on points expressions barely move (forehead, nose bridge,
temples, eye corners); what is left at the moving points (lips, lids, brows) is the
expression. The fitted rotation is the head rotation.

Head rotation convention (what the result's ``head_rotation`` holds): Blender XYZ
Euler angles in degrees of the avatar object (facing -Y, Z up) that turn a frontal
head into the observed one: X = pitch (nodding), Y = roll, Z = yaw (turning).
"""

from __future__ import annotations

import numpy as np

from backend.face import landmarks as fl

# Points that stay put under expressions (MediaPipe indices): top of the forehead, nose
# bridge and tip, eye corners, the sides of the face. Not the glabella (brows move it) nor
# the cheekbones (smiles and puffs move them).
RIGID = (10, 168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263, 127, 356, 234, 454)
# Points that carry the expression.
MOVING = tuple(dict.fromkeys(fl.LIPS_OUTER + fl.LIPS_INNER + fl.EYE_LEFT + fl.EYE_RIGHT + fl.BROW_LEFT
                             + fl.BROW_RIGHT + fl.IRIS_CENTERS + (50, 280, 205, 425, 98, 327, 152, 175)))
# (upper, lower, corner a, corner b): openings measured as gap / width
_EYE_L = (386, 374, 362, 263)
_EYE_R = (159, 145, 33, 133)
_MOUTH = (13, 14, 61, 291)

# landmarks (MediaPipe: x right, y down, z away) -> Blender world seen from the front camera
_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def umeyama3(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R [3,3], t [3]) minimizing ||s R src_i + t - dst_i||^2 (src, dst [N,3])."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd(b.T @ a / len(a))
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, 1.0, d])
    R = u @ D @ vt
    s = float((sv * np.diag(D)).sum() / max((a ** 2).sum() / len(a), 1e-12))
    return s, R, md - s * R @ ms


def _opening(p: np.ndarray, idx) -> float:
    up, lo, a, b = idx
    return float(np.linalg.norm(p[up] - p[lo]) / max(np.linalg.norm(p[a] - p[b]), 1e-6))


def euler_xyz(R: np.ndarray) -> np.ndarray:
    """Blender XYZ Euler (R = Rz @ Ry @ Rx) of a rotation matrix -> [3] degrees."""
    y = np.arcsin(np.clip(-R[2, 0], -1.0, 1.0))
    x = np.arctan2(R[2, 1], R[2, 2])
    z = np.arctan2(R[1, 0], R[0, 0])
    return np.degrees([x, y, z])


def rotation_xyz(deg) -> np.ndarray:
    """[3] degrees (Blender XYZ Euler) -> [3,3] (R = Rz @ Ry @ Rx)."""
    x, y, z = np.radians(np.asarray(deg, np.float64))
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def normalize_template(lm: np.ndarray) -> np.ndarray:
    """A frontal face's landmarks [478,3] -> the template: centred on the rigid points,
    scaled to unit RMS radius over them (so features do not depend on image size)."""
    p = np.asarray(lm, np.float64)
    c = p[list(RIGID)].mean(0)
    r = np.sqrt(((p[list(RIGID)] - c) ** 2).sum(1).mean())
    return ((p - c) / r).astype(np.float32)


def features(lm: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame: landmarks [478,3] (pixels) -> (features [F] float32, head rotation [3] degrees).

    Features: the moving points after alignment to ``template`` minus the template's
    (3 per point), then eye and mouth openings and brow heights (scale-free ratios).
    """
    p = np.asarray(lm, np.float64)
    rig = list(RIGID)
    s, R, t = umeyama3(p[rig], template[rig].astype(np.float64))
    a = (s * (R @ p.T)).T + t                     # in the template's frame
    mv = list(MOVING)
    disp = (a[mv] - template[mv]).ravel()
    brow_l = a[list(fl.BROW_LEFT), 1].mean() - a[list(fl.EYE_LEFT), 1].mean()
    brow_r = a[list(fl.BROW_RIGHT), 1].mean() - a[list(fl.EYE_RIGHT), 1].mean()
    ratios = np.array([_opening(a, _EYE_L), _opening(a, _EYE_R), _opening(a, _MOUTH),
                       np.linalg.norm(a[61] - a[291]), brow_l, brow_r])
    # R takes the observed face onto the frontal template; the head turned by R^T
    head = _TO_BLENDER @ R.T @ _TO_BLENDER.T
    return np.concatenate([disp, ratios]).astype(np.float32), euler_xyz(head).astype(np.float32)


def features_batch(lms: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N,478,3] landmarks (NaN rows = no face) -> (features [N,F], rotation [N,3] deg, found [N] bool);
    rows without a face are zeros."""
    N = len(lms)
    found = np.array([bool(np.isfinite(x).all()) for x in lms], bool)
    F = 3 * len(MOVING) + 6
    feats = np.zeros((N, F), np.float32)
    rots = np.zeros((N, 3), np.float32)
    for i in np.flatnonzero(found):
        feats[i], rots[i] = features(lms[i], template)
    return feats, rots, found
