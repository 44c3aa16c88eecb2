"""The sidebar panel (3D View > N > Metamorph).

``describe(context)`` gathers what the panel shows as plain values (tested
directly); the draw functions only lay it out.
"""

from __future__ import annotations

import bpy

from . import backend_process, connection, jobs, selection


def describe(context) -> dict:
    """What the panel shows, as plain values."""
    s = context.scene.metamorph
    objs = selection.avatar_objects(context)
    texture_sets = []
    for o in objs:
        for m in o.data.materials:
            if m is not None and m.name not in texture_sets:
                texture_sets.append(m.name)
    fr = selection.frames(context)
    job = jobs.current()
    return {
        "connection": s.connection if connection.is_connected() else "not connected",
        "device": s.device if connection.is_connected() else "",
        "avatar": [o.name for o in objs],
        "avatar_problem": selection.avatar_problem(objs),
        "texture_sets": texture_sets,
        "cameras": [c.name for c in selection.rig_cameras(context)],
        "orbit": getattr(selection.orbit_camera(context), "name", None),
        "frames": (fr[0], fr[-1], len(fr)) if fr else None,
        "animated_keys": selection.animated_shape_keys(objs),
        "job": None if job is None else {
            "kind": job.kind, "stage": s.job_stage, "step": s.job_step,
            "total": s.job_total, "loss": s.job_loss},
        "message": s.job_message,
        "results": [r.name for r in s.results],
        "local_backend": backend_process.running(),
    }


class MM_UL_terms(bpy.types.UIList):
    bl_idname = "MM_UL_terms"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "kind", text="")
        if item.kind == "TEXT":
            row.prop(item, "text", text="")
        else:
            row.prop(item, "image", text="")
        row.prop(item, "weight", text="")


class MM_UL_results(bpy.types.UIList):
    bl_idname = "MM_UL_results"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "select", text="")
        row.label(text=item.name)


class _Base:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Metamorph"


class MM_PT_main(_Base, bpy.types.Panel):
    bl_idname = "MM_PT_main"
    bl_label = "Metamorph"

    def draw(self, context):
        draw_main(self.layout, context, describe(context))


def draw_main(layout, context, info):
    s = context.scene.metamorph
    box = layout.box()
    row = box.row()
    row.label(text=info["connection"], icon="LINKED" if info["device"] else "UNLINKED")
    row.operator("metamorph.connect", text="", icon="FILE_REFRESH")
    if info["device"]:
        box.label(text=f"Device: {info['device']}")
    row = box.row(align=True)
    row.operator("metamorph.backend_start", text="Start local")
    row.operator("metamorph.backend_stop", text="Stop")

    col = layout.column()
    col.label(text="Avatar", icon="MESH_DATA")
    col.prop(s, "avatar_collection")
    if info["avatar"]:
        col.label(text=", ".join(info["avatar"][:4]) + (" ..." if len(info["avatar"]) > 4 else ""))
    if info["avatar_problem"]:
        col.label(text=info["avatar_problem"], icon="ERROR")
    if info["texture_sets"]:
        col.label(text=f"Texture sets: {', '.join(info['texture_sets'][:4])}")


class MM_PT_rig(_Base, bpy.types.Panel):
    bl_idname = "MM_PT_rig"
    bl_label = "Cameras & Expressions"
    bl_parent_id = "MM_PT_main"

    def draw(self, context):
        draw_rig(self.layout, context, describe(context))


def draw_rig(layout, context, info):
    s = context.scene.metamorph
    col = layout.column()
    col.prop(s, "rig_collection")
    col.label(text=f"{len(info['cameras'])} camera(s)" +
              (f", orbit: {info['orbit']}" if info["orbit"] else ""))
    row = col.row(align=True)
    row.prop(s, "rig_count")
    row.prop(s, "rig_elevations", text="")
    col.prop(s, "rig_distance")
    col.operator("metamorph.rig_create", icon="CAMERA_DATA")
    col.separator()
    col.prop(s, "use_scene_range")
    if not s.use_scene_range:
        row = col.row(align=True)
        row.prop(s, "frame_start")
        row.prop(s, "frame_end")
    col.prop(s, "frame_step")
    if info["frames"]:
        a, b, n = info["frames"]
        col.label(text=f"Frames {a}-{b}: {n} expression(s)")
    keys = info["animated_keys"]
    col.label(text=(f"Animated shape keys: {', '.join(keys[:6])}" + (" ..." if len(keys) > 6 else ""))
              if keys else "No animated shape keys (neutral only)")


class MM_PT_style(_Base, bpy.types.Panel):
    bl_idname = "MM_PT_style"
    bl_label = "Style"
    bl_parent_id = "MM_PT_main"

    def draw(self, context):
        draw_style(self.layout, context, describe(context))


def draw_style(layout, context, info):
    s = context.scene.metamorph
    row = layout.row()
    row.template_list("MM_UL_terms", "", s, "terms", s, "active_term", rows=3)
    col = row.column(align=True)
    col.operator("metamorph.term_add", text="", icon="ADD").kind = "TEXT"
    col.operator("metamorph.term_add", text="", icon="IMAGE_DATA").kind = "IMAGE"
    col.operator("metamorph.term_remove", text="", icon="REMOVE")
    col = layout.column()
    col.prop(s, "style_name")
    col.prop(s, "identity", slider=True)
    row = col.row(align=True)
    row.prop(s, "preset", text="")
    row.prop(s, "steps")
    row = col.row(align=True)
    row.prop(s, "seed")
    row.prop(s, "texture_size")
    col.prop(s, "pass_resolution")
    col.prop(s, "guidance")
    col.prop(s, "output_dir")
    row = layout.row(align=True)
    row.scale_y = 1.4
    row.operator("metamorph.prepare", icon="IMPORT")
    row.operator("metamorph.stylize", icon="SHADERFX")
    row.operator("metamorph.cancel", icon="CANCEL")
    job = info["job"]
    if job:
        box = layout.box()
        box.label(text=f"{job['kind']}: {job['stage']} {job['step']}/{job['total']}  "
                       f"loss {job['loss']:.4f}")
        if job["total"]:
            box.progress(factor=job["step"] / max(1, job["total"]), text=job["stage"])
        prev = bpy.data.images.get(s.job_preview) if s.job_preview else None
        if prev is not None:
            box.template_icon(icon_value=layout.icon(prev), scale=5.0)
    elif info["message"]:
        layout.label(text=info["message"], icon="INFO")


class MM_PT_results(_Base, bpy.types.Panel):
    bl_idname = "MM_PT_results"
    bl_label = "Results"
    bl_parent_id = "MM_PT_main"

    def draw(self, context):
        draw_results(self.layout, context, describe(context))


def draw_results(layout, context, info):
    s = context.scene.metamorph
    layout.template_list("MM_UL_results", "", s, "results", s, "active_result", rows=3)
    col = layout.column(align=True)
    col.operator("metamorph.bake_export", icon="EXPORT")
    row = col.row(align=True)
    row.operator("metamorph.render_turntables", icon="RENDER_ANIMATION")
    row.prop(s, "side_by_side", text="", icon="SPLIT_HORIZONTAL")


DRAW_FUNCTIONS = (draw_main, draw_rig, draw_style, draw_results)

classes = (MM_UL_terms, MM_UL_results, MM_PT_main, MM_PT_rig, MM_PT_style, MM_PT_results)
