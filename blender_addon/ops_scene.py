"""Scene-side operators: style terms, turntable rig, bake & export, turntable renders."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from . import export, paths, results, rig, selection, state
from ._shared import passes as mm_passes
from ._shared import stylize
from .turntable import TurntableJob, lighting_problem


class MM_OT_term_add(bpy.types.Operator):
    """Add a style term"""

    bl_idname = "metamorph.term_add"
    bl_label = "Add Style Term"
    bl_options = {"REGISTER", "UNDO"}

    kind: EnumProperty(items=[("TEXT", "Text", "A text prompt"),
                              ("IMAGE", "Image", "A reference image")], default="TEXT")

    @classmethod
    def description(cls, context, props):
        return ("Add a text prompt as a style term" if props.kind == "TEXT" else
                "Add a reference image as a style term")

    @classmethod
    def poll(cls, context):
        if len(context.scene.metamorph.terms) >= stylize.MAX_PROMPTS:
            cls.poll_message_set(f"At most {stylize.MAX_PROMPTS} style terms.")
            return False
        return True

    def execute(self, context):
        s = context.scene.metamorph
        t = s.terms.add()
        t.kind = self.kind
        s.active_term = len(s.terms) - 1
        return {"FINISHED"}


class MM_OT_term_remove(bpy.types.Operator):
    """Remove the active style term"""

    bl_idname = "metamorph.term_remove"
    bl_label = "Remove Style Term"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        s = context.scene.metamorph
        if not (0 <= s.active_term < len(s.terms)):
            cls.poll_message_set("No style term selected.")
            return False
        return True

    def execute(self, context):
        s = context.scene.metamorph
        s.terms.remove(s.active_term)
        s.active_term = max(0, min(s.active_term, len(s.terms) - 1))
        return {"FINISHED"}


class MM_OT_rig_create(bpy.types.Operator):
    bl_description = ("Create a turntable rig of cameras in rings around the avatar's head, plus an orbit "
                      "camera animated over the timeline; replaces the rig made before")

    bl_idname = "metamorph.rig_create"
    bl_label = "Create Turntable Rig"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        why = selection.avatar_problem(selection.avatar_objects(context), context, unwrap=True)
        if why:  # a rig does not need UVs
            cls.poll_message_set(why)
            return False
        return True

    def execute(self, context):
        objs = selection.avatar_objects(context)
        why = selection.avatar_problem(objs, context, unwrap=True)
        if why:
            self.report({"ERROR"}, f"Metamorph: {why}")
            return {"CANCELLED"}
        s = context.scene.metamorph
        old = s.rig_collection if s.rig_collection is not None and \
            s.rig_collection.get(rig.RIG_MARK) else bpy.data.collections.get(rig.RIG_NAME)
        try:
            elev = rig.parse_elevations(s.rig_elevations)
            coll = rig.create_turntable_rig(context.scene, objs, s.rig_count, elev, s.rig_distance,
                                            replace=old, lights=s.rig_lights)
        except ValueError as e:
            self.report({"ERROR"}, f"Metamorph: {e}")
            return {"CANCELLED"}
        s.rig_collection = coll
        if context.scene.camera is None:
            context.scene.camera = selection.orbit_camera(context)
        n = len(selection.rig_cameras(context))
        lit = " and three-point lights" if s.rig_lights else ""
        self.report({"INFO"}, f"Metamorph: rig '{coll.name}' with {n} cameras, an orbit camera{lit}.")
        return {"FINISHED"}


def _selected_results(context, with_folders: bool = False):
    """[(name, objects, folder)] of the ticked results whose objects still exist
    (``with_folders``: resolve each result's folder, giving one if needed: execute only)."""
    s = context.scene.metamorph
    out = []
    for r in s.results:
        objs = results.result_objects(r)
        if r.select and objs:
            out.append((r.name, objs, paths.result_folder(context, r) if with_folders else r.folder))
    return out


def _gone(context) -> list[str]:
    """Ticked results whose objects were all deleted."""
    return [r.name for r in context.scene.metamorph.results
            if r.select and not results.result_objects(r)]


def _drop_gone(context, names) -> None:
    s = context.scene.metamorph
    for name in names:
        i = next((i for i, r in enumerate(s.results) if r.name == name), None)
        if i is not None:
            s.results.remove(i)
    s.active_result = max(0, min(s.active_result, len(s.results) - 1))


def _results_problem(context) -> str | None:
    if _selected_results(context):
        return None
    gone = _gone(context)
    if gone:
        return (f"The objects of {', '.join(repr(g) for g in gone)} were deleted; run it to "
                "drop the entry, or stylize again.")
    if not context.scene.metamorph.results:
        return "No results yet: stylize first."
    return "No result ticked in the Results list."


class MM_OT_bake_export(bpy.types.Operator):
    bl_description = ("Write the stylized textures and export each ticked result as glTF with its shape "
                      "keys, skeleton and animation, into the result's own folder")

    bl_idname = "metamorph.bake_export"
    bl_label = "Bake & Export"

    format: EnumProperty(items=[("GLB", "glTF Binary (.glb)", "One file"),
                                ("GLTF_SEPARATE", "glTF Separate (.gltf + .bin)", "Text + binary")],
                         default="GLB", name="Format", description="File format of the export")

    @classmethod
    def poll(cls, context):
        why = _results_problem(context)
        if why and not _gone(context):
            cls.poll_message_set(why)
            return False
        return True

    def execute(self, context):
        gone = _gone(context)
        if gone:
            _drop_gone(context, gone)
        done = []
        for name, objs, folder in _selected_results(context, with_folders=True):
            text = mm_passes.provenance_text({"guidance": objs[0].get("metamorph_guidance", ""),
                                              "guidance_is_test_model":
                                                  bool(objs[0].get("metamorph_guidance_is_test_model"))},
                                             name)
            out = export.bake_and_export(objs, name, folder, self.format, text)
            done.append(out["model"])
        note = (f" Dropped {', '.join(repr(g) for g in gone)}: its objects were deleted."
                if gone else "")
        if not done:
            msg = (note.strip() or "Nothing to export.") + " Nothing was exported."
            state.set_message(context, msg, "WARNING")
            self.report({"WARNING"}, f"Metamorph: {msg}")
            return {"CANCELLED"}
        msg = f"exported {', '.join(done)}.{note}"
        state.set_message(context, msg)
        self.report({"INFO"}, f"Metamorph: {msg}")
        return {"FINISHED"}


class MM_OT_render_turntables(bpy.types.Operator):
    """Render the turntable range from every rig camera for each ticked result"""

    bl_idname = "metamorph.render_turntables"
    bl_label = "Render Turntables"

    use_orbit: bpy.props.BoolProperty(name="Orbit camera only", default=False,
                                      description="Render only the animated orbit camera")

    _timer = None

    @classmethod
    def poll(cls, context):
        why = _results_problem(context)
        if why:
            cls.poll_message_set(why)
            return False
        if not selection.rig_cameras(context) and selection.orbit_camera(context) is None:
            cls.poll_message_set("No cameras: create a turntable rig first.")
            return False
        return True

    def _make(self, context):
        cams = [selection.orbit_camera(context)] if self.use_orbit else \
            selection.rig_cameras(context)
        cams = [c for c in cams if c is not None]
        items = _selected_results(context, with_folders=True)
        s = context.scene.metamorph
        originals = []
        if s.side_by_side:
            src = {o.get("metamorph_source") for _, objs, _ in items for o in objs}
            originals = [bpy.data.objects[n] for n in sorted(src) if n in bpy.data.objects]
        return TurntableJob(context.scene, items, cams, paths.output_root(context),
                            frames=selection.turntable_frames(context),
                            side_by_side=s.side_by_side, originals=originals)

    def execute(self, context):
        return self.invoke(context, None)

    def invoke(self, context, event):
        try:
            self.job = self._make(context)
        except ValueError as e:
            self.report({"ERROR"}, f"Metamorph: {e}")
            return {"CANCELLED"}
        self.warning = lighting_problem(context.scene)
        if self.warning:
            self.report({"WARNING"}, f"Metamorph: {self.warning}")
        if bpy.app.background:
            try:
                while self.job.step():
                    print(f"Metamorph turntable {self.job.done}/{self.job.total}", flush=True)
            finally:
                files = self.job.finish()
            self._done(context, files)
            return {"FINISHED"}
        wm = context.window_manager
        wm.progress_begin(0, self.job.total)
        self._timer = wm.event_timer_add(0.01, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _done(self, context, files, cancelled=False):
        word = "cancelled after" if cancelled else "rendered"
        msg = f"{word} {len(files)} file(s)." + (f" {self.warning}" if self.warning else "")
        level = "WARNING" if cancelled or self.warning else "INFO"
        state.set_message(context, msg, level)
        self.report({level}, f"Metamorph: {msg}")

    def modal(self, context, event):
        wm = context.window_manager
        if event.type == "ESC":
            return self._end(context, cancelled=True)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        more = self.job.step()
        wm.progress_update(self.job.done)
        context.workspace.status_text_set(
            f"Metamorph turntable {self.job.done}/{self.job.total} (Esc cancels)")
        return {"RUNNING_MODAL"} if more else self._end(context)

    def _end(self, context, cancelled=False):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        context.workspace.status_text_set(None)
        self._done(context, self.job.finish(), cancelled)
        return {"CANCELLED" if cancelled else "FINISHED"}


classes = (MM_OT_term_add, MM_OT_term_remove, MM_OT_rig_create, MM_OT_bake_export,
           MM_OT_render_turntables)
