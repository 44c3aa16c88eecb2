"""Metamorph Blender extension: stylize avatars with a PyTorch backend over ZeroMQ.

Extension style (``blender_manifest.toml``, no ``bl_info``); relative imports only,
so the same package works from a checkout (``blender_addon``) and installed
(``bl_ext.<repository>.metamorph``). It never imports torch.
"""

from __future__ import annotations

import bpy

from . import (backend_process, jobs, ops_backend, ops_jobs, ops_scene, panel, preferences,
               properties)

_CLASSES = (*preferences.classes, *properties.classes, *ops_jobs.classes, *ops_scene.classes,
            *ops_backend.classes, *panel.classes)


def register():
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register()


def unregister():
    job = jobs.current()
    if job is not None:
        job.cancel()
        job.release()
    backend_process.stop()
    properties.unregister()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
