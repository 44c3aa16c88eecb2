"""A small procedural head (ellipsoid) for tests and benchmarks of the engine's
mechanics, when the full sample avatar would be too slow. Real geometry, UVs with
a seam, two texture sets, blendshapes and an expression track."""

from __future__ import annotations

import numpy as np

from shared.avatar import AvatarData, ExpressionTrack, TextureSet


def tiny_avatar(rows: int = 16, cols: int = 24, tex: int = 64, split_seam: bool = False,
                two_sets: bool = True) -> AvatarData:
    """An ellipsoid head ~0.2 m tall centred at z=1.6 m, facing -Y (Blender front).

    UV: longitude -> u, latitude -> v; the column at u=0 and u=1 share vertices
    (a UV seam) unless ``split_seam`` (then they are separate, coincident
    vertices, as glTF imports have). Blendshapes: ``jawOpen``, ``mouthSmileLeft``,
    ``browInnerUp``. ``two_sets``: the upper half uses a second material.
    """
    lat = np.linspace(0.0, np.pi, rows + 1)
    lon_n = cols + 1 if split_seam else cols
    lon = np.linspace(0.0, 2 * np.pi, cols + 1)[:lon_n]
    verts, uvs = [], []
    for i, a in enumerate(lat):
        for j, b in enumerate(lon):
            verts.append([0.08 * np.sin(a) * np.sin(b), -0.09 * np.sin(a) * np.cos(b), 1.6 + 0.11 * np.cos(a)])
    for i in range(rows + 1):
        for j in range(cols + 1):
            uvs.append([j / cols, 1.0 - i / rows])
    verts = np.array(verts, np.float32)
    faces, uvf = [], []
    for i in range(rows):
        for j in range(cols):
            jn = j + 1 if split_seam else (j + 1) % cols
            a, b = i * lon_n + j, i * lon_n + jn
            c, d = (i + 1) * lon_n + j, (i + 1) * lon_n + jn
            ua, ub = i * (cols + 1) + j, i * (cols + 1) + j + 1
            uc, ud = (i + 1) * (cols + 1) + j, (i + 1) * (cols + 1) + j + 1
            faces += [[a, c, b], [b, c, d]]
            uvf += [[ua, uc, ub], [ub, uc, ud]]
    faces = np.array(faces, np.int32)
    uvf = np.array(uvf, np.int32)
    # Pole rows collapse to one point in 3D; keep them as separate coincident vertices (harmless).
    fm = np.zeros(len(faces), np.int32)
    if two_sets:
        fm[: len(faces) // 2] = 1  # upper half (rows near the top pole come first)
    yy, xx = np.mgrid[0:tex, 0:tex] / max(tex - 1, 1)
    img0 = np.stack([0.55 + 0.35 * xx, 0.4 + 0.2 * yy, 0.35 + 0.1 * np.sin(6 * xx)], -1)
    img1 = np.stack([0.3 + 0.2 * yy, 0.25 + 0.1 * xx, 0.2 + 0.1 * np.cos(5 * yy)], -1)
    sets = [TextureSet("skin", (img0 * 255).astype(np.uint8), (0.6, 0.4, 0.3))]
    if two_sets:
        sets.append(TextureSet("hair", (img1 * 255).astype(np.uint8), (0.1, 0.06, 0.03)))
    z = verts[:, 2] - 1.6
    front = np.clip(-verts[:, 1] / 0.09, 0, 1)
    jaw = np.zeros_like(verts)
    jaw[:, 2] = -0.02 * np.clip(-z / 0.11, 0, 1) * front
    smile = np.zeros_like(verts)
    smile[:, 0] = 0.006 * np.exp(-((z + 0.04) / 0.02) ** 2) * front * (verts[:, 0] > 0)
    smile[:, 2] = 0.004 * np.exp(-((z + 0.04) / 0.02) ** 2) * front * (verts[:, 0] > 0)
    brow = np.zeros_like(verts)
    brow[:, 2] = 0.008 * np.exp(-((z - 0.04) / 0.02) ** 2) * front
    names = ["jawOpen", "mouthSmileLeft", "browInnerUp"]
    bs = np.stack([jaw, smile, brow]).astype(np.float32)
    frames = np.arange(6, dtype=np.float32)
    w = np.stack([np.clip(np.sin(frames / 2), 0, 1), (frames % 3) / 2, (frames % 2) * 1.0], -1).astype(np.float32)
    track = ExpressionTrack(frames=frames, names=names, weights=w)
    return AvatarData(vertices=verts, faces=faces, uvs=np.array(uvs, np.float32), uv_faces=uvf, face_material=fm,
                      texture_sets=sets, blendshape_names=names, blendshapes=bs, track=track, name="tiny_head")


# The 52 ARKit face blendshapes and the 15 Oculus visemes: the 67 morph targets of a
# Ready Player Me avatar.
ARKIT_52 = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
VISEMES = ("viseme_sil", "viseme_PP", "viseme_FF", "viseme_TH", "viseme_DD", "viseme_kk", "viseme_CH",
           "viseme_SS", "viseme_nn", "viseme_RR", "viseme_aa", "viseme_E", "viseme_I", "viseme_O", "viseme_U")
# Sample-avatar part -> texture set of the benchmark avatar (9 sets, as a Ready Player Me avatar has).
BENCH_SETS = ("head", "eye_L", "eye_R", "ears", "mouth", "hair", "brows", "teeth_upper", "teeth_lower")
_PART_SET = {"skin": 0, "eye_L": 1, "eye_R": 2, "ear_L": 3, "ear_R": 3, "mouth": 4, "hair": 5, "brows": 6,
             "glasses": 5, "teeth_upper": 7, "teeth_lower": 8}


def bench_avatar(seed: int = 0) -> AvatarData:
    """The sample avatar re-cut as a real-avatar-sized benchmark: 9 texture sets (one per
    part group, :data:`BENCH_SETS`, each with its own copy of the atlas, so renders are
    unchanged) and 67 blendshapes (:data:`ARKIT_52` + :data:`VISEMES`). The sample's own
    11 deltas keep their names; each other target is a seeded mix of two of them (halved
    to one side for Left/Right names), so every blendshape moves only face geometry, as on
    a real avatar where hair, clothes and shoes never move with an expression."""
    from backend.avatar.layout import PART_NAMES
    from backend.avatar.params import AvatarParams
    from backend.avatar.sample import build_geometry, sample_avatar

    av = sample_avatar()
    part = np.asarray(build_geometry(AvatarParams()).part_of_vertex)
    lut = np.array([_PART_SET[n] for n in PART_NAMES], np.int32)
    fm = lut[part[av.faces[:, 0]]]
    img = av.texture_sets[0].image
    sets = [TextureSet(n, img.copy(), av.texture_sets[0].base_color) for n in BENCH_SETS]
    rng = np.random.default_rng(seed)
    own = {n: av.blendshapes[i] for i, n in enumerate(av.blendshape_names)}
    base = list(own.values())
    x = av.vertices[:, 0]
    names = list(ARKIT_52) + list(VISEMES)
    deltas = []
    for n in names:
        if n in own:
            deltas.append(own[n])
            continue
        i, j = rng.choice(len(base), 2, replace=False)
        d = rng.uniform(0.3, 1.0) * base[i] + rng.uniform(0.0, 0.5) * base[j]
        if n.endswith("Left"):
            d = d * (x > 0)[:, None]
        elif n.endswith("Right"):
            d = d * (x < 0)[:, None]
        deltas.append(d)
    return AvatarData(vertices=av.vertices, faces=av.faces, uvs=av.uvs, uv_faces=av.uv_faces, face_material=fm,
                      texture_sets=sets, blendshape_names=names, blendshapes=np.stack(deltas).astype(np.float32),
                      track=av.track, name="metamorph_bench9")
