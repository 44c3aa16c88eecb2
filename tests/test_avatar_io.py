"""GLB/glTF and OBJ import/export of avatars: round trips, multi-node files, bad files."""

import io
import json
import os

import numpy as np
import pygltflib as gl
import pytest
from PIL import Image

from backend.avatar import load_avatar, sample_avatar, save_glb
from backend.avatar.gltf_read import MAX_ELEMENTS
from shared.avatar import content_hash, validate
from shared.errors import InvalidAvatar, TooLarge


@pytest.fixture(scope="module")
def sample():
    return sample_avatar()


@pytest.fixture(scope="module")
def sample_glb(sample, tmp_path_factory):
    p = tmp_path_factory.mktemp("glb") / "sample.glb"
    save_glb(sample, p)
    return str(p)


def _corner(av, arr_name):
    a = getattr(av, arr_name)
    return a[av.uv_faces] if arr_name == "uvs" else a[av.faces]


def test_glb_round_trip_keeps_geometry_uvs_shapes_texture_and_track(sample, sample_glb):
    av = load_avatar(sample_glb)
    validate(av)
    # glTF splits vertices at UV seams, so compare per triangle corner
    assert av.num_faces == sample.num_faces
    assert np.array_equal(_corner(av, "vertices"), _corner(sample, "vertices"))
    assert np.abs(_corner(av, "uvs") - _corner(sample, "uvs")).max() < 1e-6
    assert av.blendshape_names == sample.blendshape_names
    assert np.abs(av.blendshapes[:, av.faces] - sample.blendshapes[:, sample.faces]).max() < 1e-7
    assert np.array_equal(av.texture_sets[0].image, sample.texture_sets[0].image)
    assert av.track.names == sample.track.names
    assert np.array_equal(av.track.frames, sample.track.frames)
    assert np.abs(av.track.weights - sample.track.weights).max() < 1e-6
    # only seam vertices were split
    assert sample.num_vertices < av.num_vertices < 1.1 * sample.num_vertices


def test_head_rotation_is_written_as_the_node_rotation_channel(sample, tmp_path):
    from shared.avatar import euler_xyz_matrix

    tr = sample.track
    deg = np.stack([np.linspace(-10, 20, len(tr.frames)), np.zeros(len(tr.frames)),
                    30 * np.sin(np.arange(len(tr.frames)) / 9.0)], -1)
    p = str(tmp_path / "turn.glb")
    save_glb(sample, p, rotation=deg)
    g = gl.GLTF2().load(p)
    anim = g.animations[0]
    rot = [c for c in anim.channels if c.target.path == "rotation"]
    assert len(rot) == 1 and rot[0].target.node == 0
    acc = g.accessors[anim.samplers[rot[0].sampler].output]
    view = g.bufferViews[acc.bufferView]
    q = np.frombuffer(g.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength], "<f4").reshape(-1, 4)
    assert len(q) == len(tr.frames) and np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert (np.sum(q[1:] * q[:-1], 1) > 0).all()                       # no sign flips between keys
    x, y, z, w = q.T.astype(np.float64)                                # quaternion -> matrix (glTF, Y-up)
    M = np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                  np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                  np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)
    C = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])                 # Blender Z-up -> glTF Y-up
    assert np.abs(np.einsum("ji,njk,kl->nil", C, M, C) - euler_xyz_matrix(deg)).max() < 1e-5
    back = load_avatar(p)                                              # the shape-key track still loads
    assert np.allclose(back.track.weights, tr.weights, atol=1e-6)
    with pytest.raises(InvalidAvatar, match="rotation"):
        save_glb(sample, str(tmp_path / "bad.glb"), rotation=deg[:3])
    assert not (tmp_path / "bad.glb").exists()


def test_glb_to_avatar_to_glb_is_stable(sample_glb, tmp_path):
    a = load_avatar(sample_glb)
    p = tmp_path / "again.glb"
    save_glb(a, p)
    b = load_avatar(p)
    assert content_hash(a) == content_hash(b)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.track.weights, b.track.weights)


def test_export_with_stylized_textures_and_external_pngs(sample, tmp_path):
    styl = np.zeros((64, 32, 3), np.uint8)
    styl[:, :, 2] = 200
    p = tmp_path / "styl.gltf.glb"
    save_glb(sample, p, textures=[styl], embed_textures=False, track=None)
    assert (tmp_path / "styl.gltf_0.png").exists()
    av = load_avatar(p)
    assert np.array_equal(av.texture_sets[0].image, styl)
    assert av.track is None
    os.remove(tmp_path / "styl.gltf_0.png")
    with pytest.raises(InvalidAvatar, match=r"styl\.gltf\.glb.*styl\.gltf_0\.png"):
        load_avatar(p)


# --------------------------------------------------------------------------- hand-made glTF
def _png(rgb, size=4):
    bio = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(bio, format="PNG")
    return bio.getvalue()


class _Builder:
    def __init__(self):
        self.blob = bytearray()
        self.views, self.accs = [], []

    def view(self, data):
        while len(self.blob) % 4:
            self.blob.append(0)
        self.views.append(gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data)))
        self.blob += data
        return len(self.views) - 1

    def acc(self, arr, typ, ct=5126, count=None):
        arr = np.ascontiguousarray(arr)
        v = self.view(arr.tobytes())
        a = gl.Accessor(bufferView=v, componentType=ct, count=count or len(arr), type=typ)
        if typ == "VEC3":
            a.min, a.max = arr.min(0).tolist(), arr.max(0).tolist()
        self.accs.append(a)
        return len(self.accs) - 1

    def save(self, path, **doc):
        d = gl.GLTF2(asset=gl.Asset(version="2.0"), accessors=self.accs, bufferViews=self.views,
                     buffers=[gl.Buffer(byteLength=len(self.blob))], **doc)
        d.set_binary_blob(bytes(self.blob))
        d.save_binary(str(path))
        return str(path)


QUAD = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
QUV = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)


def _multi_node_glb(path):
    b = _Builder()
    tri = np.array([[2, 0, 0], [3, 0, 0], [2, 1, 0], [3, 3, 3]], np.float32)   # last one unused
    p0 = gl.Primitive(attributes=gl.Attributes(POSITION=b.acc(QUAD, "VEC3"), TEXCOORD_0=b.acc(QUV, "VEC2")),
                      indices=b.acc(np.array([0, 1, 2, 0, 2, 3], np.uint16), "SCALAR", 5123), material=0)
    p1 = gl.Primitive(attributes=gl.Attributes(POSITION=b.acc(tri, "VEC3"), TEXCOORD_0=b.acc(QUV, "VEC2")),
                      indices=b.acc(np.array([0, 1, 2], np.uint32), "SCALAR", 5125), material=1)
    delta = np.zeros((4, 3), np.float32)
    delta[2] = (0, 0, 0.5)
    p2 = gl.Primitive(attributes=gl.Attributes(POSITION=b.acc(QUAD, "VEC3"), TEXCOORD_0=b.acc(QUV, "VEC2")),
                      indices=b.acc(np.array([0, 1, 3, 2], np.uint16), "SCALAR", 5123), mode=5,
                      material=0, targets=[{"POSITION": b.acc(delta, "VEC3")}])
    img = gl.Image(bufferView=b.view(_png((255, 0, 0))), mimeType="image/png")
    times = b.acc(np.array([0.0, 1.0], np.float32), "SCALAR")
    weights = b.acc(np.array([0.0, 1.0], np.float32), "SCALAR")
    anim = gl.Animation(samplers=[gl.AnimationSampler(input=times, output=weights)],
                        channels=[gl.AnimationChannel(sampler=0,
                                                      target=gl.AnimationChannelTarget(node=1, path="weights"))])
    return b.save(
        path, scene=0, scenes=[gl.Scene(nodes=[0])],
        nodes=[gl.Node(name="body", mesh=0, translation=[0, 0, -1], children=[1]),
               gl.Node(name="face", mesh=1, scale=[2, 2, 2])],
        meshes=[gl.Mesh(name="body", primitives=[p0, p1]),
                gl.Mesh(name="face", primitives=[p2], extras={"targetNames": ["smile"]})],
        materials=[gl.Material(name="tex", pbrMetallicRoughness=gl.PbrMetallicRoughness(
                       baseColorTexture=gl.TextureInfo(index=0))),
                   gl.Material(name="flat", pbrMetallicRoughness=gl.PbrMetallicRoughness(
                       baseColorFactor=[0.2, 0.4, 0.6, 1.0]))],
        textures=[gl.Texture(source=0)], images=[img], animations=[anim])


def _skinned_glb(path):
    """A quad skinned to one joint translated by (0,1,0); the mesh node's own
    translation (5,0,0) must be ignored (glTF spec), a morph target is skinned too."""
    b = _Builder()
    delta = np.zeros((4, 3), np.float32)
    delta[0] = (0, 0, 1)
    prim = gl.Primitive(
        attributes=gl.Attributes(POSITION=b.acc(QUAD, "VEC3"), TEXCOORD_0=b.acc(QUV, "VEC2"),
                                 JOINTS_0=b.acc(np.zeros((4, 4), np.uint8), "VEC4", 5121),
                                 WEIGHTS_0=b.acc(np.tile(np.float32([1, 0, 0, 0]), (4, 1)), "VEC4")),
        indices=b.acc(np.array([0, 1, 2, 0, 2, 3], np.uint16), "SCALAR", 5123),
        targets=[{"POSITION": b.acc(delta, "VEC3")}])
    return b.save(path, scene=0, scenes=[gl.Scene(nodes=[0, 1])],
                  nodes=[gl.Node(name="skinned", mesh=0, skin=0, translation=[5, 0, 0]),
                         gl.Node(name="bone", translation=[0, 1, 0])],
                  skins=[gl.Skin(joints=[1])],
                  meshes=[gl.Mesh(name="skinned", primitives=[prim], extras={"targetNames": ["lift"]})])


def test_skinned_mesh_is_loaded_in_its_rest_pose(tmp_path):
    av = load_avatar(_skinned_glb(tmp_path / "skinned.glb"))
    assert np.allclose(av.vertices, _zup(QUAD + [0, 1, 0]), atol=1e-6)
    assert np.allclose(av.blendshapes[0][0], [0, -1, 0], atol=1e-6)
    assert len(av.texture_sets) == 1 and av.texture_sets[0].name == "default"


def _zup(p):
    p = np.asarray(p, np.float64)
    return np.stack([p[:, 0], -p[:, 2], p[:, 1]], -1)


def test_multi_node_multi_primitive_glb_is_joined(tmp_path):
    av = load_avatar(_multi_node_glb(tmp_path / "multi.glb"))
    assert av.num_vertices == 4 + 3 + 4                       # the unused vertex is dropped
    t = np.array([0.0, 1.0, 0.0])                               # glTF (0,0,-1) in Blender space
    exp = np.concatenate([_zup(QUAD) + t, _zup([[2, 0, 0], [3, 0, 0], [2, 1, 0]]) + t, 2 * _zup(QUAD) + t])
    assert np.allclose(av.vertices, exp, atol=1e-6)
    # strip (0,1,3),(1,3,2) -> Blender's winding (0,1,3),(3,1,2)... and material per primitive
    assert av.num_faces == 2 + 1 + 2
    assert av.face_material.tolist() == [0, 0, 1, 0, 0]
    assert len(av.texture_sets) == 2
    assert (av.texture_sets[0].image == [255, 0, 0]).all()
    flat = av.texture_sets[1].image[0, 0].astype(int)
    assert av.texture_sets[1].base_color == pytest.approx((0.2, 0.4, 0.6))
    assert abs(flat[0] - 124) <= 1 and abs(flat[2] - 203) <= 1          # linear 0.2/0.6 -> sRGB
    assert av.blendshape_names == ["smile"]
    d = av.blendshapes[0]
    assert np.allclose(d[9], [0, -1.0, 0], atol=1e-6)                 # (0,0,0.5) glTF x scale 2
    assert np.abs(np.delete(d, 9, 0)).max() == 0
    # UVs flipped to Blender's bottom-left origin
    assert np.allclose(av.uvs[av.uv_faces[0]], [[0, 0], [1, 0], [1, 1]])
    assert av.track.names == ["smile"]
    assert av.track.frames.tolist() == list(range(25))
    assert np.allclose(av.track.weights[:, 0], np.arange(25) / 24, atol=1e-6)


def _write_gltf_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


def _min_doc(positions_b64, n, prim):
    return {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [prim]}],
            "buffers": [{"byteLength": n * 12, "uri": "data:application/octet-stream;base64," + positions_b64}],
            "bufferViews": [{"buffer": 0, "byteLength": n * 12}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3"}]}


def _b64(a):
    import base64
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()


def test_bad_glb_files_give_clear_errors(sample_glb, tmp_path):
    data = open(sample_glb, "rb").read()
    p = tmp_path / "truncated.glb"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidAvatar, match=r"truncated\.glb.*truncated"):
        load_avatar(p)
    p = tmp_path / "empty.glb"
    p.write_bytes(b"")
    with pytest.raises(InvalidAvatar, match=r"empty\.glb.*empty"):
        load_avatar(p)
    p = tmp_path / "garbage.gltf"
    p.write_bytes(b"\x00\x01 this is not json")
    with pytest.raises(InvalidAvatar, match=r"garbage\.gltf.*not a readable glTF"):
        load_avatar(p)
    with pytest.raises(InvalidAvatar, match=r"missing\.glb.*cannot read"):
        load_avatar(tmp_path / "missing.glb")
    with pytest.raises(InvalidAvatar, match=r"avatar\.fbx.*unsupported avatar format"):
        load_avatar(tmp_path / "avatar.fbx")
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    p = _write_gltf_json(tmp_path / "nouv.gltf", _min_doc(_b64(tri), 3, {"attributes": {"POSITION": 0}}))
    with pytest.raises(InvalidAvatar, match=r"nouv\.gltf.*no UV coordinates"):
        load_avatar(p)
    p = _write_gltf_json(tmp_path / "lines.gltf", _min_doc(_b64(tri), 3, {"attributes": {"POSITION": 0}, "mode": 1}))
    with pytest.raises(InvalidAvatar, match=r"lines\.gltf.*mode LINES"):
        load_avatar(p)
    doc = _min_doc(_b64(tri), 3, {"attributes": {"POSITION": 0}})
    doc["accessors"][0]["count"] = MAX_ELEMENTS + 1
    p = _write_gltf_json(tmp_path / "huge.gltf", doc)
    with pytest.raises(TooLarge, match=r"huge\.gltf.*claims"):
        load_avatar(p)
    doc = _min_doc(_b64(tri), 3, {"attributes": {"POSITION": 0}})
    doc["accessors"][0]["count"] = 999                 # more than the buffer holds
    p = _write_gltf_json(tmp_path / "short.gltf", doc)
    with pytest.raises(InvalidAvatar, match=r"short\.gltf.*beyond its bufferView"):
        load_avatar(p)
    nomesh = {"asset": {"version": "2.0"}, "scenes": [{"nodes": [0]}], "nodes": [{"name": "empty"}]}
    p = _write_gltf_json(tmp_path / "nomesh.gltf", nomesh)
    with pytest.raises(InvalidAvatar, match=r"nomesh\.gltf.*no mesh"):
        load_avatar(p)
    # limits from the server are applied with the file named
    with pytest.raises(TooLarge, match=r"sample\.glb"):
        load_avatar(sample_glb, limits={"max_vertices": 1000})


# --------------------------------------------------------------------------- OBJ
OBJ = """mtllib head.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 2 0 0
v 2 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vt 0.5 0.5
usemtl skin
f 1/1 2/2 3/3 4/4
usemtl cloth
f 2/5 5/2 6/3
f 2/5 6/3 3/4
"""
MTL = """newmtl skin
Kd 1 1 1
map_Kd skin.png
newmtl cloth
Kd 0.2 0.4 0.6
"""


def test_obj_with_mtl_loads_as_static_avatar(tmp_path):
    (tmp_path / "head.obj").write_text(OBJ)
    (tmp_path / "head.mtl").write_text(MTL)
    Image.fromarray(np.full((8, 8, 3), (10, 200, 30), np.uint8)).save(tmp_path / "skin.png")
    av = load_avatar(tmp_path / "head.obj")
    validate(av)
    # vertex 2 and 3 are shared by both materials with different UVs: welded back
    assert av.num_vertices == 6
    assert av.num_faces == 4
    # OBJ Y-up -> Blender Z-up like Blender's OBJ importer
    assert np.allclose(np.sort(av.vertices[:, 2]), [0, 0, 0, 1, 1, 1])
    assert np.allclose(av.vertices[:, 1], 0)
    assert len(av.texture_sets) == 2
    imgs = {tuple(ts.image[0, 0]) for ts in av.texture_sets}
    assert (10, 200, 30) in imgs
    assert len(av.blendshape_names) == 0 and av.track is None
    fm = av.face_material
    assert sorted(np.bincount(fm).tolist()) == [2, 2]


def test_obj_without_uvs_or_faces_is_rejected(tmp_path):
    p = tmp_path / "nouv.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InvalidAvatar, match=r"nouv\.obj.*no UV"):
        load_avatar(p)
    p = tmp_path / "points.obj"
    p.write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(InvalidAvatar, match=r"points\.obj"):
        load_avatar(p)


# --------------------------------------------------------------------------- CLI
def _cli(argv):
    import argparse

    from backend.avatar import cli

    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers())
    args = p.parse_args(["sample-avatar"] + argv)
    return args.func(args)


def test_cli_sample_avatar_writes_the_parameterised_glb(tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"hairstyle": "long", "glasses": "round", "nose_length": 0.5}))
    out = tmp_path / "a.glb"
    assert _cli(["--out", str(out), "--params", str(params), "--texture-size", "256"]) == 0
    from backend.avatar import AvatarParams
    ref = sample_avatar(AvatarParams(hairstyle="long", glasses="round", nose_length=0.5), texture_size=256)
    av = load_avatar(out)
    assert np.array_equal(_corner(av, "vertices"), _corner(ref, "vertices"))
    assert av.texture_sets[0].image.shape == (256, 256, 3)
    assert len(av.track.frames) == 72
    params.write_text(json.dumps({"glasses": "monocle"}))
    assert _cli(["--out", str(tmp_path / "b.glb"), "--params", str(params)]) == 2
    assert "glasses" in capsys.readouterr().err and not (tmp_path / "b.glb").exists()


def test_gltf_with_external_bin_loads_like_the_glb(sample_glb, tmp_path):
    from pathlib import Path

    doc = gl.GLTF2().load(sample_glb)
    doc._path = Path(tmp_path)                             # pygltflib writes 0.bin there
    doc.convert_buffers(gl.BufferFormat.BINFILE)
    out = tmp_path / "sample.gltf"
    doc.save(str(out))
    assert any(p.suffix == ".bin" for p in tmp_path.iterdir())
    assert content_hash(load_avatar(out)) == content_hash(load_avatar(sample_glb))
    for p in tmp_path.iterdir():
        if p.suffix == ".bin":
            p.write_bytes(p.read_bytes()[:1000])        # truncate the external buffer
    with pytest.raises(InvalidAvatar, match=r"sample\.gltf.*truncated"):
        load_avatar(out)


def test_corrupted_glb_bytes_only_raise_typed_errors(tmp_path):
    """Random byte damage (and truncation) of a valid GLB: every outcome is a
    loaded avatar or InvalidAvatar/TooLarge naming the file, never a crash."""
    import warnings

    from shared.errors import MetamorphError

    data = bytearray(open(_multi_node_glb(tmp_path / "ok.glb"), "rb").read())
    rng = np.random.default_rng(1)
    p = tmp_path / "bad.glb"
    outcomes = {"loaded": 0, "error": 0}
    for _ in range(150):
        d = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            d[int(rng.integers(0, len(d)))] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            d = d[: int(rng.integers(0, len(d)))]
        p.write_bytes(bytes(d))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_avatar(p)
                outcomes["loaded"] += 1
            except MetamorphError as e:
                assert "bad.glb" in e.message
                outcomes["error"] += 1
    assert outcomes["error"] > 20
