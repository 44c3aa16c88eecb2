"""Start / stop the optional local backend (only ever the one this session started)."""

from __future__ import annotations

import bpy

from . import backend_process, connection, progress, state
from ._shared import endpoints
from .preferences import get_prefs


class MM_OT_backend_start(bpy.types.Operator):
    """Start `metamorph serve` with the Python set in the preferences, on the backend address"""

    bl_idname = "metamorph.backend_start"
    bl_label = "Start Local Backend"

    @classmethod
    def poll(cls, context):
        p = get_prefs(context)
        if backend_process.running():
            cls.poll_message_set("The local backend is already running.")
            return False
        if not p.local_python:
            cls.poll_message_set("Set 'Local backend Python' in the add-on preferences.")
            return False
        if not endpoints.is_loopback(p.backend_address):
            cls.poll_message_set("The backend address is not local (127.0.0.1).")
            return False
        return True

    def execute(self, context):
        p = get_prefs(context)
        try:
            pid = backend_process.start(p.local_python, p.backend_address)
        except (ValueError, OSError) as e:
            progress.clear(context, str(e), "ERROR")
            self.report({"ERROR"}, f"Metamorph: {e}")
            return {"CANCELLED"}
        progress.clear(context, f"Local backend started (pid {pid}); press Connect.")
        self.report({"INFO"}, f"Metamorph: local backend started (pid {pid}); press Connect.")
        return {"FINISHED"}


class MM_OT_backend_stop(bpy.types.Operator):
    bl_description = ("Stop the local backend started from Blender (a backend started elsewhere is "
                      "never stopped; use Disconnect to leave it)")

    bl_idname = "metamorph.backend_stop"
    bl_label = "Stop Local Backend"

    @classmethod
    def poll(cls, context):
        if not backend_process.running():
            cls.poll_message_set("No local backend was started from Blender; Disconnect leaves "
                                 "a backend started elsewhere.")
            return False
        return True

    def execute(self, context):
        address = backend_process.address()
        stopped = backend_process.stop()
        st = state.get(context)
        if stopped and st.connected and st.address == address:
            connection.set_connected(context, None)  # it was this backend: it is gone now
        msg = "Local backend stopped." if stopped else "No local backend was running."
        progress.clear(context, msg)
        self.report({"INFO"}, f"Metamorph: {msg}")
        return {"FINISHED"}


classes = (MM_OT_backend_start, MM_OT_backend_stop)
