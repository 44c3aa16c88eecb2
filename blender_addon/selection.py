"""What a job works on: the avatar's meshes, the rig's cameras, the frames.

Also the readiness checks that buttons use to say why they cannot run; the same
checks run again in ``execute`` so a script calling an operator directly gets
the same sentence and nothing is sent.
"""

from __future__ import annotations

import bpy

RESULTS_COLLECTION = "Metamorph Results"


def settings(context=None):
    return (context or bpy.context).scene.metamorph


def avatar_objects(context) -> list:
    """The avatar's mesh objects, in a stable order (the order vertices are
    concatenated in the uploaded avatar, and split again on apply)."""
    s = settings(context)
    if s.avatar_collection is not None:
        objs = [o for o in s.avatar_collection.all_objects if o.type == "MESH"]
    else:
        objs = [o for o in context.selected_objects if o.type == "MESH"]
    res = bpy.data.collections.get(RESULTS_COLLECTION)
    if res is not None:
        skip = set(res.all_objects)
        objs = [o for o in objs if o not in skip]
    return sorted(objs, key=lambda o: o.name)


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


def frames(context) -> list[int]:
    """Expression frames to stylize: the timeline range (or the panel's) every ``step``."""
    s = settings(context)
    if s.use_scene_range:
        a, b = context.scene.frame_start, context.scene.frame_end
    else:
        a, b = s.frame_start, s.frame_end
    if b < a:
        a, b = b, a
    return list(range(a, b + 1, max(1, s.frame_step)))


def animated_shape_keys(objects) -> list[str]:
    """Names of shape keys driven by an action's F-curves on any of ``objects``."""
    names: list[str] = []
    for o in objects:
        key = o.data.shape_keys if o.type == "MESH" else None
        ad = key.animation_data if key else None
        if not ad or not ad.action:
            continue
        for fc in _fcurves(ad):
            p = fc.data_path
            if p.startswith('key_blocks["') and p.endswith('"].value'):
                n = p[len('key_blocks["'):-len('"].value')]
                if n not in names:
                    names.append(n)
    return names


def _fcurves(animation_data):
    """F-curves of an animation data's action for its assigned slot (Blender 4.4+
    slotted actions; falls back to the legacy list)."""
    act = animation_data.action
    slot = getattr(animation_data, "action_slot", None)
    if slot is not None:
        from bpy_extras import anim_utils
        bag = anim_utils.action_get_channelbag_for_slot(act, slot)
        return list(bag.fcurves) if bag else []
    return list(getattr(act, "fcurves", []))


def term_problem(s) -> str | None:
    usable = [t for t in s.terms if t.weight > 0 and
              ((t.kind == "TEXT" and t.text.strip()) or (t.kind == "IMAGE" and t.image))]
    if not usable:
        return "Add a style term: a text prompt or a reference image with a weight above 0."
    return None


def avatar_problem(objs) -> str | None:
    if not objs:
        return "No mesh selected: select the avatar's meshes or set the Avatar collection."
    for o in objs:
        if len(o.data.vertices) == 0:
            return f"Mesh '{o.name}' has no vertices."
        if len(o.data.uv_layers) == 0:
            return (f"Mesh '{o.name}' has no UVs: unwrap it (UV > Smart UV Project) "
                    "before stylizing.")
    return None


def why_not(context, action: str, connected: bool) -> str | None:
    """A sentence saying why ``action`` ("prepare" | "stylize") cannot run now, or None."""
    from . import jobs
    if jobs.current() is not None:
        return "A Metamorph job is already running; wait for it or cancel it."
    if not connected:
        return "Not connected to a backend: press Connect (or start the local backend)."
    problem = avatar_problem(avatar_objects(context))
    if problem:
        return problem
    if action == "stylize":
        if not rig_cameras(context):
            return "No cameras: set the Camera rig collection or create a turntable rig."
        return term_problem(settings(context))
    return None
