"""Applying a job's result to the scene, all or nothing.

Stylize: check the whole result (types, shapes, passes) before creating anything;
then the stylized copy (:mod:`results`), its pass files (written to a temporary
folder, renamed into the result's own folder at the end) and pass images, the
provenance labels (guidance model, ``metamorph_guidance_is_test_model``) on every
object, mesh and file, and the results-list entry. Any failure removes all of it.
"""

from __future__ import annotations

import os

import bpy

from . import passes, paths, results
from ._shared import errors
from ._shared import passes as mm_passes
from ._shared import stylize
from .datablocks import Created
from .preferences import get_prefs

TEST_LABEL = "metamorph_guidance_is_test_model"


def labels(metadata: dict) -> dict:
    """Custom properties every result datablock carries (shown in the panel, exported as
    glTF extras)."""
    return {"metamorph_guidance": str(metadata.get("guidance", "")),
            TEST_LABEL: bool(metadata.get("guidance_is_test_model"))}


def from_wire(body, arrays) -> "stylize.StylizeResult":
    """The result from the wire, or InvalidAvatar with a sentence (never KeyError/TypeError)."""
    if not isinstance(body, dict) or not isinstance(arrays, dict):
        raise errors.InvalidAvatar("The backend's result is malformed (not a map).")
    missing = [k for k in ("texture_sets", "blendshape_names") if k not in body]
    if missing:
        raise errors.InvalidAvatar(f"The backend's result lacks {missing}.")
    for key, typ in (("name", str), ("texture_sets", list), ("blendshape_names", list),
                     ("cameras", list), ("frames", list), ("metadata", dict)):
        if key in body and body[key] is not None and not isinstance(body[key], typ):
            raise errors.InvalidAvatar(f"The backend's result has a malformed '{key}' "
                                       f"({type(body[key]).__name__}, expected {typ.__name__}).")
    try:
        return stylize.StylizeResult.from_wire(body, arrays)
    except KeyError as e:
        raise errors.InvalidAvatar(f"The backend's result lacks the array {e}.") from None


def _frames(res) -> list[float]:
    fr = res.body.get("frames") or []
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fr):
        raise errors.InvalidAvatar("The backend's result has non-numeric frames.")
    return [float(f) for f in fr]


def apply_stylize_result(context, objects, res, camera_names=None, uv_overrides=None,
                         save_passes: bool = True) -> str:
    """Copy + passes + labels + results-list entry for one result, all or nothing.
    Returns a summary sentence. Raises InvalidAvatar (nothing changed) when the result
    does not fit the avatar."""
    results.check_result(objects, res)
    frames = _frames(res)
    cams = mm_passes.camera_names(res.body.get("cameras") or camera_names or [])
    keep = {k: v for k, v in res.passes.items() if save_passes}
    if keep:
        try:
            mm_passes.check_passes(keep, len(cams), len(frames))
        except ValueError as e:
            raise errors.InvalidAvatar(f"{e} Nothing was applied.") from None
    md = res.body.get("metadata") or {}
    name = results.unique_style_name(results.style_name(res))
    folder = paths.new_result_folder(context, name)
    lab = labels(md)
    prefs = get_prefs(context)
    with Created() as made:
        copies = results.apply_result(context.scene, objects, res, name=name, made=made,
                                      copy_action=bool(prefs.copy_action),
                                      uv_overrides=uv_overrides, labels=lab)
        if keep:
            tmp = made.add_path(folder + ".partial")
            saved = mm_passes.write_passes(keep, cams, frames, tmp,
                                           text=mm_passes.provenance_text(md, name))
            os.replace(tmp, folder)  # the result's folder appears complete or not at all
            made.add_path(folder)
            saved = {k: [os.path.join(folder, os.path.relpath(p, tmp)) for p in v]
                     for k, v in saved.items()}
            passes.load_pass_images(saved, name, made, lab)
        if prefs.place_beside:
            results.place_beside(copies, objects)
        results.record_result(context.scene, name, copies, folder, md)
    msg = f"'{name}' applied ({len(copies)} object(s), {len(keep)} pass(es))."
    if lab[TEST_LABEL]:
        msg += " Made by the TEST guidance model: not a real stylization."
    warning = md.get("warning")
    return f"{msg} {warning}" if warning else msg


def prepare_message(body: dict) -> str:
    body = body if isinstance(body, dict) else {}
    extra = ", ".join(f"{k} {round(body[k], 1) if isinstance(body[k], float) else body[k]}"
                      for k in ("iterations", "seconds") if k in body)
    msg = f"avatar prepared ({extra})." if extra else "avatar prepared."
    if body.get("guidance_is_test_model"):
        msg += " (test guidance model)"
    return msg


def objects_by_name(names: list[str]) -> list:
    """The avatar's objects again by name; InvalidAvatar when one was deleted meanwhile."""
    missing = [n for n in names if n not in bpy.data.objects]
    if missing:
        raise errors.InvalidAvatar(f"The avatar's objects {missing} were deleted while the "
                                   "job ran; nothing was applied.")
    return [bpy.data.objects[n] for n in names]
