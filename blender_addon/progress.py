"""Progress display of a running job: the panel's state (:mod:`state`), the small
preview image, the status bar, and lines on stdout in background mode.

All main thread; each call is short (the longest timer callback is the UI stall a
job causes).
"""

from __future__ import annotations

import bpy
import numpy as np

from . import connection, images, state

PREVIEW_IMAGE = "MM Preview"

# What the backend's stage names mean to an artist (unknown stages are shown as sent).
STAGE_LABELS = {
    "checking avatar": "checking the avatar",
    "uploading avatar": "uploading the avatar",
    "queued": "waiting in the backend's queue",
    "fit": "fitting the avatar to the photo",
    "meta": "one-time preparation of this avatar (meta-training its style start)",
    "adapt": "adapting to the style",
    "bake": "baking textures and offsets",
    "passes": "rendering passes",
}


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(str(stage or ""), str(stage or ""))


def _format_eta(s: float | None) -> str:
    if s is None:
        return ""
    return f", about {int(s)} s left" if s < 120 else f", about {int(round(s / 60))} min left"


def line(job) -> str:
    """One line for the status bar and the panel: stage, step/total, estimate."""
    p = job.progress or {}
    text = f"Metamorph {job.kind}: {stage_label(p.get('stage'))}"
    if p.get("total"):
        text += f" {p.get('step') or 0}/{p.get('total')}"
    if p.get("queue_position"):
        text += f" (position {p['queue_position']} in the queue)"
    return text + _format_eta(job.eta_s())


def update(context, job) -> None:
    """Copy ``job``'s latest progress into the panel state."""
    st = state.get(context)
    p = job.progress or {}
    st.job_kind = job.kind
    st.job_stage = stage_label(p.get("stage"))
    st.job_step = int(p.get("step") or 0)
    st.job_total = int(p.get("total") or 0)
    eta = job.eta_s()
    st.job_eta_s = -1.0 if eta is None else float(eta)
    losses = p.get("losses") or {}
    if losses:
        v = losses.get("total", next(iter(losses.values())))
        if isinstance(v, (int, float)):
            st.job_loss = float(v)
    if job.hello and not st.connected:
        connection.set_connected(context, job.hello, connection.client_options(context)["address"])
    if job.preview is not None:
        show_preview(context, job.preview)
        job.preview = None


def show_preview(context, img) -> None:
    """Small progress preview [h,w,3] uint8 (row 0 top) into the preview image."""
    img = np.asarray(img)
    if img.ndim != 3 or img.dtype != np.uint8 or img.shape[2] not in (3, 4):
        return
    h, w = img.shape[:2]
    im = bpy.data.images.get(PREVIEW_IMAGE)
    if im is not None and tuple(im.size) != (w, h):
        bpy.data.images.remove(im)
        im = None
    if im is None:
        im = images.from_array(PREVIEW_IMAGE, img[..., :3], pack=False)
    else:
        images.write(im, img[..., :3])
    state.get(context).job_preview = im.name


def status_bar(context, job) -> None:
    ws = getattr(context, "workspace", None)
    if ws is not None and not bpy.app.background:
        ws.status_text_set(line(job) + " (Esc cancels)")
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen else []:
        if area.type == "VIEW_3D":
            area.tag_redraw()


def clear(context, message: str = "", level: str = "INFO") -> None:
    """Job over: reset the progress display and drop the preview image (a cancelled or
    failed job leaves no datablock behind); ``message`` replaces the previous one."""
    st = state.get(context)
    prev = bpy.data.images.get(PREVIEW_IMAGE)
    if prev is not None:
        bpy.data.images.remove(prev)
    st.job_preview = ""
    st.job_kind = st.job_stage = ""
    st.job_step = st.job_total = 0
    st.job_eta_s, st.job_loss = -1.0, 0.0
    state.set_message(context, message, level)
    ws = getattr(context, "workspace", None)
    if ws is not None and not bpy.app.background:
        ws.status_text_set(None)
