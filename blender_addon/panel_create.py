"""The panel's "Create & Animate" section and the scene settings it edits: Avatar from
Photo, Avatar from Text, Expression from Text and Expression from Video.

:func:`settings_annotations` is merged into the scene settings by :mod:`properties` at
register time (bounds and defaults from :mod:`shared.photo`, :mod:`shared.text_avatar`
and :mod:`shared.expression`); :func:`describe` is what the section shows, as plain values.
"""

from __future__ import annotations

import textwrap

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import ops_create, ops_expression, selection
from ._shared import arkit, photo, protocol, text_avatar
from ._shared import expression as X

PATH_OPTIONS = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()
WRAP = 44  # characters per label line (as panel.WRAP; panel imports this module, not the reverse)


def wrap(layout, text: str, icon: str = "NONE") -> None:
    for i, ln in enumerate(textwrap.wrap(text, WRAP) or [""]):
        layout.label(text=ln, icon=icon if i == 0 else "BLANK1")


def settings_annotations() -> dict:
    T = text_avatar
    return {
        "photo_path": StringProperty(name="Photo", default="", subtype="FILE_PATH", options=PATH_OPTIONS,
                                     description="A frontal selfie (JPEG/PNG; EXIF orientation respected)"),
        "photo_face": IntProperty(name="Face", default=-1, min=-1, max=photo.MAX_FACE_INDEX,
                                  description="Which face when the photo shows several: -1 = the largest, "
                                              "else its index from the largest"),
        "photo_stylize": BoolProperty(name="Stylize after import", default=False,
                                      description="Run Stylize with the style terms on the new avatar "
                                                  "right after it is imported"),
        "avatar_prompt": StringProperty(name="Prompt", default="", maxlen=T.MAX_PROMPT_CHARS,
                                        description="The avatar, e.g. 'a wise old wizard with a long nose'"),
        "avatar_shape_prompt": StringProperty(name="Shape", default="", maxlen=T.MAX_PROMPT_CHARS,
                                              description="Optional: the geometry (empty = the prompt)"),
        "avatar_appearance_prompt": StringProperty(
            name="Appearance", default="", maxlen=T.MAX_PROMPT_CHARS,
            description="Optional: colours and texture (empty = the prompt)"),
        "avatar_sculpt": BoolProperty(name="Sculpt and texture", default=True,
                                      description="Refine the retrieved shape with the guidance model "
                                                  "(off: the codebook entry as it is)"),
        "expression_text": StringProperty(name="Motion", default="",
                                          maxlen=protocol.Limits.max_prompt_length,
                                          description="The motion, e.g. 'laughing, then surprised'"),
        "expression_duration": FloatProperty(name="Duration", default=X.DEFAULT_DURATION_S,
                                             min=X.MIN_DURATION_S, max=X.MAX_DURATION_S, unit="TIME_ABSOLUTE",
                                             description="Length of the generated motion in seconds"),
        "expression_blinks": BoolProperty(name="Blinks", default=True,
                                          description="Add blinks every few seconds (unless the text "
                                                      "asks for closed eyes)"),
        "expression_source": StringProperty(name="Capture", default="", subtype="FILE_PATH",
                                            options=PATH_OPTIONS,
                                            description="An image, a folder of images (one per frame) or "
                                                        "a video to capture expressions from"),
        "expression_smoothing": FloatProperty(name="Smoothing", default=X.DEFAULT_SMOOTHING, min=0.0,
                                              max=X.MAX_SMOOTHING,
                                              description="Temporal smoothing of the capture (Gaussian "
                                                          "sigma in frames; 0 = none)"),
        "expression_head_rotation": BoolProperty(
            name="Head rotation", default=False,
            description="Also capture the head's rotation, keyed as the delta rotation of the "
                        "avatar's mesh (or of the parent its meshes share)"),
        "expression_keys": EnumProperty(name="Keys", items=ops_expression.KEY_MODES, default="FRAMES",
                                        description="A key on every frame, or thinned Bezier keys"),
        "expression_tolerance": FloatProperty(name="Tolerance", default=ops_expression.DEFAULT_TOLERANCE,
                                              min=1e-4, max=0.2, precision=3,
                                              description="Thinned keys: largest difference from the "
                                                          "returned weights at any frame"),
        "expression_report": StringProperty(name="Last expression", default="",
                                            description="What the last expression operator wrote and "
                                                        "which blendshapes it skipped"),
    }


def describe(context) -> dict:
    """What the section shows, as plain values."""
    s = context.scene.metamorph
    objs = selection.avatar_objects(context)
    names = [kb.name for o in objs if o.data.shape_keys for kb in o.data.shape_keys.key_blocks]
    mapping, _ = arkit.match_names(names)
    return {"created": ops_create.created_info(context.active_object),
            "arkit_keys": len(mapping), "report": s.expression_report,
            "terms": selection.term_problem(s) is None}


def draw_create(layout, context, info=None):
    s = context.scene.metamorph
    d = describe(context)
    col = layout.column()
    col.label(text="New avatar", icon="USER")
    col.prop(s, "photo_path")
    row = col.row(align=True)
    row.prop(s, "photo_face")
    sub = row.row(align=True)
    sub.enabled = d["terms"]
    sub.prop(s, "photo_stylize")
    col.operator("metamorph.avatar_from_photo", icon="IMAGE_DATA")
    col.separator()
    col.prop(s, "avatar_prompt")
    col.prop(s, "avatar_shape_prompt")
    col.prop(s, "avatar_appearance_prompt")
    col.prop(s, "avatar_sculpt")
    col.operator("metamorph.avatar_from_text", icon="SMALL_CAPS")
    c = d["created"]
    if c:
        box = col.box()
        wrap(box, f"'{context.active_object.name}': made by {c['kind']}"
                  + (f" from {c['source']}" if c["source"] else ""), "INFO")
        if c["test_model"]:
            wrap(box, f"Made by the test guidance model ({c['guidance']}): not a real result.", "ERROR")
    col.separator()
    col.label(text=f"Expression ({d['arkit_keys']} ARKit shape keys)", icon="SHAPEKEY_DATA")
    col.prop(s, "expression_text")
    row = col.row(align=True)
    row.prop(s, "expression_duration")
    row.prop(s, "expression_blinks")
    col.operator("metamorph.expression_from_text", icon="SMALL_CAPS")
    col.prop(s, "expression_source")
    row = col.row(align=True)
    row.prop(s, "expression_smoothing")
    row.prop(s, "expression_head_rotation")
    col.operator("metamorph.expression_from_video", icon="FILE_MOVIE")
    row = col.row(align=True)
    row.prop(s, "expression_keys", text="")
    sub = row.row(align=True)
    sub.enabled = s.expression_keys == "THINNED"
    sub.prop(s, "expression_tolerance")
    if d["report"]:
        wrap(col, d["report"], "ERROR" if "TEST" in d["report"] or "Skipped" in d["report"] else "INFO")
