"""glTF 2.0 / GLB import and GLB export of :class:`shared.avatar.AvatarData` (pygltflib).

Loading reproduces what Blender's own glTF importer (io_scene_gltf2, Blender
5.0) builds, so an avatar loaded here and the same file imported into
Blender and extracted by ``blender_addon.scene_io`` are identical (same
content hash):

- per primitive, the vertices its triangles use, in ascending glTF index
  order (Blender's ``np.unique(indices)``), primitives and mesh nodes
  concatenated in scene traversal order; glTF vertices are never merged;
- positions converted Y-up -> Z-up as (x, -z, y), then the node's world
  matrix applied (in float64, rounded to float32);
- morph target deltas added to the base in float32 *before* conversion and
  subtracted again afterwards, because Blender stores absolute shape-key
  positions and extraction reads ``key - basis``;
- UVs flipped as ``v = -v + 1`` in float32;
- shape-key names from ``mesh.extras.targetNames`` (else the accessor name,
  else ``target_<k>``), targets without POSITION skipped;
- animation times x fps (fps from the animation's extras, default 24),
  sampled at whole frames between the first and last key.

Export writes one mesh (one primitive per texture set), PNG base-colour
textures (embedded or beside the file), named morph targets with normals,
and the expression track as a LINEAR weights animation keyed on every frame.
"""

from __future__ import annotations

import base64
import io
import os
import struct

import numpy as np
from PIL import Image

from shared.avatar import AvatarData, ExpressionTrack, TextureSet, flat_image, index_corner_uvs
from shared.errors import InvalidAvatar, TooLarge

# A sanity cap, well above any avatar; larger counts mean a corrupt file.
MAX_ELEMENTS = 50_000_000
DEFAULT_FPS = 24.0

_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_MODE_NAMES = {0: "POINTS", 1: "LINES", 2: "LINE_LOOP", 3: "LINE_STRIP", 4: "TRIANGLES",
               5: "TRIANGLE_STRIP", 6: "TRIANGLE_FAN"}


class _File:
    """A parsed glTF document plus its buffers, for error messages naming the file."""

    def __init__(self, path):
        import pygltflib

        self.path = str(path)
        self.dir = os.path.dirname(os.path.abspath(self.path))
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            raise InvalidAvatar(f"{self.path}: cannot read the file ({e.strerror}).") from e
        if size == 0:
            raise InvalidAvatar(f"{self.path}: the file is empty.")
        try:
            with open(self.path, "rb") as f:
                magic = f.read(4)
            if magic == b"glTF":
                self._check_glb_header()
                self.g = pygltflib.GLTF2().load_binary(self.path)
            else:
                self.g = pygltflib.GLTF2().load_json(self.path)
        except InvalidAvatar:
            raise
        except Exception as e:  # pygltflib raises assorted errors on broken files
            raise InvalidAvatar(f"{self.path}: not a readable glTF/GLB file ({type(e).__name__}: {e}).") from e
        if self.g is None:
            raise InvalidAvatar(f"{self.path}: not a readable glTF/GLB file.")
        self._buffers = {}

    def _check_glb_header(self):
        with open(self.path, "rb") as f:
            data = f.read()
        if len(data) < 20:
            raise InvalidAvatar(f"{self.path}: truncated GLB (only {len(data)} bytes).")
        _, version, length = struct.unpack_from("<4sII", data, 0)
        if version != 2:
            raise InvalidAvatar(f"{self.path}: GLB version {version}; only glTF 2.0 is supported.")
        if length > len(data):
            raise InvalidAvatar(f"{self.path}: truncated GLB: the header announces {length} bytes, "
                                f"the file has {len(data)}.")

    def err(self, msg) -> InvalidAvatar:
        return InvalidAvatar(f"{self.path}: {msg}")

    def buffer(self, i: int) -> bytes:
        if i in self._buffers:
            return self._buffers[i]
        bufs = self.g.buffers or []
        if i >= len(bufs):
            raise self.err(f"buffer {i} does not exist.")
        b = bufs[i]
        if b.uri is None:
            data = self.g.binary_blob()
            if data is None:
                raise self.err("the GLB binary chunk is missing.")
        elif b.uri.startswith("data:"):
            data = base64.b64decode(b.uri.split(",", 1)[1])
        else:
            p = os.path.join(self.dir, _unquote(b.uri))
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise self.err(f"external buffer '{b.uri}' cannot be read ({e.strerror}).") from e
        if len(data) < (b.byteLength or 0):
            raise self.err(f"buffer {i} is truncated: {len(data)} of {b.byteLength} bytes present.")
        self._buffers[i] = data
        return data

    def view_bytes(self, vi: int) -> tuple[bytes, int, int, int | None]:
        views = self.g.bufferViews or []
        if vi >= len(views):
            raise self.err(f"bufferView {vi} does not exist.")
        v = views[vi]
        data = self.buffer(v.buffer)
        off = v.byteOffset or 0
        if off + v.byteLength > len(data):
            raise self.err(f"bufferView {vi} reaches past the end of its buffer (truncated file?).")
        return data, off, v.byteLength, v.byteStride

    def accessor(self, ai: int) -> np.ndarray:
        """Decode accessor ``ai`` to [count, ncomp] in its component dtype (sparse applied;
        normalized integers mapped to float32 as the glTF spec says)."""
        accs = self.g.accessors or []
        if ai is None or ai >= len(accs):
            raise self.err(f"accessor {ai} does not exist.")
        a = accs[ai]
        if a.componentType not in _COMPONENT or a.type not in _NCOMP:
            raise self.err(f"accessor {ai} has an unsupported type {a.type}/{a.componentType}.")
        if a.count > MAX_ELEMENTS:
            raise TooLarge(f"{self.path}: accessor {ai} claims {a.count} elements, more than the "
                           f"limit of {MAX_ELEMENTS}; the file is corrupt or far too large.")
        dt = np.dtype(_COMPONENT[a.componentType]).newbyteorder("<")
        nc = _NCOMP[a.type]
        if a.bufferView is None:
            out = np.zeros((a.count, nc), dt)
        else:
            data, off, length, stride = self.view_bytes(a.bufferView)
            off += a.byteOffset or 0
            elem = dt.itemsize * nc
            stride = stride or elem
            need = stride * (a.count - 1) + elem if a.count else 0
            if off + need > len(data) or (a.byteOffset or 0) + need > length:
                raise self.err(f"accessor {ai} needs {need} bytes beyond its bufferView (truncated file?).")
            if stride == elem:
                out = np.frombuffer(data, dt, a.count * nc, off).reshape(a.count, nc).copy()
            else:
                raw = np.frombuffer(data, np.uint8, need, off)
                rows = np.lib.stride_tricks.as_strided(raw, (a.count, elem), (stride, 1))
                out = np.ascontiguousarray(rows).view(dt).reshape(a.count, nc).copy()
        sp = a.sparse
        if sp is not None and sp.count:
            idx_dt = np.dtype(_COMPONENT[sp.indices.componentType]).newbyteorder("<")
            d, o, _, _ = self.view_bytes(sp.indices.bufferView)
            idx = np.frombuffer(d, idx_dt, sp.count, o + (sp.indices.byteOffset or 0))
            d, o, _, _ = self.view_bytes(sp.values.bufferView)
            vals = np.frombuffer(d, dt, sp.count * nc, o + (sp.values.byteOffset or 0)).reshape(sp.count, nc)
            if idx.max(initial=0) >= a.count:
                raise self.err(f"sparse accessor {ai} indexes past its {a.count} elements.")
            out[idx.astype(np.int64)] = vals
        if a.normalized and dt.kind in "iu":
            info = np.iinfo(dt)
            out = np.maximum(out.astype(np.float32) / np.float32(info.max), np.float32(-1.0))
        return out


def _unquote(uri: str) -> str:
    from urllib.parse import unquote
    return unquote(uri)


def _node_local(node) -> np.ndarray:
    """A node's local matrix in glTF space, float64 [4,4] (column vectors)."""
    if node.matrix is not None and len(node.matrix) == 16:
        return np.asarray(node.matrix, np.float64).reshape(4, 4).T
    t = np.asarray(node.translation if node.translation is not None else [0, 0, 0], np.float64)
    q = np.asarray(node.rotation if node.rotation is not None else [0, 0, 0, 1], np.float64)
    s = np.asarray(node.scale if node.scale is not None else [1, 1, 1], np.float64)
    x, y, z, w = q / (np.linalg.norm(q) or 1.0)
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    M = np.eye(4)
    M[:3, :3] = R * s[None, :]
    M[:3, 3] = t
    return M


# Y-up glTF -> Z-up Blender: (x, y, z) -> (x, -z, y)
_YUP_TO_ZUP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)


def _to_blender(locs: np.ndarray) -> np.ndarray:
    """In-place-equivalent of the importer's convert_locs_batch on float32 [N,3]."""
    out = locs[:, [0, 2, 1]].astype(np.float32, copy=True)
    out[:, 1] *= -1
    return out


def _apply(M: np.ndarray, p32: np.ndarray) -> np.ndarray:
    """float32 points through a float64 affine matrix, rounded to float32."""
    if np.array_equal(M, np.eye(4)):
        return p32.copy()
    return (p32.astype(np.float64) @ M[:3, :3].T + M[:3, 3]).astype(np.float32)


def _mesh_nodes(f: _File):
    """(node index, world matrix in Blender space) for every mesh node, in scene order."""
    g = f.g
    nodes = g.nodes or []
    if g.scenes:
        si = g.scene if g.scene is not None else 0
        if si >= len(g.scenes):
            raise f.err(f"scene {si} does not exist.")
        roots = list(g.scenes[si].nodes or [])
    else:
        children = {c for n in nodes for c in (n.children or [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    out = []
    seen = set()
    f.node_world = {}

    def walk(i, parent):
        if i in seen or i >= len(nodes):
            raise f.err(f"node {i} is missing or part of a cycle.")
        seen.add(i)
        n = nodes[i]
        M = parent @ _node_local(n)
        f.node_world[i] = M
        if n.mesh is not None:
            # the same transform expressed in Blender's Z-up space
            out.append((i, _YUP_TO_ZUP @ M @ np.linalg.inv(_YUP_TO_ZUP)))
        for c in n.children or []:
            walk(c, M)

    for r in roots:
        walk(r, np.eye(4))
    return out


def _target_names(f: _File, mesh) -> list[str | None]:
    """Blender's shape-key names for a mesh's morph targets (None = not created)."""
    names, used = [], {"Basis"}
    prims = mesh.primitives or []
    first = next((p for p in prims if p.targets), None)
    if first is None:
        return []
    extras = mesh.extras if isinstance(mesh.extras, dict) else {}
    tn = extras.get("targetNames") if isinstance(extras, dict) else None
    for k in range(len(first.targets)):
        if not any(p.targets and k < len(p.targets) and _tget(p.targets[k], "POSITION") is not None for p in prims):
            names.append(None)
            continue
        name = None
        try:
            name = str(tn[k]) or None
        except Exception:
            pass
        if name is None:
            try:
                name = f.g.accessors[_tget(prims[0].targets[k], "POSITION")].name
            except Exception:
                name = None
        if name is None:
            name = f"target_{k}"
        if name in used:
            i = 1
            while f"{name}.{i:03d}" in used:
                i += 1
            name = f"{name}.{i:03d}"
        used.add(name)
        names.append(name)
    return names


def _tget(target, key):
    if isinstance(target, dict):
        return target.get(key)
    return getattr(target, key, None)


def _triangles(f: _File, mode: int, idx: np.ndarray, where: str) -> np.ndarray:
    if mode == 4:
        if len(idx) % 3:
            raise f.err(f"{where}: {len(idx)} triangle indices is not a multiple of 3.")
        return idx
    if mode == 5:
        if len(idx) < 3:
            return idx[:0]
        t = np.empty((len(idx) - 2) * 3, idx.dtype)
        first, second, third = idx[:-2], idx[1:-1], idx[2:]
        t[0::3] = first
        t[1::6], t[2::6] = second[0::2], third[0::2]
        t[4::6], t[5::6] = third[1::2], second[1::2]
        return t
    if mode == 6:
        if len(idx) < 3:
            return idx[:0]
        t = np.empty((len(idx) - 2) * 3, idx.dtype)
        t[0::3] = idx[0]
        t[1::3], t[2::3] = idx[1:-1], idx[2:]
        return t
    raise f.err(f"{where} uses primitive mode {_MODE_NAMES.get(mode, mode)}; only triangle meshes "
                f"(TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN) can be avatars.")


def _image(f: _File, tex_index: int) -> np.ndarray | None:
    g = f.g
    if tex_index is None or not g.textures or tex_index >= len(g.textures):
        return None
    src = g.textures[tex_index].source
    if src is None or not g.images or src >= len(g.images):
        return None
    im = g.images[src]
    try:
        if im.bufferView is not None:
            d, o, n, _ = f.view_bytes(im.bufferView)
            raw = d[o:o + n]
            label = f"embedded image {src}"
        elif im.uri and im.uri.startswith("data:"):
            raw = base64.b64decode(im.uri.split(",", 1)[1])
            label = f"data-URI image {src}"
        elif im.uri:
            label = f"texture file '{im.uri}'"
            with open(os.path.join(f.dir, _unquote(im.uri)), "rb") as fh:
                raw = fh.read()
        else:
            return None
        pil = Image.open(io.BytesIO(raw))
        pil.load()
    except InvalidAvatar:
        raise
    except OSError as e:
        raise f.err(f"{label} cannot be read or decoded ({e}).") from e
    if pil.mode in ("I;16", "I;16B", "I"):
        arr = np.asarray(pil, np.float64)
        arr = np.round(arr / (65535.0 if arr.max() > 255 else 255.0) * 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, -1)
    return np.asarray(pil.convert("RGB"), np.uint8).copy()


def load_glb(path, *, fps: float | None = None, limits: dict | None = None) -> AvatarData:
    """Load a .glb or .gltf file as one avatar (all mesh nodes of the default scene joined).

    fps: frames per second for the animation (default: the animation's extras
    ``fps``, else 24, like a default Blender scene). Raises InvalidAvatar /
    TooLarge naming the file and the problem.
    """
    try:
        return _load_glb(path, fps, limits)
    except (InvalidAvatar, TooLarge):
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError,
            struct.error, MemoryError) as e:
        # a corrupt document that slipped past the specific checks: still name the file
        raise InvalidAvatar(f"{path}: malformed glTF data ({type(e).__name__}: {e}).") from e


def _load_glb(path, fps, limits) -> AvatarData:
    f = _File(path)
    g = f.g
    limits = limits or {}
    mesh_nodes = _mesh_nodes(f)
    if not mesh_nodes:
        raise f.err("the file contains no mesh.")
    P, F, CUV, FM = [], [], [], []
    bs_parts: list[tuple[int, int, dict[str, np.ndarray]]] = []
    materials: list[object] = []         # glTF material index or None, in first-use order
    names_all: list[str] = []
    nv = 0
    node_of_mesh = {}
    for ni, M in mesh_nodes:
        node = g.nodes[ni]
        if node.mesh >= len(g.meshes or []):
            raise f.err(f"node {ni} refers to mesh {node.mesh}, which does not exist.")
        mesh = g.meshes[node.mesh]
        node_of_mesh.setdefault(node.mesh, ni)
        tnames = _target_names(f, mesh)
        for n in tnames:
            if n is not None and n not in names_all:
                names_all.append(n)
        for pi, prim in enumerate(mesh.primitives or []):
            where = f"primitive {pi} of mesh '{mesh.name or node.mesh}'"
            attrs = prim.attributes
            pos_i = getattr(attrs, "POSITION", None)
            if pos_i is None:
                continue
            exts = prim.extensions or {}
            if "KHR_draco_mesh_compression" in exts or "EXT_meshopt_compression" in (f.g.extensionsRequired or []):
                raise f.err(f"{where} is Draco/meshopt-compressed, which the backend cannot read; "
                            f"re-export the file without mesh compression.")
            mode = 4 if prim.mode is None else prim.mode
            if prim.indices is not None:
                idx = f.accessor(prim.indices).reshape(-1).astype(np.int64)
            else:
                idx = np.arange(g.accessors[pos_i].count, dtype=np.int64)
            tri = _triangles(f, mode, idx, where)
            if len(tri) == 0:
                continue
            pos = f.accessor(pos_i).astype(np.float32)
            if pos.shape[1] != 3:
                raise f.err(f"{where}: POSITION must be VEC3.")
            if tri.max() >= len(pos) or tri.min() < 0:
                raise f.err(f"{where}: triangle indices reach {int(tri.max())} but there are only "
                            f"{len(pos)} vertices.")
            uv_i = getattr(attrs, "TEXCOORD_0", None)
            if uv_i is None:
                raise f.err(f"{where} has no UV coordinates (TEXCOORD_0); unwrap the mesh before "
                            f"exporting it.")
            uv = f.accessor(uv_i).astype(np.float32)
            if uv.shape[1] != 2 or len(uv) != len(pos):
                raise f.err(f"{where}: TEXCOORD_0 must be VEC2 with one entry per vertex.")
            uniq, inv = np.unique(tri, return_inverse=True)
            nv_new = nv + len(uniq)
            if "max_vertices" in limits and nv_new > limits["max_vertices"]:
                raise TooLarge(f"{f.path}: more than {limits['max_vertices']} vertices.")
            base = pos[uniq]
            skin = _skinning(f, node, attrs, uniq, where)
            Mv = np.eye(4) if skin is not None else M      # a skinned mesh ignores its node transform
            v_bl = _apply(Mv, _to_blender(_skin(skin, base)))
            P.append(v_bl)
            F.append(inv.reshape(-1, 3).astype(np.int64) + nv)
            cuv = uv[tri].copy()
            cuv[:, 1] *= -1
            cuv[:, 1] += 1
            CUV.append(cuv)
            mat_key = prim.material
            if mat_key not in materials:
                materials.append(mat_key)
            FM.append(np.full(len(tri) // 3, materials.index(mat_key), np.int32))
            deltas = {}
            for k, name in enumerate(tnames):
                if name is None:
                    continue
                ti = _tget(prim.targets[k], "POSITION") if prim.targets and k < len(prim.targets) else None
                if ti is None:
                    d = np.zeros_like(base)
                else:
                    d = f.accessor(ti).astype(np.float32)
                    if d.shape != pos.shape:
                        raise f.err(f"{where}: morph target '{name}' has {len(d)} entries for "
                                    f"{len(pos)} vertices.")
                    d = d[uniq]
                absolute = d + base                                   # float32, as Blender does
                k_bl = _apply(Mv, _to_blender(_skin(skin, absolute)))
                deltas[name] = k_bl - v_bl
            bs_parts.append((nv, nv_new, deltas))
            nv = nv_new
    if not P:
        raise f.err("the file contains no triangles.")
    vertices = np.concatenate(P)
    faces = np.concatenate(F)
    uvs, uv_faces = index_corner_uvs(np.concatenate(CUV))
    blend = np.zeros((len(names_all), len(vertices), 3), np.float32)
    for a, b, deltas in bs_parts:
        for name, d in deltas.items():
            blend[names_all.index(name), a:b] = d
    sets = [_texture_set(f, m) for m in materials]
    track = _load_track(f, names_all, node_of_mesh, fps)
    av = AvatarData(vertices=vertices, faces=faces, uvs=uvs, uv_faces=uv_faces,
                    face_material=np.concatenate(FM), texture_sets=sets, blendshape_names=names_all,
                    blendshapes=blend, track=track,
                    name=os.path.splitext(os.path.basename(f.path))[0])
    return av


def _skinning(f: _File, node, attrs, uniq, where) -> np.ndarray | None:
    """Per-vertex bind-pose skinning matrices [n,4,4] (glTF space) for a skinned
    primitive, or None. Like Blender's importer (skin_into_bind_pose), vertices are
    put into the skeleton's rest pose: sum_j w_j * world(joint_j) @ inverseBind_j."""
    g = f.g
    if node.skin is None or getattr(attrs, "JOINTS_0", None) is None or getattr(attrs, "WEIGHTS_0", None) is None:
        return None
    if node.skin >= len(g.skins or []):
        raise f.err(f"{where}: skin {node.skin} does not exist.")
    sk = g.skins[node.skin]
    nj = len(sk.joints)
    if sk.inverseBindMatrices is not None:
        ibm = f.accessor(sk.inverseBindMatrices).astype(np.float64).reshape(-1, 4, 4).transpose(0, 2, 1)
        if len(ibm) != nj:
            raise f.err(f"{where}: skin {node.skin} has {len(ibm)} inverse bind matrices for {nj} joints.")
    else:
        ibm = np.broadcast_to(np.eye(4), (nj, 4, 4))
    for j in sk.joints:
        if j not in f.node_world:
            raise f.err(f"{where}: joint node {j} of skin {node.skin} is not in the scene.")
    jm = np.stack([f.node_world[j] for j in sk.joints]) @ ibm
    S = np.zeros((len(uniq), 4, 4))
    wsum = np.zeros(len(uniq))
    k = 0
    while getattr(attrs, f"JOINTS_{k}", None) is not None and getattr(attrs, f"WEIGHTS_{k}", None) is not None:
        js = f.accessor(getattr(attrs, f"JOINTS_{k}")).astype(np.int64)[uniq]
        ws = f.accessor(getattr(attrs, f"WEIGHTS_{k}")).astype(np.float64)[uniq]
        if js.max(initial=0) >= nj:
            raise f.err(f"{where}: JOINTS_{k} refers to joint {int(js.max())} of a {nj}-joint skin.")
        for c in range(4):
            S += ws[:, c, None, None] * jm[js[:, c]]
            wsum += ws[:, c]
        k += 1
    zero = wsum == 0
    if zero.any():                      # invalid files: Blender gives such vertices to joint 0
        S[zero] = jm[0]
        wsum[zero] = 1.0
    return S / wsum[:, None, None]


def _skin(S: np.ndarray | None, p32: np.ndarray) -> np.ndarray:
    if S is None:
        return p32
    p = p32.astype(np.float64)
    return (np.einsum("nij,nj->ni", S[:, :3, :3], p) + S[:, :3, 3]).astype(np.float32)


def _texture_set(f: _File, mi) -> TextureSet:
    g = f.g
    if mi is None:
        return TextureSet(name="default", image=flat_image((0.8, 0.8, 0.8)), base_color=(0.8, 0.8, 0.8))
    if mi >= len(g.materials or []):
        raise f.err(f"material {mi} does not exist.")
    m = g.materials[mi]
    pbr = m.pbrMetallicRoughness
    factor = tuple(float(c) for c in ((pbr.baseColorFactor if pbr and pbr.baseColorFactor else [1, 1, 1, 1])[:3]))
    img = None
    if pbr is not None and pbr.baseColorTexture is not None:
        img = _image(f, pbr.baseColorTexture.index)
    if img is None:
        img = flat_image(factor)
    return TextureSet(name=m.name or f"material_{mi}", image=img, base_color=factor)


def _load_track(f: _File, names: list[str], node_of_mesh: dict, fps: float | None) -> ExpressionTrack | None:
    """The expression track from the first animation (the one Blender's importer
    leaves active): every morph-weights channel of a mesh node, resampled at whole
    frames over the union of their key ranges (values held beyond a channel's keys,
    like Blender's constant extrapolation)."""
    g = f.g
    if not g.animations or not names:
        return None
    anim = g.animations[0]
    ex = anim.extras if isinstance(anim.extras, dict) else {}
    rate = float(fps or ex.get("fps") or DEFAULT_FPS)
    curves: list[tuple[str, np.ndarray, np.ndarray, str]] = []     # name, key frames, values, interp
    animated_nodes = set()
    for ch in anim.channels or []:
        if ch.target is None or ch.target.path != "weights" or ch.target.node is None:
            continue
        if ch.target.node >= len(g.nodes or []) or ch.target.node in animated_nodes:
            continue
        node = g.nodes[ch.target.node]
        if node.mesh is None or node.mesh not in node_of_mesh:
            continue
        animated_nodes.add(ch.target.node)
        tnames = _target_names(f, g.meshes[node.mesh])
        if ch.sampler is None or ch.sampler >= len(anim.samplers or []):
            raise f.err(f"animation '{anim.name}' refers to sampler {ch.sampler}, which does not exist.")
        s = anim.samplers[ch.sampler]
        t = f.accessor(s.input).reshape(-1).astype(np.float32)
        v = f.accessor(s.output).reshape(-1).astype(np.float32)
        K = len(tnames)
        if len(t) == 0 or K == 0:
            continue
        interp = s.interpolation or "LINEAR"
        per = 3 * K if interp == "CUBICSPLINE" else K
        if len(v) != len(t) * per:
            raise f.err(f"animation '{anim.name}': {len(v)} weight values for {len(t)} keys and {K} targets.")
        v = v.reshape(len(t), per)
        if interp == "CUBICSPLINE":
            v = v[:, K:2 * K]           # the key values; tangents are dropped (linear resample)
        # Blender keys frame = time * fps in float64, stored as float32
        kf = (t.astype(np.float64) * rate).astype(np.float32).astype(np.float64)
        for k, n in enumerate(tnames):
            if n is not None and all(c[0] != n for c in curves):
                curves.append((n, kf, v[:, k].astype(np.float64), interp))
    if not curves:
        return None
    lo = min(c[1][0] for c in curves)
    hi = max(c[1][-1] for c in curves)
    frames = np.arange(np.ceil(lo - 1e-4), np.floor(hi + 1e-4) + 1)
    cols = []
    for n, kf, val, interp in curves:
        if interp == "STEP":
            j = np.clip(np.searchsorted(kf, frames + 1e-6, side="right") - 1, 0, len(kf) - 1)
            cols.append(val[j])
        else:
            cols.append(np.interp(frames, kf, val))
    order = [n for n in names if any(c[0] == n for c in curves)]
    by = {c[0]: col for c, col in zip(curves, cols)}
    return ExpressionTrack(frames=frames.astype(np.float32), names=order,
                           weights=np.stack([by[n] for n in order], -1).astype(np.float32), fps=rate)


# --------------------------------------------------------------------------- export
def _vertex_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v, dtype=np.float64)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(ln > 0, n / np.maximum(ln, 1e-30), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


def _to_gltf(p: np.ndarray) -> np.ndarray:
    """Blender Z-up (x, y, z) -> glTF Y-up (x, z, -y), float32."""
    out = np.asarray(p, np.float32)[..., [0, 2, 1]].copy()
    out[..., 2] *= -1
    return out


def _png(img: np.ndarray) -> bytes:
    bio = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, np.uint8), "RGB").save(bio, format="PNG", compress_level=6)
    return bio.getvalue()


def save_glb(avatar: AvatarData, path, *, textures: list[np.ndarray] | None = None,
             embed_textures: bool = True, track: ExpressionTrack | None | bool = True,
             fps: float | None = None) -> str:
    """Write ``avatar`` as a GLB file that Blender and other glTF viewers open.

    textures: optional replacement images, one ``[H,W,3]`` uint8 sRGB per texture
      set (e.g. stylized textures); default the avatar's own.
    embed_textures: PNGs inside the GLB (default) or written beside it as
      ``<stem>_<i>.png``.
    track: True = the avatar's track, None/False = no animation, or another track.
    Returns the path written.
    """
    import pygltflib as gl

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
            with open(os.path.join(os.path.dirname(os.path.abspath(path)), fn), "wb") as fh:
                fh.write(data)
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
        pos = _to_gltf(V[gv])
        uv = avatar.uvs[gt].astype(np.float32).copy()
        uv[:, 1] = np.float32(1) - uv[:, 1]
        attrs = gl.Attributes(POSITION=add_acc(pos, "VEC3", 34962, minmax=True),
                              NORMAL=add_acc(_to_gltf(normals[gv]), "VEC3", 34962),
                              TEXCOORD_0=add_acc(uv, "VEC2", 34962))
        targets = []
        for k, name in enumerate(avatar.blendshape_names):
            d = _to_gltf(avatar.blendshapes[k][gv])
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
        animations.append(gl.Animation(
            name="expressions", extras={"fps": rate},
            samplers=[gl.AnimationSampler(input=ti, output=wi, interpolation="LINEAR")],
            channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))]))
    doc = gl.GLTF2(asset=gl.Asset(version="2.0", generator="metamorph"), scene=0,
                   scenes=[gl.Scene(nodes=[0])], nodes=[node], meshes=[mesh], materials=materials,
                   textures=textures_gl, images=images, samplers=samplers, accessors=accessors,
                   bufferViews=views, buffers=[gl.Buffer(byteLength=len(blob))], animations=animations)
    doc.set_binary_blob(bytes(blob))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    doc.save_binary(path)
    return path
