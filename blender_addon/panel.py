"""The sidebar panel (3D View > N > Metamorph).

One panel with collapsible sections (``layout.panel``), so :func:`describe` -- what
the panel shows, as plain values (tested directly) -- runs once per redraw; the draw
functions only lay it out.
"""

from __future__ import annotations

import textwrap

import bpy

from . import backend_process, jobs, panel_create, progress, properties, results, selection, state
from .turntable import lighting_problem

WRAP = 44  # characters per label line in the sidebar's default width


def describe(context) -> dict:
    """What the panel shows, as plain values."""
    s = context.scene.metamorph
    st = state.get(context)
    objs = selection.avatar_objects(context)
    texture_sets = []
    for o in objs:
        for m in o.data.materials:
            if m is not None and m.name not in texture_sets:
                texture_sets.append(m.name)
    fr = selection.frames(context, objs)
    job = jobs.current()
    hello = state.hello(context)
    return {
        "connected": bool(st.connected),
        "connection": st.connection if st.connected else state.NOT_CONNECTED,
        "device": st.device if st.connected else "",
        "guidance_models": list(hello.get("guidance_models") or []),
        "local_backend": backend_process.running(),
        "avatar": [o.name for o in objs],
        "avatar_problem": selection.avatar_problem(objs, context, unwrap=s.unwrap_copy),
        "excluded_copies": selection.excluded_copies(context),
        "needs_uvs": [o.name for o in objs if len(o.data.uv_layers) == 0],
        "texture_sets": texture_sets,
        "cameras": [c.name for c in selection.rig_cameras(context)],
        "orbit": getattr(selection.orbit_camera(context), "name", None),
        "frames": (fr[0], fr[-1], len(fr)) if fr else None,
        "turntable_frames": len(selection.turntable_frames(context)),
        "animated_keys": selection.animated_shape_keys(objs),
        "job": None if job is None else {
            "kind": job.kind, "stage": st.job_stage, "step": st.job_step,
            "total": st.job_total, "loss": st.job_loss, "line": progress.line(job)},
        "message": st.job_message,
        "message_level": st.job_message_level,
        "results": [{"name": r.name, "test_model": r.is_test_model, "guidance": r.guidance,
                     "missing": not results.result_objects(r)} for r in s.results],
        "lighting": lighting_problem(context.scene),
    }


def wrap(layout, text: str, icon: str = "NONE", width: int = WRAP) -> None:
    """A long sentence as several labels (the sidebar does not wrap labels)."""
    for i, ln in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=ln, icon=icon if i == 0 else "BLANK1")


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
        row.label(text=item.name + ("  [TEST MODEL]" if item.is_test_model else ""),
                  icon="ERROR" if item.is_test_model else "NONE")


class MM_PT_main(bpy.types.Panel):
    bl_idname = "MM_PT_main"
    bl_label = "Metamorph"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Metamorph"

    def draw(self, context):
        info = describe(context)  # once per redraw, shared by every section
        draw_main(self.layout, context, info)
        for fn, idname, label in SECTIONS:
            header, body = self.layout.panel(idname, default_closed=False)
            header.label(text=label)
            if body is not None:
                fn(body, context, info)


def draw_main(layout, context, info):
    s = context.scene.metamorph
    box = layout.box()
    row = box.row()
    row.label(text=info["connection"], icon="LINKED" if info["connected"] else "UNLINKED")
    if info["connected"]:
        row.operator("metamorph.disconnect", text="", icon="CANCEL")
    row.operator("metamorph.connect", text="", icon="FILE_REFRESH")
    if info["device"]:
        box.label(text=f"Device: {info['device']}")
    row = box.row(align=True)
    row.operator("metamorph.backend_start", text="Start local")
    if info["local_backend"]:
        row.operator("metamorph.backend_stop", text="Stop local")

    col = layout.column()
    col.label(text="Avatar", icon="MESH_DATA")
    col.prop(s, "avatar_collection")
    if info["avatar"]:
        col.label(text=", ".join(info["avatar"][:4]) + (" ..." if len(info["avatar"]) > 4 else ""))
    if info["excluded_copies"] and info["avatar"]:
        wrap(col, f"Left out (stylized copies): {', '.join(info['excluded_copies'][:3])}", "INFO")
    if info["avatar_problem"]:
        wrap(col, info["avatar_problem"], "ERROR")
    if info["needs_uvs"] or s.unwrap_copy:
        col.prop(s, "unwrap_copy")
    if info["texture_sets"]:
        col.label(text=f"Texture sets: {', '.join(info['texture_sets'][:4])}")


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
    col.prop(s, "rig_lights")
    col.operator("metamorph.rig_create", icon="CAMERA_DATA")
    col.separator()
    col.prop(s, "frame_source")
    if s.frame_source == "CUSTOM":
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


def draw_style(layout, context, info):
    s = context.scene.metamorph
    row = layout.row()
    row.template_list("MM_UL_terms", "", s, "terms", s, "active_term", rows=3)
    col = row.column(align=True)
    col.operator("metamorph.term_add", text="", icon="SMALL_CAPS").kind = "TEXT"
    col.operator("metamorph.term_add", text="", icon="IMAGE_DATA").kind = "IMAGE"
    col.operator("metamorph.term_remove", text="", icon="REMOVE")
    col = layout.column()
    col.prop(s, "style_name")
    col.prop(s, "identity", slider=True)
    row = col.row(align=True)
    row.prop(s, "preset", text="")
    row.prop(s, "seed")
    row = col.row(align=True)
    row.prop(s, "steps")
    row.prop(s, "iterations")
    row = col.row(align=True)
    row.prop(s, "texture_size")
    row.prop(s, "allow_upscale", text="", icon="FULLSCREEN_ENTER")
    row = col.row(align=True)
    row.prop(s, "use_passes")
    sub = row.row(align=True)
    sub.enabled = s.use_passes
    sub.prop(s, "pass_resolution", text="Resolution")
    if s.use_passes:
        col.prop(s, "passes")
    if info["guidance_models"]:
        col.prop(s, "guidance_menu")
    else:
        col.prop(s, "guidance")
    if properties.is_test_model(s.guidance):
        wrap(col, "Test guidance model: checks the pipeline only; results are labelled as "
                  "not a real stylization.", "ERROR")
    col.prop(s, "output_dir")
    row = layout.row(align=True)
    row.scale_y = 1.4
    row.operator("metamorph.prepare", icon="IMPORT")
    row.operator("metamorph.stylize", icon="SHADERFX")
    row.operator("metamorph.cancel", text="", icon="CANCEL")
    job = info["job"]
    if job:
        box = layout.box()
        wrap(box, job["line"])
        if job["total"]:
            box.progress(factor=min(1.0, job["step"] / max(1, job["total"])), text=job["stage"])
        if job["loss"]:
            box.label(text=f"loss {job['loss']:.4f}")
        prev = bpy.data.images.get(state.get(context).job_preview) if state.get(context).job_preview \
            else None
        if prev is not None:
            box.template_icon(icon_value=layout.icon(prev), scale=5.0)
    elif info["message"]:
        icon = {"ERROR": "ERROR", "WARNING": "ERROR"}.get(info["message_level"], "INFO")
        wrap(layout, info["message"], icon)


def draw_results(layout, context, info):
    s = context.scene.metamorph
    layout.template_list("MM_UL_results", "", s, "results", s, "active_result", rows=3)
    if 0 <= s.active_result < len(info["results"]):
        r = info["results"][s.active_result]
        if r["test_model"]:
            wrap(layout, f"'{r['name']}' was made by the test guidance model ({r['guidance']}): "
                         "not a real stylization.", "ERROR")
        if r["missing"]:
            wrap(layout, f"The objects of '{r['name']}' were deleted.", "ERROR")
    col = layout.column(align=True)
    col.operator("metamorph.bake_export", icon="EXPORT")
    row = col.row(align=True)
    row.operator("metamorph.render_turntables", icon="RENDER_ANIMATION")
    row.prop(s, "side_by_side", text="", icon="SPLIT_HORIZONTAL")
    col.prop(s, "tt_use_scene_range")
    if not s.tt_use_scene_range:
        row = col.row(align=True)
        row.prop(s, "tt_frame_start")
        row.prop(s, "tt_frame_end")
    col.label(text=f"Turntable: {info['turntable_frames']} frame(s) per camera")
    if info["lighting"]:
        wrap(col, info["lighting"], "ERROR")


SECTIONS = ((draw_rig, "MM_rig", "Cameras & Expressions"), (draw_style, "MM_style", "Style"),
            (draw_results, "MM_results", "Results"), (panel_create.draw_create, "MM_create", "Create & Animate"))
DRAW_FUNCTIONS = (draw_main, draw_rig, draw_style, draw_results)

classes = (MM_UL_terms, MM_UL_results, MM_PT_main)
