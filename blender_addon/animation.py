"""F-curves and the expression track: the one place that reads and writes shape-key
animation (Blender 4.4+ slotted actions, with the legacy list as a fallback).

The expression track (:class:`shared.avatar.ExpressionTrack`) is what travels:
shape-key weights at whole frames, one column per animated key.
"""

from __future__ import annotations

import numpy as np

from ._shared import avatar as mm_avatar

_KEY_PREFIX, _KEY_SUFFIX = 'key_blocks["', '"].value'


def fcurves(animation_data) -> list:
    """F-curves of an animation data's action for its assigned slot; [] without an action."""
    if animation_data is None or animation_data.action is None:
        return []
    act = animation_data.action
    slot = getattr(animation_data, "action_slot", None)
    if slot is not None:
        from bpy_extras import anim_utils
        bag = anim_utils.action_get_channelbag_for_slot(act, slot)
        return list(bag.fcurves) if bag else []
    return list(getattr(act, "fcurves", []))


def id_fcurves(id_data) -> list:
    """F-curves driving an ID (object, shape key...)."""
    return fcurves(getattr(id_data, "animation_data", None))


def key_name(data_path: str) -> str | None:
    """``key_blocks["smile"].value`` -> ``smile``; None for other paths."""
    if data_path.startswith(_KEY_PREFIX) and data_path.endswith(_KEY_SUFFIX):
        return data_path[len(_KEY_PREFIX):-len(_KEY_SUFFIX)]
    return None


def key_path(name: str) -> str:
    return f'{_KEY_PREFIX}{name}{_KEY_SUFFIX}'


def shape_key_fcurves(obj) -> dict:
    """{shape key name: F-curve} for a mesh object's animated shape keys."""
    keys = obj.data.shape_keys if obj.type == "MESH" else None
    out = {}
    for fc in id_fcurves(keys) if keys is not None else []:
        n = key_name(fc.data_path)
        if n is not None:
            out[n] = fc
    return out


def animated_shape_keys(objects) -> list[str]:
    """Names of shape keys driven by an F-curve on any of ``objects``, first object first,
    in key-block order."""
    names: list[str] = []
    for o in objects:
        curves = shape_key_fcurves(o)
        for kb in o.data.shape_keys.key_blocks[1:] if curves else []:
            if kb.name in curves and kb.name not in names:
                names.append(kb.name)
    return names


def action_range(objects) -> tuple[int, int] | None:
    """Whole-frame range of the shape-key keyframes of ``objects`` (None without any)."""
    lo, hi = np.inf, -np.inf
    for o in objects:
        for fc in shape_key_fcurves(o).values():
            n = len(fc.keyframe_points)
            if n == 0:
                continue
            co = np.empty(n * 2, np.float32)
            fc.keyframe_points.foreach_get("co", co)
            lo, hi = min(lo, float(co[0::2].min())), max(hi, float(co[0::2].max()))
    if not np.isfinite(lo):
        return None
    return int(np.floor(lo)), int(np.ceil(hi))


def expression_track(objects, scene, frame_range=None) -> "mm_avatar.ExpressionTrack | None":
    """Shape-key weights at every whole frame of ``frame_range`` (default: the scene's range).

    Names: key blocks driven by an F-curve, in key-block order, first object first."""
    start, end = frame_range or (scene.frame_start, scene.frame_end)
    frames = np.arange(int(start), int(end) + 1, dtype=np.float64)
    names, cols = [], []
    for ob in objects:
        curves = shape_key_fcurves(ob)
        for kb in ob.data.shape_keys.key_blocks[1:] if curves else []:
            fc = curves.get(kb.name)
            if fc is None or kb.name in names:
                continue
            names.append(kb.name)
            cols.append([fc.evaluate(float(f)) for f in frames])
    if not names or len(frames) == 0:
        return None
    fps = scene.render.fps / (scene.render.fps_base or 1.0)
    return mm_avatar.ExpressionTrack(frames=frames.astype(np.float32), names=names,
                                     weights=np.asarray(cols, np.float32).T.copy(), fps=float(fps))


def write_expression_track(obj, track, action_name: str | None = None):
    """Key ``track`` onto ``obj``'s shape keys as a new action (one F-curve per name
    the mesh has, linear keys at the track's frames). Names the mesh lacks are
    skipped. Returns the action (the caller removes it again on failure)."""
    import bpy
    keys = obj.data.shape_keys
    if keys is None:
        raise ValueError(f"'{obj.name}' has no shape keys to animate.")
    act = bpy.data.actions.new(action_name or f"{obj.name} expression")
    try:
        ad = keys.animation_data or keys.animation_data_create()
        ad.action = act
        if hasattr(act, "slots") and getattr(ad, "action_slot", None) is None:
            ad.action_slot = act.slots.new(id_type="KEY", name=keys.name)
        frames = np.asarray(track.frames, np.float32)
        w = np.asarray(track.weights, np.float32).reshape(len(frames), -1)
        for k, name in enumerate(track.names):
            if name not in keys.key_blocks:
                continue
            fc = _new_fcurve(act, ad, key_path(name))
            fc.keyframe_points.add(len(frames))
            co = np.empty((len(frames), 2), np.float32)
            co[:, 0], co[:, 1] = frames, w[:, k]
            fc.keyframe_points.foreach_set("co", co.ravel())
            fc.keyframe_points.foreach_set("interpolation", [1] * len(frames))  # LINEAR
            fc.update()
    except Exception:
        bpy.data.actions.remove(act)
        raise
    return act


def _new_fcurve(action, animation_data, data_path: str):
    slot = getattr(animation_data, "action_slot", None)
    if slot is not None:
        from bpy_extras import anim_utils
        bag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
        return bag.fcurves.new(data_path)
    return action.fcurves.new(data_path)


def share_action(src_ad, dst_owner, copy: bool = False):
    """Let ``dst_owner`` (an ID) play ``src_ad``'s action in the same slot: the same
    action (later edits to the original's keys carry over) or, with ``copy``, its own
    copy. Returns the new action when one was made (for clean-up), else None."""
    if src_ad is None or src_ad.action is None:
        return None
    act = src_ad.action.copy() if copy else src_ad.action
    slot_id = src_ad.action_slot.identifier if getattr(src_ad, "action_slot", None) else None
    ad = dst_owner.animation_data or dst_owner.animation_data_create()
    ad.action = act
    if hasattr(ad, "action_slot") and act.slots:
        slot = next((s for s in act.slots if s.identifier == slot_id), act.slots[0])
        if ad.action_slot != slot:
            ad.action_slot = slot
    return act if copy else None
