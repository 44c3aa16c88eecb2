"""An avatar from the backend (:class:`shared.avatar.AvatarData`, e.g. from
``shared.avatar.from_wire`` of an "avatar from photo/text" result) as new Blender
data: one mesh object with its UV map, one material per texture set (base colour =
the set's image, packed, sRGB), a shape key per blendshape and, when the avatar has
an expression track, an action playing it. All or nothing: on any failure every
datablock made is removed again (:class:`datablocks.Created`); the calling job
operator (``UNDO``) makes it one undo step.

    objs = avatar_build.build(context, shared.avatar.from_wire(body["avatar"], arrays))
"""

from __future__ import annotations

import bpy
import numpy as np

from . import animation, images, results
from ._shared import avatar as mm_avatar
from .datablocks import Created

AVATARS_COLLECTION = "Metamorph Avatars"


def _mesh(name: str, av) -> "bpy.types.Mesh":
    V, F = av.num_vertices, av.num_faces
    me = bpy.data.meshes.new(name)
    me.vertices.add(V)
    me.vertices.foreach_set("co", np.ascontiguousarray(av.vertices, np.float32).ravel())
    me.loops.add(3 * F)
    me.loops.foreach_set("vertex_index", np.ascontiguousarray(av.faces, np.int32).ravel())
    me.polygons.add(F)
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * F, 3, dtype=np.int32))
    me.polygons.foreach_set("loop_total", np.full(F, 3, np.int32))
    me.polygons.foreach_set("material_index", np.ascontiguousarray(av.face_material, np.int32))
    uvl = me.uv_layers.new(name="UVMap")
    corner = np.asarray(av.uvs, np.float32)[np.asarray(av.uv_faces, np.int64).ravel()]
    uvl.uv.foreach_set("vector", np.ascontiguousarray(corner).ravel())
    me.update(calc_edges=True)
    if not me.validate(verbose=False):
        return me
    raise ValueError(f"The avatar '{name}' has invalid geometry (repeated or out-of-range "
                     "vertex indices); nothing was created.")


def _material(name: str, ts, made: Created):
    mat = made.add(bpy.data.materials, bpy.data.materials.new(name))
    if mat.node_tree is None:  # Blender < 5 makes materials without nodes
        mat.use_nodes = True
    mat.diffuse_color = (*[float(c) for c in ts.base_color[:3]], 1.0)
    img = made.add(bpy.data.images, images.from_array(f"{name} base colour",
                                                      np.ascontiguousarray(ts.image, np.uint8)))
    results._set_base_image(mat, img, "UVMap")
    return mat


def build(context, av, name: str | None = None, labels: dict | None = None) -> list:
    """New objects for ``av`` (validated first: InvalidAvatar before anything is made),
    linked to the "Metamorph Avatars" collection and selected. ``labels``: custom
    properties put on the object (e.g. ``metamorph_guidance_is_test_model``)."""
    mm_avatar.validate(av)
    name = name or av.name or "Avatar"
    with Created() as made:
        coll = bpy.data.collections.get(AVATARS_COLLECTION)
        if coll is None:
            coll = made.add(bpy.data.collections, bpy.data.collections.new(AVATARS_COLLECTION))
        if coll.name not in context.scene.collection.children:
            context.scene.collection.children.link(coll)
        me = made.add(bpy.data.meshes, _mesh(name, av))
        for ts in av.texture_sets:
            me.materials.append(_material(f"{name} {ts.name}", ts, made))
        obj = made.add(bpy.data.objects, bpy.data.objects.new(name, me))
        coll.objects.link(obj)
        for k, v in (labels or {}).items():
            obj[k] = v
        if av.blendshape_names:
            obj.shape_key_add(name="Basis", from_mix=False)
            base = np.ascontiguousarray(av.vertices, np.float32)
            for k, kname in enumerate(av.blendshape_names):
                kb = obj.shape_key_add(name=kname, from_mix=False)
                kb.data.foreach_set("co", (base + av.blendshapes[k]).ravel())
            if av.track is not None and len(av.track.names):
                act = animation.write_expression_track(obj, av.track, f"{name} expression")
                made.add(bpy.data.actions, act)
        for o in context.view_layer.objects:
            o.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
    return [obj]
