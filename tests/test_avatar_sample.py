"""The parametric sample avatar: determinism, parameters, assets, blendshapes, UVs, texture, track."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backend.avatar import AvatarParams, sample_avatar
from backend.avatar.blendshapes import ARKIT_NAMES
from backend.avatar.params import COLOR_NAMES, DISCRETE, SHAPE_NAMES, VECTOR_SIZE, random_params
from backend.avatar.layout import ATLAS, PART_NAMES
from backend.avatar.sample import build_geometry, landmarks
from shared.avatar import content_hash, validate
from shared.errors import InvalidParams

REQUIRED = ["jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel", "mouthPucker",
            "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "browDownLeft", "browDownRight", "cheekPuff"]


@pytest.fixture(scope="module")
def av():
    return sample_avatar()


@pytest.fixture(scope="module")
def geom():
    return build_geometry(AvatarParams())


def _part(g, name):
    return g.part_of_vertex == PART_NAMES.index(name)


def test_sample_is_a_valid_detailed_avatar(av):
    validate(av)
    assert av.num_vertices >= 8000
    assert av.texture_sets[0].image.shape == (1024, 1024, 3)
    assert av.texture_sets[0].image.dtype == np.uint8
    assert set(REQUIRED) <= set(av.blendshape_names) == set(ARKIT_NAMES)
    assert av.blendshapes.shape == (len(av.blendshape_names), av.num_vertices, 3)
    # head-and-shoulders proportions, metres, Z up, facing -Y
    lo, hi = av.vertices.min(0), av.vertices.max(0)
    assert 0.40 < hi[2] - lo[2] < 0.60
    assert 0.30 < hi[0] - lo[0] < 0.50          # shoulders
    assert abs(lo[0] + hi[0]) < 1e-3            # symmetric about x = 0


def test_generation_is_deterministic(av):
    again = sample_avatar()
    assert content_hash(again) == content_hash(av)
    assert np.array_equal(again.track.weights, av.track.weights)
    other = sample_avatar(AvatarParams(nose_length=0.5))
    assert content_hash(other) != content_hash(av)


def test_parameter_vector_round_trip_and_ranges():
    p = random_params(7)
    v = p.to_vector()
    assert v.shape == (VECTOR_SIZE,)
    assert len(SHAPE_NAMES) >= 12 and len(COLOR_NAMES) >= 3
    assert len(DISCRETE["hairstyle"]) >= 4 and "none" in DISCRETE["hairstyle"]
    assert len(DISCRETE["eyebrow_style"]) >= 3
    assert DISCRETE["glasses"] == ("none", "round", "rectangular")
    back = AvatarParams.from_vector(v)              # float32 vector: values equal to 1e-7
    assert np.array_equal(back.to_vector(), v)
    assert (back.hairstyle, back.eyebrow_style, back.glasses) == (p.hairstyle, p.eyebrow_style, p.glasses)
    assert abs(back.nose_length - p.nose_length) < 1e-6
    # a relaxed (soft) vector is projected: clipped values, argmax choices
    soft = v.copy()
    soft[0] = 7.0
    soft[-3:] = [0.2, 0.5, 0.3]
    q = AvatarParams.from_vector(soft)
    assert getattr(q, SHAPE_NAMES[0]) == 1.0 and q.glasses == "round"
    with pytest.raises(InvalidParams, match="head_width"):
        AvatarParams(head_width=1.5)
    with pytest.raises(InvalidParams, match="hairstyle"):
        AvatarParams(hairstyle="mohawk")
    with pytest.raises(InvalidParams, match="Unknown"):
        AvatarParams.from_dict({"nose_lenght": 0.1})


def test_every_shape_parameter_changes_the_geometry(geom):
    base = geom.vertices
    for name in SHAPE_NAMES:
        g = build_geometry(AvatarParams(**{name: 1.0}))
        same_topology = g.vertices.shape == base.shape
        assert not same_topology or np.abs(g.vertices - base).max() > 5e-4, name


def test_shape_parameters_move_what_they_name(geom):
    def eye_x(g):
        return g.vertices[_part(g, "eye_L"), 0].mean() - g.vertices[_part(g, "eye_R"), 0].mean()

    def head_width(g):
        v = g.vertices[_part(g, "skin")]
        band = np.abs(v[:, 2] - 0.40) < 0.01
        return np.ptp(v[band, 0])

    wide, narrow = build_geometry(AvatarParams(head_width=1.0)), build_geometry(AvatarParams(head_width=-1.0))
    assert head_width(wide) > head_width(narrow) + 0.02
    apart = build_geometry(AvatarParams(eye_spacing=1.0))
    assert eye_x(apart) > eye_x(geom) + 0.005
    big = build_geometry(AvatarParams(ear_size=1.0))
    assert np.ptp(big.vertices[_part(big, "ear_L"), 2]) > 1.15 * np.ptp(geom.vertices[_part(geom, "ear_L"), 2])
    long_nose = build_geometry(AvatarParams(nose_projection=1.0))
    tip = lambda g: g.vertices[_part(g, "skin") & (np.abs(g.vertices[:, 0]) < 0.003), 1].min()  # noqa: E731
    assert tip(long_nose) < tip(geom) - 0.004


def test_discrete_assets_are_separate_meshes():
    counts, low, high = {}, {}, {}
    for style in DISCRETE["hairstyle"]:
        g = build_geometry(AvatarParams(hairstyle=style))
        counts[style] = int(_part(g, "hair").sum())
        low[style] = g.vertices[_part(g, "hair"), 2].min() if counts[style] else None
        high[style] = g.vertices[_part(g, "hair"), 2].max() if counts[style] else None
    assert counts["none"] == 0 and counts["short"] > 1000
    assert low["long"] < low["short"] - 0.1               # long hair reaches the shoulders
    assert counts["bun"] > counts["short"]                 # the bun is an extra mesh
    assert high["bun"] > high["short"] + 0.03              # high on the crown: a frontal photo shows it
    for style in DISCRETE["glasses"]:
        g = build_geometry(AvatarParams(glasses=style))
        n = int(_part(g, "glasses").sum())
        assert (n == 0) == (style == "none")
    heights = []
    for style in DISCRETE["eyebrow_style"]:
        g = build_geometry(AvatarParams(eyebrow_style=style))
        heights.append(np.ptp(g.vertices[_part(g, "brows") & (g.vertices[:, 0] > 0), 2]))
    assert heights[0] < heights[1] < heights[2]          # thin < medium < thick


def test_mesh_faces_outward_and_has_openings(geom):
    v, f = geom.vertices, geom.faces
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    c = v[f].mean(1)
    face = (c[:, 1] < -0.05) & (np.abs(c[:, 0]) < 0.03) & np.isin(f[:, 0], np.nonzero(_part(geom, "skin"))[0])
    assert n[face, 1].sum() < 0                          # the face's normals point forward (-Y)
    # eye openings and the mouth slit are real holes: boundary edges around them
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    uniq, cnt = np.unique(e, axis=0, return_counts=True)
    bverts = v[np.unique(uniq[cnt == 1])]
    lm = landmarks()
    for key in ("eye_L", "eye_R", "mouth"):
        x, z = lm[key]
        near = np.hypot(bverts[:, 0] - x, bverts[:, 2] - z) < 0.03
        assert near.sum() >= 10, key


def _moved(d, tol=1e-7):
    return np.linalg.norm(d, axis=1) > tol


def test_blendshapes_are_local_and_plausible(av, geom):
    lm = landmarks()
    v = av.vertices
    names = av.blendshape_names
    D = {n: av.blendshapes[names.index(n)] for n in names}
    static = np.isin(geom.part_of_vertex,
                     [PART_NAMES.index(p) for p in ("eye_L", "eye_R", "ear_L", "ear_R", "hair", "glasses")])
    for n in names:
        m = _moved(D[n])
        assert m.any(), n
        assert not m[static].any(), f"{n} moves eyeballs/ears/hair/glasses"
        assert m.mean() < 0.25, f"{n} moves {m.mean():.0%} of the vertices"
        assert np.linalg.norm(D[n], axis=1).max() < 0.04, n
    # blinks stay on their own eye and close it: the lid borders meet
    for n, key in (("eyeBlinkLeft", "eye_L"), ("eyeBlinkRight", "eye_R")):
        x, z = lm[key]
        m = _moved(D[n])
        assert np.all(np.abs(v[m, 0] - x) < 0.03) and np.all(np.abs(v[m, 2] - z) < 0.03), n
        col = ((np.abs(v[:, 0] - x) < 0.0025) & (np.abs(v[:, 2] - z) < lm["eye_h"] * 1.05)
               & _part(geom, "skin") & (v[:, 1] < 0))
        up = col & (v[:, 2] > z)
        lo = col & (v[:, 2] < z)
        assert up.any() and lo.any()
        gap_before = v[up, 2].min() - v[lo, 2].max()
        moved = v + D[n]
        gap_after = moved[up, 2].min() - moved[lo, 2].max()
        assert gap_before > 0.008 and abs(gap_after) < 0.0015, (n, gap_before, gap_after)
    # jawOpen: opens the mouth and drops the chin, nothing above the nose moves
    m = _moved(D["jawOpen"])
    assert v[m, 2].max() < lm["nose_tip"][1]
    chin = (_part(geom, "skin") & (np.abs(v[:, 0]) < 0.004) & (np.abs(v[:, 2] - lm["chin"][1]) < 0.006)
            & (v[:, 1] < -0.04))
    assert D["jawOpen"][chin, 2].mean() < -0.01
    mx, mz = lm["mouth"]
    centre = _part(geom, "skin") & (np.abs(v[:, 0]) < 0.004) & (np.abs(v[:, 2] - mz) < 0.0015)
    upper, lower = centre & (v[:, 2] > mz), centre & (v[:, 2] < mz)
    opening = (D["jawOpen"][upper, 2].mean() - D["jawOpen"][lower, 2].mean())
    assert opening > 0.008
    # left/right pairs act on the character's left (+X) / right (-X)
    for left, right in (("mouthSmileLeft", "mouthSmileRight"), ("browDownLeft", "browDownRight")):
        wl = np.linalg.norm(D[left], axis=1)
        wr = np.linalg.norm(D[right], axis=1)
        assert (wl * v[:, 0]).sum() / wl.sum() > 0.01 and (wr * v[:, 0]).sum() / wr.sum() < -0.01
    # smiles lift the mouth corners, brow raise lifts the brows
    assert D["mouthSmileLeft"][_moved(D["mouthSmileLeft"]), 2].max() > 0.005
    brow = _part(geom, "brows")
    assert D["browInnerUp"][brow, 2].max() > 0.004 and D["browDownLeft"][brow, 2].min() < -0.003


def test_uv_layout_is_clean(av):
    uv = av.uvs[av.uv_faces]                              # [F,3,2]
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    signed = 0.5 * ((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                    - (uv[:, 2, 0] - uv[:, 0, 0]) * (uv[:, 1, 1] - uv[:, 0, 1]))
    # every chart keeps the winding of the surface (no mirrored or collapsed UV triangles)
    assert (signed > 0).mean() > 0.999
    area = np.abs(signed)
    # non-overlapping: the union of all UV triangles covers (almost) the sum of their areas
    S = 2048
    mask = Image.new("1", (S, S), 0)
    draw = ImageDraw.Draw(mask)
    for tri in (uv * S):
        draw.polygon([(float(a), float(S - b)) for a, b in tri], fill=1)
    union = np.asarray(mask, bool).sum() / S / S
    assert union > 0.95 * area.sum(), (union, area.sum())


def test_albedo_paints_features(av, geom):
    img = av.texture_sets[0].image.astype(float)
    lm = landmarks()
    v, uvs, uvf, f = av.vertices, av.uvs, av.uv_faces, av.faces

    def texel(mask):
        corners = np.isin(f, np.nonzero(mask)[0])
        uv = uvs[uvf[corners]]
        px = img[np.clip(((1 - uv[:, 1]) * 1024).astype(int), 0, 1023), np.clip((uv[:, 0] * 1024).astype(int), 0, 1023)]
        return px.mean(0)

    skin_ = (v[:, 1] < 0) & (np.abs(v[:, 0]) < 0.01) & _part(geom, "skin")
    lips = texel(skin_ & (np.abs(v[:, 2] - lm["mouth"][1] - 0.004) < 0.002))
    forehead = texel(skin_ & (np.abs(v[:, 2] - lm["brow_z"] - 0.03) < 0.003))
    assert lips[0] / lips[1] > forehead[0] / forehead[1] + 0.1          # lips are redder than skin
    # blue eyes are blue, brown eyes are not; the pupil is dark
    for ec, blue in ((1.0, True), (0.0, False)):
        im = sample_avatar(AvatarParams(eye_color=ec), texture_size=256, with_track=False).texture_sets[0].image
        u0, v0, u1, v1 = ATLAS["eye_L"]
        cx, cy = (u0 + u1) / 2, (v0 + v1) / 2
        rr = (u1 - u0) / 2
        iris = im[int((1 - cy) * 256), int((cx + 0.11 * rr) * 256)].astype(int)
        pupil = im[int((1 - cy) * 256), int(cx * 256)].astype(int)
        assert (iris[2] > iris[0]) == blue, (ec, iris)
        assert pupil.max() < 40


def test_expression_track(av):
    t = av.track
    assert len(t.frames) >= 48 and np.all(np.diff(t.frames) > 0)
    assert set(t.names) <= set(av.blendshape_names)
    W = {n: t.weights[:, i] for i, n in enumerate(t.names)}
    assert t.weights.min() >= 0 and t.weights.max() <= 1
    jaw = W["jawOpen"]
    peaks = np.sum((jaw[1:-1] > jaw[:-2]) & (jaw[1:-1] > jaw[2:]) & (jaw[1:-1] > 0.2))
    assert peaks >= 4                                     # talking: several syllables
    assert W["mouthSmileLeft"].max() > 0.8 and W["mouthSmileRight"].max() > 0.8
    blinks = np.sum(np.diff((W["eyeBlinkLeft"] > 0.9).astype(int)) == 1)
    assert blinks >= 2
    assert W["browInnerUp"].max() > 0.8


def test_the_engine_fingerprint_covers_every_discrete_choice():
    from backend.avatar.fingerprint import engine_fingerprint, fingerprint_params
    from backend.textavatar import codebook

    ps = fingerprint_params()
    for k, choices in DISCRETE.items():
        assert {getattr(p, k) for p in ps} == set(choices), k
    assert engine_fingerprint() == codebook.engine_version() and len(engine_fingerprint()) == 16
