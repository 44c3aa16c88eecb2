"""Render a mesh from given cameras with Blender itself (run as a subprocess).

Used by tests/test_render_blender.py and scripts/bench_render.py; imports bpy,
never torch (the two are kept in separate processes). Usage:

    python tests/_render_blender_scene.py SCENE.npz OUT_DIR ENGINE
    python tests/_render_blender_scene.py CAMS.npz OUT.npy PROJECT

SCENE.npz holds vertices [V,3], faces [F,3], uvs [T,2], uv_faces [F,3],
texture [H,W,3] linear float (row 0 = top) and cameras (JSON list of
shared.camera.Camera.to_dict()). ENGINE is CYCLES (emission shader, 1 sample,
near-zero pixel filter: each pixel is its centre ray) or BLENDER_WORKBENCH.
Writes OUT_DIR/view_XX.png (RGBA 8-bit sRGB, 'Standard' view transform,
transparent film), with CYCLES also OUT_DIR/depth_XX.npy ([H,W,2] float32, row 0
= top: the Camera Data node's View Z Depth rendered as emission into a 32-bit
EXR, and alpha), and OUT_DIR/timing.json (seconds per colour render).

PROJECT mode: CAMS.npz holds cameras (JSON) and points [P,3]; writes OUT.npy
[C,P,3] = bpy_extras.object_utils.world_to_camera_view for every camera and
point (x, y in [0,1] of the frame from the bottom-left, z = depth), Blender's
own projection with no rendering involved.
"""

import json
import os
import sys
import time

import bpy
import numpy as np
from mathutils import Matrix


def build_scene(data, engine):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    verts, faces = data["vertices"], data["faces"]
    mesh = bpy.data.meshes.new("avatar")
    mesh.from_pydata(verts.tolist(), [], faces.tolist())
    uv_layer = mesh.uv_layers.new(name="UVMap")
    # from_pydata keeps each triangle's corner order, so loop k of face f is corner (f, k).
    uv_layer.data.foreach_set("uv", data["uvs"][data["uv_faces"]].reshape(-1).astype(np.float32))
    mesh.update()
    obj = bpy.data.objects.new("avatar", mesh)
    scene.collection.objects.link(obj)

    tex = data["texture"]
    h, w = tex.shape[:2]
    img = bpy.data.images.new("tex", w, h, float_buffer=True, alpha=False)
    img.colorspace_settings.name = "Linear Rec.709"
    rgba = np.concatenate([tex, np.ones((h, w, 1), np.float32)], -1)[::-1]  # Blender rows start at the bottom
    img.pixels.foreach_set(np.ascontiguousarray(rgba, dtype=np.float32).reshape(-1))
    img.update()
    img.pack()

    mat = bpy.data.materials.new("emit")
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    tnode = nt.nodes.new("ShaderNodeTexImage")
    tnode.image = img
    tnode.interpolation = "Linear"
    tnode.extension = "REPEAT"
    emit = nt.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0
    outn = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(tnode.outputs["Color"], emit.inputs["Color"])
    nt.nodes.new("ShaderNodeCameraData")  # linked in for the depth renders only
    nt.links.new(emit.outputs["Emission"], outn.inputs["Surface"])
    mesh.materials.append(mat)

    r = scene.render
    r.engine = engine
    r.resolution_percentage = 100
    r.film_transparent = True
    r.dither_intensity = 0.0
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    if engine == "CYCLES":
        c = scene.cycles
        c.device = "CPU"
        c.samples = 1
        c.use_adaptive_sampling = False
        c.use_denoising = False
        c.max_bounces = 0
        c.pixel_filter_type = "BOX"
        c.filter_width = 0.01
        c.seed = 0
    else:
        scene.display.render_aa = "OFF"
        scene.display.shading.light = "FLAT"
        scene.display.shading.color_type = "TEXTURE"

    cam_data = bpy.data.cameras.new("cam")
    cam_obj = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj
    return scene, cam_obj


def apply_camera(scene, cam_obj, c):
    d = cam_obj.data
    d.type = c["type"]
    d.lens = c["lens"]
    d.sensor_width = c["sensor_width"]
    d.sensor_height = c["sensor_height"]
    d.sensor_fit = c["sensor_fit"]
    d.shift_x = c["shift_x"]
    d.shift_y = c["shift_y"]
    d.ortho_scale = c["ortho_scale"]
    d.clip_start = c["clip_start"]
    d.clip_end = c["clip_end"]
    cam_obj.matrix_world = Matrix(np.asarray(c["matrix_world"], dtype=np.float64).reshape(4, 4).tolist())
    r = scene.render
    r.resolution_x = c["resolution_x"]
    r.resolution_y = c["resolution_y"]
    r.pixel_aspect_x = c["pixel_aspect_x"]
    r.pixel_aspect_y = c["pixel_aspect_y"]


def render_depth(scene, out_dir, i):
    """Render View Z Depth (metres along the camera axis) as emission into a float EXR.
    EXR stores scene-linear values, untouched by the view transform."""
    nt = bpy.data.materials["emit"].node_tree
    emit = next(n for n in nt.nodes if n.type == "EMISSION")
    tex = next(n for n in nt.nodes if n.type == "TEX_IMAGE")
    cam_node = next(n for n in nt.nodes if n.type == "CAMERA")
    settings = scene.render.image_settings
    nt.links.new(cam_node.outputs["View Z Depth"], emit.inputs["Color"])
    settings.file_format, settings.color_depth = "OPEN_EXR", "32"
    path = os.path.join(out_dir, f"depth_{i:02d}.exr")
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    settings.file_format, settings.color_depth = "PNG", "8"
    img = bpy.data.images.load(path)
    w, h = img.size
    px = np.array(img.pixels[:], np.float32).reshape(h, w, 4)[::-1]  # Blender rows start at the bottom
    bpy.data.images.remove(img)
    return np.ascontiguousarray(px[..., [0, 3]])


def main(scene_path, out_dir, engine):
    data = dict(np.load(scene_path))
    cameras = json.loads(str(data.pop("cameras")))
    os.makedirs(out_dir, exist_ok=True)
    scene, cam_obj = build_scene(data, engine)
    times = []
    for i, c in enumerate(cameras):
        apply_camera(scene, cam_obj, c)
        scene.render.filepath = os.path.join(out_dir, f"view_{i:02d}.png")
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        times.append(time.perf_counter() - t0)
        if engine == "CYCLES":
            np.save(os.path.join(out_dir, f"depth_{i:02d}.npy"), render_depth(scene, out_dir, i))
    with open(os.path.join(out_dir, "timing.json"), "w") as f:
        json.dump({"engine": engine, "seconds": times}, f)


def project(cams_path, out_path):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    data = np.load(cams_path)
    cameras = json.loads(str(data["cameras"]))
    points = data["points"]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    cam_obj = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj
    scene.render.resolution_percentage = 100
    out = np.zeros((len(cameras), len(points), 3))
    for i, c in enumerate(cameras):
        apply_camera(scene, cam_obj, c)
        bpy.context.view_layer.update()
        for j, p in enumerate(points):
            out[i, j] = world_to_camera_view(scene, cam_obj, Vector(p.tolist()))[:]
    np.save(out_path, out)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[3] == "PROJECT":
        project(sys.argv[1], sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "CYCLES")
