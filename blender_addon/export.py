"""Bake & export: the stylized textures as files and the stylized avatar as glTF/GLB
(with shape keys and their animation) through Blender's own glTF exporter."""

from __future__ import annotations

import os

import bpy

from .passes import safe_name


def save_textures(objects, folder: str) -> list[str]:
    """Write the base-colour images of ``objects``' materials as PNG files in
    ``folder``; packed images stay packed. Returns the written paths."""
    os.makedirs(folder, exist_ok=True)
    written, seen = [], set()
    for o in objects:
        for m in o.data.materials:
            if m is None or m.node_tree is None:
                continue
            for node in m.node_tree.nodes:
                im = getattr(node, "image", None) if node.type == "TEX_IMAGE" else None
                if im is None or im.name in seen:
                    continue
                seen.add(im.name)
                path = os.path.join(folder, safe_name(im.name) + ".png")
                # save_render writes a copy with the scene's view transform off for
                # sRGB data; use a temporary copy of the settings to keep it exact.
                im.save_render(path, scene=_plain_scene())
                written.append(path)
    return written


def _plain_scene():
    """A scene whose colour management writes image pixels unchanged (Standard view)."""
    sc = bpy.data.scenes.get("MM export settings")
    if sc is None:
        sc = bpy.data.scenes.new("MM export settings")
        sc.view_settings.view_transform = "Standard"
        sc.render.image_settings.file_format = "PNG"
        sc.render.image_settings.color_mode = "RGB"
    return sc


def export_gltf(objects, filepath: str, fmt: str = "GLB", animations: bool = True) -> str:
    """Export exactly ``objects`` to ``filepath`` (GLB or GLTF_SEPARATE) with shape keys
    (morph targets) and their animation. Selection and active object are restored."""
    os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
    vl = bpy.context.view_layer
    before = [o for o in vl.objects if o.select_get()]
    active = vl.objects.active
    try:
        for o in before:
            o.select_set(False)
        for o in objects:
            o.select_set(True)
        vl.objects.active = objects[0]
        bpy.ops.export_scene.gltf(filepath=filepath, export_format=fmt, use_selection=True,
                                  export_morph=True, export_morph_normal=False,
                                  export_animations=animations, export_apply=False,
                                  export_yup=True)
    finally:
        for o in vl.objects:
            o.select_set(o in before)
        vl.objects.active = active
    return filepath


def bake_and_export(objects, style: str, root: str, fmt: str = "GLB") -> dict:
    """Textures to ``<root>/<style>/textures/`` and the avatar to
    ``<root>/<style>/<style>.glb``. Returns {"textures": [...], "model": path}."""
    folder = os.path.join(root, safe_name(style))
    tex = save_textures(objects, os.path.join(folder, "textures"))
    ext = ".glb" if fmt == "GLB" else ".gltf"
    model = export_gltf(objects, os.path.join(folder, safe_name(style) + ext), fmt)
    return {"textures": tex, "model": model}
