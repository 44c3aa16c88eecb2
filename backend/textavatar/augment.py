"""Sculpting augmentations: random lights around the camera, random ambient level,
random backgrounds (white, noise, blurred checkerboard, black) and face close-up cameras.
Randomness comes only from the ``torch.Generator`` passed in (deterministic per seed).
Images are ``[B,H,W,3]`` linear, row 0 top.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from backend.render import Lights
from backend.style.rig import head_bounds

BACKGROUND_KINDS = ("white", "noise", "blurred_checkerboard", "black")
AMBIENT_RANGE = (0.1, 0.5)     # ambient irradiance; the key light brings a facing surface to 1
LIGHT_CONE_DEG = 50.0          # the key light comes from within this angle of the view axis
FRONT_BACK_DEG = 60.0          # views within this angle of the face's / the back's direction
FACE_ZOOM = 2.2                # close-ups: focal length multiplier of a frontal rig camera


def random_lights(gen: torch.Generator, cone_deg: float = LIGHT_CONE_DEG, ambient=AMBIENT_RANGE) -> Lights:
    """One key light in camera space from a random direction within ``cone_deg`` of the
    view axis (uniform over the spherical cap), plus a random grey ambient level."""
    u = torch.rand(3, generator=gen).tolist()
    cos_t = 1.0 - u[0] * (1.0 - math.cos(math.radians(cone_deg)))
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    phi = 2 * math.pi * u[1]
    a = ambient[0] + (ambient[1] - ambient[0]) * u[2]
    k = 1.0 - a
    return Lights(directions=((sin_t * math.cos(phi), sin_t * math.sin(phi), cos_t),), colors=((k, k, k),),
                  ambient=(a, a, a), space="camera")


def random_backgrounds(n: int, h: int, w: int, gen: torch.Generator, device="cpu",
                       kinds: tuple[str, ...] = BACKGROUND_KINDS) -> torch.Tensor:
    """``[n,h,w,3]`` backgrounds, each one of ``kinds`` (equally likely; default all of
    :data:`BACKGROUND_KINDS`): white, uniform noise, a checkerboard of two random colours
    blurred by a box of half its cell, black."""
    unknown = [k for k in kinds if k not in BACKGROUND_KINDS]
    if unknown or not kinds:
        raise ValueError(f"background kinds must be a non-empty subset of {BACKGROUND_KINDS}, got {kinds}")
    out = torch.empty(n, h, w, 3)
    picks = torch.randint(0, len(kinds), (n,), generator=gen).tolist()
    for b, k in enumerate(picks):
        kind = kinds[k]
        if kind == "white":
            out[b] = 1.0
        elif kind == "black":
            out[b] = 0.0
        elif kind == "noise":
            out[b] = torch.rand(h, w, 3, generator=gen)
        else:
            c = torch.rand(2, 3, generator=gen)
            cell = int(torch.randint(max(2, h // 16), max(3, h // 4), (1,), generator=gen))
            yy = torch.arange(h)[:, None] // cell
            xx = torch.arange(w)[None, :] // cell
            sel = ((yy + xx) % 2).unsqueeze(-1).float()
            board = (c[0] * sel + c[1] * (1 - sel)).permute(2, 0, 1)[None]
            k_ = max(1, cell // 2) | 1  # odd box width keeps the board centred
            out[b] = F.avg_pool2d(board, k_, stride=1, padding=k_ // 2, count_include_pad=False)[0].permute(1, 2, 0)
    return out.to(device)


def view_kinds(cameras, vertices: np.ndarray, blendshapes: np.ndarray | None = None,
               angle_deg: float = FRONT_BACK_DEG) -> list[str]:
    """"front", "back" or "side" per camera: where it sits around the head, the face
    looking down -Y (Blender's front view, the sample avatar's convention)."""
    c, _ = head_bounds(vertices, blendshapes)
    lim = math.cos(math.radians(angle_deg))
    out = []
    for cam in cameras:
        v = np.asarray(cam.matrix_world, np.float64)[:3, 3] - c
        f = -v[1] / max(np.linalg.norm(v), 1e-9)
        out.append("front" if f > lim else "back" if f < -lim else "side")
    return out


def face_closeups(cameras, kinds: list[str], zoom: float = FACE_ZOOM) -> list:
    """Close-ups of the face: the frontal cameras (all of them when none is frontal) with
    their focal length times ``zoom``. The rig looks at the face's centre, so zooming in
    frames the face."""
    src = [c for c, k in zip(cameras, kinds) if k == "front"] or list(cameras)
    return [replace(c, lens=float(c.lens) * zoom, name=f"{c.name}_face") for c in src]
