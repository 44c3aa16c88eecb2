"""glTF 2.0 / GLB -> :class:`shared.avatar.AvatarData` (parsing is :mod:`backend.avatar.gltf_read`).

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

Every size is checked against the limits before the arrays are built:
accessor counts from the document (vertices, triangles, morph targets)
and texture sizes from the image headers.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from shared.avatar import (YUP_TO_ZUP, AvatarData, ExpressionTrack, TextureSet, apply_affine, flat_image,
                           index_corner_uvs, yup_to_zup)
from shared.errors import InvalidAvatar, TooLarge

from .gltf_read import GltfFile

DEFAULT_FPS = 24.0

_MODE_NAMES = {0: "POINTS", 1: "LINES", 2: "LINE_LOOP", 3: "LINE_STRIP", 4: "TRIANGLES",
               5: "TRIANGLE_STRIP", 6: "TRIANGLE_FAN"}


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


def _mesh_nodes(f: GltfFile):
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
            out.append((i, YUP_TO_ZUP @ M @ np.linalg.inv(YUP_TO_ZUP)))
        for c in n.children or []:
            walk(c, M)

    for r in roots:
        walk(r, np.eye(4))
    return out


def _target_names(f: GltfFile, mesh) -> list[str | None]:
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


def _triangles(f: GltfFile, mode: int, idx: np.ndarray, where: str) -> np.ndarray:
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


def _check_declared_sizes(f: GltfFile, mesh_nodes, limits: dict) -> None:
    """Refuse a file over ``limits`` from the counts its document declares, before any
    buffer is decoded: triangles (exact, from the index counts), vertices per primitive
    (its POSITION count) and morph targets per mesh."""
    g = f.g
    tris = 0
    for ni, _ in mesh_nodes:
        mi = g.nodes[ni].mesh
        if mi >= len(g.meshes or []):
            continue                                 # reported with its node by the loader
        mesh = g.meshes[mi]
        for prim in mesh.primitives or []:
            pos_i = getattr(prim.attributes, "POSITION", None)
            if pos_i is None:
                continue
            nvert = f.count(pos_i)
            if "max_vertices" in limits and nvert > limits["max_vertices"]:
                raise TooLarge(f"{f.path}: mesh '{mesh.name or mi}' declares {nvert} vertices, more than "
                               f"the limit of {limits['max_vertices']}; decimate it before importing.")
            n = f.count(prim.indices) if prim.indices is not None else nvert
            mode = 4 if prim.mode is None else prim.mode
            tris += n // 3 if mode == 4 else max(n - 2, 0) if mode in (5, 6) else 0
        ntargets = max((len(p.targets or []) for p in mesh.primitives or []), default=0)
        if "max_blendshapes" in limits and ntargets > limits["max_blendshapes"]:
            raise TooLarge(f"{f.path}: mesh '{mesh.name or mi}' declares {ntargets} morph targets, more "
                           f"than the limit of {limits['max_blendshapes']}.")
    if "max_faces" in limits and tris > limits["max_faces"]:
        raise TooLarge(f"{f.path}: the file declares {tris} triangles, more than the limit of "
                       f"{limits['max_faces']}; decimate the mesh before importing.")


def _load_glb(path, fps, limits) -> AvatarData:
    limits = limits or {}
    f = GltfFile(path, limits)
    g = f.g
    mesh_nodes = _mesh_nodes(f)
    if not mesh_nodes:
        raise f.err("the file contains no mesh.")
    _check_declared_sizes(f, mesh_nodes, limits)
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
                idx = np.arange(f.count(pos_i), dtype=np.int64)
            tri = _triangles(f, mode, idx, where)
            if len(tri) == 0:
                continue
            npos = f.count(pos_i)
            if tri.max() >= npos or tri.min() < 0:
                raise f.err(f"{where}: triangle indices reach {int(tri.max())} but there are only "
                            f"{npos} vertices.")
            uniq, inv = np.unique(tri, return_inverse=True)
            nv_new = nv + len(uniq)
            if "max_vertices" in limits and nv_new > limits["max_vertices"]:
                raise TooLarge(f"{f.path}: more than {limits['max_vertices']} vertices.")
            pos = f.accessor(pos_i).astype(np.float32)
            if pos.shape[1] != 3:
                raise f.err(f"{where}: POSITION must be VEC3.")
            uv_i = getattr(attrs, "TEXCOORD_0", None)
            if uv_i is None:
                raise f.err(f"{where} has no UV coordinates (TEXCOORD_0); unwrap the mesh before "
                            f"exporting it.")
            uv = f.accessor(uv_i).astype(np.float32)
            if uv.shape[1] != 2 or len(uv) != len(pos):
                raise f.err(f"{where}: TEXCOORD_0 must be VEC2 with one entry per vertex.")
            base = pos[uniq]
            skin = _skinning(f, node, attrs, uniq, where)
            Mv = np.eye(4) if skin is not None else M      # a skinned mesh ignores its node transform
            v_bl = apply_affine(Mv, yup_to_zup(_skin(skin, base)))
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
                k_bl = apply_affine(Mv, yup_to_zup(_skin(skin, absolute)))
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


def _skinning(f: GltfFile, node, attrs, uniq, where) -> np.ndarray | None:
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


def _texture_set(f: GltfFile, mi) -> TextureSet:
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
        img = f.image(pbr.baseColorTexture.index)
    if img is None:
        img = flat_image(factor)
    return TextureSet(name=m.name or f"material_{mi}", image=img, base_color=factor)


def _load_track(f: GltfFile, names: list[str], node_of_mesh: dict, fps: float | None) -> ExpressionTrack | None:
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
