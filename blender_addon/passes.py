"""Rendered passes from a result as Blender images. The files and their encodings are
:mod:`shared.passes` (one layout for the CLI and the extension); this module loads
them as image datablocks that persist in the .blend (fake user) and never load
their pixels until someone looks at them (file-backed, not packed).
"""

from __future__ import annotations

import bpy

from ._shared import passes as mm_passes


def image_name(style: str, camera: str, pass_name: str) -> str:
    return f"MM {style} {camera} {pass_name}"


def load_pass_images(saved: dict, style: str, made=None, labels: dict | None = None) -> list:
    """Load saved passes (``{(camera, pass): [paths]}`` from
    :func:`shared.passes.write_passes`) as images named ``MM <style> <camera> <pass>``:
    one file per camera/pass, or an image sequence when there are several frames
    (frame numbers = file names). Each keeps a fake user so saving and reopening the
    .blend keeps it. ``made``: a :class:`datablocks.Created` to record into."""
    out = []
    for (cam, pname), paths in saved.items():
        if not paths:
            continue
        name = image_name(style, cam, pname)
        old = bpy.data.images.get(name)
        if old is not None:
            bpy.data.images.remove(old)
        im = bpy.data.images.load(paths[0], check_existing=False)
        if made is not None:
            made.add(bpy.data.images, im)
        im.name = name
        im.use_fake_user = True
        im["metamorph_size"] = list(im.size)  # read now: a sequence reports 0x0 until viewed
        im["metamorph_frames"] = len(paths)
        im["metamorph_pass"] = pname
        im["metamorph_style"] = style
        for k, v in (labels or {}).items():
            im[k] = v
        if len(paths) > 1:
            im.source = "SEQUENCE"
        im.colorspace_settings.name = mm_passes.colorspace(pname)
        out.append(im)
    return out


def pass_images(style: str) -> list:
    """The pass images of a result."""
    return [im for im in bpy.data.images if im.get("metamorph_style") == style and
            im.get("metamorph_pass")]
