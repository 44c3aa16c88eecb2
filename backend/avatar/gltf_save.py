"""AvatarData -> GLB (pygltflib): the file Blender's glTF importer opens with shape keys and keyframes.

One mesh (one primitive per texture set), PNG base-colour textures (embedded or
beside the file), named morph targets with normals, and the expression track as
a LINEAR weights animation keyed on every frame. Loading the file back
(:func:`backend.avatar.gltf_load.load_glb`) gives the same content hash.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pygltflib as gl
from PIL import Image

from shared.avatar import AvatarData, ExpressionTrack, euler_xyz_matrix, zup_rotation_to_yup_quaternion, zup_to_yup
from shared.errors import InvalidAvatar

from .gltf_load import DEFAULT_FPS


def _vertex_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v, dtype=np.float64)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(ln > 0, n / np.maximum(ln, 1e-30), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


def _png(img: np.ndarray) -> bytes:
    bio = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, np.uint8), "RGB").save(bio, format="PNG", compress_level=6)
    return bio.getvalue()


def save_glb(avatar: AvatarData, path, *, textures: list[np.ndarray] | None = None,
             embed_textures: bool = True, track: ExpressionTrack | None | bool = True,
             fps: float | None = None, rotation: np.ndarray | None = None) -> str:
    """Write ``avatar`` as a GLB file that Blender and other glTF viewers open.

    textures: optional replacement images, one ``[H,W,3]`` uint8 sRGB per texture
      set (e.g. stylized textures); default the avatar's own.
    embed_textures: PNGs inside the GLB (default) or written beside it as
      ``<stem>_<i>.png``.
    track: True = the avatar's track, None/False = no animation, or another track.
    rotation: optional ``[N,3]`` Blender XYZ Euler degrees of the avatar object at each of the
      track's N frames (a captured head turn): written as the node's rotation channel in the
      same animation, so importers key the object's rotation beside its shape keys.
    Returns the path written.
    """
    path = str(path)
    imgs = textures if textures is not None else [t.image for t in avatar.texture_sets]
    if len(imgs) != len(avatar.texture_sets):
        raise InvalidAvatar(f"save_glb: {len(imgs)} textures given for {len(avatar.texture_sets)} texture sets.")
    trk = avatar.track if track is True else (track or None)
    blob = bytearray()
    views, accessors = [], []

    def add_view(data: bytes, target=None) -> int:
        while len(blob) % 4:
            blob.append(0)
        views.append(gl.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        return len(views) - 1

    def add_acc(arr: np.ndarray, typ: str, target=None, minmax=False, name=None) -> int:
        arr = np.ascontiguousarray(arr)
        ct = {np.dtype(np.float32): 5126, np.dtype(np.uint32): 5125}[arr.dtype]
        vi = add_view(arr.astype(arr.dtype.newbyteorder("<")).tobytes(), target)
        a = gl.Accessor(bufferView=vi, componentType=ct, count=int(arr.shape[0]), type=typ, name=name)
        if minmax:
            a.min = arr.reshape(len(arr), -1).min(0).astype(float).tolist()
            a.max = arr.reshape(len(arr), -1).max(0).astype(float).tolist()
        accessors.append(a)
        return len(accessors) - 1

    V = avatar.vertices
    normals = _vertex_normals(V.astype(np.float64), avatar.faces)
    K = len(avatar.blendshape_names)
    stem = os.path.splitext(os.path.basename(path))[0]
    images, textures_gl, samplers, materials, prims = [], [], [gl.Sampler(magFilter=9729, minFilter=9987)], [], []
    for i, ts in enumerate(avatar.texture_sets):
        data = _png(imgs[i])
        if embed_textures:
            images.append(gl.Image(bufferView=add_view(data), mimeType="image/png", name=ts.name))
        else:
            fn = f"{stem}_{i}.png"
            _write_atomic(os.path.join(os.path.dirname(os.path.abspath(path)), fn), data)
            images.append(gl.Image(uri=fn, name=ts.name))
        textures_gl.append(gl.Texture(sampler=0, source=i))
        materials.append(gl.Material(
            name=ts.name, doubleSided=True,   # single-sided shells (hair, lids) must not vanish
            pbrMetallicRoughness=gl.PbrMetallicRoughness(
                baseColorTexture=gl.TextureInfo(index=i), metallicFactor=0.0, roughnessFactor=0.6)))
        sel = np.nonzero(avatar.face_material == i)[0]
        if len(sel) == 0:
            continue
        fv = avatar.faces[sel].reshape(-1).astype(np.int64)
        ft = avatar.uv_faces[sel].reshape(-1).astype(np.int64)
        # one glTF vertex per (vertex, uv) pair, ordered by vertex then uv so a
        # re-export of a loaded file keeps the vertex order
        key = fv * len(avatar.uvs) + ft
        ukey, inv = np.unique(key, return_inverse=True)
        gv, gt = ukey // len(avatar.uvs), ukey % len(avatar.uvs)
        pos = zup_to_yup(V[gv])
        uv = avatar.uvs[gt].astype(np.float32).copy()
        uv[:, 1] = np.float32(1) - uv[:, 1]
        attrs = gl.Attributes(POSITION=add_acc(pos, "VEC3", 34962, minmax=True),
                              NORMAL=add_acc(zup_to_yup(normals[gv]), "VEC3", 34962),
                              TEXCOORD_0=add_acc(uv, "VEC2", 34962))
        targets = []
        for k, name in enumerate(avatar.blendshape_names):
            d = zup_to_yup(avatar.blendshapes[k][gv])
            targets.append({"POSITION": add_acc(d, "VEC3", 34962, minmax=True, name=name)})
        idx = add_acc(inv.astype(np.uint32), "SCALAR", 34963)
        prims.append(gl.Primitive(attributes=attrs, indices=idx, material=i, mode=4,
                                  targets=targets or None))
    mesh = gl.Mesh(name=avatar.name, primitives=prims,
                   weights=[0.0] * K if K else None,
                   extras={"targetNames": list(avatar.blendshape_names)} if K else {})
    node = gl.Node(name=avatar.name, mesh=0)
    animations = []
    if trk is not None and K and len(trk.frames):
        rate = float(fps or trk.fps or DEFAULT_FPS)
        times = (np.asarray(trk.frames, np.float64) / rate).astype(np.float32)
        W = np.zeros((len(times), K), np.float32)
        for j, n in enumerate(trk.names):
            if n in avatar.blendshape_names:
                W[:, avatar.blendshape_names.index(n)] = trk.weights[:, j]
        ti = add_acc(times, "SCALAR", minmax=True)
        wi = add_acc(W.reshape(-1), "SCALAR")
        samplers = [gl.AnimationSampler(input=ti, output=wi, interpolation="LINEAR")]
        channels = [gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))]
        if rotation is not None:
            rot = np.asarray(rotation, np.float64)
            if rot.shape != (len(times), 3) or not np.isfinite(rot).all():
                raise InvalidAvatar(f"save_glb: rotation must be finite [{len(times)},3] Euler degrees (one row "
                                    f"per track frame), got {list(rot.shape)}.")
            qi = add_acc(zup_rotation_to_yup_quaternion(euler_xyz_matrix(rot)), "VEC4")
            samplers.append(gl.AnimationSampler(input=ti, output=qi, interpolation="LINEAR"))
            channels.append(gl.AnimationChannel(sampler=1, target=gl.AnimationChannelTarget(node=0, path="rotation")))
        animations.append(gl.Animation(name="expressions", extras={"fps": rate}, samplers=samplers,
                                       channels=channels))
    doc = gl.GLTF2(asset=gl.Asset(version="2.0", generator="metamorph"), scene=0,
                   scenes=[gl.Scene(nodes=[0])], nodes=[node], meshes=[mesh], materials=materials,
                   textures=textures_gl, images=images, samplers=samplers, accessors=accessors,
                   bufferViews=views, buffers=[gl.Buffer(byteLength=len(blob))], animations=animations)
    doc.set_binary_blob(bytes(blob))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    _write_atomic(path, b"".join(doc.save_to_bytes()))
    return path


def _write_atomic(path: str, data: bytes) -> None:
    """Write beside the target and rename, so a failure never leaves a half-written file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
