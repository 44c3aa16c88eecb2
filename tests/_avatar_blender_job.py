"""Blender side of tests/test_avatar_blender.py, run in its own process (bpy and
torch are kept apart): ``python _avatar_blender_job.py SAMPLE.glb OUT_DIR``.

Writes OUT_DIR/report.json and one .npz per extracted avatar.
"""

import json
import os
import sys
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import bpy  # noqa: E402

from blender_addon import animation, scene_io  # noqa: E402
from shared.avatar import content_hash  # noqa: E402


def dump(av, path):
    arrays = {"vertices": av.vertices, "faces": av.faces, "uvs": av.uvs, "uv_faces": av.uv_faces,
              "face_material": av.face_material, "blendshapes": av.blendshapes}
    for i, t in enumerate(av.texture_sets):
        arrays[f"texture_{i}"] = t.image
    if av.track is not None:
        arrays["track_frames"] = av.track.frames
        arrays["track_weights"] = av.track.weights
    np.savez(path, **arrays)
    return {"hash": content_hash(av), "names": list(av.blendshape_names),
            "track_names": list(av.track.names) if av.track else None,
            "texture_names": [t.name for t in av.texture_sets]}


def scene_state():
    """Everything extraction must leave alone."""
    st = {"objects": sorted(o.name for o in bpy.data.objects), "meshes": len(bpy.data.meshes),
          "images": len(bpy.data.images), "frame": bpy.context.scene.frame_current}
    for o in bpy.data.objects:
        if o.type == "MESH":
            me = o.data
            co = np.empty(len(me.vertices) * 3, np.float32)
            me.vertices.foreach_get("co", co)
            st[o.name] = float(np.abs(co).sum())
            if me.shape_keys:
                st[o.name + ":keys"] = [kb.value for kb in me.shape_keys.key_blocks]
    return st


def imported_sample(glb, out, rep):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=glb)
    obs = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    ob = obs[0]
    keys = ob.data.shape_keys
    fcurves = animation.id_fcurves(keys)
    rep["imported"] = {
        "objects": [o.name for o in obs], "vertices": len(ob.data.vertices),
        "shape_keys": [kb.name for kb in keys.key_blocks],
        "fcurves": {fc.data_path: len(fc.keyframe_points) for fc in fcurves},
        "key_frames": sorted({round(k.co[0], 4) for fc in fcurves for k in fc.keyframe_points}),
    }
    before = scene_state()
    frames = rep["imported"]["key_frames"]
    av = scene_io.extract_avatar(obs, frame_range=(int(round(frames[0])), int(round(frames[-1]))))
    rep["sample_unchanged"] = scene_state() == before
    rep["sample"] = dump(av, os.path.join(out, "sample.npz"))


def handmade(out, rep):
    """A two-triangle mesh with a transform, a flat-colour material, a shape key
    relative to another key and an F-curve with two keys (frames 1 and 11)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    me = bpy.data.meshes.new("quad")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], [], [(0, 1, 2), (0, 2, 3)])
    uv = me.uv_layers.new(name="UVMap")
    uv.uv.foreach_set("vector", np.array([0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1], np.float32))
    ob = bpy.data.objects.new("quad", me)
    sc.collection.objects.link(ob)
    ob.location = (1.0, 2.0, 3.0)
    ob.rotation_euler = (0.0, 0.0, np.pi / 2)
    ob.scale = (2.0, 2.0, 2.0)
    mat = bpy.data.materials.new("paint")
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = (0.2, 0.4, 0.6, 1.0)
    me.materials.append(mat)
    ob.shape_key_add(name="Basis")
    up = ob.shape_key_add(name="up")
    up.data[2].co = (1, 1, 0.5)
    more = ob.shape_key_add(name="more")
    more.relative_key = up
    more.data[2].co = (1, 1, 0.75)
    kb = me.shape_keys.key_blocks["up"]
    kb.value = 0.0
    kb.keyframe_insert("value", frame=1)
    kb.value = 1.0
    kb.keyframe_insert("value", frame=11)
    kb.value = 0.3
    for fc in animation.id_fcurves(me.shape_keys):
        for k in fc.keyframe_points:
            k.interpolation = "LINEAR"
    sc.frame_start, sc.frame_end = 1, 11
    bpy.context.view_layer.update()
    before = scene_state()
    av = scene_io.extract_avatar([ob])
    rep["handmade_unchanged"] = scene_state() == before
    rep["handmade"] = dump(av, os.path.join(out, "handmade.npz"))
    rep["handmade"]["base_color"] = list(av.texture_sets[0].base_color)
    # modifiers are evaluated when there are no shape keys (subdivided quad: 9 vertices)
    me3 = bpy.data.meshes.new("sub")
    me3.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], [], [(0, 1, 2, 3)])
    me3.uv_layers.new(name="UVMap")
    ob3 = bpy.data.objects.new("sub", me3)
    sc.collection.objects.link(ob3)
    mod = ob3.modifiers.new("sub", "SUBSURF")
    mod.levels = 1
    mod.subdivision_type = "SIMPLE"
    bpy.context.view_layer.update()
    sub = scene_io.extract_avatar([ob3])
    rep["modifier"] = {"vertices": len(sub.vertices), "faces": len(sub.faces),
                       "original_vertices": len(me3.vertices)}
    # image textures: float buffers are linear (-> sRGB), byte buffers are taken as stored
    for fl in (True, False):
        img = bpy.data.images.new(f"img_{fl}", 2, 2, float_buffer=fl)
        img.pixels.foreach_set(np.full(16, 0.214, np.float32))
        m = bpy.data.materials.new(f"tex_{fl}")
        tex = m.node_tree.nodes.new("ShaderNodeTexImage")
        tex.image = img
        m.node_tree.links.new(tex.outputs["Color"], m.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
        rep[f"image_float_{fl}"] = scene_io.texture_set_for(m).image[0, 0].tolist()
    # errors a person can act on
    me2 = bpy.data.meshes.new("nouv")
    me2.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    ob2 = bpy.data.objects.new("nouv", me2)
    sc.collection.objects.link(ob2)
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    sc.collection.objects.link(cam)
    errs = {}
    for key, objs in (("no_uv", [ob2]), ("camera", [cam]), ("nothing", [])):
        try:
            scene_io.extract_avatar(objs)
            errs[key] = None
        except Exception as e:  # record type and message for the test to check
            errs[key] = [type(e).__name__, str(e)]
    rep["errors"] = errs


def imported_multi(glb, out, rep):
    """A file with two mesh nodes (parent/child transforms), two primitives and materials."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=glb)
    obs = [bpy.data.objects[n] for n in ("body", "face")]
    rep["multi"] = dump(scene_io.extract_avatar(obs, frame_range=(0, 24)), os.path.join(out, "multi.npz"))


def imported_skinned(glb, out, rep):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=glb)
    obs = [bpy.data.objects["skinned"]]         # not the importer's bone-shape "Icosphere"
    rep["skinned_objects"] = {o.name: o.type for o in bpy.context.scene.objects}
    rep["skinned"] = dump(scene_io.extract_avatar(obs), os.path.join(out, "skinned.npz"))


def imported_turn(glb, out, rep):
    """A GLB with a head-rotation channel: the object's world rotation at some frames."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=glb)
    ob = next(o for o in bpy.data.objects if o.type == "MESH")
    sc = bpy.context.scene
    mats = {}
    for f in (1, 20, 50):
        sc.frame_set(f)
        mats[f] = [list(r) for r in ob.matrix_world.to_3x3()]
    rep["turn"] = {"object": ob.name, "matrices": mats,
                   "has_shape_key_action": bool(ob.data.shape_keys and ob.data.shape_keys.animation_data
                                                and ob.data.shape_keys.animation_data.action)}


def main():
    glb, out = sys.argv[1], sys.argv[2]
    rep = {}
    try:
        imported_sample(glb, out, rep)
        if len(sys.argv) > 3:
            imported_multi(sys.argv[3], out, rep)
        if len(sys.argv) > 4:
            imported_skinned(sys.argv[4], out, rep)
        if len(sys.argv) > 5:
            imported_turn(sys.argv[5], out, rep)
        handmade(out, rep)
    except Exception:
        rep["traceback"] = traceback.format_exc()
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)


if __name__ == "__main__":
    main()
