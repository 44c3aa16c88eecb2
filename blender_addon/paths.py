"""Where files go: the output folder resolved against the .blend file, and one folder
per result that no other result (of this file or another) shares:

    <output>/<blend file name>/<style>-<short id>/
        passes/<camera>/<pass>/<frame>.png     (layout: shared.passes)
        textures/<NN>_<set>.png, <style>.glb   (Bake & Export)
        renders/<camera>/<frame>.png           (Render Turntables)
"""

from __future__ import annotations

import os
import tempfile
import uuid

import bpy

from ._shared import passes as mm_passes
from .preferences import get_prefs

UNSAVED = "untitled"


def output_root(context=None, create: bool = True) -> str:
    """Absolute output folder: the scene's setting, else the preferences' (default
    ``//metamorph/``). ``//`` means next to the .blend; for an unsaved file it
    falls back to the system temporary folder (never the extension's folder)."""
    context = context or bpy.context
    raw = context.scene.metamorph.output_dir or get_prefs(context).output_dir or "//metamorph/"
    if raw.startswith("//") and not bpy.data.filepath:
        raw = os.path.join(tempfile.gettempdir(), "metamorph", raw[2:])
    path = os.path.abspath(bpy.path.abspath(raw))
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def blend_name() -> str:
    """The .blend file's name without extension ("untitled" before the first save)."""
    return mm_passes.safe_name(bpy.path.display_name_from_filepath(bpy.data.filepath)) \
        if bpy.data.filepath else UNSAVED


def new_result_folder(context, style: str) -> str:
    """A folder path for a new result that does not exist yet (not created here)."""
    base = os.path.join(output_root(context), blend_name())
    while True:
        p = os.path.join(base, f"{mm_passes.safe_name(style)}-{uuid.uuid4().hex[:6]}")
        if not os.path.exists(p):
            return p


def result_folder(context, item) -> str:
    """The folder of a results-list entry, given one if it has none yet (older files)."""
    if not item.folder:
        item.folder = new_result_folder(context, item.name)
    return bpy.path.abspath(item.folder)
