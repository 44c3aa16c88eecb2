"""Backend operators: Connect, Disconnect, Prepare, Stylize, Cancel.

The machinery (send, progress, apply in one undo step) is :mod:`job_operator`; what
is sent is :mod:`request_build`; what a result does to the scene is :mod:`result_apply`.
"""

from __future__ import annotations

import bpy

from . import connection, jobs, progress, request_build, selection, state
from ._shared import errors
from .job_operator import JobOperator, report_text


class MM_OT_connect(bpy.types.Operator):
    """Say hello to the backend at the preferences' address and show its device and models"""

    bl_idname = "metamorph.connect"
    bl_label = "Connect"

    def execute(self, context):
        opts = connection.client_options(context)
        why = connection.address_problem(opts["address"])
        if why:
            progress.clear(context, why, "ERROR")
            self.report({"ERROR"}, f"Metamorph: {why}")
            return {"CANCELLED"}
        job = jobs.Job("connect", lambda client, post, cancelled: ({}, {}), opts)
        job.run_blocking() if bpy.app.background else _run_short(job)
        if job.state != "done":
            connection.set_connected(context, None)
            msg = report_text(job.error or errors.ServerUnavailable("No answer."))
            progress.clear(context, msg, "ERROR")
            self.report({"ERROR"}, f"Metamorph: {msg}")
            return {"CANCELLED"}
        connection.set_connected(context, job.hello, opts["address"])
        progress.clear(context, f"Connected ({job.hello.get('device', '?')}).")
        self.report({"INFO"}, f"Metamorph: connected ({job.hello.get('device', '?')})")
        return {"FINISHED"}


def _run_short(job):
    """Hello from the UI: worker thread, joined (bounded by the request timeout)."""
    job.start()
    job.thread.join()
    job.tick(budget_s=1.0)
    job.release()


class MM_OT_disconnect(bpy.types.Operator):
    """Forget the connection to the backend (a backend you did not start keeps running)"""

    bl_idname = "metamorph.disconnect"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context):
        if not connection.is_connected(context):
            cls.poll_message_set("Not connected.")
            return False
        if jobs.current() is not None:
            cls.poll_message_set("A job is running: cancel it first.")
            return False
        return True

    def execute(self, context):
        connection.set_connected(context, None)
        progress.clear(context, "Disconnected.")
        return {"FINISHED"}


class MM_OT_prepare(JobOperator, bpy.types.Operator):
    bl_description = ("Upload the avatar and meta-learn its style initialization on the backend (once "
                      "per avatar: new styles then adapt in a few steps)")

    bl_idname = "metamorph.prepare"
    bl_label = "Prepare"
    action = "prepare"

    def make_job(self, context):
        return request_build.prepare_spec(context, selection.avatar_objects(context),
                                          request_build.settings_param(self.settings))


class MM_OT_stylize(JobOperator, bpy.types.Operator):
    """Stylize the avatar with the style terms and bring back a stylized copy"""

    bl_idname = "metamorph.stylize"
    bl_label = "Stylize"
    action = "stylize"

    def make_job(self, context):
        return request_build.stylize_spec(context, selection.avatar_objects(context),
                                          request_build.settings_param(self.settings))


class MM_OT_cancel(bpy.types.Operator):
    """Cancel the running Metamorph job on the backend"""

    bl_idname = "metamorph.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        if jobs.current() is None:
            cls.poll_message_set("No Metamorph job is running.")
            return False
        return True

    def execute(self, context):
        job = jobs.current()
        if job is not None:
            job.cancel()
            state.set_message(context, "Cancelling...")
        return {"FINISHED"}


classes = (MM_OT_connect, MM_OT_disconnect, MM_OT_prepare, MM_OT_stylize, MM_OT_cancel)
