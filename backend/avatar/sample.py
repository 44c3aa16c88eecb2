"""The parametric head-and-shoulders sample avatar, built in numpy.

The skin is one surface of revolution (rows top to bottom, columns round the
head, seam at the back) whose cross-sections are superellipses read from a
smooth profile table; analytic bumps add the brow ridge, eye sockets, nose,
cheeks, lips and chin. The eye openings and the mouth slit are cut into that
grid so lids and lips have real borders the blendshapes can move. Eyeballs,
ears, hair, eyebrows, glasses and the mouth cavity are separate meshes. All
parts share one 1024x1024 albedo atlas (see :mod:`backend.avatar.texture`).

Conventions: metres, Z up, the character faces -Y, its left is +X (ARKit
"Left" names the character's left). The bust's cut sits at z = 0.03.
"""

from __future__ import annotations

import numpy as np

from shared.avatar import AvatarData, TextureSet, index_corner_uvs, srgb_to_linear
from .blendshapes import ARKIT_NAMES, blendshape_deltas, sample_track
from .geometry import Part, compact, gauss, grid_faces, grid_uv_faces, smoothstep, spline, tube, uv_sphere
from .layout import (ATLAS, BROW_WIDTH, COLS, PART_NAMES, ROWS, TEXTURE_SIZE, Built, Layout, SkinGrid,
                     base_surface, col_phi, hair_end_z, make_layout, profile, ring_points)
from .params import AvatarParams
from .texture import paint_albedo


# --------------------------------------------------------------------------- skin grid
def _row_params(rows: int) -> np.ndarray:
    """Row parameters s in [0,1], denser on the face (s 0.25..0.66) for the features."""
    fine = np.linspace(0, 1, 4001)
    dens = 1.0 + 2.0 * smoothstep(0.20, 0.26, fine) * smoothstep(0.70, 0.64, fine)
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
    cdf /= cdf[-1]
    return np.interp(np.linspace(0, 1, rows), cdf, fine)


def front_weight(phi):
    return smoothstep(0.05, 0.45, np.cos(phi))


def feature_offset(L: Layout, p: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Analytic facial features as -Y (forward) offsets of base skin points p [...,3]."""
    P = L.P
    x, z = p[..., 0], p[..., 2]
    ax = np.abs(x)
    fw = front_weight(phi)
    d = np.zeros(x.shape)
    # eye sockets push back, the brow ridge and cheekbones forward
    d -= 0.011 * gauss((ax - L.eye_x) / 0.019, (z - L.eye_z + 0.002) / 0.014)
    d += 0.005 * gauss((ax - 0.028) / 0.026, (z - L.brow_z - 0.002) / 0.008)
    d += (0.003 + 0.006 * (P.cheek_fullness + 1) / 2) * gauss((ax - 0.044) / 0.018, (z - L.eye_z + 0.032) / 0.018)
    # nose: ridge from the bridge to the tip, alar wings beside the tip
    nz0, nz1 = L.eye_z + 0.004, L.nose_tip_z
    t = np.clip((nz0 - z) / (nz0 - nz1), 0, 1.15)
    proj = 0.020 + 0.006 * P.nose_projection
    height = ((0.004 + (proj - 0.004) * t ** 1.6) * smoothstep(1.15, 0.98, t)
              * smoothstep(-0.15, 0.0, (nz0 - z) / (nz0 - nz1)))
    width = (0.0055 + 0.0075 * t ** 2) * (1 + 0.3 * P.nose_width * t)
    d += height * np.clip(1 - (x / width) ** 2, 0, None) ** 2
    d += 0.0085 * gauss((ax - 0.0145 * (1 + 0.3 * P.nose_width)) / 0.0065, (z - nz1 - 0.002) / 0.0065)
    d += 0.010 * gauss(x / 0.0075, (z - nz1 + 0.002) / 0.006)        # rounded tip
    # philtrum, lips, chin
    lip = 0.002 + 0.003 * (P.lip_fullness + 1)
    mw = L.mouth_w
    d += 0.004 * gauss(x / 0.012, (z - (L.mouth_z + nz1) / 2) / 0.012)
    d += lip * gauss(x / (mw * 0.95), (z - L.mouth_z - 0.0045) / 0.0055)
    d += lip * 1.1 * gauss(x / (mw * 0.85), (z - L.mouth_z + 0.0055) / 0.0060)
    d -= 0.003 * gauss(x / (mw * 0.7), (z - L.mouth_z + 0.0145) / 0.004)   # mentolabial sulcus
    d += (0.007 + 0.007 * P.chin_protrusion) * gauss(x / 0.017, (z - L.chin_z - 0.012) / 0.012)
    return d * fw


def build_skin(L: Layout) -> SkinGrid:
    P = L.P
    s = _row_params(ROWS)[1:]                       # rings below the crown pole
    u = np.arange(COLS) / COLS
    phi = col_phi(u)
    S, PH = np.meshgrid(s, phi, indexing="ij")
    base = base_surface(P, S, PH)
    pts = base.copy()
    pts[..., 1] -= feature_offset(L, base, PH)
    nr = len(s)
    pole = base_surface(P, np.array([0.0]), np.array([0.0]))[0]
    verts = np.concatenate([pole[None], pts.reshape(-1, 3)])
    vphi = np.concatenate([[0.0], PH.ravel()])
    vs = np.concatenate([[0.0], S.ravel()])
    ring_faces = grid_faces(nr, COLS, wrap=True) + 1
    c = np.arange(COLS)
    crown = np.stack([np.zeros(COLS, np.int64), 1 + c, 1 + (c + 1) % COLS], -1)
    faces = np.concatenate([crown, ring_faces])
    # UVs: (COLS+1) columns per ring (seam duplicated), one crown UV per column
    u0, v0, u1, v1 = ATLAS["skin"]
    uu = u0 + (u1 - u0) * np.arange(COLS + 1) / COLS
    vv = v1 - (v1 - v0) * np.concatenate([[0.0], s]) * 0.999 - 0.0005
    uv_rings = np.stack(np.meshgrid(uu, vv[1:], indexing="xy"), -1).reshape(-1, 2)
    uv_crown = np.stack([u0 + (u1 - u0) * (c + 0.5) / COLS, np.full(COLS, vv[0])], -1)
    uvs = np.concatenate([uv_crown, uv_rings])
    ring_uvf = grid_uv_faces(nr, COLS) + COLS
    crown_uvf = np.stack([c, COLS + c, COLS + c + 1], -1)
    uv_faces = np.concatenate([crown_uvf, ring_uvf])

    # --- mouth slit: faces between the two rows that straddle the mouth line, over its width
    front_col = COLS // 2
    row_z = pts[:, front_col, 2]
    rm = int(np.argmin(np.abs(row_z - L.mouth_z)))
    rm = rm if row_z[rm] >= L.mouth_z else rm - 1       # upper rim row
    xs_up = pts[rm, :, 0]
    inside = (np.abs(xs_up) < L.mouth_w) & (np.cos(phi) > 0)
    cols_in = np.nonzero(inside)[0]
    slit_cols = cols_in[:-1]                            # quads with both columns inside
    gridq = (rm * COLS + slit_cols) * 2 + COLS          # two tris per quad after the crown fan
    drop = np.zeros(len(faces), bool)
    drop[gridq] = True
    drop[gridq + 1] = True
    up = 1 + rm * COLS + cols_in
    lo = 1 + (rm + 1) * COLS + cols_in
    xe = np.abs(verts[up, 0]).max() + 1e-4
    gap = 0.0003 + 0.0009 * np.clip(1 - (verts[up, 0] / xe) ** 2, 0, 1)
    # pull the two rim rows onto the mouth line, fading out beyond the corners
    for row, sign in ((rm, 1.0), (rm + 1, -1.0)):
        idx = 1 + row * COLS + np.arange(COLS)
        ex = np.clip(np.abs(verts[idx, 0]) - xe, 0, None)
        w = np.exp(-(ex / 0.006) ** 2) * (np.cos(phi) > 0)
        target = L.mouth_z + sign * 0.0003
        verts[idx, 2] = verts[idx, 2] * (1 - w) + target * w
    verts[up, 2] = L.mouth_z + gap
    verts[lo, 2] = L.mouth_z - gap
    upper_rim, lower_rim = up, lo

    # --- eye openings: drop faces whose centre lies in the ellipse, snap rims onto it and
    # onto the eyeball so the lids hug the eye
    eye_rims = {}
    cen = verts[faces].mean(1)
    fphi = vphi[faces[:, 1]]
    for side, sx in (("L", 1.0), ("R", -1.0)):
        ex_, ez_ = sx * L.eye_x, L.eye_z
        q = ((cen[:, 0] - ex_) / L.eye_w) ** 2 + ((cen[:, 2] - ez_) / L.eye_h) ** 2
        hole = (q < 1.0) & (np.cos(fphi) > 0.3)
        drop |= hole
        rim = np.unique(faces[hole])
        keep_users = np.unique(faces[~drop])
        rim = np.intersect1d(rim, keep_users)
        dx, dz = verts[rim, 0] - ex_, verts[rim, 2] - ez_
        r = np.sqrt((dx / L.eye_w) ** 2 + (dz / L.eye_h) ** 2)
        verts[rim, 0] = ex_ + dx / r
        verts[rim, 2] = ez_ + dz / r
        eye_rims[side] = rim
    # eyeball centre: behind the mean rim so the rim sits on the sphere
    rims_all = np.concatenate(list(eye_rims.values()))
    d_rim = np.sqrt(L.eye_w ** 2 * 0.6 + L.eye_h ** 2 * 0.4)
    L.eye_center_y = float(verts[rims_all, 1].mean() + np.sqrt(L.eye_r ** 2 - d_rim ** 2))
    for side, sx in (("L", 1.0), ("R", -1.0)):
        rim = eye_rims[side]
        rr2 = (verts[rim, 0] - sx * L.eye_x) ** 2 + (verts[rim, 2] - L.eye_z) ** 2
        verts[rim, 1] = L.eye_center_y - np.sqrt(np.clip(L.eye_r ** 2 - rr2, 0, None)) - 0.0009
        # lids hug the eyeball: no skin behind the sphere's front where it would poke through
        r2 = (verts[:, 0] - sx * L.eye_x) ** 2 + (verts[:, 2] - L.eye_z) ** 2
        near = (r2 < L.eye_r ** 2) & (np.cos(vphi) > 0.3)
        ysph = L.eye_center_y - np.sqrt(np.clip(L.eye_r ** 2 - r2[near], 0, None)) - 0.0009
        verts[near, 1] = np.minimum(verts[near, 1], ysph)

    verts, faces_k, remap, (vphi, vs) = compact(verts, faces, ~drop, (vphi, vs))
    uv_faces = uv_faces[~drop]
    mouth_y = verts[remap[upper_rim], 1]
    L.mouth_front_y = float(mouth_y.min())
    return SkinGrid(verts, faces_k, uvs, uv_faces, vphi, vs, remap[upper_rim], remap[lower_rim],
                    {k: remap[v] for k, v in eye_rims.items()})


def _surface_y(skin: SkinGrid, x, z):
    """Front skin depth y at (x, z) [N] from the nearest front vertices (inverse-distance)."""
    front = np.cos(skin.phi) > 0.2
    V = skin.vertices[front]
    d2 = (V[None, :, 0] - np.asarray(x)[:, None]) ** 2 + (V[None, :, 2] - np.asarray(z)[:, None]) ** 2
    k = np.argpartition(d2, 4, axis=1)[:, :4]
    w = 1.0 / (np.take_along_axis(d2, k, 1) + 1e-10)
    return (V[k, 1] * w).sum(1) / w.sum(1)


# --------------------------------------------------------------------------- separate parts
def build_eyes(L: Layout) -> list[Part]:
    parts = []
    for side, sx in (("L", 1.0), ("R", -1.0)):
        parts.append(uv_sphere((sx * L.eye_x, L.eye_center_y, L.eye_z), (L.eye_r,) * 3, 16, 24,
                               ATLAS[f"eye_{side}"], polar_uv=True, name=f"eye_{side}"))
    return parts


def build_ears(L: Layout) -> list[Part]:
    P = L.P
    parts = []
    k = 1 + 0.2 * P.ear_size
    ez = L.eye_z - 0.016
    prof = profile(P)
    s_ear = np.interp(-ez, -prof[:, 1], prof[:, 0])
    side_x = float(base_surface(P, np.array([s_ear]), np.array([np.pi / 2]))[0, 0])
    for side, sx in (("L", 1.0), ("R", -1.0)):
        part = uv_sphere((0, 0, 0), (0.0075, 0.017 * k, 0.030 * k), 10, 16, ATLAS[f"ear_{side}"],
                         polar_uv=False, name=f"ear_{side}", axis_front=(1.0, 0.0, 0.0))
        v = part.vertices.copy()
        # cup the outer face (concha) and lean the ear back about 12 degrees
        r2 = (v[:, 1] / (0.017 * k)) ** 2 + (v[:, 2] / (0.030 * k)) ** 2
        v[:, 0] -= 0.005 * np.clip(1 - r2, 0, 1) * (v[:, 0] > 0)
        # flare: the back rim stands off the head more than the front (ears angle outwards)
        v[:, 0] += 0.22 * np.clip(v[:, 1], 0, None) + 0.004
        a = np.radians(12)
        y, z = v[:, 1].copy(), v[:, 2].copy()
        v[:, 1], v[:, 2] = y * np.cos(a) + z * np.sin(a), -y * np.sin(a) + z * np.cos(a)
        v[:, 0] = sx * v[:, 0] + sx * (side_x - 0.001)
        v[:, 1] += 0.010
        v[:, 2] += ez
        f = part.faces if sx > 0 else part.faces[:, [0, 2, 1]]
        uvf = part.uv_faces if sx > 0 else part.uv_faces[:, [0, 2, 1]]
        uvs = part.uvs.copy()
        if sx < 0:                      # the mirrored ear gets a mirrored chart
            r = ATLAS[f"ear_{side}"]
            uvs[:, 0] = r[0] + r[2] - uvs[:, 0]
        parts.append(Part(part.name, v, f, uvs, uvf))
    return parts


def build_mouth(L: Layout) -> Part:
    cy = L.mouth_front_y + 0.025
    return uv_sphere((0, cy, L.mouth_z - 0.004), (L.mouth_w * 0.95, 0.016, 0.015), 10, 16, ATLAS["mouth"],
                     polar_uv=False, name="mouth")


def build_teeth(L: Layout) -> list[Part]:
    """Upper and lower front teeth: flattened tubes along an arc just behind the lips
    (hidden when the mouth is closed, shown by jawOpen / mouthFunnel)."""
    u0, v0, u1, v1 = ATLAS["teeth"]
    vm = (v0 + v1) / 2
    mw = L.mouth_w
    x = np.linspace(-0.78 * mw, 0.78 * mw, 18)
    parts = []
    for name, zc, dy, rect in (("teeth_upper", L.mouth_z + 0.0032, 0.0048, (u0, vm, u1, v1)),
                               ("teeth_lower", L.mouth_z - 0.0046, 0.0075, (u0, v0, u1, vm))):
        y = L.mouth_front_y + dy + 0.014 * (x / mw) ** 2
        path = np.stack([x, y, np.full_like(x, zc)], -1)
        t = tube(path, 0.0034, False, rect, name, sides=8)
        v = t.vertices.copy()
        pc = np.repeat(path, 8, 0)
        v[:, 2] = pc[:, 2] + (v[:, 2] - pc[:, 2]) * 1.45        # taller than thick
        v[:, 1] = pc[:, 1] + (v[:, 1] - pc[:, 1]) * 0.55
        parts.append(Part(name, v, t.faces, t.uvs, t.uv_faces))
    return parts


def build_hair(L: Layout) -> list[Part]:
    P = L.P
    style = P.hairstyle
    if style == "none":
        return []
    prof = profile(P)
    rows, cols = 34, 72
    u = np.arange(cols) / cols
    phi = col_phi(u)
    zend = hair_end_z(L, style, np.abs(phi))
    # a ragged edge reads as locks of hair rather than a helmet rim
    zend = zend + 0.002 * np.sin(29 * phi) * np.sin(7 * phi + 1.0) - 0.0015 * np.abs(np.sin(13 * phi))
    s_end = np.interp(-zend, -prof[:, 1], prof[:, 0])
    t = np.linspace(0, 1, rows)[1:]
    S = t[:, None] * s_end[None, :]
    # hair hangs: below its widest point the shell keeps the widest radii (cumulative max)
    tab = spline(prof[:, 0], prof[:, 1:], S.ravel()).reshape(S.shape + (6,))
    fine_s = np.linspace(0, 1, 400)
    fine = spline(prof[:, 0], prof[:, 1:], fine_s)
    cm = np.maximum.accumulate(fine[:, 1:4], axis=0)
    for k in range(3):
        tab[..., 1 + k] = np.interp(S, fine_s, cm[:, k])
    off = 0.006 if style == "short" else 0.009
    tab[..., 1:4] += off
    tab[..., 0] += off * smoothstep(0.3, 0.0, S)            # crown volume
    full = np.concatenate([S[..., None], tab], -1)
    pts = ring_points(full, phi[None, :])
    # a little forward sweep at the fringe so it does not sit flat on the forehead
    pole = np.array([0.0, 0.006, 0.500 + off])
    verts = np.concatenate([pole[None], pts.reshape(-1, 3)])
    c = np.arange(cols)
    faces = np.concatenate([np.stack([np.zeros(cols, np.int64), 1 + c, 1 + (c + 1) % cols], -1),
                            grid_faces(rows - 1, cols, wrap=True) + 1])
    u0, v0, u1, v1 = ATLAS["hair"]
    bun_rect = (u0, v0, u0 + 0.16, v0 + 0.06)
    if style == "bun":
        v0 = v0 + 0.065                          # leave the bottom strip of the chart to the bun
    uu = u0 + (u1 - u0) * np.arange(cols + 1) / cols
    vv = v1 - (v1 - v0) * t
    uvs = np.concatenate([np.stack([u0 + (u1 - u0) * (c + 0.5) / cols, np.full(cols, v1)], -1),
                          np.stack(np.meshgrid(uu, vv, indexing="xy"), -1).reshape(-1, 2)])
    uvf = np.concatenate([np.stack([c, cols + c, cols + c + 1], -1), grid_uv_faces(rows - 1, cols) + cols])
    parts = [Part("hair", verts, faces, uvs, uvf)]
    if style == "bun":
        # high on the back of the crown, so it shows over the head's outline from the front (a
        # bun low on the back is invisible to a frontal photo: the fit cannot tell it from short)
        bun_z = L.eye_z + 0.112
        s_b = np.interp(-bun_z, -prof[:, 1], prof[:, 0])
        back = base_surface(P, np.array([s_b]), np.array([np.pi]))[0]
        parts.append(uv_sphere((0, back[1] + 0.006, bun_z + 0.028), (0.034, 0.030, 0.032), 12, 20, bun_rect,
                               polar_uv=False, name="hair_bun", axis_front=(0, 1, 0)))
    return parts


def build_brows(L: Layout, skin: SkinGrid) -> list[Part]:
    P = L.P
    hw = BROW_WIDTH[P.eyebrow_style]
    n = 20
    a = np.linspace(0, 1, n)
    parts = []
    u0, v0, u1, v1 = ATLAS["brows"]
    for i, (side, sx) in enumerate((("L", 1.0), ("R", -1.0))):
        x = sx * (L.eye_x - 0.020 + 0.043 * a)
        zc = L.brow_z + 0.0045 * np.sin(np.pi * a ** 0.8) - 0.004 * a ** 3
        w = hw * (1.15 - 0.75 * a ** 2)
        rows = []
        for k in (-1.0, 0.0, 1.0):
            z = zc + k * w
            y = _surface_y(skin, x, z) - 0.0011 - 0.0007 * (k == 0)
            rows.append(np.stack([x, y, z], -1))
        verts = np.concatenate(rows[::-1])               # top row first
        f = grid_faces(3, n, wrap=False)
        if sx < 0:
            f = f[:, [0, 2, 1]]
        us = np.linspace(u0 + 0.005, u1 - 0.005, n)[:: int(sx)]      # mirrored chart for the right brow
        half = (v1 - v0) / 2
        vb = v0 + i * half
        vs = np.linspace(vb + half - 0.01, vb + 0.01, 3)
        uvs = np.stack(np.meshgrid(us, vs, indexing="xy"), -1).reshape(-1, 2)
        uvf = grid_faces(3, n, wrap=False)
        if sx < 0:
            uvf = uvf[:, [0, 2, 1]]
        parts.append(Part(f"brow_{side}", verts, f, uvs, uvf))
    return parts


def build_glasses(L: Layout, skin: SkinGrid) -> list[Part]:
    style = L.P.glasses
    if style == "none":
        return []
    y_front = float(_surface_y(skin, np.array([0.0]), np.array([L.eye_z - 0.004]))[0]) - 0.006
    parts = []
    u0, v0, u1, v1 = ATLAS["glasses"]
    h = (v1 - v0) / 5
    n = 48
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    inner, outer = {}, {}
    for i, (side, sx) in enumerate((("L", 1.0), ("R", -1.0))):
        if style == "round":
            px, pz = 0.021 * np.cos(t), 0.020 * np.sin(t)
        else:   # rounded rectangle via a superellipse
            e = 2 / 6.0
            px = 0.025 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** e
            pz = 0.017 * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** e
        cx = sx * (L.eye_x + 0.002)
        cz = L.eye_z - 0.003
        path = np.stack([cx + px, y_front + 0.004 * (px * sx / 0.025) ** 2, cz + pz], -1)
        parts.append(tube(path, 0.0014, True, (u0, v0 + i * h, u1, v0 + (i + 1) * h), f"glasses_rim_{side}"))
        inner[side] = path[np.argmin(np.abs(path[:, 0]))]
        outer[side] = path[np.argmax(np.abs(path[:, 0]))]
    # bridge and temples
    a, b = inner["R"], inner["L"]
    tt = np.linspace(0, 1, 10)
    bridge = a[None] * (1 - tt[:, None]) + b[None] * tt[:, None]
    bridge[:, 2] += 0.004 * np.sin(np.pi * tt)
    parts.append(tube(bridge, 0.0012, False, (u0, v0 + 2 * h, u1, v0 + 3 * h), "glasses_bridge"))
    prof = profile(L.P)
    s_e = np.interp(-L.eye_z, -prof[:, 1], prof[:, 0])
    side_x = float(base_surface(L.P, np.array([s_e]), np.array([np.pi / 2]))[0, 0])
    for i, (side, sx) in enumerate((("L", 1.0), ("R", -1.0))):
        o = outer[side]
        end = np.array([sx * (side_x + 0.004), 0.012, L.eye_z - 0.006])
        tt = np.linspace(0, 1, 14)
        path = o[None] * (1 - tt[:, None]) + end[None] * tt[:, None]
        path[:, 0] += sx * 0.006 * np.sin(np.pi * tt)
        parts.append(tube(path, 0.0011, False, (u0, v0 + (3 + i) * h, u1, v0 + (4 + i) * h), f"glasses_temple_{side}"))
    return parts


# --------------------------------------------------------------------------- assembly
def build_geometry(P: AvatarParams) -> Built:
    L = make_layout(P)
    skin = build_skin(L)
    parts: list[tuple[str, Part]] = [("skin", Part("skin", skin.vertices, skin.faces, skin.uvs, skin.uv_faces))]
    for p in build_eyes(L):
        parts.append((p.name, p))
    for p in build_ears(L):
        parts.append((p.name, p))
    inner = [build_mouth(L)] + build_teeth(L)
    for p in inner:
        # keep the mouth cavity and teeth inside the head for every parameter set
        ys = _surface_y(skin, p.vertices[:, 0], p.vertices[:, 2])
        p.vertices[:, 1] = np.maximum(p.vertices[:, 1], ys + 0.0015)
        parts.append(("mouth" if p.name == "mouth" else p.name, p))
    for p in build_hair(L):
        parts.append(("hair", p))
    for p in build_brows(L, skin):
        parts.append(("brows", p))
    for p in build_glasses(L, skin):
        parts.append(("glasses", p))
    V, F, T, TF, owner = [], [], [], [], []
    nv = nt = 0
    for kind, p in parts:
        V.append(p.vertices)
        F.append(p.faces + nv)
        T.append(p.uvs)
        TF.append(p.uv_faces + nt)
        owner.append(np.full(len(p.vertices), PART_NAMES.index(kind)))
        nv += len(p.vertices)
        nt += len(p.uvs)
    return Built(L, np.concatenate(V), np.concatenate(F), np.concatenate(T), np.concatenate(TF),
                 np.concatenate(owner), skin, (0, len(skin.vertices)))


def sample_avatar(params: AvatarParams | dict | None = None, *, texture_size: int = TEXTURE_SIZE,
                  with_track: bool = True) -> AvatarData:
    """Build the parametric sample avatar.

    params: :class:`AvatarParams`, a dict of its fields, or None for the default adult.
    Returns an :class:`AvatarData` with one texture set ("albedo",
    ``texture_size``^2 sRGB), ARKit blendshapes (see
    :data:`backend.avatar.blendshapes.ARKIT_NAMES`) and, with ``with_track``, the
    72-frame sample expression track. Deterministic: the same params give
    bit-identical arrays (and the same content hash).
    """
    if params is None:
        P = AvatarParams()
    elif isinstance(params, dict):
        P = AvatarParams.from_dict(params)
    else:
        P = params
    g = build_geometry(P)
    deltas = blendshape_deltas(g)
    img = paint_albedo(g, texture_size)
    mean_linear = srgb_to_linear(img.reshape(-1, 3).mean(0) / 255.0)
    ts = TextureSet(name="albedo", image=img, base_color=tuple(float(c) for c in mean_linear))
    uvs, uv_faces = index_corner_uvs(g.uvs[g.uv_faces].astype(np.float32).reshape(-1, 2))
    return AvatarData(
        vertices=g.vertices.astype(np.float32), faces=g.faces, uvs=uvs, uv_faces=uv_faces,
        face_material=np.zeros(len(g.faces), np.int32), texture_sets=[ts],
        blendshape_names=list(ARKIT_NAMES), blendshapes=deltas.astype(np.float32),
        track=sample_track() if with_track else None, name="metamorph_sample",
    )


def landmarks(params: AvatarParams | None = None) -> dict:
    """Face landmarks of the sample for ``params`` (metres, Z up, facing -Y): used by
    tests, the contact sheet and camera framing. Keys: eye_L, eye_R, mouth, nose_tip,
    chin (x, z pairs on the face plane), eye_w, eye_h, mouth_w, top_z."""
    L = make_layout(params or AvatarParams())
    return {"eye_L": (L.eye_x, L.eye_z), "eye_R": (-L.eye_x, L.eye_z), "mouth": (0.0, L.mouth_z),
            "nose_tip": (0.0, L.nose_tip_z), "chin": (0.0, L.chin_z), "eye_w": L.eye_w, "eye_h": L.eye_h,
            "mouth_w": L.mouth_w, "brow_z": L.brow_z}
