"""Blender scene -> :class:`AvatarData` (the extraction half of the scene I/O).

Reads what the backend needs from mesh objects, without torch:

- vertices in world space (object world matrix applied in float64, rounded
  to float32), before shape keys: the reference (basis) key when the mesh
  has shape keys, else the depsgraph-evaluated mesh when modifiers are on;
- loop triangles and the active UV layer, per corner;
- one texture set per material in order of first use (Principled BSDF Base
  Colour linked to an Image Texture, else its colour as a flat image);
- shape keys as world-space deltas relative to their relative key;
- the expression track (:func:`animation.expression_track`): every shape-key
  F-curve evaluated at each whole frame of the range (not only at keyframes).

Point transforms come from ``shared.avatar`` (``apply_affine``), the one copy the
backend's glTF loader (``backend.avatar.gltf_load``) also uses, so a GLB imported by
Blender's glTF importer and extracted here has the same content hash as the
backend's own loading of the file.
"""

from __future__ import annotations

import numpy as np

from . import animation, images
from ._shared import avatar as mm_avatar
from ._shared import errors as mm_errors


def _matrix(ob) -> np.ndarray:
    return np.array([list(r) for r in ob.matrix_world], np.float64)


def _co(seq, n: int) -> np.ndarray:
    a = np.empty(n * 3, np.float32)
    seq.foreach_get("co", a)
    return a.reshape(n, 3)


def _has_modifiers(ob) -> bool:
    # an Armature modifier only poses the rest shape: the avatar is the rest shape
    return any(m.show_viewport and m.type != "ARMATURE" for m in ob.modifiers)


def _mesh_for(ob, depsgraph):
    """(mesh, owned) - the evaluated mesh when modifiers change it and there are no shape keys."""
    me = ob.data
    if me.shape_keys is None and _has_modifiers(ob) and depsgraph is not None:
        ev = ob.evaluated_get(depsgraph)
        return ev.to_mesh(preserve_all_data_layers=True, depsgraph=depsgraph), ev
    return me, None


def _find_image_node(node, seen=None):
    """The first Image Texture node upstream of ``node`` (through any links)."""
    seen = seen if seen is not None else set()
    if node is None or node.name in seen:
        return None
    seen.add(node.name)
    if node.type == "TEX_IMAGE" and node.image is not None:
        return node
    for inp in node.inputs:
        for link in inp.links:
            found = _find_image_node(link.from_node, seen)
            if found is not None:
                return found
    return None


def texture_set_for(mat) -> "mm_avatar.TextureSet":
    """Texture set of a material (None = an empty slot: Blender's default grey)."""
    if mat is None:
        return mm_avatar.TextureSet("default", mm_avatar.flat_image((0.8, 0.8, 0.8)), (0.8, 0.8, 0.8))
    color = tuple(float(c) for c in mat.diffuse_color[:3])
    nt = mat.node_tree if getattr(mat, "node_tree", None) else None
    if nt is not None:
        bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None)
        if bsdf is not None:
            inp = bsdf.inputs["Base Color"]
            color = tuple(float(c) for c in inp.default_value[:3])
            if inp.is_linked:
                node = _find_image_node(inp.links[0].from_node)
                if node is not None:
                    return mm_avatar.TextureSet(mat.name, images.to_srgb_u8(node.image), color)
    return mm_avatar.TextureSet(mat.name, mm_avatar.flat_image(color), color)


def extract_avatar(objects, depsgraph=None, *, scene=None, frame_range=None, with_track=True,
                   name=None, uv_overrides=None) -> "mm_avatar.AvatarData":
    """AvatarData for one or several mesh objects (joined in the given order).

    objects: mesh objects; depsgraph: for modifier evaluation (default: the
    context's); scene: for the frame range and fps (default: the context's);
    frame_range: (first, last) whole frames for the expression track;
    uv_overrides: {object name: per-loop UVs [L,2]} used instead of the mesh's own
    (meshes stylized through an unwrapped copy, :mod:`unwrap`).
    Raises InvalidAvatar with a sentence naming the objects for non-meshes,
    meshes without faces or without a UV map. The scene is not modified.
    """
    import bpy

    objects = list(objects)
    uv_overrides = uv_overrides or {}
    if not objects:
        raise mm_errors.InvalidAvatar("Select the avatar mesh (one or more mesh objects) first.")
    no_uv = [o.name for o in objects if o.type == "MESH" and o.name not in uv_overrides
             and len(o.data.uv_layers) == 0]
    if no_uv:  # name every mesh at once, not one per attempt
        many = len(no_uv) > 1
        raise mm_errors.InvalidAvatar(
            f"Mesh{'es' if many else ''} {', '.join(repr(n) for n in no_uv)} {'have' if many else 'has'} "
            f"no UV map: tick 'Unwrap a copy' or unwrap {'them' if many else 'it'} (UV > Smart UV "
            f"Project) before stylizing.")
    scene = scene or bpy.context.scene
    if depsgraph is None:
        try:
            depsgraph = bpy.context.evaluated_depsgraph_get()
        except Exception:
            depsgraph = None
    V, F, CUV, FM, sets, mats = [], [], [], [], [], []
    shape_parts = []
    names: list[str] = []
    nv = 0
    for ob in objects:
        if ob.type != "MESH":
            raise mm_errors.InvalidAvatar(f"'{ob.name}' is a {ob.type.lower()}, not a mesh; select mesh "
                                          f"objects only.")
        me, owner = _mesh_for(ob, depsgraph)
        try:
            n = len(me.vertices)
            me.calc_loop_triangles()
            nt = len(me.loop_triangles)
            if nt == 0:
                raise mm_errors.InvalidAvatar(f"Mesh '{ob.name}' has no faces.")
            uvl = me.uv_layers.active
            if uvl is None and ob.name not in uv_overrides:
                raise mm_errors.InvalidAvatar(f"Mesh '{ob.name}' has no UV map: unwrap it (UV > Smart UV "
                                              f"Project) before stylizing.")
            tv = np.empty(nt * 3, np.int32)
            me.loop_triangles.foreach_get("vertices", tv)
            tl = np.empty(nt * 3, np.int32)
            me.loop_triangles.foreach_get("loops", tl)
            tm = np.empty(nt, np.int32)
            me.loop_triangles.foreach_get("material_index", tm)
            if ob.name in uv_overrides:
                luv = np.asarray(uv_overrides[ob.name], np.float32).ravel()
                if len(luv) != len(me.loops) * 2:
                    raise mm_errors.InvalidAvatar(f"The unwrapped UVs of '{ob.name}' do not match its mesh.")
            else:
                luv = np.empty(len(me.loops) * 2, np.float32)
                uvl.uv.foreach_get("vector", luv)
            M = _matrix(ob)
            keys = me.shape_keys
            if keys is not None:
                ref = keys.reference_key
                base_local = _co(ref.data, n)
            else:
                base_local = _co(me.vertices, n)
            base = mm_avatar.apply_affine(M, base_local)
            deltas = {}
            if keys is not None:
                world = {ref.name: base}
                for kb in keys.key_blocks:
                    if kb.name not in world:
                        world[kb.name] = mm_avatar.apply_affine(M, _co(kb.data, n))
                for kb in keys.key_blocks:
                    if kb == ref:
                        continue
                    rel = kb.relative_key.name if kb.relative_key is not None else ref.name
                    deltas[kb.name] = world[kb.name] - world[rel]
                    if kb.name not in names:
                        names.append(kb.name)
            slots = [s.material for s in ob.material_slots]
            fm = np.empty(nt, np.int32)
            # texture sets in order of first use over the triangles
            used, first = np.unique(tm, return_index=True)
            first_use = {int(m): int(t) for m, t in zip(used, first)}
            for mi in sorted(first_use, key=first_use.get):
                mat = slots[mi] if 0 <= mi < len(slots) else None
                key = mat.name if mat is not None else None
                if key not in mats:
                    mats.append(key)
                    sets.append(texture_set_for(mat))
                fm[tm == mi] = mats.index(key)
        finally:
            if owner is not None:
                owner.to_mesh_clear()
        V.append(base)
        F.append(tv.reshape(-1, 3).astype(np.int64) + nv)
        CUV.append(luv.reshape(-1, 2)[tl])
        FM.append(fm)
        shape_parts.append((nv, nv + n, deltas))
        nv += n
    vertices = np.concatenate(V)
    blend = np.zeros((len(names), nv, 3), np.float32)
    for a, b, deltas in shape_parts:
        for k, d in deltas.items():
            blend[names.index(k), a:b] = d
    uvs, uv_faces = mm_avatar.index_corner_uvs(np.concatenate(CUV))
    track = animation.expression_track(objects, scene, frame_range) if with_track else None
    return mm_avatar.AvatarData(
        vertices=vertices, faces=np.concatenate(F), uvs=uvs, uv_faces=uv_faces,
        face_material=np.concatenate(FM), texture_sets=sets, blendshape_names=names,
        blendshapes=blend, track=track, name=name or objects[0].name)
