"""Bake & export: the stylized textures as PNG files and the stylized avatar as
glTF/GLB through Blender's own glTF exporter, with its shape keys (morph targets),
its skeleton (the armature that deforms it, skinned), the objects it hangs from
(parents, e.g. a head bone's empty) and the animation actually playing on them,
one clip. Custom properties go out as glTF ``extras`` (the test-model label)."""

from __future__ import annotations

import os

import bpy

from . import images
from ._shared import passes as mm_passes


def save_textures(objects, folder: str, text: dict | None = None) -> list[str]:
    """Write the base-colour images of ``objects``' materials as PNG files (with
    ``text`` chunks) under ``folder`` in the layout of :mod:`shared.passes`. The
    image datablocks are not changed. Returns the written paths."""
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
                px = images.to_srgb_u8(im)
                written.append(mm_passes.write_texture(folder, len(written), im.name, px, text=text))
    return written


def export_set(objects) -> list:
    """``objects`` plus what they need to play back elsewhere: the armatures deforming
    them and every parent up to the root (armature, bone empties), in a stable order."""
    out = list(objects)
    stack = list(objects)
    while stack:
        o = stack.pop()
        extra = [m.object for m in getattr(o, "modifiers", []) if m.type == "ARMATURE" and m.object]
        if o.parent is not None:
            extra.append(o.parent)
        for e in extra:
            if e not in out:
                out.append(e)
                stack.append(e)
    return out


def _clip_name(objects) -> str:
    names = []
    for o in objects:
        for ad in (o.animation_data, getattr(getattr(o.data, "shape_keys", None), "animation_data", None)):
            if ad is not None and ad.action is not None and ad.action.name not in names:
                names.append(ad.action.name)
    return " + ".join(names) or "Animation"


def export_gltf(objects, filepath: str, fmt: str = "GLB", animations: bool = True) -> str:
    """Export ``objects`` (and their armatures and parents, :func:`export_set`) to
    ``filepath`` (GLB or GLTF_SEPARATE): skinned, with morph targets, the active
    animation as one clip and custom properties as extras. Copies placed beside the
    original (``metamorph_offset``) are exported where the original is. Selection,
    active object and placement are restored. Written to a temporary name, then renamed."""
    os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
    vl = bpy.context.view_layer
    before = [o for o in vl.objects if o.select_get()]
    active = vl.objects.active
    everything = export_set(objects)
    shifted = [(o, float(o.get("metamorph_offset", 0.0))) for o in objects
               if o.get("metamorph_offset") and o.parent is None]
    stem, ext = os.path.splitext(filepath)
    # A GLB is one file: write it under a temporary name and rename. (.gltf names its
    # .bin by its own file name, so it is written in place.)
    tmp = f"{stem}.partial{ext}" if fmt == "GLB" else filepath
    try:
        for o, dx in shifted:
            o.location.x -= dx
        for o in before:
            o.select_set(False)
        for o in everything:
            o.select_set(True)
        vl.objects.active = objects[0]
        bpy.ops.export_scene.gltf(
            filepath=tmp, export_format=fmt, use_selection=True, export_morph=True,
            export_morph_normal=False, export_animations=animations, export_skins=True,
            # What plays in Blender, as one clip: never a second copy of an action, never
            # every action the armature could play.
            export_animation_mode="ACTIVE_ACTIONS",
            export_nla_strips_merged_animation_name=_clip_name(everything),
            export_extras=True, export_apply=False, export_yup=True)
        if tmp != filepath:
            os.replace(tmp, filepath)
    finally:
        for o, dx in shifted:
            o.location.x += dx
        for o in vl.objects:
            o.select_set(o in before)
        vl.objects.active = active
        if tmp != filepath and os.path.exists(tmp):
            os.remove(tmp)
    return filepath


def bake_and_export(objects, style: str, folder: str, fmt: str = "GLB",
                    text: dict | None = None) -> dict:
    """Textures to ``<folder>/textures/`` and the avatar to ``<folder>/<style>.glb``
    (``folder``: the result's own folder). Returns {"textures": [...], "model": path}."""
    tex = save_textures(objects, folder, text)
    ext = ".glb" if fmt == "GLB" else ".gltf"
    model = export_gltf(objects, os.path.join(folder, mm_passes.safe_name(style) + ext), fmt)
    return {"textures": tex, "model": model}
