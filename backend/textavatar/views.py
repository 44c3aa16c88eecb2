"""Renders of whole avatars for the codebook, the contact sheet and the checks:
views picked from the default rig, expression weights from a track, plain grey and
textured passes over a flat background. Images are ``[B,H,W,3]`` linear float, row 0 top.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.avatar import AvatarData, srgb_to_linear

from backend.render import render
from backend.style.rig import default_rig

# Indices into backend.style.rig.default_rig: 8 views round the head at eye level
# (0 = front, 1 = 45 deg to the avatar's left, 2 = profile, 7 = 45 deg right) then 4
# from 20 deg above over the front half (9, 10 = 22.5 deg either side of the front).
CODEBOOK_VIEWS = (0, 1, 7, 10)
SHEET_VIEWS = (0, 1, 2)


def rig(av: AvatarData, size: int):
    """The default rig framed on ``av`` (``size`` pixels square)."""
    return default_rig(av.vertices, resolution=int(size), blendshapes=av.blendshapes)


def track_weights(av: AvatarData, frames) -> np.ndarray:
    """Blendshape weights ``[N,K]`` of ``av`` at ``frames`` (its track, linearly
    interpolated; zeros without a track)."""
    W = np.zeros((len(frames), len(av.blendshape_names)), np.float32)
    t = av.track
    if t is None or not len(t.frames):
        return W
    col = {n: i for i, n in enumerate(av.blendshape_names)}
    for j, name in enumerate(t.names):
        if name in col:
            W[:, col[name]] = np.interp(np.asarray(frames, np.float64), np.asarray(t.frames, np.float64),
                                        np.asarray(t.weights)[:, j])
    return W


def expressive_frame(av: AvatarData) -> float:
    """The track frame with the strongest expression (sum of weights); 0 without a track."""
    t = av.track
    if t is None or not len(t.frames):
        return 0.0
    return float(np.asarray(t.frames)[int(np.abs(np.asarray(t.weights)).sum(1).argmax())])


def render_avatar(av: AvatarData, cameras, size: int, weights: np.ndarray | None = None,
                  passes=("color", "grey", "alpha"), background=(1.0, 1.0, 1.0), lights=None,
                  device="cpu") -> dict[str, torch.Tensor]:
    """Render ``av`` from each camera (one batch item per camera) at ``size``^2 pixels.

    ``weights``: ``[B,K]`` expression weights per camera (None = neutral). Colour passes
    are composited over ``background`` (linear RGB) with the alpha pass. Returns
    {pass: [B,size,size,C]} linear, no gradients.
    """
    B = len(cameras)
    V = torch.from_numpy(np.asarray(av.vertices, np.float32)).to(device)[None].expand(B, -1, -1)
    if weights is not None and len(av.blendshape_names):
        bs = torch.from_numpy(np.asarray(av.blendshapes, np.float32)).to(device)
        V = V + torch.einsum("bk,kvc->bvc", torch.as_tensor(weights, dtype=torch.float32, device=device), bs)
    tex = [torch.from_numpy(srgb_to_linear(ts.image.astype(np.float32) / 255.0)).to(device)
           for ts in av.texture_sets]
    need = tuple(dict.fromkeys(tuple(passes) + ("alpha",)))
    with torch.no_grad():
        out = render(V.contiguous(), torch.from_numpy(np.asarray(av.faces, np.int64)).to(device),
                     torch.from_numpy(np.asarray(av.uvs, np.float32)).to(device),
                     torch.from_numpy(np.asarray(av.uv_faces, np.int64)).to(device), tex,
                     torch.from_numpy(np.asarray(av.face_material, np.int64)).to(device), list(cameras),
                     size=(int(size), int(size)), lights=lights, passes=need)
    a = out["alpha"]
    bg = torch.as_tensor(background, dtype=a.dtype, device=a.device)
    for p in ("color", "grey", "albedo"):
        if p in out:
            out[p] = out[p] * a + bg * (1 - a)
    return {p: out[p] for p in passes}
