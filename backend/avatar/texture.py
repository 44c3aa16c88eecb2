"""Procedural albedo for the sample avatar, painted in its UV atlas.

Every chart is painted from the same analytic description the geometry uses:
a skin texel is mapped back to its row/angle on the head surface and so to a
face position (x, z), where lips, brows, lash lines and the scalp are drawn.
Output: ``[S,S,3]`` uint8 sRGB, row 0 = top (v = 1).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .geometry import smoothstep
from .layout import ATLAS, BROW_WIDTH, base_surface, col_phi, hair_end_z

_SKIN_LIGHT = np.array([240.0, 203.0, 182.0])
_SKIN_DARK = np.array([88.0, 56.0, 40.0])
_HAIR_STOPS = np.array([[22.0, 18.0, 17.0], [72.0, 47.0, 31.0], [196.0, 158.0, 102.0], [236.0, 226.0, 200.0]])
_COPPER = np.array([168.0, 72.0, 34.0])
_IRIS = np.array([[72.0, 42.0, 22.0], [128.0, 96.0, 48.0], [84.0, 118.0, 64.0], [74.0, 120.0, 176.0]])


def skin_color(P) -> np.ndarray:
    base = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * P.skin_tone ** 0.9
    tint = np.array([1.045, 0.965, 1.0]) + (np.array([1.0, 1.0, 0.86]) - np.array([1.045, 0.965, 1.0])) * P.skin_warmth
    return np.clip(base * tint, 0, 255)


def hair_color(P) -> np.ndarray:
    t = P.hair_lightness * 3
    i = min(int(t), 2)
    base = _HAIR_STOPS[i] + (_HAIR_STOPS[i + 1] - _HAIR_STOPS[i]) * (t - i)
    red = _COPPER * (0.45 + 0.9 * P.hair_lightness)
    return np.clip(base + (red - base) * 0.65 * P.hair_redness, 0, 255)


def iris_color(P) -> np.ndarray:
    t = P.eye_color * 3
    i = min(int(t), 2)
    return _IRIS[i] + (_IRIS[i + 1] - _IRIS[i]) * (t - i)


def _noise(shape, cells, seed, aniso=(1, 1)) -> np.ndarray:
    """Smooth value noise in [-1,1] of ``shape`` (H,W) from a random grid of about
    ``cells`` cells per side (bicubic upsampling), deterministic per seed."""
    rng = np.random.default_rng(seed)
    gh = max(2, int(cells * aniso[0]))
    gw = max(2, int(cells * aniso[1]))
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    img = Image.fromarray(g, mode="F").resize((shape[1], shape[0]), Image.BICUBIC)
    return np.asarray(img, np.float64)


def _fbm(shape, seed, octaves=((6, 0.5), (24, 0.3), (96, 0.2)), aniso=(1, 1)):
    return sum(a * _noise(shape, c, seed + i, aniso) for i, (c, a) in enumerate(octaves))


def _rect_pixels(rect, size):
    """Pixel slices and the texel-centre (u, v) grids of an atlas rectangle."""
    u0, v0, u1, v1 = rect
    j0, j1 = int(np.floor(u0 * size)), int(np.ceil(u1 * size))
    i0, i1 = int(np.floor((1 - v1) * size)), int(np.ceil((1 - v0) * size))
    j1, i1 = min(j1, size), min(i1, size)
    u = (np.arange(j0, j1) + 0.5) / size
    v = 1 - (np.arange(i0, i1) + 0.5) / size
    U, Vv = np.meshgrid(u, v, indexing="xy")
    return (slice(i0, i1), slice(j0, j1)), U, Vv


def _mix(a, b, t):
    t = np.asarray(t, np.float64)[..., None]
    return a * (1 - t) + b * t


def paint_albedo(g, size: int = 1024) -> np.ndarray:
    """The sample avatar's albedo ``[size,size,3]`` uint8 sRGB for a built sample ``g``
    (:class:`backend.avatar.layout.Built`)."""

    L = g.layout
    P = L.P
    img = np.zeros((size, size, 3), np.float64)
    img[:] = skin_color(P) * 0.85                       # gutters between charts: dark skin
    skin = skin_color(P)
    hair = hair_color(P)

    # ---------------- skin chart
    sl, U, Vv = _rect_pixels(ATLAS["skin"], size)
    u0, v0, u1, v1 = ATLAS["skin"]
    uf = (U - u0) / (u1 - u0)
    s = np.clip((v1 - 0.0005 - Vv) / ((v1 - v0) * 0.999), 0, 1)
    phi = col_phi(uf)
    # s varies by row and phi by column only: evaluate the profile once per row
    p = np.broadcast_to(base_surface(P, s[:, :1], phi[:1, :]), s.shape + (3,))
    x, z = p[..., 0], p[..., 2]
    ax = np.abs(x)
    front = smoothstep(0.0, 0.3, np.cos(phi))
    H = U.shape
    n = _fbm(H, 11)
    col = np.broadcast_to(skin, H + (3,)) * (1 + 0.05 * n[..., None])
    blotch = _fbm(H, 21, ((40, 0.6), (160, 0.4)))
    col = col * (1 + 0.03 * blotch[..., None])
    red = np.array([1.06, 0.90, 0.90])
    cheek = np.exp(-(((ax - 0.043) / 0.02) ** 2 + ((z - L.eye_z + 0.035) / 0.02) ** 2)) * front
    nose = np.exp(-((x / 0.012) ** 2 + ((z - L.nose_tip_z) / 0.01) ** 2)) * front
    ear_zone = np.exp(-((np.cos(phi) / 0.25) ** 2)) * np.exp(-((z - L.eye_z + 0.016) / 0.03) ** 2)
    col = _mix(col, col * red, 0.55 * cheek + 0.4 * nose + 0.2 * ear_zone)
    # eye surroundings: darker lids and sockets, lash lines at the openings
    for sx in (1.0, -1.0):
        dx, dz = x - sx * L.eye_x, z - L.eye_z
        q = np.sqrt((dx / L.eye_w) ** 2 + (dz / L.eye_h) ** 2)
        sock = np.exp(-((dx / 0.02) ** 2 + ((dz + 0.002) / 0.014) ** 2)) * front
        col = _mix(col, col * np.array([0.86, 0.80, 0.82]), 0.45 * sock)
        lash = smoothstep(1.45, 1.02, q) * smoothstep(0.6, 0.95, q) * front * np.where(dz > 0, 1.0, 0.45)
        col = _mix(col, hair * 0.35, 0.9 * lash)
    # lips
    mw = L.mouth_w
    xr = np.clip(ax / mw, 0, 1.2)
    edge = np.sqrt(np.clip(1 - xr ** 2, 0, 1))
    bow = 0.0015 * np.exp(-((ax - 0.006) / 0.004) ** 2)
    up_top = L.mouth_z + (0.0085 + 0.002 * P.lip_fullness) * edge ** 0.6 + bow
    lo_bot = L.mouth_z - (0.0095 + 0.002 * P.lip_fullness) * edge ** 0.7
    lipmask = (smoothstep(up_top + 0.0012, up_top - 0.0004, z) * smoothstep(lo_bot - 0.0012, lo_bot + 0.0004, z)
               * smoothstep(1.05, 0.92, xr) * front)
    lipc = skin * (1 - 0.35 * P.lip_tint) * np.array([1.0, 0.72, 0.74]) + np.array([30.0, -6, -4]) * P.lip_tint
    col = _mix(col, np.clip(lipc, 0, 255) * (1 + 0.04 * n[..., None]), 0.85 * lipmask)
    col = _mix(col, col * 0.55, smoothstep(0.0012, 0.0, np.abs(z - L.mouth_z)) * (xr < 1.0) * front)
    # painted brows under the brow meshes (so a bald-brow render still reads)
    hw = BROW_WIDTH[P.eyebrow_style]
    a = (ax - (L.eye_x - 0.020)) / 0.043
    zc = L.brow_z + 0.0045 * np.sin(np.pi * np.clip(a, 0, 1) ** 0.8) - 0.004 * np.clip(a, 0, 1) ** 3
    w = hw * (1.15 - 0.75 * np.clip(a, 0, 1) ** 2)
    brow = (smoothstep(w + 0.0012, w - 0.0004, np.abs(z - zc)) * smoothstep(-0.05, 0.02, a)
            * smoothstep(1.05, 0.97, a) * front)
    strands = 1 + 0.25 * _fbm(H, 31, ((200, 1.0),), aniso=(1, 0.25))
    col = _mix(col, hair * 0.7 * strands[..., None], 0.8 * brow)
    # scalp in hair colour above the hairline (the hair mesh sits on it)
    if P.hairstyle != "none":
        zend = hair_end_z(L, "short", np.abs(phi))
        scalp = smoothstep(zend - 0.004, zend + 0.004, z)
        col = _mix(col, hair * 0.75 * strands[..., None], 0.9 * scalp)
    # subtle shading on the neck/shoulder transition
    col *= (1 - 0.06 * smoothstep(0.66, 0.78, s))[..., None]
    img[sl] = col

    # ---------------- eyeballs: polar charts, iris at the centre
    iris = iris_color(P)
    for side in ("L", "R"):
        rect = ATLAS[f"eye_{side}"]
        sl, U, Vv = _rect_pixels(rect, size)
        cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
        rr = min(rect[2] - rect[0], rect[3] - rect[1]) / 2
        r = np.hypot(U - cx, Vv - cy) / rr
        ang = np.arctan2(Vv - cy, U - cx)
        sclera = np.array([236.0, 232.0, 226.0])
        col = _mix(np.broadcast_to(sclera, r.shape + (3,)), np.array([222.0, 190.0, 185.0]), smoothstep(0.3, 0.7, r))
        streak = 1 + 0.22 * np.sin(ang * 23 + 3 * np.sin(ang * 7)) * np.sin(ang * 11)
        ir = 0.156 * (1 + 0.15 * P.eye_size * 0)
        irisc = iris * streak[..., None] * (0.75 + 0.45 * smoothstep(0.04, ir, r))[..., None]
        irisc = _mix(irisc, iris * 0.35, smoothstep(ir * 0.8, ir, r))        # limbal ring
        col = _mix(col, irisc, smoothstep(ir + 0.008, ir - 0.004, r))
        col = _mix(col, np.array([12.0, 10.0, 10.0]), smoothstep(0.066, 0.055, r))
        img[sl] = col

    # ---------------- ears, mouth, brows, glasses, hair charts
    for side in ("L", "R"):
        sl, U, Vv = _rect_pixels(ATLAS[f"ear_{side}"], size)
        rect = ATLAS[f"ear_{side}"]
        vn = (Vv - rect[1]) / (rect[3] - rect[1])
        col = (np.broadcast_to(skin * np.array([1.03, 0.94, 0.93]), U.shape + (3,))
               * (1 + 0.04 * _fbm(U.shape, 41)[..., None]))
        col = col * (1 - 0.18 * np.exp(-((vn - 0.5) / 0.25) ** 2))[..., None]
        img[sl] = col
    sl, U, Vv = _rect_pixels(ATLAS["mouth"], size)
    img[sl] = np.array([78.0, 28.0, 32.0]) * (0.8 + 0.2 * _fbm(U.shape, 51))[..., None]
    sl, U, Vv = _rect_pixels(ATLAS["teeth"], size)
    img[sl] = np.array([236.0, 230.0, 214.0]) * (0.93 + 0.07 * _fbm(U.shape, 91))[..., None]
    sl, U, Vv = _rect_pixels(ATLAS["brows"], size)
    st = 1 + 0.3 * _fbm(U.shape, 61, ((120, 1.0),), aniso=(0.2, 1))
    img[sl] = hair * 0.7 * st[..., None]
    sl, U, Vv = _rect_pixels(ATLAS["glasses"], size)
    img[sl] = np.array([34.0, 32.0, 36.0])
    sl, U, Vv = _rect_pixels(ATLAS["hair"], size)
    st = 1 + 0.22 * _fbm(U.shape, 71, ((60, 0.5), (240, 0.5)), aniso=(0.15, 1)) + 0.06 * _fbm(U.shape, 81)
    img[sl] = hair * st[..., None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
