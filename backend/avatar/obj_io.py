"""OBJ + MTL import (static meshes) through trimesh.

Positions are converted like Blender's OBJ importer with its defaults
(Y up, -Z forward in the file -> Z up): (x, y, z) -> (x, -z, y). trimesh
splits vertices at UV seams; they are welded back by exact position so the
avatar has shared vertices with per-corner UVs (stylization offsets then
cannot open cracks at seams). One texture set per material, in the order
trimesh groups them (by material name).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from shared.avatar import AvatarData, TextureSet, flat_image, index_corner_uvs, srgb_to_linear
from shared.errors import InvalidAvatar, TooLarge

log = logging.getLogger(__name__)

MAX_OBJ_BYTES = 2_000_000_000


def load_obj(path, *, limits: dict | None = None) -> AvatarData:
    """Load an OBJ (+ its MTL and textures) as a static avatar (no blendshapes).

    Raises InvalidAvatar naming the file for unreadable files, files without
    faces or without UVs; TooLarge beyond ``limits['max_vertices']``."""
    import trimesh

    path = str(path)
    limits = limits or {}
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise InvalidAvatar(f"{path}: cannot read the file ({e.strerror}).") from e
    if size == 0:
        raise InvalidAvatar(f"{path}: the file is empty.")
    if size > MAX_OBJ_BYTES:
        raise TooLarge(f"{path}: {size} bytes is more than the OBJ limit of {MAX_OBJ_BYTES}.")
    try:
        loaded = trimesh.load(path, file_type="obj", process=False,
                              group_material=True, skip_materials=False)
    except Exception as e:
        raise InvalidAvatar(f"{path}: not a readable OBJ file ({type(e).__name__}: {e}).") from e
    geoms = list(loaded.geometry.values()) if isinstance(loaded, trimesh.Scene) else [loaded]
    geoms = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not geoms:
        raise InvalidAvatar(f"{path}: the file contains no faces (points or lines only?); an avatar "
                            f"needs a triangle or polygon mesh.")
    P, F, CUV, FM, sets, mat_ids = [], [], [], [], [], []
    nv = 0
    for gi, g in enumerate(geoms):
        uv = getattr(g.visual, "uv", None)
        if uv is None or len(uv) != len(g.vertices):
            raise InvalidAvatar(f"{path}: mesh '{g.metadata.get('name', gi)}' has no UV coordinates "
                                f"(no 'vt' lines); unwrap it before importing.")
        mat = getattr(g.visual, "material", None)
        key = id(mat) if mat is not None else None
        if key not in mat_ids:
            mat_ids.append(key)
            sets.append(_texture_set(path, mat, len(sets)))
        v = np.asarray(g.vertices, np.float32)
        f = np.asarray(g.faces, np.int64)
        P.append(v)
        F.append(f + nv)
        CUV.append(np.asarray(uv, np.float32)[f].reshape(-1, 2))
        FM.append(np.full(len(f), mat_ids.index(key), np.int32))
        nv += len(v)
        if "max_vertices" in limits and nv > limits["max_vertices"]:
            raise TooLarge(f"{path}: more than {limits['max_vertices']} vertices.")
    v = np.concatenate(P)
    faces = np.concatenate(F)
    # weld seam duplicates by exact position, keeping first-use order
    _, first, inv = np.unique(v, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    verts = v[first[order]]
    faces = rank[inv.reshape(-1)][faces]
    verts = verts[:, [0, 2, 1]].copy()
    verts[:, 1] *= -1
    uvs, uv_faces = index_corner_uvs(np.concatenate(CUV))
    return AvatarData(vertices=verts, faces=faces, uvs=uvs, uv_faces=uv_faces,
                      face_material=np.concatenate(FM), texture_sets=sets,
                      name=os.path.splitext(os.path.basename(path))[0])


def _texture_set(path, mat, i) -> TextureSet:
    name = getattr(mat, "name", None) or f"material_{i}"
    img = getattr(mat, "image", None)
    color = getattr(mat, "diffuse", None)
    if color is None:
        color = getattr(mat, "main_color", None)
    lin = (0.8, 0.8, 0.8)
    if color is not None:
        c = np.asarray(color, np.float64).reshape(-1)[:3]
        c = c / 255.0 if c.max() > 1.0 else c
        lin = tuple(float(x) for x in srgb_to_linear(c))
    if img is not None:
        arr = np.asarray(img.convert("RGB"), np.uint8).copy()
        return TextureSet(name=name, image=arr, base_color=lin)
    if mat is not None and getattr(mat, "image", None) is None:
        log.info("%s: material '%s' has no readable texture; using its diffuse colour", path, name)
    return TextureSet(name=name, image=flat_image(lin), base_color=lin)
