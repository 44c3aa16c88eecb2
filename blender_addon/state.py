"""Transient state: the connection, the backend's device and models, the running job's
progress. It lives on the window manager (``context.window_manager.metamorph``), which
Blender never saves into the .blend and never puts on the undo stack, so reopening a
file or pressing Ctrl+Z never shows a stale "connected" or a half-finished job.

Written by the main thread only (operators, the job timer); read by polls and the panel.
"""

from __future__ import annotations

import json

import bpy
from bpy.props import FloatProperty, IntProperty, PointerProperty, StringProperty

NOT_CONNECTED = "not connected"


class MetamorphState(bpy.types.PropertyGroup):
    connected: bpy.props.BoolProperty(default=False)
    connection: StringProperty(default=NOT_CONNECTED)
    address: StringProperty(default="")
    device: StringProperty(default="")
    hello_json: StringProperty(default="{}", description="The backend's hello, as JSON")
    job_kind: StringProperty(default="")
    job_stage: StringProperty(default="")
    job_step: IntProperty(default=0)
    job_total: IntProperty(default=0)
    job_loss: FloatProperty(default=0.0)
    job_eta_s: FloatProperty(default=-1.0, description="Estimated seconds left (-1 = unknown)")
    job_message: StringProperty(default="")
    job_message_level: StringProperty(default="INFO")
    job_preview: StringProperty(default="", description="Name of the preview image datablock")


def get(context=None) -> MetamorphState:
    return (context or bpy.context).window_manager.metamorph


def hello(context=None) -> dict:
    """The last hello of the connected backend ({} when not connected)."""
    st = get(context)
    if not st.connected:
        return {}
    try:
        return json.loads(st.hello_json or "{}")
    except ValueError:
        return {}


def set_message(context, message: str, level: str = "INFO") -> None:
    st = get(context)
    st.job_message, st.job_message_level = message, level


classes = (MetamorphState,)


def register():
    bpy.types.WindowManager.metamorph = PointerProperty(type=MetamorphState)


def unregister():
    del bpy.types.WindowManager.metamorph
