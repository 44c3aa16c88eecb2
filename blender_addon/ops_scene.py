"""Scene-side operators: style terms, turntable rig, bake & export, turntable renders."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from . import export, results, rig, selection
from .paths import output_root
from .turntable import TurntableJob


class MM_OT_term_add(bpy.types.Operator):
    """Add a style term"""

    bl_idname = "metamorph.term_add"
    bl_label = "Add Style Term"
    bl_options = {"REGISTER", "UNDO"}

    kind: EnumProperty(items=[("TEXT", "Text", ""), ("IMAGE", "Image", "")], default="TEXT")

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
    """Create a turntable rig of cameras in rings around the avatar's head, plus an orbit camera animated over the timeline"""

    bl_idname = "metamorph.rig_create"
    bl_label = "Create Turntable Rig"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        why = selection.avatar_problem(selection.avatar_objects(context))
        if why and "UVs" not in why:  # a rig does not need UVs
            cls.poll_message_set(why)
            return False
        return True

    def execute(self, context):
        objs = selection.avatar_objects(context)
        if not objs:
            self.report({"ERROR"}, "Metamorph: no mesh selected: select the avatar first.")
            return {"CANCELLED"}
        s = context.scene.metamorph
        try:
            elev = rig.parse_elevations(s.rig_elevations)
            coll = rig.create_turntable_rig(context.scene, objs, s.rig_count, elev, s.rig_distance)
        except ValueError as e:
            self.report({"ERROR"}, f"Metamorph: {e}")
            return {"CANCELLED"}
        s.rig_collection = coll
        if context.scene.camera is None:
            context.scene.camera = selection.orbit_camera(context)
        n = len(selection.rig_cameras(context))
        self.report({"INFO"}, f"Metamorph: rig '{coll.name}' with {n} cameras and an orbit camera.")
        return {"FINISHED"}


def _selected_results(context):
    s = context.scene.metamorph
    items = [(r.name, results.result_objects(r)) for r in s.results if r.select]
    return [(n, objs) for n, objs in items if objs]


class MM_OT_bake_export(bpy.types.Operator):
    """Write the stylized textures and export each selected result as glTF with shape keys and animation"""

    bl_idname = "metamorph.bake_export"
    bl_label = "Bake & Export"

    format: EnumProperty(items=[("GLB", "glTF Binary (.glb)", ""),
                                ("GLTF_SEPARATE", "glTF Separate (.gltf + .bin)", "")],
                         default="GLB")

    @classmethod
    def poll(cls, context):
        if not _selected_results(context):
            cls.poll_message_set("No result selected: stylize first, then tick a result.")
            return False
        return True

    def execute(self, context):
        root = output_root(context)
        done = []
        for name, objs in _selected_results(context):
            out = export.bake_and_export(objs, name, root, self.format)
            done.append(out["model"])
        self.report({"INFO"}, f"Metamorph: exported {', '.join(done)}")
        return {"FINISHED"}


class MM_OT_render_turntables(bpy.types.Operator):
    """Render the frame range from every rig camera for each selected result"""

    bl_idname = "metamorph.render_turntables"
    bl_label = "Render Turntables"

    use_orbit: bpy.props.BoolProperty(name="Orbit camera only", default=False)

    _timer = None

    @classmethod
    def poll(cls, context):
        if not _selected_results(context):
            cls.poll_message_set("No result selected: stylize first, then tick a result.")
            return False
        if not selection.rig_cameras(context) and selection.orbit_camera(context) is None:
            cls.poll_message_set("No cameras: create a turntable rig first.")
            return False
        return True

    def _make(self, context):
        cams = [selection.orbit_camera(context)] if self.use_orbit else \
            selection.rig_cameras(context)
        cams = [c for c in cams if c is not None]
        items = _selected_results(context)
        originals = []
        if context.scene.metamorph.side_by_side:
            src = {o.get("metamorph_source") for _, objs in items for o in objs}
            originals = [bpy.data.objects[n] for n in src if n in bpy.data.objects]
        return TurntableJob(context.scene, items, cams, output_root(context),
                            side_by_side=context.scene.metamorph.side_by_side, originals=originals)

    def execute(self, context):
        return self.invoke(context, None)

    def invoke(self, context, event):
        try:
            self.job = self._make(context)
        except ValueError as e:
            self.report({"ERROR"}, f"Metamorph: {e}")
            return {"CANCELLED"}
        if bpy.app.background:
            try:
                while self.job.step():
                    print(f"Metamorph turntable {self.job.done}/{self.job.total}")
            finally:
                files = self.job.finish()
            self.report({"INFO"}, f"Metamorph: rendered {len(files)} file(s).")
            return {"FINISHED"}
        wm = context.window_manager
        wm.progress_begin(0, self.job.total)
        self._timer = wm.event_timer_add(0.01, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

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
        files = self.job.finish()
        word = "cancelled after" if cancelled else "rendered"
        self.report({"WARNING" if cancelled else "INFO"},
                    f"Metamorph: {word} {len(files)} file(s).")
        return {"CANCELLED" if cancelled else "FINISHED"}


classes = (MM_OT_term_add, MM_OT_term_remove, MM_OT_rig_create, MM_OT_bake_export,
           MM_OT_render_turntables)
