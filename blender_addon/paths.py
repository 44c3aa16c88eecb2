"""Where files go: the output folder resolved against the .blend file."""

from __future__ import annotations

import os
import tempfile

import bpy

from .preferences import get_prefs


def output_root(context=None) -> str:
    """Absolute output folder: the scene's setting, else the preferences' (default
    ``//metamorph/``). ``//`` means next to the .blend; for an unsaved file it
    falls back to the system temporary folder (never the extension's folder)."""
    context = context or bpy.context
    raw = context.scene.metamorph.output_dir or get_prefs(context).output_dir or "//metamorph/"
    if raw.startswith("//") and not bpy.data.filepath:
        raw = os.path.join(tempfile.gettempdir(), "metamorph", raw[2:])
    path = os.path.abspath(bpy.path.abspath(raw))
    os.makedirs(path, exist_ok=True)
    return path
