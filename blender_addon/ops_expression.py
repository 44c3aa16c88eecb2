"""Expression from Text / Expression from Video: a new expression action on the selected
avatar's shape keys, from weights the backend returns by ARKit name.

What the artist gets (one undo step, the existing animation never overwritten): per mesh
whose shape keys take any of the returned blendshapes, a NEW action (keys per frame, or
thinned to Bezier keys within a tolerance) starting at the current frame, played by a new
NLA track on top. The avatar's own action keeps its keys; if it was the active action it
moves onto an NLA track of its own below (still playing), so muting the new track (or
lowering its influence) reverts or blends. Names map through :mod:`shared.arkit`
(``eyeBlinkLeft``, ``eyeBlink_L``, ``Face.eyeBlinkLeft``...); blendshapes the avatar lacks
are skipped and reported (message and panel). With "Head rotation" (video), the captured
head turn is keyed as ``delta_rotation_euler`` of the head's object, the same way.

Capture input (:func:`read_frames`): an image, a folder of images (one per scene frame)
or a video file, decoded by Blender's own FFmpeg through a temporary sequencer scene and
sampled at the scene's frame rate, so one result row is one scene frame.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import bpy
import numpy as np

from . import animation, connection, images, jobs, request_build, selection
from ._shared import arkit, errors
from ._shared import avatar as mm_avatar
from ._shared import expression as X
from .job_operator import JobSpec
from .ops_create import CreateJobOperator, json_overrides, read_photo, server_limits
from .result_apply import TEST_LABEL

KEY_MODES = [("FRAMES", "Every frame", "One linear key per frame: exactly the returned weights"),
             ("THINNED", "Thinned", "Fewer Bezier keys whose curve stays within the tolerance of the "
                                    "returned weights at every frame (easier to edit)")]
DEFAULT_TOLERANCE = 0.01   # weight units: thinned curves stay this close to the weights at every frame
SOURCE_LABEL = "metamorph_expression_source"


# ------------------------------------------------------------------------------------- input
def scene_fps(scene) -> float:
    return scene.render.fps / (scene.render.fps_base or 1.0)


def _fit_side(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def _image_u8(path: str, size: tuple[int, int] | None, max_side: int) -> np.ndarray:
    """One image file as [H,W,3] uint8 (EXIF orientation applied), scaled to ``size``
    (w, h) when given, else to at most ``max_side``."""
    img = read_photo(path, max_side)
    if size is not None and (img.shape[1], img.shape[0]) != size:
        im = images.from_array("MM capture frame", img, pack=False)
        try:
            im.scale(*size)
            img = images.to_srgb_u8(im, error=errors.InvalidParams)
        finally:
            bpy.data.images.remove(im)
    return img


def _decode_video(path: str, fps: float, max_frames: int, max_side: int) -> np.ndarray:
    """Frames of a video at ``fps`` (nearest source frame per output frame) as
    [N,H,W,3] uint8, through a temporary sequencer scene rendered to PNGs (removed again)."""
    had_render_result = "Render Result" in bpy.data.images
    sc = bpy.data.scenes.new("MM video decode")
    tmp = tempfile.mkdtemp(prefix="metamorph_video_")
    try:
        ed = sc.sequence_editor_create()
        strips = ed.strips if hasattr(ed, "strips") else ed.sequences  # "sequences" before Blender 4.4
        try:
            st = strips.new_movie("clip", path, channel=1, frame_start=1)
        except RuntimeError as e:
            raise errors.InvalidParams(f"Blender cannot open the video '{path}': {e}") from None
        n_src = int(st.frame_final_duration)
        el = st.elements[0] if len(st.elements) else None
        w, h = (el.orig_width, el.orig_height) if el is not None else (0, 0)
        src_fps = float(getattr(st, "fps", 0.0) or fps)
        if n_src <= 0 or w <= 0 or h <= 0:
            raise errors.InvalidParams(f"'{os.path.basename(path)}' has no readable video frames.")
        n_out = max(1, int(np.floor((n_src - 1) * fps / src_fps)) + 1)
        if n_out > max_frames:
            raise errors.TooLarge(f"'{os.path.basename(path)}' is {n_out} frames at the scene's "
                                  f"{fps:g} fps; the backend takes at most {max_frames}: trim the clip.")
        # the source frame on screen at each scene frame's time
        src = np.minimum(np.floor(np.arange(n_out) * src_fps / fps + 1e-6).astype(int), n_src - 1)
        r = sc.render
        r.resolution_x, r.resolution_y = _fit_side(w, h, max_side)
        r.resolution_percentage = 100
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        sc.view_settings.view_transform = "Standard"  # pass the video's colours through unchanged
        sc.frame_start, sc.frame_end = 1, n_src
        out = []
        for i, s in enumerate(src):
            sc.frame_current = int(s) + 1
            r.filepath = os.path.join(tmp, f"{i:05d}.png")
            with bpy.context.temp_override(scene=sc):
                bpy.ops.render.render(write_still=True, scene=sc.name)
            out.append(images.load_srgb_u8(r.filepath))
        return np.stack(out)
    finally:
        bpy.data.scenes.remove(sc)
        shutil.rmtree(tmp, ignore_errors=True)
        rr = bpy.data.images.get("Render Result")
        if rr is not None and not had_render_result:
            bpy.data.images.remove(rr)


def read_frames(path: str, fps: float, max_frames: int, max_side: int = X.CAPTURE_MAX_SIDE
                ) -> np.ndarray:
    """Capture input as ``[N,H,W,3]`` uint8 sRGB, row 0 at the top, one row per scene frame
    at ``fps``: an image (N = 1), a folder of images (sorted by name, each one frame; all
    scaled to the first one's size) or a video file. InvalidParams / TooLarge otherwise."""
    path = bpy.path.abspath(path) if path else ""
    if not path or not os.path.exists(path):
        raise errors.InvalidParams(f"Capture input not found: {path!r}. Choose an image, a folder "
                                   "of images or a video file.")
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if os.path.splitext(f)[1].lower() in X.IMAGE_EXTENSIONS)
        if not files:
            raise errors.InvalidParams(f"The folder '{path}' holds no images "
                                       f"({', '.join(X.IMAGE_EXTENSIONS)}).")
        if len(files) > max_frames:
            raise errors.TooLarge(f"The folder holds {len(files)} images; the backend takes at most "
                                  f"{max_frames} frames: use fewer.")
        first = _image_u8(os.path.join(path, files[0]), None, max_side)
        size = (first.shape[1], first.shape[0])
        return np.stack([first] + [_image_u8(os.path.join(path, f), size, max_side) for f in files[1:]])
    if ext in X.IMAGE_EXTENSIONS:
        return _image_u8(path, None, max_side)[None]
    if ext in X.VIDEO_EXTENSIONS:
        return _decode_video(path, fps, max_frames, max_side)
    raise errors.InvalidParams(f"'{os.path.basename(path)}' is neither an image "
                               f"({', '.join(X.IMAGE_EXTENSIONS)}) nor a video "
                               f"({', '.join(X.VIDEO_EXTENSIONS)}).")


# ---------------------------------------------------------------------------------- thinning
def thin_indices(values: np.ndarray, tol: float) -> list[int]:
    """Indices of samples whose straight-line interpolation stays within ``tol`` of
    ``values`` [N] (Ramer-Douglas-Peucker on frame index vs value); always first and last."""
    v = np.asarray(values, np.float64)
    n = len(v)
    if n <= 2:
        return list(range(n))
    keep = {0, n - 1}
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        t = np.arange(a + 1, b)
        line = v[a] + (v[b] - v[a]) * (t - a) / (b - a)
        err = np.abs(v[a + 1:b] - line)
        k = int(np.argmax(err))
        if err[k] > tol:
            m = a + 1 + k
            keep.add(m)
            stack += [(a, m), (m, b)]
    return sorted(keep)


def _set_keys(fc, frames, values, idx, interpolation: str):
    kp = fc.keyframe_points
    kp.clear()
    kp.add(len(idx))
    co = np.stack([frames[idx], values[idx]], -1).astype(np.float32)
    kp.foreach_set("co", co.ravel())
    for p in kp:
        p.interpolation = interpolation
        if interpolation == "BEZIER":
            p.handle_left_type = p.handle_right_type = "AUTO_CLAMPED"
    fc.update()


def key_curve(fc, frames: np.ndarray, values: np.ndarray, mode: str, tol: float) -> int:
    """Key ``values`` at ``frames`` on the F-curve ``fc``: every frame (linear, exact) or
    thinned Bezier keys, refined until the curve is within ``tol`` at every frame
    (evaluated by Blender itself). Returns the number of keys."""
    frames, values = np.asarray(frames, np.float64), np.asarray(values, np.float64)
    if mode != "THINNED" or len(frames) <= 2:
        _set_keys(fc, frames, values, np.arange(len(frames)), "LINEAR")
        return len(frames)
    idx = thin_indices(values, tol * 0.5)
    while True:
        _set_keys(fc, frames, values, np.asarray(idx), "BEZIER")
        err = np.abs(np.array([fc.evaluate(float(f)) for f in frames]) - values)
        worst = int(np.argmax(err))
        if err[worst] <= tol or worst in idx:
            return len(idx)
        idx = sorted(set(idx) | {worst})


# ---------------------------------------------------------------------------------- applying
def _plan(objects, res) -> tuple[list, list[str]]:
    """[(object, ExpressionTrack over its own key names)] for the meshes that take any
    returned blendshape, and the ARKit names none of them has."""
    plan, taken = [], set()
    for o in objects:
        keys = o.data.shape_keys if o.type == "MESH" else None
        if keys is None:
            continue
        track, _ = res.to_track([kb.name for kb in keys.key_blocks])
        if track.names:
            plan.append((o, track))
            mapping, _ = arkit.match_names([kb.name for kb in keys.key_blocks])
            taken |= {a for a in res.names if a in mapping}
    return plan, [a for a in res.names if a not in taken]


def _push_active_action(ad, undo: list) -> None:
    """Keep the active action playing from an NLA track of its own (keys unchanged), so a
    track above it can override, blend or be muted."""
    act = ad.action
    if act is None:
        return
    slot = getattr(ad, "action_slot", None)
    tr = ad.nla_tracks.new()
    tr.name = act.name
    undo.append(lambda: ad.nla_tracks.remove(tr))
    st = tr.strips.new(act.name, int(np.floor(act.frame_range[0])), act)
    if slot is not None and getattr(st, "action_slot", None) != slot:
        st.action_slot = slot
    st.blend_type = ad.action_blend_type
    ad.action = None

    def restore():
        ad.action = act
        if slot is not None and ad.action_slot != slot:
            ad.action_slot = slot
    undo.append(restore)


def _onto_new_track(id_data, act, name: str, start: int, labels, undo) -> None:
    """Move ``act`` (just made ``id_data``'s active action) onto a new NLA track on top."""
    ad = id_data.animation_data
    slot = getattr(ad, "action_slot", None)
    for k, v in (labels or {}).items():
        act[k] = v
    tr = ad.nla_tracks.new()
    tr.name = name
    undo.append(lambda: ad.nla_tracks.remove(tr))
    st = tr.strips.new(name, start, act)
    if slot is not None and getattr(st, "action_slot", None) != slot:
        st.action_slot = slot
    st.extrapolation = "NOTHING"  # before and after it, the avatar's own animation plays
    st.blend_type = "REPLACE"
    ad.action = None


def _shape_key_action(obj, track, name, mode, tol, labels, undo):
    """A new action keying ``track`` on ``obj``'s shape keys, on a new NLA track. Returns
    (action, number of keys)."""
    keys = obj.data.shape_keys
    if keys.animation_data is None:
        keys.animation_data_create()
        undo.append(keys.animation_data_clear)
    _push_active_action(keys.animation_data, undo)
    act = animation.write_expression_track(obj, track, name)  # linear keys, one per frame
    undo.append(lambda: bpy.data.actions.remove(act))
    frames = np.asarray(track.frames, np.float64)
    n = len(frames) * len(track.names)
    if mode == "THINNED":
        curves = animation.shape_key_fcurves(obj)
        n = sum(key_curve(curves[k], frames, track.weights[:, j], mode, tol) for j, k in enumerate(track.names))
    _onto_new_track(keys, act, name, int(round(frames[0])), labels, undo)
    return act, n


def _rotation_action(obj, frames, radians, name, mode, tol, labels, undo):
    """A new action keying ``delta_rotation_euler`` = ``radians`` [N,3] at ``frames`` on
    ``obj``, on a new NLA track (the object's own rotation is left alone)."""
    if obj.animation_data is None:
        obj.animation_data_create()
        undo.append(obj.animation_data_clear)
    _push_active_action(obj.animation_data, undo)
    keep = tuple(obj.delta_rotation_euler)
    try:
        for f, r in zip(frames, radians):
            obj.delta_rotation_euler = tuple(float(x) for x in r)
            obj.keyframe_insert("delta_rotation_euler", frame=float(f))
    finally:
        obj.delta_rotation_euler = keep
    act = obj.animation_data.action
    undo.append(lambda: bpy.data.actions.remove(act))
    act.name = name
    curves = {fc.array_index: fc for fc in animation.id_fcurves(obj) if fc.data_path == "delta_rotation_euler"}
    n = sum(key_curve(curves[i], frames, radians[:, i], mode, tol) for i in range(3))
    _onto_new_track(obj, act, name, int(round(frames[0])), labels, undo)
    return act, n


def head_target(objects):
    """The object that carries the head rotation: a single mesh, or the one parent all the
    avatar's meshes share; None (with the reason) when the avatar follows an armature."""
    if any(o.parent is not None and o.parent.type == "ARMATURE" for o in objects) or any(
            m.type == "ARMATURE" for o in objects for m in o.modifiers):
        return None, "the avatar follows an armature (key its head bone instead)"
    parents = {o.parent for o in objects}
    if len(parents) == 1 and None not in parents:
        return parents.pop(), ""
    if len(objects) == 1:
        return objects[0], ""
    return None, "the avatar's meshes share no parent object to turn"


def apply_expression(context, objects, res, name: str, mode: str = "FRAMES",
                     tol: float = DEFAULT_TOLERANCE, labels: dict | None = None,
                     head_rotation: bool = False) -> dict:
    """Write ``res`` (:class:`shared.expression.ExpressionResult`) onto ``objects``'
    shape keys as new actions on new NLA tracks (see the module docstring), all or
    nothing. With ``head_rotation`` and a result that has it, also a new action on the
    head's object keying ``delta_rotation_euler`` (so the object's own rotation stays, and
    outside the strip nothing turns). Returns {"actions", "keys", "skipped", "objects",
    "frames", "head"}. InvalidParams (nothing changed) when no mesh has any of the
    returned blendshapes."""
    plan, skipped = _plan(objects, res)
    if not plan:
        have = sorted({kb.name for o in objects if o.type == "MESH" and o.data.shape_keys
                       for kb in o.data.shape_keys.key_blocks[1:]})
        raise errors.InvalidParams(
            f"The avatar has none of the returned blendshapes ({', '.join(res.names[:6])}...); its "
            f"shape keys are {have[:6] or 'none'}. Nothing was changed.")
    undo: list = []
    frames = np.asarray(res.frames, np.float64)
    out = {"actions": [], "keys": 0, "skipped": skipped, "objects": [], "head": "",
           "frames": (int(round(frames[0])), int(round(frames[-1])))}
    lab = {**(labels or {}), "metamorph_skipped_blendshapes": ", ".join(skipped)}
    try:
        for o, track in plan:
            act, n = _shape_key_action(o, track, f"{name} ({o.name})", mode, tol, lab, undo)
            out["actions"].append(act.name)
            out["objects"].append(o.name)
            out["keys"] += n
        if head_rotation and res.head_rotation is not None:
            target, why = head_target(objects)
            if target is None:
                out["head"] = f"Head rotation not applied: {why}."
            else:
                rad = np.radians(np.asarray(res.head_rotation, np.float64))
                act, n = _rotation_action(target, frames, rad, f"{name} head ({target.name})", mode, tol,
                                          labels, undo)
                out["actions"].append(act.name)
                out["keys"] += n
                out["head"] = f"Head rotation on '{target.name}' (delta rotation)."
    except Exception:
        for fn in reversed(undo):
            try:
                fn()
            except (ReferenceError, RuntimeError):
                pass
        raise
    return out


def summary(name: str, out: dict, test_model: bool) -> str:
    a, b = out["frames"]
    msg = (f"'{name}': {out['keys']} key(s) on {', '.join(out['objects'])}, frames {a}-{b}, on a new "
           "NLA track (mute it to revert).")
    if out["skipped"]:
        msg += f" Skipped (the avatar lacks them): {', '.join(out['skipped'])}."
    if out["head"]:
        msg += f" {out['head']}"
    if test_model:
        msg += " Made by the TEST guidance model: not a real animation."
    return msg


def apply_wire(context, object_names, body, arrays, name, mode, tol, head_rotation: bool = False) -> str:
    """Apply a result as it came off the wire (InvalidParams for a malformed one)."""
    if not isinstance(body, dict) or not isinstance(arrays, dict):
        raise errors.InvalidParams("The backend's expression result is malformed (not a map).")
    res = X.ExpressionResult.from_wire(body, arrays)
    missing = [n for n in object_names if n not in bpy.data.objects]
    if missing:
        raise errors.InvalidAvatar(f"The avatar's objects {missing} were deleted while the job ran; "
                                   "nothing was applied.")
    md = res.metadata or {}
    test = bool(md.get("guidance_is_test_model"))
    labels = {"metamorph_guidance": str(md.get("guidance", "")), TEST_LABEL: test,
              SOURCE_LABEL: str(body.get("source") or name)}
    if test:
        name += " [TEST MODEL]"
    out = apply_expression(context, [bpy.data.objects[n] for n in object_names], res, name, mode, tol,
                           labels, head_rotation)
    msg = summary(name, out, test)
    context.scene.metamorph.expression_report = msg
    return msg


# --------------------------------------------------------------------------------- operators
def _expression_problem(context, need_connection: bool = True) -> str | None:
    if jobs.current() is not None:
        return "A Metamorph job is already running; wait for it or cancel it."
    if need_connection and not connection.is_connected(context):
        return "Not connected to a backend: press Connect (or start the local backend)."
    objs = selection.avatar_objects(context)
    if not objs:
        return "Select the avatar's meshes (or set the Avatar collection) to animate."
    names = [kb.name for o in objs if o.data.shape_keys for kb in o.data.shape_keys.key_blocks]
    if not arkit.match_names(names)[0]:
        return ("The avatar has no ARKit-named shape keys (e.g. jawOpen, eyeBlink_L) to animate.")
    return None


def _spec(context, kind, req, arrays, name, avatar=None, avatar_id=None) -> JobSpec:
    s = context.scene.metamorph
    objs = [o.name for o in selection.avatar_objects(context)]
    mode, tol = s.expression_keys, float(s.expression_tolerance)
    head = kind == "expression_from_video" and bool(s.expression_head_rotation)

    def apply(context, body, arrays):
        return apply_wire(context, objs, body, arrays, name, mode, tol, head)

    return JobSpec(kind, req.to_params(), arrays, apply=apply, avatar=avatar, avatar_id=avatar_id)


class MM_OT_expression_from_text(CreateJobOperator, bpy.types.Operator):
    """Animate the selected avatar's shape keys from a description of the motion (a new
    action on a new NLA track, from the current frame)"""

    bl_idname = "metamorph.expression_from_text"
    bl_label = "Expression from Text"

    @classmethod
    def problem(cls, context):
        why = _expression_problem(context)
        if why is None and not context.scene.metamorph.expression_text.strip():
            why = "Describe the motion first, e.g. 'laughing, then surprised'."
        if why is None:
            why = selection.avatar_problem(selection.avatar_objects(context), context,
                                           unwrap=context.scene.metamorph.unwrap_copy)
        return why

    def make_job(self, context):
        s, sc = context.scene.metamorph, context.scene
        objs = selection.avatar_objects(context)
        av = request_build.extract(context, objs, request_build.uv_overrides(context, objs))
        aid = mm_avatar.content_hash(av)
        req = X.ExpressionFromTextRequest(
            avatar_id=aid, text=s.expression_text.strip(), fps=scene_fps(sc),
            duration_s=float(s.expression_duration), start_frame=int(sc.frame_current),
            guidance=s.guidance, seed=int(s.seed), blinks=bool(s.expression_blinks))
        p = {**req.to_params(), **json_overrides(self.settings)}
        req = X.ExpressionFromTextRequest.from_params(p).validate(server_limits(context))
        name = f"MM {req.text[:40]}"
        return _spec(context, "expression_from_text", req, {}, name, av, aid)


class MM_OT_expression_from_video(CreateJobOperator, bpy.types.Operator):
    """Capture expressions from an image, an image folder or a video onto the selected
    avatar's shape keys (a new action on a new NLA track, from the current frame)"""

    bl_idname = "metamorph.expression_from_video"
    bl_label = "Expression from Video"

    @classmethod
    def problem(cls, context):
        why = _expression_problem(context)
        if why is None and not context.scene.metamorph.expression_source:
            why = "Choose an image, an image folder or a video to capture from."
        return why

    def make_job(self, context):
        s, sc = context.scene.metamorph, context.scene
        lim = server_limits(context)
        fps = scene_fps(sc)
        frames = read_frames(s.expression_source, fps, lim.max_frames,
                             min(X.CAPTURE_MAX_SIDE, lim.max_image_side))
        req = X.ExpressionFromVideoRequest(fps=fps, start_frame=int(sc.frame_current),
                                           smoothing=float(s.expression_smoothing),
                                           head_rotation=bool(s.expression_head_rotation))
        p = {**req.to_params(), **json_overrides(self.settings)}
        arrays = {"frames": frames}
        req = X.ExpressionFromVideoRequest.from_params(p).validate(lim, arrays)
        base = os.path.basename(os.path.normpath(bpy.path.abspath(s.expression_source)))
        return _spec(context, "expression_from_video", req, arrays, f"MM {base[:40]}")


classes = (MM_OT_expression_from_text, MM_OT_expression_from_video)
