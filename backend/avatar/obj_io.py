"""OBJ + MTL import (static meshes) through trimesh.

Positions are converted like Blender's OBJ importer with its defaults
(Y up, -Z forward in the file -> Z up): (x, y, z) -> (x, -z, y). trimesh
splits vertices at UV seams; they are welded back by exact position so the
avatar has shared vertices with per-corner UVs (stylization offsets then
cannot open cracks at seams). One texture set per material, in the order
trimesh groups them (by material name).

Before trimesh parses anything, the file is scanned line by line (:func:`scan_obj`):
vertex and face counts over the limits are refused at once (an OBJ declaring
10 million faces costs a fast byte scan, not gigabytes), every ``mtllib`` and
texture reference must stay inside the file's folder, and texture sizes are read
from the image headers.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np

from shared.avatar import AvatarData, TextureSet, flat_image, index_corner_uvs, srgb_to_linear, yup_to_zup
from shared.errors import InvalidAvatar, TooLarge
from shared.protocol import Limits

from .gltf_read import resolve_uri
from .images import TEXTURE, open_checked

log = logging.getLogger(__name__)

MAX_OBJ_BYTES = 2_000_000_000
MAX_MTL_BYTES = 16 << 20          # a material library is text; more is not an MTL
_CHUNK = 1 << 20                 # scan block: small, so the scan itself stays a few MB
_MTLLIB = re.compile(rb"^[ \t]*mtllib[ \t]+(.+?)[ \t]*\r?$", re.M)
# texture statements of an MTL; the file name is the last token (options come first)
_MAPS = re.compile(r"^\s*(map_\w+|bump|disp|decal|refl|norm)\s+(.+?)\s*$", re.M | re.I)


@dataclass
class ObjScan:
    """What a line scan of an OBJ found: counts of ``v`` and ``f`` statements (a polygon
    ``f`` line is at least one triangle) and its ``mtllib`` references."""
    vertices: int = 0
    faces: int = 0
    mtllibs: list[str] = field(default_factory=list)


def scan_obj(path: str, limits: dict) -> ObjScan:
    """Count ``v``/``f`` statements in 1 MB blocks, refusing (TooLarge) as soon as a count is
    over ``limits['max_vertices']`` / ``limits['max_faces']``, without parsing numbers."""
    out = ObjScan()
    max_v, max_f = limits.get("max_vertices"), limits.get("max_faces")
    carry = b"\n"
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            data = carry + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            body, carry = data[:cut], b"\n" + data[cut:]
            # every statement is at a line start: "\nv " / "\nf " (tabs allowed as separators)
            out.vertices += body.count(b"\nv ") + body.count(b"\nv\t")
            out.faces += body.count(b"\nf ") + body.count(b"\nf\t")
            if b"mtllib" in body:
                out.mtllibs += [m.group(1).decode("utf-8", "replace") for m in _MTLLIB.finditer(body)]
            if max_v is not None and out.vertices > max_v:
                raise TooLarge(f"{path}: the file declares more than {max_v} vertices (the limit); "
                               f"decimate the mesh before importing.", details={"max_vertices": max_v})
            if max_f is not None and out.faces > max_f:
                raise TooLarge(f"{path}: the file declares more than {max_f} faces (the limit); "
                               f"decimate the mesh before importing.", details={"max_faces": max_f})
            if not chunk:
                return out


def _check_references(path: str, scan: ObjScan, limits: dict) -> None:
    """Every material library and texture stays inside the OBJ's folder (texture names are
    relative to that folder, as trimesh resolves them); textures are within
    ``max_texture_size`` by their headers. Missing files are left to trimesh (the material
    then falls back to its colour, as before). A name with spaces is checked whole and
    token by token, whichever way a reader splits it."""
    folder = os.path.dirname(os.path.abspath(path))
    max_side = int(limits.get("max_texture_size") or Limits().max_texture_size)

    def inside(ref: str, owner: str) -> list[str]:
        names = [ref.strip()] + (ref.split() if len(ref.split()) > 1 else [])
        return [resolve_uri(folder, n, owner) for n in names]

    for lib in scan.mtllibs:
        for mtl in inside(lib, path):
            if not os.path.isfile(mtl):
                continue
            if os.path.getsize(mtl) > MAX_MTL_BYTES:
                raise TooLarge(f"{path}: material library '{lib}' is over {MAX_MTL_BYTES} bytes.")
            with open(mtl, "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
            for m in _MAPS.finditer(text):
                ref = m.group(2)
                for tex in inside(ref, f"{path} ({os.path.basename(mtl)})"):
                    if os.path.isfile(tex):
                        label = f"{path}: texture '{os.path.relpath(tex, folder)}'"
                        open_checked(tex, label, max_side, purpose=TEXTURE).close()


def load_obj(path, *, limits: dict | None = None) -> AvatarData:
    """Load an OBJ (+ its MTL and textures) as a static avatar (no blendshapes).

    Raises InvalidAvatar naming the file for unreadable files, files without
    faces or without UVs, references outside its folder; TooLarge beyond the limits
    (``max_vertices``, ``max_faces``, ``max_texture_size``), before trimesh parses it."""
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
        scan = scan_obj(path, limits)
    except OSError as e:
        raise InvalidAvatar(f"{path}: cannot read the file ({e.strerror}).") from e
    _check_references(path, scan, limits)
    import trimesh  # heavy (about 0.5 s to import): only once an OBJ has passed the scan

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
    verts = yup_to_zup(v[first[order]])
    faces = rank[inv.reshape(-1)][faces]
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
