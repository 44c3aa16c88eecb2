"""Connect, Prepare, Stylize and Cancel.

Prepare and Stylize gather everything from the scene on the main thread
(avatar, cameras, frames, style images), then hand plain data to a
:class:`jobs.Job`. With a window they run modally (timer polling, Esc
cancels); in background mode synchronously. A result is applied whole, in one
undo step, or not at all.
"""

from __future__ import annotations

import functools
import json
import bpy
import numpy as np

from . import connection, jobs, passes, results, rig, selection
from ._shared import avatar as mm_avatar
from ._shared import errors, stylize
from .paths import output_root

TIMER_S = 0.05


def _report_error(op, err) -> None:
    msg = err.message if isinstance(err, errors.MetamorphError) else str(err)
    op.report({"ERROR"}, f"Metamorph: {msg}")


def _update_panel(context, job) -> None:
    s = context.scene.metamorph
    p = job.progress or {}
    s.job_kind = job.kind
    s.job_stage = str(p.get("stage") or "")
    s.job_step = int(p.get("step") or 0)
    s.job_total = int(p.get("total") or 0)
    losses = p.get("losses") or {}
    if losses:
        s.job_loss = float(losses.get("total", next(iter(losses.values()))))
    if job.hello:
        connection.set_connected(context, job.hello, connection.client_options(context)["address"])
    if job.preview is not None:
        _show_preview(s, job.preview)
        job.preview = None


def _show_preview(s, img) -> None:
    """Small progress preview [h,w,3] uint8 (row 0 top) into the "MM Preview" image."""
    img = np.asarray(img)
    if img.ndim != 3 or img.dtype != np.uint8:
        return
    h, w = img.shape[:2]
    im = bpy.data.images.get("MM Preview")
    if im is None or tuple(im.size) != (w, h):
        if im is not None:
            bpy.data.images.remove(im)
        im = bpy.data.images.new("MM Preview", w, h)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = img[..., :3] / 255.0
    im.pixels.foreach_set(rgba[::-1].ravel())
    im.update()
    s.job_preview = im.name


def _clear_panel(context, message: str = "") -> None:
    """Job over: reset the progress display and drop the preview image, so a
    cancelled or failed job leaves no datablock behind."""
    s = context.scene.metamorph
    prev = bpy.data.images.get("MM Preview")
    if prev is not None:
        bpy.data.images.remove(prev)
    s.job_preview = ""
    s.job_kind = s.job_stage = ""
    s.job_step = s.job_total = 0
    s.job_message = message


def image_term_array(image) -> np.ndarray:
    """A reference image as [H,W,3] uint8 sRGB, row 0 = top."""
    w, h = image.size
    if w == 0 or h == 0:
        raise errors.InvalidParams(f"Reference image '{image.name}' has no pixels "
                                   "(missing file?).")
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    rgb = px.reshape(h, w, 4)[::-1, :, :3]
    if image.is_float:  # float buffers hold linear values
        rgb = mm_avatar.linear_to_srgb(rgb)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def build_request(context, objects, avatar_id: str, track=None):
    """(StylizeRequest, arrays) from the panel settings; ``track`` (the avatar's
    ExpressionTrack) travels with the request because the server caches avatars
    by content hash, which leaves the animation out. Main thread only."""
    s = context.scene.metamorph
    terms, arrays = [], {}
    for t in s.terms:
        if t.weight <= 0:
            continue
        if t.kind == "TEXT" and t.text.strip():
            terms.append(stylize.StyleTerm(kind="text", weight=float(t.weight), text=t.text.strip()))
        elif t.kind == "IMAGE" and t.image is not None:
            i = sum(1 for k in arrays if k.startswith("style_image_"))
            arrays[f"style_image_{i}"] = image_term_array(t.image)
            terms.append(stylize.StyleTerm(kind="image", weight=float(t.weight), image_index=i))
    cams = rig.cameras_for_request(context.scene, selection.rig_cameras(context),
                                   s.pass_resolution)
    name = s.style_name.strip() or next((t.text for t in terms if t.kind == "text"), "") or \
        "Image style"
    req = stylize.StylizeRequest(
        avatar_id=avatar_id, terms=terms, cameras=cams,
        frames=[float(f) for f in selection.frames(context)], identity=float(s.identity),
        steps=int(s.steps), preset=s.preset, seed=int(s.seed), guidance=s.guidance,
        texture_size=int(s.texture_size), pass_resolution=int(s.pass_resolution), name=name[:64],
        track=None if track is None else {
            "names": list(track.names), "frames": [float(f) for f in track.frames],
            "weights": np.asarray(track.weights, np.float32).tolist()})
    return req, arrays


def extract(context, objects):
    """The avatar for ``objects`` via :mod:`scene_io` (with the expression track),
    validated locally so a bad mesh is reported before anything is sent."""
    from . import scene_io
    fr = selection.frames(context)
    av = scene_io.extract_avatar(objects, scene=context.scene, frame_range=(fr[0], fr[-1]))
    mm_avatar.validate(av)
    n = sum(len(o.data.vertices) for o in objects)
    if av.num_vertices != n:
        # Results map one-to-one onto the meshes' own vertices.
        raise errors.InvalidAvatar(
            "A modifier changes the avatar's vertex count (e.g. Subdivision Surface): apply it or "
            "turn it off in the viewport before stylizing, so the result maps onto the mesh.")
    return av


class _JobOperator:
    """Shared modal/background machinery; subclasses build the job in ``make_job``."""

    bl_options = {"REGISTER", "UNDO"}
    _timer = None

    action = "stylize"

    # Blender collects property annotations from mixins too: both job operators take it.
    settings: bpy.props.StringProperty(
        name="Engine settings", default="", options={"HIDDEN", "SKIP_SAVE"},
        description='Scripts: JSON engine overrides for the backend, e.g. {"resolution": 64}')

    @classmethod
    def poll(cls, context):
        why = selection.why_not(context, cls.action, connection.is_connected())
        if why:
            cls.poll_message_set(why)
            return False
        return True

    def execute(self, context):
        return self.invoke(context, None)

    def invoke(self, context, event):
        # Same checks as poll, for scripts that call the operator directly.
        why = selection.why_not(context, self.action, True)
        if why is None:
            why = connection.address_problem(connection.client_options(context)["address"])
        if why:
            self.report({"ERROR"}, f"Metamorph: {why}")
            return {"CANCELLED"}
        try:
            self.job = self.make_job(context, selection.avatar_objects(context))
        except (errors.MetamorphError, ValueError) as e:
            _report_error(self, e)
            return {"CANCELLED"}
        if bpy.app.background or context.window_manager.windows[:] == []:
            self.job.run_blocking()
            return self.finish(context)
        self.job.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        context.workspace.status_text_set(f"Metamorph {self.job.kind}: starting (Esc cancels)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self.job.cancel()
            context.scene.metamorph.job_message = "Cancelling..."
            return {"RUNNING_MODAL"}  # consumed: Esc must not also reach other tools
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = timer_step(context, self.job)
        if state == "running":
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        return self.finish(context)

    def finish(self, context):
        level, msg = conclude(context, self.job, self.apply)
        self.report({level}, f"Metamorph: {msg}")
        return {"FINISHED"} if level == "INFO" else {"CANCELLED"}


def timer_step(context, job) -> str:
    """What the modal timer does on the main thread: drain the worker's events,
    update panel and status bar. Returns the job's state. Must stay short (the
    longest of these is the UI stall a job causes)."""
    state = job.tick()
    _update_panel(context, job)
    p = job.progress
    ws = getattr(context, "workspace", None)
    if ws is not None and not bpy.app.background:
        ws.status_text_set(f"Metamorph {job.kind}: {p.get('stage') or ''} {p.get('step') or 0}/"
                           f"{p.get('total') or 0} (Esc cancels)")
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen else []:
        if area.type == "VIEW_3D":
            area.tag_redraw()
    return state


def conclude(context, job, apply) -> tuple[str, str]:
    """End ``job`` on the main thread: apply its result with ``apply(context, body,
    arrays) -> message`` if it succeeded. Returns (report level, message).
    A cancelled or failed job changes nothing in the scene."""
    job.release()
    _update_panel(context, job)
    print(f"Metamorph {job.kind}: {job.state}; longest main-thread stall "
          f"{job.max_tick_s * 1000:.1f} ms")
    if job.state == "cancelled":
        _clear_panel(context, "Cancelled; nothing was changed.")
        return "WARNING", "cancelled; nothing was changed."
    if job.state != "done":
        err = job.error or errors.Internal("The job ended unexpectedly.")
        if isinstance(err, errors.ServerUnavailable):
            connection.set_connected(context, None)
        _clear_panel(context, err.message)
        return "ERROR", err.message
    try:
        msg = apply(context, *job.result)
    except (errors.MetamorphError, ValueError, KeyError) as e:
        m = str(getattr(e, "message", e))
        _clear_panel(context, m)
        return "ERROR", m
    _clear_panel(context, msg)
    return "INFO", msg


class MM_OT_connect(bpy.types.Operator):
    """Say hello to the backend and show its device"""

    bl_idname = "metamorph.connect"
    bl_label = "Connect"

    def execute(self, context):
        opts = connection.client_options(context)
        why = connection.address_problem(opts["address"])
        if why:
            self.report({"ERROR"}, f"Metamorph: {why}")
            return {"CANCELLED"}
        job = jobs.Job("connect", lambda client, post, cancelled: ({}, {}), opts)
        job.run_blocking() if bpy.app.background else _run_short(job)
        if job.state != "done":
            connection.set_connected(context, None)
            _report_error(self, job.error or errors.ServerUnavailable("No answer."))
            return {"CANCELLED"}
        connection.set_connected(context, job.hello, opts["address"])
        self.report({"INFO"}, f"Metamorph: connected ({job.hello.get('device', '?')})")
        return {"FINISHED"}


def _run_short(job):
    """Hello from the UI: worker thread, joined (bounded by the request timeout)."""
    job.start()
    job.thread.join()
    job.tick(budget_s=1.0)
    job.release()


def _settings_param(text: str) -> dict | None:
    """The operators' hidden ``settings`` (JSON engine overrides) as request params."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"Engine settings must be JSON ({e}).") from None
    if not isinstance(value, dict):
        raise ValueError('Engine settings must be a JSON object, e.g. {"resolution": 64}.')
    return {"settings": value}


class MM_OT_prepare(_JobOperator, bpy.types.Operator):
    """Upload the avatar and meta-learn its style initialization on the backend"""

    bl_idname = "metamorph.prepare"
    bl_label = "Prepare"
    action = "prepare"

    def make_job(self, context, objects):
        av = extract(context, objects)
        aid = mm_avatar.content_hash(av)
        s = context.scene.metamorph
        params = {"avatar_id": aid, "guidance": s.guidance, "seed": int(s.seed),
                  "preset": s.preset, "iterations": int(s.steps)}
        prompts = [t.text.strip() for t in s.terms if t.kind == "TEXT" and t.text.strip()]
        if prompts:  # meta-learn around the artist's styles; else the backend's default list
            params["styles"] = prompts
        params.update(_settings_param(self.settings) or {})
        work = functools.partial(jobs.run_job, kind="prepare", params=params, arrays={},
                                 avatar=av, avatar_id=aid)
        return jobs.Job("prepare", work, connection.client_options(context))

    @staticmethod
    def apply(context, body, arrays):
        extra = ", ".join(f"{k} {round(body[k], 1) if isinstance(body[k], float) else body[k]}"
                          for k in ("iterations", "seconds") if k in body)
        return f"avatar prepared ({extra})." if extra else "avatar prepared."


class MM_OT_stylize(_JobOperator, bpy.types.Operator):
    """Stylize the avatar with the style terms and bring back a stylized copy"""

    bl_idname = "metamorph.stylize"
    bl_label = "Stylize"
    action = "stylize"

    def make_job(self, context, objects):
        job, self.apply = make_stylize_job(context, objects, _settings_param(self.settings))
        return job


def make_stylize_job(context, objects, extra_params: dict | None = None):
    """(Job, apply) for stylizing ``objects`` with the panel's settings; ``apply`` is
    the main-thread callback :func:`conclude` runs on the result. ``extra_params``
    are merged into the request's params (scripts: e.g. engine overrides).
    Raises MetamorphError/ValueError for a scene that cannot be sent."""
    av = extract(context, objects)
    aid = mm_avatar.content_hash(av)
    req, arrays = build_request(context, objects, aid, av.track)
    names = [o.name for o in objects]
    cam_names = [c.name for c in req.cameras]
    params = {**req.to_params(), **(extra_params or {})}
    work = functools.partial(jobs.run_job, kind="stylize", params=params,
                             arrays=arrays, avatar=av, avatar_id=aid)

    def apply(context, body, arrays):
        missing = [n for n in names if n not in bpy.data.objects]
        if missing:
            raise errors.InvalidAvatar(f"The avatar's objects {missing} were deleted while the "
                                       "job ran; nothing was applied.")
        res = stylize.StylizeResult.from_wire(body, arrays)
        return apply_stylize_result(context, [bpy.data.objects[n] for n in names], res, cam_names)

    return jobs.Job("stylize", work, connection.client_options(context)), apply


def apply_stylize_result(context, objects, res, camera_names=None) -> str:
    """Copy + passes + results-list entry for one result. Returns a summary sentence."""
    name = results.unique_style_name(results.style_name(res))
    copies = results.apply_result(context.scene, objects, res, name=name)
    folder = ""
    if res.passes:
        import os
        cams = [str(c.get("name", f"cam{i}")) if isinstance(c, dict) else str(c)
                for i, c in enumerate(res.body.get("cameras") or [])] or list(camera_names or [])
        frames = [float(f) for f in res.body.get("frames") or []]
        folder = os.path.join(output_root(context), passes.safe_name(name))
        saved = passes.save_passes(res.passes, cams, frames, folder)
        passes.load_pass_images(saved, name)
    results.record_result(context.scene, name, copies, folder)
    msg = f"'{name}' applied ({len(copies)} object(s), {len(res.passes)} pass(es))."
    warning = (res.body.get("metadata") or {}).get("warning")
    return f"{msg} {warning}" if warning else msg


class MM_OT_cancel(bpy.types.Operator):
    """Cancel the running Metamorph job on the backend"""

    bl_idname = "metamorph.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        if jobs.current() is None:
            cls.poll_message_set("No Metamorph job is running.")
            return False
        return True

    def execute(self, context):
        job = jobs.current()
        if job is not None:
            job.cancel()
            context.scene.metamorph.job_message = "Cancelling..."
        return {"FINISHED"}


classes = (MM_OT_connect, MM_OT_prepare, MM_OT_stylize, MM_OT_cancel)
