"""ARKit-named expression blendshapes and the sample expression track.

Each blendshape is an analytic displacement field evaluated at the sample's
vertices and masked per part (eyeballs, ears, hair and glasses never move;
eyebrows follow the skin under them). Fields are local: every one is a
product of Gaussians / smoothsteps around the feature it moves, so vertices
far from it get exactly zero delta.
"""

from __future__ import annotations

import numpy as np

from shared.avatar import ExpressionTrack
from .geometry import gauss, smoothstep
from .layout import PART_NAMES

ARKIT_NAMES = (
    "jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel", "mouthPucker",
    "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "browDownLeft", "browDownRight", "cheekPuff",
)

# cut-off below which a Gaussian weight is treated as zero, so the fields are
# strictly local (a delta of 1e-9 m is meaningless but breaks sparsity checks)
_EPS = 1e-4


def _cut(w):
    return np.where(w < _EPS, 0.0, w)


def blendshape_deltas(g) -> np.ndarray:
    """Deltas [K,V,3] float64 (metres) for :data:`ARKIT_NAMES` on a built sample
    (:class:`backend.avatar.layout.Built`)."""
    L = g.layout
    v = g.vertices
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    part = np.asarray(PART_NAMES)[g.part_of_vertex]
    skin = part == "skin"
    mouthbag = part == "mouth"
    brows = part == "brows"
    V = len(v)
    front = (y < 0.0).astype(float)
    s_row = np.ones(V)
    s_row[: len(g.skin.s)] = g.skin.s
    mz, mw, ez = L.mouth_z, L.mouth_w, L.eye_z
    out = {}

    # --- jawOpen: rotate the lower face about the jaw hinge (in front of the ear)
    hy, hz = 0.006, ez - 0.022
    ang = np.radians(16.0)
    lat = smoothstep(mw * 0.9, mw * 1.6, np.abs(x))
    below = (z < mz).astype(float)
    upper_rim = np.zeros(V, bool)
    upper_rim[g.skin.upper_lip_rim] = True
    w = (1 - lat) * below + lat * smoothstep(mz + 0.004, mz - 0.022, z)
    w *= smoothstep(0.75, 0.66, s_row) * smoothstep(hy + 0.02, hy - 0.02, y)
    w[upper_rim] = 0.0
    w = (np.where(skin, w, 0.0) + np.where(mouthbag, smoothstep(mz, mz - 0.008, z), 0.0)
         + (part == "teeth_lower"))
    dy, dz = y - hy, z - hz
    ny = np.cos(ang) * dy - np.sin(ang) * dz
    nz = np.sin(ang) * dy + np.cos(ang) * dz
    d = np.zeros((V, 3))
    d[:, 1] = (ny - dy) * w
    d[:, 2] = (nz - dz) * w
    out["jawOpen"] = d

    # --- smiles: corners up, out and back; cheeks rise
    xe = float(np.abs(v[g.skin.upper_lip_rim, 0]).max())
    for name, sx in (("mouthSmileLeft", 1.0), ("mouthSmileRight", -1.0)):
        gc = _cut(gauss((x - sx * xe) / 0.017, (z - mz) / 0.015)) * front
        gk = _cut(gauss((x - sx * 0.040) / 0.016, (z - (ez - 0.036)) / 0.016)) * front
        d = np.zeros((V, 3))
        d[:, 0] = sx * 0.0065 * gc
        d[:, 1] = 0.0045 * gc - 0.0030 * gk
        d[:, 2] = 0.0085 * gc + 0.0040 * gk
        out[name] = d * skin[:, None]

    # --- funnel / pucker: lips forward and towards the centre
    lips = _cut(gauss(x / (mw * 1.15), (z - mz) / 0.013)) * front
    inner = _cut(gauss(x / (mw * 0.75), (z - mz) / 0.007)) * front
    sgn = np.where(upper_rim | (z > mz), 1.0, -1.0)
    d = np.zeros((V, 3))
    d[:, 0] = -0.28 * x * lips
    d[:, 1] = -0.006 * lips
    d[:, 2] = 0.0038 * inner * sgn
    out["mouthFunnel"] = d * skin[:, None]
    d = np.zeros((V, 3))
    d[:, 0] = -0.42 * x * lips
    d[:, 1] = -0.009 * lips
    d[:, 2] = -0.25 * (z - mz) * inner
    out["mouthPucker"] = d * skin[:, None]

    # --- blinks: the upper lid slides down over the eyeball, the lower lid rises a little
    for name, sx in (("eyeBlinkLeft", 1.0), ("eyeBlinkRight", -1.0)):
        ex = sx * L.eye_x
        u = (x - ex) / L.eye_w
        dz_ = z - ez
        prof = np.sqrt(np.clip(1 - u ** 2, 0, 1))
        z_up, z_lo, z_c = L.eye_h * prof, -L.eye_h * prof, -0.45 * L.eye_h * prof
        lat = smoothstep(1.45, 1.0, np.abs(u)) * front * skin * (np.abs(x - ex) < 0.03)
        a_up = np.clip(dz_ - z_up, 0, None)
        f_up = _cut(np.exp(-(a_up / 0.0055) ** 2)) * (dz_ >= 0) * lat
        a_lo = np.clip(z_lo - dz_, 0, None)
        f_lo = _cut(np.exp(-(a_lo / 0.0035) ** 2)) * (dz_ < 0) * lat
        d = np.zeros((V, 3))
        d[:, 2] = (z_c - z_up) * f_up + (z_c - z_lo) * f_lo
        # keep the moved lid on (in front of) the eyeball
        nzp = z + d[:, 2]
        r2 = (x - ex) ** 2 + (nzp - ez) ** 2
        on_ball = r2 < L.eye_r ** 2
        y_t = L.eye_center_y - np.sqrt(np.clip(L.eye_r ** 2 - r2, 0, None)) - 0.0009
        f = np.maximum(f_up, f_lo)
        d[:, 1] = np.where(on_ball & (f > 0), (np.minimum(y_t, y) - y) * f, 0.0)
        out[name] = d

    # --- brows (skin and eyebrow meshes together)
    mov = (skin | brows)[:, None] * front[:, None]
    gi = _cut(gauss((np.abs(x) - 0.011) / 0.016, (z - L.brow_z) / 0.015))
    d = np.zeros((V, 3))
    d[:, 2] = 0.0065 * gi
    d[:, 1] = -0.0008 * gi
    out["browInnerUp"] = d * mov
    for name, sx in (("browDownLeft", 1.0), ("browDownRight", -1.0)):
        gd = _cut(gauss((x - sx * (L.eye_x - 0.006)) / 0.021, (z - L.brow_z) / 0.012))
        d = np.zeros((V, 3))
        d[:, 0] = -sx * 0.002 * gd
        d[:, 1] = -0.0012 * gd
        d[:, 2] = -0.0055 * gd
        out[name] = d * mov

    # --- cheekPuff: cheeks outwards along the horizontal normal, lips a little forward
    gch = _cut(gauss((np.abs(x) - 0.040) / 0.017, (z - (mz + 0.006)) / 0.019)) * front
    n = np.stack([x, y - 0.01, np.zeros(V)], -1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    d = 0.009 * gch[:, None] * n
    d[:, 1] -= 0.002 * lips
    out["cheekPuff"] = d * skin[:, None]

    return np.stack([out[k] for k in ARKIT_NAMES])


def sample_track(num_frames: int = 72, fps: float = 24.0) -> ExpressionTrack:
    """The sample expression animation: talking (frames 1-40), a brow raise,
    two blinks, a smile (38-64) and a frown at the end. Frames start at 1 like
    a Blender scene; one key per frame."""
    f = np.arange(1, num_frames + 1, dtype=np.float64)
    W = {k: np.zeros(num_frames) for k in ARKIT_NAMES}
    talk = smoothstep(1, 4, f) * smoothstep(42, 36, f)
    syll = np.abs(np.sin(np.pi * (f - 1) / 5.5)) * (0.55 + 0.25 * np.sin(f * 0.9))
    W["jawOpen"] = 0.75 * talk * syll
    W["mouthFunnel"] = 0.6 * gauss((f - 11) / 2.5) + 0.4 * gauss((f - 29) / 2.0)
    W["mouthPucker"] = 0.7 * gauss((f - 19) / 2.2)
    smile = smoothstep(38, 46, f) * smoothstep(66, 58, f)
    W["mouthSmileLeft"] = 0.9 * smile
    W["mouthSmileRight"] = 0.85 * smile
    W["cheekPuff"] = 0.0 * f
    blink = np.clip(1 - np.abs(f - 14) / 2.0, 0, 1) + np.clip(1 - np.abs(f - 53) / 2.0, 0, 1)
    W["eyeBlinkLeft"] = blink
    W["eyeBlinkRight"] = blink
    W["browInnerUp"] = 0.9 * smoothstep(20, 25, f) * smoothstep(36, 30, f)
    frown = smoothstep(63, 68, f)
    W["browDownLeft"] = 0.8 * frown
    W["browDownRight"] = 0.8 * frown
    W["cheekPuff"] = 0.6 * gauss((f - 70) / 2.0)
    weights = np.stack([np.clip(W[k], 0, 1) for k in ARKIT_NAMES], -1).astype(np.float32)
    return ExpressionTrack(frames=f.astype(np.float32), names=list(ARKIT_NAMES), weights=weights, fps=fps)
