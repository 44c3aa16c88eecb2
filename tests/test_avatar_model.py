"""The shared avatar container: validation errors, content hash, wire round trip, UV indexing."""

import numpy as np
import pytest

from shared.avatar import (AvatarData, ExpressionTrack, TextureSet, content_hash, flat_image, from_wire,
                           index_corner_uvs, to_wire, validate)
from shared.errors import InvalidAvatar, TooLarge


def tetra(**kw):
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    uvs, uvf = index_corner_uvs(np.array([[0, 0], [1, 0], [0, 1]] * 4, np.float32))
    d = dict(vertices=v, faces=f, uvs=uvs, uv_faces=uvf, face_material=np.zeros(4, np.int32),
             texture_sets=[TextureSet("m", flat_image((0.5, 0.2, 0.1)))], blendshape_names=["a"],
             blendshapes=np.zeros((1, 4, 3), np.float32))
    d.update(kw)
    return AvatarData(**d)


def test_index_corner_uvs_shares_equal_pairs_in_first_use_order():
    c = np.array([[0.5, 0.5], [0, 0], [1, 0], [0, 0], [1, 0], [0.25, 1]], np.float32)
    uvs, uvf = index_corner_uvs(c)
    assert uvs.tolist() == [[0.5, 0.5], [0, 0], [1, 0], [0.25, 1]]
    assert uvf.tolist() == [[0, 1, 2], [1, 2, 3]]
    assert np.array_equal(uvs[uvf].reshape(-1, 2), c)
    with pytest.raises(InvalidAvatar, match="triples"):
        index_corner_uvs(c[:4])


@pytest.mark.parametrize("change, match", [
    (dict(uvs=np.zeros((0, 2), np.float32)), "no UV coordinates"),
    (dict(uv_faces=np.full((4, 3), 9, np.int32)), "UV indices are out of range"),
    (dict(vertices=np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0], [0, 0, 1]], np.float32)), "NaN"),
    (dict(blendshapes=np.zeros((1, 3, 3), np.float32)), "one per vertex"),
    (dict(faces=np.array([[0, 1, 7]] * 4, np.int32)), "Triangle indices"),
    (dict(face_material=np.ones(4, np.int32)), "no texture set"),
])
def test_validation_names_the_problem(change, match):
    with pytest.raises(InvalidAvatar, match=match):
        validate(tetra(**change))


def test_validation_limits():
    validate(tetra())
    with pytest.raises(TooLarge, match="vertices"):
        validate(tetra(), {"max_vertices": 3})
    big = TextureSet("big", np.zeros((64, 32, 3), np.uint8))
    with pytest.raises(TooLarge, match="32x64"):
        validate(tetra(texture_sets=[big]), {"max_texture_size": 48})


def test_content_hash_ignores_name_and_track_but_not_geometry():
    a = tetra()
    b = tetra(name="other", track=ExpressionTrack(np.arange(3, dtype=np.float32), ["a"], np.zeros((3, 1), np.float32)))
    assert content_hash(a) == content_hash(b)
    v = a.vertices.copy()
    v[3, 2] = np.nextafter(np.float32(1), np.float32(2))          # one ulp
    assert content_hash(tetra(vertices=v)) != content_hash(a)
    bs = a.blendshapes.copy()
    bs[0, 1, 0] = 1e-3
    assert content_hash(tetra(blendshapes=bs)) != content_hash(a)


def test_wire_round_trip_keeps_everything():
    a = tetra(track=ExpressionTrack(np.arange(1, 4, dtype=np.float32), ["a"],
                                    np.array([[0.0], [0.5], [1.0]], np.float32), fps=30.0))
    body, arrays = to_wire(a)
    b = from_wire(body, arrays)
    assert content_hash(a) == content_hash(b)
    assert b.track.fps == 30.0 and np.array_equal(b.track.weights, a.track.weights)
    with pytest.raises(InvalidAvatar, match="incomplete"):
        from_wire(body, {k: v for k, v in arrays.items() if k != "uvs"})


def test_point_transforms_have_one_home_used_by_the_backend_and_the_addon():
    """The hash depends on these bits: Y-up <-> Z-up and float64 matrices rounded to float32.
    The backend's glTF/OBJ loaders and the add-on's extraction call the shared copy; none keeps
    its own."""
    import ast
    from pathlib import Path

    from shared.avatar import YUP_TO_ZUP, apply_affine, yup_to_zup, zup_to_yup

    p = np.array([[1.0, 2.0, 3.0], [0.1, -0.2, 0.3]], np.float32)
    assert yup_to_zup(p).tolist() == np.float32([[1, -3, 2], [0.1, -0.3, -0.2]]).tolist()
    assert np.array_equal(zup_to_yup(yup_to_zup(p)), p) and yup_to_zup(p).dtype == np.float32
    assert np.array_equal(YUP_TO_ZUP[:3, :3] @ p[0].astype(np.float64), yup_to_zup(p)[0])
    M = np.eye(4)
    M[:3, :3] *= 1 / 3
    M[:3, 3] = (0.1, 0.2, 0.3)
    out = apply_affine(M, p)
    assert out.dtype == np.float32
    assert np.array_equal(out, (p.astype(np.float64) / 3 + [0.1, 0.2, 0.3]).astype(np.float32))
    same = apply_affine(np.eye(4), p)
    assert np.array_equal(same, p) and same is not p
    root = Path(__file__).resolve().parents[1]
    users = {"blender_addon/scene_io.py": "apply_affine", "backend/avatar/gltf_load.py": "apply_affine",
             "backend/avatar/obj_io.py": "yup_to_zup", "backend/avatar/gltf_save.py": "zup_to_yup"}
    for rel, name in users.items():
        assert name in (root / rel).read_text(), rel
    # no private copies left in the modules that used to hold them: no function applies a world
    # matrix ([:3, :3].T ... [:3, 3]) or swaps Y and Z (columns [0, 2, 1]) itself
    for rel in ["blender_addon/scene_io.py", "backend/avatar/obj_io.py",
                *(str(f.relative_to(root)) for f in (root / "backend" / "avatar").glob("gltf_*.py"))]:
        tree = ast.parse((root / rel).read_text(), rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                src = ast.unparse(node)
                assert not ("[:3, :3].T" in src and "[:3, 3]" in src), f"{rel}: {node.name} applies a matrix"
                assert "[0, 2, 1]]" not in src, f"{rel}: {node.name} swaps Y and Z itself"
