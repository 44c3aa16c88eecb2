"""UVs for meshes that have none, without touching them: Smart UV Project on a
temporary copy, read back as per-loop UVs for the request and for the stylized copy
(which gets them as its UV map). The original mesh never changes.
"""

from __future__ import annotations

import bpy
import numpy as np


def smart_uvs(obj, angle_limit: float = 1.15, island_margin: float = 0.02) -> np.ndarray:
    """Per-loop UVs [L,2] float32 from Smart UV Project on a temporary copy of ``obj``'s
    mesh (same loops, same order). Selection, active object and mode are restored and
    the temporary copy removed, whatever happens."""
    scene = bpy.context.scene
    vl = bpy.context.view_layer
    mesh = obj.data.copy()
    tmp = bpy.data.objects.new("MM unwrap (temporary)", mesh)
    before = [o for o in vl.objects if o.select_get()]
    active = vl.objects.active
    try:
        scene.collection.objects.link(tmp)
        if mesh.shape_keys is not None:
            tmp.shape_key_clear()  # edit mode would rewrite key blocks; UVs don't need them
        mesh.uv_layers.new(name="UVMap")
        for o in before:
            o.select_set(False)
        tmp.select_set(True)
        vl.objects.active = tmp
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(angle_limit=angle_limit, island_margin=island_margin)
        bpy.ops.object.mode_set(mode="OBJECT")
        uv = np.empty(len(mesh.loops) * 2, np.float32)
        mesh.uv_layers.active.uv.foreach_get("vector", uv)
        return uv.reshape(-1, 2)
    finally:
        if tmp.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        bpy.data.objects.remove(tmp)
        bpy.data.meshes.remove(mesh)
        for o in vl.objects:
            o.select_set(o in before)
        vl.objects.active = active
