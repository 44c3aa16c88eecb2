"""From 478 face-mesh landmarks and their frame to pose-free expression features and a head rotation.

Landmarks come from :mod:`backend.face.landmarks` (pixels, x right, y down, z depth in
pixel units, smaller = nearer). Each frame is aligned to a frontal template by a 3-D
similarity transform fitted on points expressions barely move (forehead, nose bridge,
temples, eye corners); what is left at the moving points (lips, lids, brows) is the
expression. The fitted rotation is the head rotation.

Brows also need the image: the face mesh's brow points barely follow the brows (a full
browDown moves them 1-2 px on a 100 px wide face, less than their frame-to-frame noise),
while the brows' dark band visibly moves. :func:`brow_profiles` reads the image's
brightness on a grid above each eye laid out in the template's frame (so it turns with
the head) and returns, per column, the normalized brightness profile and its darkness
centre (brow height in eye widths).

Head rotation convention (what the result's ``head_rotation`` holds): Blender XYZ
Euler angles in degrees of the avatar object (facing -Y, Z up) that turn a frontal
head into the observed one: X = pitch (nodding), Y = roll, Z = yaw (turning); as a
matrix, :func:`shared.avatar.euler_xyz_matrix`.
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
# the brow grid: eye widths above the eye centre, along the eye axis, and a box filter across each column
PROFILE_ROWS = np.linspace(0.25, 1.55, 14)
PROFILE_COLS = np.linspace(-0.45, 0.45, 3)
_PROFILE_SUB = np.linspace(-0.12, 0.12, 5)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

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


def normalize_template(lm: np.ndarray) -> np.ndarray:
    """A frontal face's landmarks [478,3] -> the template: centred on the rigid points,
    scaled to unit RMS radius over them (so features do not depend on image size)."""
    p = np.asarray(lm, np.float64)
    c = p[list(RIGID)].mean(0)
    r = np.sqrt(((p[list(RIGID)] - c) ** 2).sum(1).mean())
    return ((p - c) / r).astype(np.float32)


def _profile_points(template: np.ndarray) -> np.ndarray:
    """[2,C*R*S,3] the brow grid in the template's frame (person's left eye, right eye), at
    the depth of the template's brow points."""
    tp = np.asarray(template, np.float64)
    out = []
    for (inner, outer), brow in (((362, 263), fl.BROW_LEFT), ((133, 33), fl.BROW_RIGHT)):
        a, b = tp[inner], tp[outer]
        w = float(np.linalg.norm((b - a)[:2]))
        u = np.array([b[0] - a[0], b[1] - a[1], 0.0]) / w
        col = (PROFILE_COLS[:, None] + _PROFILE_SUB[None, :])[:, None, :, None] * u      # [C,1,S,3]
        row = PROFILE_ROWS[None, :, None, None] * np.array([0.0, -1.0, 0.0])   # [1,R,1,3]; template y is down
        q = 0.5 * (a + b) + w * (row + col)                                    # [C,R,S,3]
        q[..., 2] = tp[list(brow), 2].mean()
        out.append(q.reshape(-1, 3))
    return np.stack(out)


def _bilinear(g: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = g.shape
    x, y = np.clip(x, 0, w - 1.001), np.clip(y, 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return (g[y0, x0] * (1 - fx) * (1 - fy) + g[y0, x0 + 1] * fx * (1 - fy) + g[y0 + 1, x0] * (1 - fx) * fy
            + g[y0 + 1, x0 + 1] * fx * fy)


def brow_profiles(image: np.ndarray, s: float, R: np.ndarray, t: np.ndarray, template: np.ndarray) -> np.ndarray:
    """[H,W,3] uint8 and the frame's alignment (image -> template: s R x + t) -> [2*(C*R+C)]:
    per eye and grid column the brightness profile (zero mean, unit spread; lighting-free)
    and its darkness-weighted centre (eye widths above the eye)."""
    g = np.asarray(image, np.float32) @ _LUMA
    out = []
    for pts in _profile_points(template):
        q = ((pts - t) @ R) / s                      # template -> image pixels: R^T (a - t) / s
        v = _bilinear(g, q[:, 0], q[:, 1]).reshape(len(PROFILE_COLS), len(PROFILE_ROWS), -1).mean(2)
        v = (v - v.mean(1, keepdims=True)) / (v.std(1, keepdims=True) + 2.0)   # + 2: flat skin stays flat
        dark = np.exp(-3.0 * v)
        out += [v.ravel(), (dark / dark.sum(1, keepdims=True)) @ PROFILE_ROWS]
    return np.concatenate(out)


def num_features() -> int:
    """F, the length of :func:`features`' vector."""
    return 3 * len(MOVING) + 6 + 2 * len(PROFILE_COLS) * (len(PROFILE_ROWS) + 1) + 3


def _brow_block(feats: np.ndarray) -> np.ndarray:
    """[N,F] -> [N,2,C*R+C]: the :func:`brow_profiles` part of the features, per eye."""
    C, R = len(PROFILE_COLS), len(PROFILE_ROWS)
    start = 3 * len(MOVING) + 6
    return np.asarray(feats)[:, start:start + 2 * (C * R + C)].reshape(-1, 2, C * R + C)


def brow_centres(feats: np.ndarray) -> np.ndarray:
    """[N,F] features -> [N,2,C] the brow profiles' darkness centres (person's left eye, right eye;
    columns from the inner corner out), eye widths above the eye."""
    return _brow_block(feats)[:, :, len(PROFILE_COLS) * len(PROFILE_ROWS):]


def _profiles(feats: np.ndarray) -> np.ndarray:
    """[N,F] -> [N,2,C,R] the brightness profiles."""
    C, R = len(PROFILE_COLS), len(PROFILE_ROWS)
    return _brow_block(feats)[:, :, :C * R].reshape(-1, 2, C, R)


def relative(feats: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """[N,F] features and a reference of the same person ([F] or [N,F]: a neutral face) -> [N,F+2C]:
    the difference, then per eye and brow column the brow's shift from the reference (eye widths,
    up > 0), a one-step 1-D Lucas-Kanade estimate on the profiles (a difference of profiles alone
    does not say how far a band moved without the band's own slope)."""
    feats = np.asarray(feats, np.float32)
    ref = np.broadcast_to(np.asarray(ref, np.float32), feats.shape)
    p, q = _profiles(feats), _profiles(ref)
    dq = np.gradient(q, PROFILE_ROWS, axis=-1)
    shift = -((p - q) * dq).sum(-1) / ((dq ** 2).sum(-1) + 1.0)        # + 1: no slope, no shift
    return np.concatenate([feats - ref, shift.reshape(len(feats), -1)], 1).astype(np.float32)


def features(lm: np.ndarray, template: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame: landmarks [478,3] (pixels) of ``image`` [H,W,3] uint8 -> (features [F] float32,
    head rotation [3] degrees).

    Features: the moving points after alignment to ``template`` minus the template's
    (3 per point), eye and mouth openings and brow heights (scale-free ratios), the
    :func:`brow_profiles`, and the head rotation / 30 degrees (the profiles still change
    with pitch; the model can allow for it).
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
    head = euler_xyz(_TO_BLENDER @ R.T @ _TO_BLENDER.T)
    prof = brow_profiles(image, s, R, t, template)
    return np.concatenate([disp, ratios, prof, head / 30.0]).astype(np.float32), head.astype(np.float32)


def features_batch(lms: np.ndarray, template: np.ndarray, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N,478,3] landmarks (NaN rows = no face) of ``images`` [N,H,W,3] uint8 -> (features [N,F],
    rotation [N,3] deg, found [N] bool); rows without a face are zeros."""
    N = len(lms)
    found = np.array([bool(np.isfinite(x).all()) for x in lms], bool)
    feats = np.zeros((N, num_features()), np.float32)
    rots = np.zeros((N, 3), np.float32)
    for i in np.flatnonzero(found):
        feats[i], rots[i] = features(lms[i], template, images[i])
    return feats, rots, found
