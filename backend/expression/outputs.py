"""What the expression CLI writes: ``track.json``, an animated ``expression.glb`` and a
``strip.png`` of rendered frames, all into a temporary folder beside ``--out`` that is
renamed at the end (a failure leaves nothing half-written)."""

from __future__ import annotations


import numpy as np
import torch

from shared.avatar import AvatarData, euler_xyz_matrix
from shared.expression import ExpressionResult

from backend.outputs import check_out, staged_dir, write_json

from .posing import Poser, frontal_cameras, to_uint8

STRIP_FRAMES = 8
STRIP_SIZE = 192


def render_strip(av: AvatarData, res: ExpressionResult, count: int = STRIP_FRAMES, size: int = STRIP_SIZE,
                 caption: str = "") -> np.ndarray:
    """``count`` evenly spaced frames of the track rendered on the avatar, side by side
    under a caption bar ([H,W,3] uint8); red when made with a test model."""
    from PIL import Image, ImageDraw

    poser = Poser(av)
    idx = np.unique(np.round(np.linspace(0, len(res.weights) - 1, min(count, len(res.weights)))).astype(int))
    w = np.zeros((len(idx), poser.K), np.float32)
    for k, n in enumerate(poser.names):
        if n in res.names:
            w[:, k] = res.weights[idx, res.names.index(n)]
    rot = None
    if res.head_rotation is not None:
        rot = torch.from_numpy(euler_xyz_matrix(res.head_rotation[idx]).astype(np.float32))
    with torch.no_grad():
        imgs = to_uint8(poser.render(torch.from_numpy(w), frontal_cameras(av, 1, size), rotation=rot))
    strip = np.concatenate(list(imgs), 1)
    md = res.metadata
    test = bool(md.get("guidance_is_test_model")) or md.get("regressor") == "test"
    bar = Image.new("RGB", (strip.shape[1], 22), (150, 20, 20) if test else (30, 30, 30))
    text = caption + "  |  frames " + ", ".join(str(int(res.start_frame + i)) for i in idx)
    if test:
        text = "TEST MODEL: mechanics only, not a real result  |  " + text
    ImageDraw.Draw(bar).text((6, 5), text, fill=(255, 255, 255))
    return np.concatenate([np.asarray(bar), strip], 0)


def write_outputs(av: AvatarData, res: ExpressionResult, out, caption: str = "") -> dict:
    """Write track.json, expression.glb (the avatar with the track as its animation) and
    strip.png under ``out`` (replaced as a whole). Returns {kind: path} and what was skipped."""
    from PIL import Image

    from backend.avatar import save_glb

    out = check_out(out).resolve()
    with staged_dir(out) as tmp:
        track, skipped = res.to_track(av.blendshape_names)
        doc = res.to_json()
        doc["avatar_skipped_names"] = skipped
        doc["head_rotation_note"] = None if res.head_rotation is None else (
            "head_rotation_deg: Blender XYZ Euler degrees of the avatar object per frame (also the GLB node's "
            "rotation channel)")
        write_json(tmp / "track.json", doc, indent=1)
        if track.names:
            save_glb(av, str(tmp / "expression.glb"), track=track, fps=res.fps, rotation=res.head_rotation)
        else:
            save_glb(av, str(tmp / "expression.glb"), track=None)
        Image.fromarray(render_strip(av, res, caption=caption)).save(tmp / "strip.png")
    return {"track": str(out / "track.json"), "glb": str(out / "expression.glb"), "strip": str(out / "strip.png"),
            "skipped": skipped}


