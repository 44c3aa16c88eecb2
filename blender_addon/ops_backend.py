"""Start / stop the optional local backend."""

from __future__ import annotations

import bpy

from . import backend_process, connection
from .preferences import get_prefs


class MM_OT_backend_start(bpy.types.Operator):
    """Start `metamorph serve` with the Python set in the preferences, on the backend address"""

    bl_idname = "metamorph.backend_start"
    bl_label = "Start Local Backend"

    @classmethod
    def poll(cls, context):
        p = get_prefs(context)
        if not p.local_python:
            cls.poll_message_set("Set 'Local backend Python' in the add-on preferences.")
            return False
        if not connection.is_loopback(p.backend_address):
            cls.poll_message_set("The backend address is not local (127.0.0.1).")
            return False
        return True

    def execute(self, context):
        p = get_prefs(context)
        try:
            pid = backend_process.start(p.local_python, p.backend_address)
        except (ValueError, OSError) as e:
            self.report({"ERROR"}, f"Metamorph: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Metamorph: local backend started (pid {pid}); press Connect.")
        return {"FINISHED"}


class MM_OT_backend_stop(bpy.types.Operator):
    """Stop the local backend started from Blender"""

    bl_idname = "metamorph.backend_stop"
    bl_label = "Stop Local Backend"

    def execute(self, context):
        stopped = backend_process.stop(include_stale=True)
        connection.set_connected(context, None)
        self.report({"INFO"}, "Metamorph: local backend stopped." if stopped else
                    "Metamorph: no local backend was running.")
        return {"FINISHED"}


classes = (MM_OT_backend_start, MM_OT_backend_stop)
