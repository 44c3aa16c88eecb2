"""Metamorph Blender extension: stylize avatars with a PyTorch backend over ZeroMQ.

Extension style (``blender_manifest.toml``, no ``bl_info``); relative imports only,
so the same package works from a checkout (``blender_addon``) and installed
(``bl_ext.<repository>.metamorph``). It never imports torch.

Modules: operators (``ops_*``) on top of the job machinery (``job_operator``,
``jobs``), request building (``request_build``), progress display (``progress``),
result application (``result_apply``, ``results``, ``passes``, ``avatar_build``),
scene reading (``scene_io``, ``animation``, ``images``), state (``properties`` saved
with the file, ``state`` transient on the window manager).
"""

from __future__ import annotations

import bpy

from . import (backend_process, jobs, ops_backend, ops_create, ops_expression, ops_jobs, ops_scene, panel,
               preferences, properties, state)

_CLASSES = (*preferences.classes, *state.classes, *ops_jobs.classes, *ops_scene.classes,
            *ops_backend.classes, *ops_create.classes, *ops_expression.classes, *panel.classes)


def register():
    properties.register()  # builds its annotations from shared.stylize now
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    state.register()


def unregister():
    job = jobs.current()
    if job is not None:
        job.cancel()
        job.release()
    backend_process.stop()
    state.unregister()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
