"""Requests from the scene: the avatar (extracted and checked locally), the style
terms and their images, cameras, frames and the panel's settings, as the contracts
in :mod:`shared.stylize` define them. Main thread only; nothing here sends anything.
"""

from __future__ import annotations

import json

import numpy as np

from . import images, rig, selection
from ._shared import avatar as mm_avatar
from ._shared import errors, stylize
from ._shared import passes as mm_passes


def extract(context, objects, uv_overrides: dict | None = None):
    """The avatar for ``objects`` via :mod:`scene_io` (with the expression track of
    the expression frames), validated locally so a bad mesh is reported before
    anything is sent. ``uv_overrides``: {object name: per-loop UVs [L,2]} for meshes
    stylized through an unwrapped copy."""
    from . import scene_io
    fr = selection.frames(context)
    av = scene_io.extract_avatar(objects, scene=context.scene, frame_range=(fr[0], fr[-1]),
                                 uv_overrides=uv_overrides)
    mm_avatar.validate(av)
    n = sum(len(o.data.vertices) for o in objects)
    if av.num_vertices != n:
        # Results map one-to-one onto the meshes' own vertices.
        raise errors.InvalidAvatar(
            "A modifier changes the avatar's vertex count (e.g. Subdivision Surface): apply it or "
            "turn it off in the viewport before stylizing, so the result maps onto the mesh.")
    return av


def image_term_array(image) -> np.ndarray:
    """A reference image as [H,W,3] uint8 sRGB, row 0 = top."""
    return images.to_srgb_u8(image, error=errors.InvalidParams)


def terms_and_images(s) -> tuple[list, dict]:
    """(StyleTerm list, {style_image_<i>: [H,W,3] uint8}) of the panel's usable terms."""
    terms, arrays = [], {}
    for t in s.terms:
        if t.weight == 0:
            continue
        if t.kind == "TEXT" and t.text.strip():
            terms.append(stylize.StyleTerm(kind="text", weight=float(t.weight), text=t.text.strip()))
        elif t.kind == "IMAGE" and t.image is not None:
            i = sum(1 for k in arrays if k.startswith(stylize.STYLE_IMAGE_PREFIX))
            arrays[f"{stylize.STYLE_IMAGE_PREFIX}{i}"] = image_term_array(t.image)
            terms.append(stylize.StyleTerm(kind="image", weight=float(t.weight), image_index=i))
    return terms, arrays


def texture_size(s, avatar=None) -> int:
    """The panel's texture size, capped at the avatar's largest texture unless
    upscaling is allowed (a 512 texture set is not blown up to 1024 by default)."""
    size = int(s.texture_size)
    if avatar is not None and not s.allow_upscale:
        own = max((max(ts.image.shape[:2]) for ts in avatar.texture_sets
                   if ts.image.shape[0] > 4), default=size)  # flat 4x4 colours don't count
        size = max(stylize.MIN_TEXTURE_SIZE, min(size, int(own)))
    return size


def requested_passes(s) -> list[str]:
    """The passes to render, in the contract's order. With passes off, only the
    cheapest one (the contract asks for at least one; it is not saved)."""
    if not s.use_passes:
        return ["alpha"]
    chosen = [p for p in stylize.PASS_NAMES if p in s.passes]
    return chosen or list(mm_passes.DEFAULT_PASSES)


def build_request(context, objects, avatar_id: str, track=None, avatar=None):
    """(StylizeRequest, arrays) from the panel settings; ``track`` (the avatar's
    ExpressionTrack) travels with the request because the server caches avatars
    by content hash, which leaves the animation out."""
    s = selection.settings(context)
    terms, arrays = terms_and_images(s)
    res = int(s.pass_resolution) if s.use_passes else stylize.MIN_PASS_RESOLUTION
    cams = rig.cameras_for_request(context.scene, selection.rig_cameras(context), res)
    name = s.style_name.strip() or next((t.text for t in terms if t.kind == "text"), "") or \
        "Image style"
    req = stylize.StylizeRequest(
        avatar_id=avatar_id, terms=terms, cameras=cams,
        frames=[float(f) for f in selection.frames(context)], identity=float(s.identity),
        steps=int(s.steps), preset=s.preset, seed=int(s.seed), guidance=s.guidance,
        texture_size=texture_size(s, avatar), passes=requested_passes(s), pass_resolution=res,
        name=name[:stylize.MAX_NAME_LENGTH],
        track=None if track is None else {
            "names": list(track.names), "frames": [float(f) for f in track.frames],
            "weights": np.asarray(track.weights, np.float32).tolist()})
    req.validate(images=stylize.style_images(arrays))
    return req, arrays


def build_prepare(context, avatar_id: str, settings: dict | None = None):
    """(PrepareRequest, arrays): the panel's Iterations, guidance, preset and seed; the
    text terms as the meta-training styles (else the backend's own list)."""
    s = selection.settings(context)
    prompts = [t.text.strip() for t in s.terms if t.kind == "TEXT" and t.text.strip()]
    req = stylize.PrepareRequest(avatar_id=avatar_id, guidance=s.guidance, preset=s.preset,
                                 iterations=int(s.iterations), seed=int(s.seed),
                                 styles=prompts or None, settings=settings)
    req.validate()
    return req, {}


def json_object(text: str, what: str, example: str) -> dict | None:
    """An operator's hidden JSON property (scripts and tests) as a dict; None when empty.
    ``what`` names it in the error ("Engine settings"), ``example`` shows a valid value."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{what} must be JSON ({e}).") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, e.g. {example}.")
    return value


def settings_param(text: str) -> dict | None:
    """The operators' hidden ``settings`` (JSON engine overrides) as a dict, or None."""
    return json_object(text, "Engine settings", '{"resolution": 64}')


def uv_overrides(context, objects) -> dict:
    """{name: per-loop UVs} for the meshes without UVs when "Unwrap a copy" is on."""
    from . import unwrap
    if not selection.settings(context).unwrap_copy:
        return {}
    return {o.name: unwrap.smart_uvs(o) for o in objects if len(o.data.uv_layers) == 0}


def stylize_spec(context, objects, settings: dict | None = None):
    """The :class:`job_operator.JobSpec` for stylizing ``objects`` with the panel's
    settings; its ``apply`` applies the result (all or nothing). ``settings``: engine
    overrides (scripts). Raises MetamorphError/ValueError for a scene that cannot be sent."""
    from . import result_apply
    from .job_operator import JobSpec
    uvs = uv_overrides(context, objects)
    av = extract(context, objects, uvs)
    aid = mm_avatar.content_hash(av)
    req, arrays = build_request(context, objects, aid, av.track, av)
    if settings:
        req.settings = dict(settings)
        req.validate(images=stylize.style_images(arrays))
    names = [o.name for o in objects]
    cam_names = [c.name for c in req.cameras]
    save = bool(selection.settings(context).use_passes)

    def apply(context, body, arrays):
        objs = result_apply.objects_by_name(names)
        res = result_apply.from_wire(body, arrays)
        return result_apply.apply_stylize_result(context, objs, res, cam_names, uvs, save)

    return JobSpec("stylize", req.to_params(), arrays, apply=apply, avatar=av, avatar_id=aid)


def prepare_spec(context, objects, settings: dict | None = None):
    """The JobSpec for Prepare (fit + meta-train the avatar's style initialization)."""
    from . import result_apply
    from .job_operator import JobSpec
    av = extract(context, objects, uv_overrides(context, objects))
    aid = mm_avatar.content_hash(av)
    req, arrays = build_prepare(context, aid, settings)
    return JobSpec("prepare", req.to_params(), arrays,
                   apply=lambda context, body, arrays: result_apply.prepare_message(body),
                   avatar=av, avatar_id=aid)
