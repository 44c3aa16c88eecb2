"""The true engine as the fit sees it: one frontal camera and labelled renders.

Parts (segmentation classes, from the renderer's triangle ids through each triangle's
part): :data:`SEG_CLASSES`. Expression weights: one per
:data:`backend.avatar.blendshapes.ARKIT_NAMES`, in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from shared.avatar import linear_to_srgb, srgb_to_linear
from shared.camera import Camera

from backend.avatar.blendshapes import ARKIT_NAMES
from backend.avatar.params import AvatarParams
from backend.avatar.sample import PART_NAMES, build_geometry, sample_avatar
from backend.render import Lights, render
from backend.style.rig import look_at

SEG_CLASSES = ("background", "skin", "eyes", "ears", "mouth", "hair", "brows", "glasses")
_PART_TO_CLASS = {"skin": 1, "eye_L": 2, "eye_R": 2, "ear_L": 3, "ear_R": 3, "mouth": 4, "teeth_upper": 4,
                  "teeth_lower": 4, "hair": 5, "brows": 6, "glasses": 7}
NUM_EXPR = len(ARKIT_NAMES)
RENDER_SIZE = 256                      # pixels, square frontal renders
FRAME_CENTER = (0.0, 0.0, 0.385)       # metres: the look-at point (eye level of the average head)
FRAME_DISTANCE = 0.52                  # metres from the face; lens 50 mm on a 36 mm sensor
BACKGROUND = (0.45, 0.45, 0.45)        # linear grey
TRAIN_TEXTURE = 256                    # albedo size for the fit's renders (colour is flat enough)


def frontal_camera(size: int = RENDER_SIZE, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> Camera:
    """The fit's camera: in front of the face (-Y), looking at :data:`FRAME_CENTER`."""
    c = np.asarray(FRAME_CENTER)
    a, e = np.radians(yaw_deg), np.radians(pitch_deg)
    eye = c + FRAME_DISTANCE * np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
    return Camera(matrix_world=look_at(eye, c), lens=50.0, sensor_width=36.0, sensor_height=36.0, clip_start=0.1,
                  clip_end=3.0, resolution_x=size, resolution_y=size, name="photo_frontal")


def face_classes(P: AvatarParams) -> np.ndarray:
    """[F] int class (index into SEG_CLASSES) of every triangle of ``sample_avatar(P)``."""
    g = build_geometry(P)
    lut = np.array([_PART_TO_CLASS[n] for n in PART_NAMES])
    return lut[g.part_of_vertex[g.faces[:, 0]]]


def posed_vertices(av, expression) -> np.ndarray:
    """Vertices [V,3] of ``av`` with ARKit ``expression`` weights [K] applied."""
    w = np.zeros(len(av.blendshape_names), np.float32)
    e = np.asarray(expression if expression is not None else [], np.float32).reshape(-1)
    w[:len(e)] = e[:len(w)]
    return av.vertices + np.tensordot(w, av.blendshapes, 1)


def render_avatar(P: AvatarParams, expression=None, *, size: int = RENDER_SIZE, av=None, lights: Lights | None = None,
                  background=None, camera: Camera | None = None, texture_size: int = TRAIN_TEXTURE,
                  labels: bool = True) -> dict:
    """Render ``P`` (optionally posed) from the frontal camera with the true engine.

    background: None (grey), a linear colour [3], or an sRGB uint8 image [size,size,3].
    Returns {"image": [S,S,3] uint8 sRGB, "classes": [S,S] int8 SEG_CLASSES index (if labels)}.
    """
    av = av if av is not None else sample_avatar(P, texture_size=texture_size, with_track=False)
    cam = camera or frontal_camera(size)
    V = torch.from_numpy(np.ascontiguousarray(posed_vertices(av, expression), np.float32))[None]
    tex = torch.from_numpy(srgb_to_linear(av.texture_sets[0].image / 255.0).astype(np.float32))
    bg = BACKGROUND if background is None else background
    if isinstance(bg, np.ndarray) and bg.ndim == 3:
        bg = torch.from_numpy(srgb_to_linear(bg / 255.0).astype(np.float32))[None]
    with torch.no_grad():
        out = render(V, torch.from_numpy(av.faces.astype(np.int64)), torch.from_numpy(av.uvs),
                     torch.from_numpy(av.uv_faces.astype(np.int64)), [tex], None, [cam], lights=lights,
                     background=bg, passes=("color", "tri_id") if labels else ("color",))
    img = (np.clip(linear_to_srgb(np.clip(out["color"][0].numpy(), 0, 1)), 0, 1) * 255 + 0.5).astype(np.uint8)
    res = {"image": img}
    if labels:
        tri = out["tri_id"][0, ..., 0].numpy()
        cls = np.concatenate([[0], face_classes(P)])
        res["classes"] = cls[tri + 1].astype(np.int8)
    return res


def random_expression(rng: np.random.Generator, p_active: float = 0.35, max_weight: float = 1.0) -> np.ndarray:
    """[NUM_EXPR] weights: each blendshape on with probability ``p_active``, weight U(0, max)."""
    on = rng.random(NUM_EXPR) < p_active
    return (on * rng.uniform(0, max_weight, NUM_EXPR)).astype(np.float32)
