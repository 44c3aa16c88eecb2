"""Add-on preferences: where the backend is, how long to wait, where files go.

Stored under ``__package__`` so the same code works as a repository package
(tests) and as an installed extension (``bl_ext.<repo>.metamorph``).
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
DEFAULT_OUTPUT = "//metamorph/"

# The root package name ("blender_addon" in a checkout, "bl_ext.user_default.metamorph"
# when installed): preferences are keyed by it.
ADDON_ID = __package__


class MetamorphPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_address: StringProperty(
        name="Backend address", default=DEFAULT_ADDRESS,
        description="ZeroMQ address of a running `metamorph serve` (tcp://host:port)")
    server_public_key: StringProperty(
        name="Server public key", default="",
        description="CURVE public key of a remote backend (Z85, 40 characters); empty for loopback")
    client_public_key: StringProperty(name="Client public key", default="",
                                      description="This machine's CURVE public key (Z85)")
    client_secret_key: StringProperty(name="Client secret key", default="", subtype="PASSWORD",
                                      description="This machine's CURVE secret key (Z85)")
    timeout_s: FloatProperty(name="Request timeout (s)", default=10.0, min=0.5, max=600.0,
                             description="How long to wait for the backend to answer a request")
    heartbeat_timeout_s: FloatProperty(
        name="Heartbeat timeout (s)", default=6.0, min=1.0, max=600.0,
        description="A running job is declared lost when the backend is silent this long")
    output_dir: StringProperty(name="Output folder", default=DEFAULT_OUTPUT, subtype="DIR_PATH",
                               options={"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0)
                               else set(),
                               description="Where passes, exports and renders are written "
                                           "(// = next to the .blend file)")
    local_python: StringProperty(
        name="Local backend Python", default="", subtype="FILE_PATH",
        description="Optional: a Python with Metamorph installed; the add-on can start "
                    "`metamorph serve` with it on the backend address and stops it at quit")
    place_beside: BoolProperty(
        name="Place results beside the original", default=True,
        description="Move a stylized copy along X by the avatar's width (not for copies that "
                    "follow a rig); exports are written at the original's place")
    copy_action: BoolProperty(
        name="Copy the animation", default=False,
        description="Give each stylized copy its own copy of the original's action (off: it "
                    "plays the same action, so later edits to the original's keys carry over)")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "backend_address")
        box = col.box()
        box.label(text="Remote backend (CURVE encryption)")
        box.prop(self, "server_public_key")
        box.prop(self, "client_public_key")
        box.prop(self, "client_secret_key")
        col.prop(self, "timeout_s")
        col.prop(self, "heartbeat_timeout_s")
        col.prop(self, "output_dir")
        col.prop(self, "local_python")
        col.prop(self, "place_beside")
        col.prop(self, "copy_action")


class _Defaults:
    """Preference values used when the add-on's preferences are not registered
    (module used without the extension being enabled, e.g. from a script)."""

    backend_address = DEFAULT_ADDRESS
    server_public_key = ""
    client_public_key = ""
    client_secret_key = ""
    timeout_s = 10.0
    heartbeat_timeout_s = 6.0
    output_dir = DEFAULT_OUTPUT
    local_python = ""
    place_beside = True
    copy_action = False


def get_prefs(context=None):
    """This add-on's preferences (or defaults when not registered as an add-on)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is None or addon.preferences is None:
        return _Defaults()
    return addon.preferences


classes = (MetamorphPreferences,)
