"""Avatar from Photo / Avatar from Text: a new avatar from the backend, imported into the
scene in one undo step (mesh with UVs, material, shape keys, expression action:
:func:`avatar_build.build`), selected and ready for Stylize.

Avatar from Photo reads the selfie through Blender (EXIF orientation applied, which
Blender's loader ignores; scaled down to what the backend reports it takes) and sends it
as the ``photo`` array (:mod:`shared.photo`). With "Stylize after import" and style terms in
the panel's style list, Stylize runs on the new avatar right after it is imported (creating
a turntable rig first when there is none): photo + "a clay figurine" gives a stylized,
animatable avatar. Avatar from Text sends the panel's prompts (:mod:`shared.text_avatar`).

Every created object carries its provenance as custom properties (``metamorph_created_by``,
``metamorph_guidance``, ``metamorph_guidance_is_test_model``, shown in the panel).
"""

from __future__ import annotations

import json
import os
import struct

import bpy
import numpy as np

from . import avatar_build, connection, images, jobs, request_build, selection, state
from ._shared import errors, photo, protocol, text_avatar
from .datablocks import Created
from .job_operator import JobOperator, JobSpec
from .result_apply import TEST_LABEL, labels as result_labels

CREATED_BY = "metamorph_created_by"
EXIF_ORIENTATION_TAG = 0x0112


# ------------------------------------------------------------------------------------ helpers
def server_limits(context) -> "protocol.Limits":
    """The limits the connected backend reported in hello (the defaults before Connect)."""
    return protocol.Limits.from_dict(state.hello(context).get("limits") or {})


def json_overrides(text: str) -> dict:
    """The operators' hidden ``settings``: JSON request parameters that replace the panel's
    (scripts and tests, e.g. ``{"imitator": "test"}``)."""
    return request_build.json_object(text, "Request overrides", '{"seed": 1}') or {}


def exif_orientation(path: str) -> int:
    """The EXIF orientation (1..8) of a JPEG file; 1 (upright) when it has none."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 17)  # EXIF sits in the first segments
    except OSError:
        return 1
    if data[:2] != b"\xff\xd8":
        return 1
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, size = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        seg = data[i + 4:i + 2 + size]
        if marker == 0xE1 and seg[:6] == b"Exif\0\0":
            t = seg[6:]
            end = {b"II": "<", b"MM": ">"}.get(t[:2])
            if end is None or len(t) < 8:
                return 1
            off = struct.unpack(end + "I", t[4:8])[0]
            if off + 2 > len(t):
                return 1
            n = struct.unpack(end + "H", t[off:off + 2])[0]
            for k in range(n):
                e = t[off + 2 + 12 * k: off + 14 + 12 * k]
                if len(e) == 12 and struct.unpack(end + "H", e[:2])[0] == EXIF_ORIENTATION_TAG:
                    v = struct.unpack(end + "H", e[8:10])[0]
                    return v if 1 <= v <= 8 else 1
            return 1
        if marker in (0xDA, 0xD9):  # image data starts: no EXIF before it
            return 1
        i += 2 + size
    return 1


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` [H,W,C] (row 0 = top) turned upright for its EXIF ``orientation``."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}
    f = ops.get(int(orientation))
    return np.ascontiguousarray(f(img)) if f else img


def read_photo(path: str, max_side: int) -> np.ndarray:
    """An image file as [H,W,3] uint8 sRGB, row 0 at the top, upright (EXIF), scaled so its
    longest side is at most ``max_side``. InvalidParams for a missing or unreadable file."""
    p = bpy.path.abspath(path) if path else ""
    if not p or not os.path.isfile(p):
        raise errors.InvalidParams(f"Image not found: {p!r}. Choose an image file.")
    try:
        im = bpy.data.images.load(p, check_existing=False)
    except RuntimeError as e:
        raise errors.InvalidParams(f"Blender cannot read '{os.path.basename(p)}' as an image ({e}).") \
            from None
    try:
        w, h = im.size
        if w == 0 or h == 0:
            raise errors.InvalidParams(f"'{os.path.basename(p)}' is not an image Blender can read.")
        if max(w, h) > max_side:
            s = max_side / max(w, h)
            im.scale(max(1, round(w * s)), max(1, round(h * s)))
        img = images.to_srgb_u8(im, error=errors.InvalidParams)
    finally:
        bpy.data.images.remove(im)
    return orient(img, exif_orientation(p))


def _avatar_of(result_cls, body, arrays):
    """The avatar of an avatar-creating result; InvalidAvatar with a sentence when malformed."""
    if not isinstance(body, dict) or not isinstance(arrays, dict):
        raise errors.InvalidAvatar("The backend's result is malformed (not a map); nothing was created.")
    try:
        res = result_cls.from_wire(body, arrays)
        return res, res.avatar()
    except errors.MetamorphError as e:
        raise errors.InvalidAvatar(f"{e.message} Nothing was created.") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise errors.InvalidAvatar(f"The backend's avatar is incomplete or malformed ({type(e).__name__}: "
                                   f"{e}); nothing was created.") from None


def _json(v) -> str:
    return json.dumps(v, default=str, sort_keys=True)[:4000]


def import_avatar(context, av, name: str, labels: dict, extra_images: dict | None = None) -> list:
    """The avatar as new objects (avatar_build) plus ``extra_images`` ({name: [H,W,3] uint8}:
    packed image datablocks, e.g. a contact sheet), all or nothing."""
    with Created() as made:
        for iname, arr in (extra_images or {}).items():
            im = made.add(bpy.data.images, images.from_array(iname, np.ascontiguousarray(arr, np.uint8)))
            for k, v in labels.items():
                im[k] = v
        objs = avatar_build.build(context, av, name=name, labels=labels)
    return objs


def _ready_note(context) -> str:
    if context.scene.metamorph.avatar_collection is not None:
        return " (Stylize works on the Avatar collection set in the panel: clear it to stylize this one.)"
    return " Selected: ready for Stylize."


def apply_photo(context, body, arrays, photo_name: str = "") -> str:
    res, av = _avatar_of(photo.PhotoResult, body, arrays)
    b = res.body
    lab = {**result_labels(b), CREATED_BY: photo.JOB_KIND, "metamorph_photo": photo_name,
           "metamorph_params": _json(b.get("params")), "metamorph_figures": _json(b.get("figures")),
           "metamorph_expression": _json(b.get("expression"))}
    stem = os.path.splitext(photo_name)[0] if photo_name else ""
    objs = import_avatar(context, av, f"Photo {stem}".strip()[:60], lab)
    notes = " ".join(str(n) for n in (b.get("notes") or []))
    return f"'{objs[0].name}' created from the photo.{_ready_note(context)}" + (f" {notes}" if notes else "")


def apply_text(context, body, arrays) -> str:
    res, av = _avatar_of(text_avatar.AvatarFromTextResult, body, arrays)
    b = res.body
    lab = {**result_labels(b), CREATED_BY: text_avatar.JOB_KIND,
           "metamorph_prompt": str((b.get("prompts") or {}).get("prompt", "")),
           "metamorph_chosen": _json(b.get("chosen"))}
    name = str(b.get("name") or av.name or "Text avatar")[:60]
    extra = {}
    sheet = arrays.get("contact_sheet")
    if isinstance(sheet, np.ndarray) and sheet.ndim == 3 and sheet.dtype == np.uint8:
        extra[f"MM {name} contact sheet"] = sheet
    objs = import_avatar(context, av, name, lab, extra)
    msg = f"'{objs[0].name}' created from the text.{_ready_note(context)}"
    if lab[TEST_LABEL]:
        msg += " Made by the TEST guidance model: not a real text-driven avatar."
    return msg


def created_info(obj) -> dict | None:
    """What the panel shows about an avatar Metamorph created (None for other objects)."""
    if obj is None or CREATED_BY not in obj:
        return None
    return {"kind": str(obj[CREATED_BY]), "guidance": str(obj.get("metamorph_guidance", "")),
            "test_model": bool(obj.get(TEST_LABEL, False)),
            "source": str(obj.get("metamorph_photo") or obj.get("metamorph_prompt") or "")}


# ---------------------------------------------------------------------------------- operators
def base_problem(context) -> str | None:
    if jobs.current() is not None:
        return "A Metamorph job is already running; wait for it or cancel it."
    if not connection.is_connected(context):
        return "Not connected to a backend: press Connect (or start the local backend)."
    return None


class CreateJobOperator(JobOperator):
    """A job operator whose hidden ``settings`` are request-parameter overrides."""

    settings: bpy.props.StringProperty(
        name="Request overrides", default="", options={"HIDDEN", "SKIP_SAVE"},
        description='Scripts: JSON request parameters replacing the panel\'s, e.g. {"seed": 1}')


class MM_OT_avatar_from_photo(CreateJobOperator, bpy.types.Operator):
    """Fit a new animatable avatar to a frontal selfie and import it (mesh, shape keys,
    material, action); optionally stylize it with the style terms"""

    bl_idname = "metamorph.avatar_from_photo"
    bl_label = "Avatar from Photo"

    stylize_settings: bpy.props.StringProperty(
        name="Stylize settings", default="", options={"HIDDEN", "SKIP_SAVE"},
        description="Scripts: JSON engine overrides for the Stylize run after the import")

    @classmethod
    def problem(cls, context):
        why = base_problem(context)
        if why is None and not context.scene.metamorph.photo_path:
            why = "Choose a photo first (a frontal selfie)."
        return why

    def make_job(self, context):
        s = context.scene.metamorph
        lim = server_limits(context)
        img = read_photo(s.photo_path, min(photo.WORK_SIDE, lim.max_image_side))
        req = photo.PhotoRequest(face_index=int(s.photo_face), seed=int(s.seed))
        req = photo.PhotoRequest.from_params({**req.to_params(), **json_overrides(self.settings)})
        arrays = {photo.PHOTO_ARRAY: img}
        req.validate(lim, arrays)
        name = os.path.basename(bpy.path.abspath(s.photo_path))
        self._then_stylize = bool(s.photo_stylize) and selection.term_problem(s) is None
        return JobSpec(photo.JOB_KIND, req.to_params(), arrays,
                       apply=lambda context, body, arrays: apply_photo(context, body, arrays, name))

    def finish(self, context):
        out = super().finish(context)
        if out == {"FINISHED"} and getattr(self, "_then_stylize", False):
            stylize_next(context, self.stylize_settings)
        return out


def stylize_next(context, settings: str = "") -> None:
    """Stylize the avatar just imported (selected) with the panel's style terms, creating a
    turntable rig first when the panel has none: now in background mode, else from a timer
    once this operator has returned (its own undo step). A failure is reported, never raised:
    the imported avatar stays."""
    def run():
        ctx = bpy.context
        try:
            if ctx.scene.metamorph.rig_collection is None:
                bpy.ops.metamorph.rig_create()
            if bpy.app.background or not ctx.window_manager.windows:
                bpy.ops.metamorph.stylize(settings=settings)
                return None
            win = ctx.window_manager.windows[0]
            area = next((a for a in win.screen.areas if a.type == "VIEW_3D"), None)
            with ctx.temp_override(window=win, area=area):
                bpy.ops.metamorph.stylize("INVOKE_DEFAULT", settings=settings)
        except RuntimeError as e:  # the operator's own error report, as an exception in scripts
            state.set_message(ctx, f"The avatar was imported; Stylize did not run: {e}", "ERROR")
        return None
    if bpy.app.background or not context.window_manager.windows:
        run()
    else:
        bpy.app.timers.register(run, first_interval=0.1)


class MM_OT_avatar_from_text(CreateJobOperator, bpy.types.Operator):
    """Make a new animatable avatar from a description (shape from a codebook chosen by the
    guidance model, then sculpted and textured) and import it"""

    bl_idname = "metamorph.avatar_from_text"
    bl_label = "Avatar from Text"

    @classmethod
    def problem(cls, context):
        why = base_problem(context)
        if why is None and not context.scene.metamorph.avatar_prompt.strip():
            why = "Describe the avatar first, e.g. 'a wise old wizard with a long nose'."
        return why

    def make_job(self, context):
        s = context.scene.metamorph
        T = text_avatar
        req = T.AvatarFromTextRequest(
            prompt=s.avatar_prompt.strip(), shape_prompt=s.avatar_shape_prompt.strip(),
            appearance_prompt=s.avatar_appearance_prompt.strip(), guidance=s.guidance, preset=s.preset,
            steps=int(s.steps), seed=int(s.seed), sculpt=bool(s.avatar_sculpt),
            texture_size=int(np.clip(s.texture_size, T.MIN_TEXTURE_SIZE, T.MAX_TEXTURE_SIZE)))
        req = T.AvatarFromTextRequest.from_params({**req.to_params(), **json_overrides(self.settings)})
        req.validate(server_limits(context))
        return JobSpec(T.JOB_KIND, req.to_params(), {}, apply=apply_text)


classes = (MM_OT_avatar_from_photo, MM_OT_avatar_from_text)
