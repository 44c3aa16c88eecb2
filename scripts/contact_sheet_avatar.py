"""Render a contact sheet of the parametric sample avatar with Blender (bpy).

Rows: a few parameter sets; columns: neutral front, three-quarter view and a
few expressions (blendshape weights from the sample's ARKit set). Cycles on
the CPU at a small resolution, so it runs on a laptop in about a minute.
Prints generation time and vertex counts per parameter set.

    .venv/bin/python scripts/contact_sheet_avatar.py [--out out/avatar_contact_sheet.png] [--size 256]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backend.avatar import AvatarParams, sample_avatar  # noqa: E402

PARAM_SETS = {
    "default": AvatarParams(),
    "long hair, round glasses": AvatarParams(
        hairstyle="long", glasses="round", eyebrow_style="thin", skin_tone=0.12, hair_lightness=0.8,
        hair_redness=0.15, eye_color=0.95, head_width=-0.5, jaw_width=-0.6, nose_length=-0.3,
        nose_width=-0.4, eye_size=0.6, lip_fullness=0.7, mouth_width=-0.3, chin_length=-0.4),
    "bun, rect glasses": AvatarParams(
        hairstyle="bun", glasses="rectangular", eyebrow_style="thick", skin_tone=0.8, skin_warmth=0.7,
        hair_lightness=0.05, eye_color=0.1, head_width=0.6, jaw_width=0.8, nose_width=0.9,
        nose_projection=-0.4, chin_protrusion=0.6, cheek_fullness=0.9, ear_size=0.7, eye_spacing=0.6),
    "bald": AvatarParams(
        hairstyle="none", eyebrow_style="medium", skin_tone=0.45, hair_redness=0.9, hair_lightness=0.45,
        eye_color=0.6, head_height=0.8, head_depth=0.5, nose_length=0.9, nose_projection=0.8,
        chin_length=0.8, ear_size=-0.6, neck_width=0.7, shoulder_width=0.8),
}
EXPRESSIONS = [
    ("neutral", {}), ("3/4 view", {}), ("jawOpen", {"jawOpen": 1.0}),
    ("smile", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
    ("blink+browUp", {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0, "browInnerUp": 1.0}),
    ("pucker+browDown", {"mouthPucker": 1.0, "browDownLeft": 1.0, "browDownRight": 1.0}),
    ("funnel+cheekPuff", {"mouthFunnel": 1.0, "cheekPuff": 1.0}),
]


def build_object(bpy, av, name="avatar"):
    """A Blender mesh object from AvatarData: shape keys, UVs, textured material."""
    me = bpy.data.meshes.new(name)
    me.from_pydata(av.vertices.astype(float).tolist(), [], av.faces.tolist())
    uv = me.uv_layers.new(name="UVMap")
    corner_uv = av.uvs[av.uv_faces.reshape(-1)]
    # from_pydata keeps face and corner order for triangles
    uv.uv.foreach_set("vector", corner_uv.astype(np.float32).ravel())
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    for p in me.polygons:
        p.use_smooth = True
    if len(av.blendshape_names):
        ob.shape_key_add(name="Basis")
        for k, n in enumerate(av.blendshape_names):
            kb = ob.shape_key_add(name=n)
            kb.data.foreach_set("co", (av.vertices + av.blendshapes[k]).astype(np.float32).ravel())
            kb.value = 0.0
    ts = av.texture_sets[0]
    h, w = ts.image.shape[:2]
    img = bpy.data.images.new(ts.name, w, h)
    rgba = np.concatenate([ts.image[::-1].astype(np.float32) / 255.0, np.ones((h, w, 1), np.float32)], -1)
    img.pixels.foreach_set(rgba.ravel())
    mat = bpy.data.materials.new("albedo")
    mat.use_nodes = True
    nt = mat.node_tree
    bsdf = nt.nodes["Principled BSDF"]
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = img
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.55
    me.materials.append(mat)
    return ob


def setup_scene(bpy, size):
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = 12
    sc.cycles.use_denoising = False
    sc.render.resolution_x = size
    sc.render.resolution_y = int(size * 1.25)
    sc.render.film_transparent = False
    world = bpy.data.worlds.new("w")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.35, 0.37, 0.4, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    sc.world = world
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.data.lens = 85
    sc.collection.objects.link(cam)
    sc.camera = cam
    for loc, energy in (((-0.6, -1.0, 0.8), 120.0), ((0.8, -0.6, 0.5), 50.0), ((0.0, 1.0, 0.9), 60.0)):
        li = bpy.data.objects.new("light", bpy.data.lights.new("light", "POINT"))
        li.data.energy = energy
        li.data.shadow_soft_size = 0.35          # soft shadows: no hard nose-shadow lines
        li.location = loc
        sc.collection.objects.link(li)
    return cam


def aim(cam, yaw_deg, target=(0.0, 0.0, 0.36), dist=1.15):
    from mathutils import Vector
    a = math.radians(yaw_deg)
    cam.location = Vector((target[0] + dist * math.sin(a), target[1] - dist * math.cos(a), target[2] + 0.03))
    d = Vector(target) - cam.location
    cam.rotation_euler = d.to_track_quat("-Z", "Y").to_euler()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/avatar_contact_sheet.png")
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="only the first parameter set")
    args = ap.parse_args(argv)
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    cam = setup_scene(bpy, args.size)
    tiles, labels = [], []
    tmp = tempfile.mkdtemp()
    for pname, P in list(PARAM_SETS.items())[:1 if args.quick else None]:
        t0 = time.perf_counter()
        av = sample_avatar(P)
        dt = time.perf_counter() - t0
        print(f"{pname:28s} generate {dt:6.2f} s  vertices {av.num_vertices:6d}  triangles {av.num_faces:6d}  "
              f"uvs {len(av.uvs):6d}  blendshapes {len(av.blendshape_names)}", flush=True)
        ob = build_object(bpy, av, pname)
        row = []
        for ename, weights in EXPRESSIONS:
            for kb in ob.data.shape_keys.key_blocks[1:]:
                kb.value = weights.get(kb.name, 0.0)
            aim(cam, 35.0 if ename == "3/4 view" else 0.0)
            path = os.path.join(tmp, "tile.png")
            bpy.context.scene.render.filepath = path
            bpy.ops.render.render(write_still=True)
            row.append(np.asarray(Image.open(path).convert("RGB")))
        tiles.append(row)
        labels.append(pname)
        bpy.data.objects.remove(ob)
    th, tw = tiles[0][0].shape[:2]
    pad = 18
    sheet = Image.new("RGB", (tw * len(EXPRESSIONS), (th + pad) * len(tiles) + pad), (20, 20, 20))
    draw = ImageDraw.Draw(sheet)
    for j, (ename, _) in enumerate(EXPRESSIONS):
        draw.text((j * tw + 4, 3), ename, fill=(230, 230, 230))
    for i, row in enumerate(tiles):
        y = pad + i * (th + pad)
        for j, t in enumerate(row):
            sheet.paste(Image.fromarray(t), (j * tw, y))
        draw.text((4, y + th + 3), labels[i], fill=(230, 230, 230))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
