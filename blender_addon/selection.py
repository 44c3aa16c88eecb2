"""What a job works on: the avatar's meshes, the rig's cameras, the frames.

Also the readiness checks that buttons use to say why they cannot run; the same
checks run again in ``execute`` so a script calling an operator directly gets
the same sentence and nothing is sent.
"""

from __future__ import annotations

import bpy

from . import animation
from ._shared import stylize

RESULTS_COLLECTION = "Metamorph Results"


def settings(context=None):
    return (context or bpy.context).scene.metamorph


def _candidates(context) -> list:
    s = settings(context)
    if s.avatar_collection is not None:
        return [o for o in s.avatar_collection.all_objects if o.type == "MESH"]
    return [o for o in context.selected_objects if o.type == "MESH"]


def _result_objects() -> set:
    res = bpy.data.collections.get(RESULTS_COLLECTION)
    return set(res.all_objects) if res is not None else set()


def avatar_objects(context) -> list:
    """The avatar's mesh objects, in a stable order (the order vertices are
    concatenated in the uploaded avatar, and split again on apply). Stylized copies
    are never part of it."""
    skip = _result_objects()
    return sorted((o for o in _candidates(context) if o not in skip), key=lambda o: o.name)


def excluded_copies(context) -> list[str]:
    """Names of selected (or collected) meshes left out because they are stylized copies."""
    skip = _result_objects()
    return [o.name for o in _candidates(context) if o in skip]


def rig_cameras(context) -> list:
    """Static cameras of the rig (the animated orbit camera is for turntables)."""
    s = settings(context)
    if s.rig_collection is None:
        return []
    cams = [o for o in s.rig_collection.all_objects
            if o.type == "CAMERA" and not o.get("metamorph_orbit")]
    return sorted(cams, key=lambda o: o.name)


def orbit_camera(context):
    s = settings(context)
    if s.rig_collection is None:
        return None
    for o in s.rig_collection.all_objects:
        if o.type == "CAMERA" and o.get("metamorph_orbit"):
            return o
    return None


def frame_range(context, objects=None) -> tuple[int, int]:
    """(first, last) expression frame: the avatar's shape-key animation by default
    (a glTF import leaves the timeline at 1-250), the timeline, or the panel's own."""
    s = settings(context)
    if s.frame_source == "CUSTOM":
        a, b = s.frame_start, s.frame_end
    else:
        a, b = context.scene.frame_start, context.scene.frame_end
        if s.frame_source == "ACTION":
            r = animation.action_range(avatar_objects(context) if objects is None else objects)
            if r is not None:
                a, b = r
    return (a, b) if a <= b else (b, a)


def frames(context, objects=None) -> list[int]:
    """Expression frames to stylize: the frame range every ``step``."""
    a, b = frame_range(context, objects)
    return list(range(a, b + 1, max(1, settings(context).frame_step)))


def turntable_frames(context) -> list[int]:
    """Turntable frames: the timeline (every frame step of the scene) or the panel's range."""
    s, sc = settings(context), context.scene
    if s.tt_use_scene_range:
        return list(range(sc.frame_start, sc.frame_end + 1, max(1, sc.frame_step)))
    a, b = sorted((s.tt_frame_start, s.tt_frame_end))
    return list(range(a, b + 1))


def animated_shape_keys(objects) -> list[str]:
    return animation.animated_shape_keys(objects)


def term_problem(s) -> str | None:
    usable = [t for t in s.terms if t.weight != 0 and
              ((t.kind == "TEXT" and t.text.strip()) or (t.kind == "IMAGE" and t.image))]
    if not usable:
        return "Add a style term: a text prompt or a reference image with a weight above 0."
    if len(usable) > stylize.MAX_PROMPTS:
        return f"Use at most {stylize.MAX_PROMPTS} style terms (there are {len(usable)})."
    return None


def avatar_problem(objs, context=None, unwrap: bool = False) -> str | None:
    """Why ``objs`` cannot be stylized, or None. ``unwrap``: meshes without UVs are fine
    (a copy is unwrapped)."""
    if not objs:
        copies = excluded_copies(context) if context is not None else []
        if copies:
            return (f"Only stylized copies are selected ({', '.join(copies[:3])}): Metamorph "
                    "stylizes the original avatar; select its meshes instead.")
        return "No mesh selected: select the avatar's meshes or set the Avatar collection."
    for o in objs:
        if len(o.data.vertices) == 0:
            return f"Mesh '{o.name}' has no vertices."
    no_uv = [o.name for o in objs if len(o.data.uv_layers) == 0]
    if no_uv and not unwrap:
        return (f"Mesh{'es' if len(no_uv) > 1 else ''} {', '.join(repr(n) for n in no_uv)} "
                f"{'have' if len(no_uv) > 1 else 'has'} no UVs: tick 'Unwrap a copy' (the "
                "original stays as it is) or unwrap (UV > Smart UV Project) before stylizing.")
    return None


def why_not(context, action: str, connected: bool) -> str | None:
    """A sentence saying why ``action`` ("prepare" | "stylize") cannot run now, or None."""
    from . import jobs
    if jobs.current() is not None:
        return "A Metamorph job is already running; wait for it or cancel it."
    if not connected:
        return "Not connected to a backend: press Connect (or start the local backend)."
    s = settings(context)
    objs = avatar_objects(context)
    problem = avatar_problem(objs, context, unwrap=s.unwrap_copy)
    if problem:
        return problem
    if action == "stylize":
        if not rig_cameras(context):
            return "No cameras: set the Camera rig collection or create a turntable rig."
        n_cams = len(rig_cameras(context))
        if n_cams > stylize.MAX_CAMERAS:
            return (f"The rig has {n_cams} cameras, more than {stylize.MAX_CAMERAS}: use fewer cameras "
                    "per ring or fewer rings.")
        n = len(frames(context, objs))
        if n > stylize.MAX_FRAMES:
            return (f"{n} expression frames is more than {stylize.MAX_FRAMES}: raise the frame "
                    "step or shorten the range.")
        return term_problem(s)
    return None
