"""Real bpy scenes for the add-on tests: a small animated avatar built by code.

Not a test module: helpers imported by ``tests/test_addon_*.py``.
"""

from __future__ import annotations

import hashlib

import numpy as np


def fresh():
    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def make_avatar(name="Head", subdiv=2, shape_keys=("jawOpen", "smile"), uv=True,
                with_image=True, animate=True, stash=False):
    """A UV sphere 'head' with shape keys animated by an action, and a material
    whose base colour is an image. ``stash``: also put the action on an NLA track,
    as Blender's glTF importer does. Returns the object (selected, active)."""
    import bpy
    import bmesh
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    if uv:
        bm.loops.layers.uv.new("UVMap")
    bmesh.ops.create_uvsphere(bm, u_segments=8 * subdiv, v_segments=4 * subdiv, radius=0.1,
                              calc_uvs=uv)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    obj.location = (0.0, 0.0, 1.6)
    if shape_keys:
        obj.shape_key_add(name="Basis")
        n = len(mesh.vertices)
        co = np.empty(n * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        co = co.reshape(n, 3)
        for i, k in enumerate(shape_keys):
            kb = obj.shape_key_add(name=k, from_mix=False)
            d = np.zeros_like(co)
            d[:, i % 3] = 0.02 * (co[:, 2] < 0) * (i + 1)
            kb.data.foreach_set("co", (co + d).ravel())
        if animate:
            key = mesh.shape_keys
            for i, k in enumerate(shape_keys):
                kb = key.key_blocks[k]
                for f, v in ((1, 0.0), (5 + i, 1.0), (10, 0.0)):
                    kb.value = v
                    kb.keyframe_insert("value", frame=f)
            if stash:
                ad = key.animation_data
                track = ad.nla_tracks.new()
                track.name = ad.action.name
                track.strips.new(ad.action.name, 1, ad.action)
                track.mute = True
    mat = bpy.data.materials.new(f"{name} skin")
    if with_image:
        img = bpy.data.images.new(f"{name} base", 16, 16)
        px = np.zeros((16, 16, 4), np.float32)
        px[..., 0] = 0.8
        px[..., 3] = 1
        img.pixels.foreach_set(px.ravel())
        img.pack()
        nt = mat.node_tree
        tex = nt.nodes.new("ShaderNodeTexImage")
        tex.image = img
        bsdf = nt.nodes["Principled BSDF"]
        nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    mesh.materials.append(mat)
    for o in scene.objects:
        o.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    bpy.context.view_layer.update()
    return obj


def datablock_hash(obj) -> str:
    """Digest of an object's mesh, shape keys (coords, values, action keyframes),
    materials (node images and links) and transform: what apply must never change."""
    h = hashlib.sha256()
    me = obj.data
    n = len(me.vertices)
    co = np.empty(n * 3, np.float32)
    me.vertices.foreach_get("co", co)
    h.update(co.tobytes())
    h.update(str(len(me.polygons)).encode())
    for uvl in me.uv_layers:
        uv = np.empty(len(me.loops) * 2, np.float32)
        uvl.data.foreach_get("uv", uv)
        h.update(uv.tobytes())
    key = me.shape_keys
    if key:
        for kb in key.key_blocks:
            kb.data.foreach_get("co", co)
            h.update(kb.name.encode() + co.tobytes() + str(kb.value).encode())
        ad = key.animation_data
        if ad and ad.action:
            from blender_addon.animation import fcurves as _fcurves
            h.update(ad.action.name.encode())
            for fc in _fcurves(ad):
                kp = np.empty(len(fc.keyframe_points) * 2, np.float32)
                fc.keyframe_points.foreach_get("co", kp)
                h.update(fc.data_path.encode() + kp.tobytes())
    for m in me.materials:
        h.update(m.name.encode())
        if m.node_tree:
            for node in m.node_tree.nodes:
                h.update(node.name.encode())
                if getattr(node, "image", None):
                    h.update(node.image.name.encode())
            for link in m.node_tree.links:
                h.update(f"{link.from_node.name}>{link.to_node.name}".encode())
    h.update(np.array(obj.matrix_world).tobytes())
    return h.hexdigest()


def fake_result(objs, name="bronze", tex_size=8, passes=None, frames=(1.0,)):
    """A StylizeResult computed from the real meshes: offsets = a small
    displacement along the vertex normal, a gradient texture per material."""
    from shared.stylize import StylizeResult
    neutral, names = [], []
    for o in objs:
        if o.data.shape_keys:
            for kb in o.data.shape_keys.key_blocks[1:]:
                if kb.name not in names:
                    names.append(kb.name)
    V = sum(len(o.data.vertices) for o in objs)
    for o in objs:
        n = len(o.data.vertices)
        nrm = np.empty(n * 3, np.float32)
        o.data.vertices.foreach_get("normal", nrm)
        neutral.append(0.01 * nrm.reshape(n, 3))
    neutral = np.concatenate(neutral).astype(np.float32)
    bso = np.zeros((len(names), V, 3), np.float32)
    for k in range(len(names)):
        bso[k, :, 2] = 0.005 * (k + 1)
    sets = []
    for o in objs:
        for m in o.data.materials:
            if m.name not in sets:
                sets.append(m.name)
    tex = []
    for i, _ in enumerate(sets):
        t = np.zeros((tex_size, tex_size, 3), np.uint8)
        t[..., 1] = np.linspace(0, 255, tex_size, dtype=np.uint8)[:, None]  # row 0 = top = dark
        t[..., 2] = 200 - 50 * i
        tex.append(t)
    body = {"name": name, "texture_sets": sets, "blendshape_names": names,
            "cameras": [], "frames": list(frames), "passes": list((passes or {}).keys())}
    return StylizeResult(body=body, textures=tex, neutral_offsets=neutral,
                         blendshape_offsets=bso, passes=dict(passes or {}))


def glb_json(path) -> dict:
    """The JSON chunk of a GLB file (to check skins, nodes, animations, extras)."""
    import json
    import struct
    data = open(path, "rb").read()
    n = struct.unpack("<I", data[12:16])[0]
    return json.loads(data[20:20 + n])


def counts() -> tuple:
    """How many datablocks of each kind an apply could create."""
    import bpy
    return tuple(len(c) for c in (bpy.data.objects, bpy.data.meshes, bpy.data.materials,
                                  bpy.data.images, bpy.data.actions, bpy.data.collections))


def make_rigged_avatar(name="Head"):
    """``make_avatar`` skinned to a two-bone armature (root, head) whose object action
    nods the head, parented to the armature; plus an 'Eye' mesh parented to an empty
    that hangs from the head bone. Returns (head mesh, eye mesh, armature)."""
    import bpy
    scene = bpy.context.scene
    head = make_avatar(name)
    arm_data = bpy.data.armatures.new("Rig")
    arm = bpy.data.objects.new("Rig", arm_data)
    scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    root = arm_data.edit_bones.new("root")
    root.head, root.tail = (0, 0, 0), (0, 0, 1.4)
    hb = arm_data.edit_bones.new("head")
    hb.head, hb.tail, hb.parent = (0, 0, 1.4), (0, 0, 1.8), root
    bpy.ops.object.mode_set(mode="OBJECT")
    pb = arm.pose.bones["head"]
    pb.rotation_mode = "XYZ"
    for f, a in ((1, 0.0), (10, 0.4)):
        pb.rotation_euler = (a, 0.0, 0.0)
        pb.keyframe_insert("rotation_euler", frame=f)
    pb.rotation_euler = (0, 0, 0)
    head.parent = arm
    vg = head.vertex_groups.new(name="head")
    vg.add(list(range(len(head.data.vertices))), 1.0, "REPLACE")
    mod = head.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    eye_empty = bpy.data.objects.new("Eye socket", None)
    scene.collection.objects.link(eye_empty)
    eye_empty.parent, eye_empty.parent_type, eye_empty.parent_bone = arm, "BONE", "head"
    eye = make_avatar("Eye", subdiv=1, shape_keys=(), animate=False)
    eye.parent = eye_empty
    for o in scene.objects:
        o.select_set(o in (head, eye))
    bpy.context.view_layer.objects.active = head
    bpy.context.view_layer.update()
    return head, eye, arm
