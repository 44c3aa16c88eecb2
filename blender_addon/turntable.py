"""Render turntables of results: every frame of the range from every rig camera
(or the orbit camera) to ``<output>/renders/<style>/<camera>/####.png``.

:class:`TurntableJob` renders one frame per :meth:`step` so a modal operator can
show progress and cancel between frames; in background mode the operator just
loops. Render settings, camera, frame and object visibility are restored by
:meth:`finish`, whatever happened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import bpy
import numpy as np

from .passes import safe_name
from .pngio import write_png


@dataclass
class Shot:
    style: str
    show: list          # objects rendered for this shot (others hidden)
    camera: object
    frame: int
    path: str
    kind: str = "stylized"  # "stylized" | "original"


class TurntableJob:
    def __init__(self, scene, items, cameras, root: str, frames=None, side_by_side=False,
                 originals=None):
        """``items``: [(style name, result objects)]; ``cameras``: camera objects;
        ``frames``: frame numbers (default: the scene's range); ``originals``: the
        source avatar's objects (needed for ``side_by_side``)."""
        if not cameras:
            raise ValueError("No cameras to render from: create a turntable rig first.")
        if not items:
            raise ValueError("No results selected to render.")
        self.scene = scene
        frames = list(frames if frames is not None else
                      range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step)))
        self.side_by_side = bool(side_by_side and originals)
        self.shots: list[Shot] = []
        self.pairs: list[tuple[str, str, str]] = []  # (stylized, original, joined)
        for style, objs in items:
            for cam in cameras:
                d = os.path.join(root, "renders", safe_name(style), safe_name(cam.name))
                for f in frames:
                    p = os.path.join(d, f"{f:04d}.png")
                    self.shots.append(Shot(style, list(objs), cam, f, p))
                    if self.side_by_side:
                        po = os.path.join(d, "original", f"{f:04d}.png")
                        self.shots.append(Shot(style, list(originals), cam, f, po, "original"))
                        self.pairs.append((p, po, os.path.join(d, "side_by_side", f"{f:04d}.png")))
        everything = {o for _, objs in items for o in objs} | set(originals or [])
        # Remember what we change so finish() puts it back exactly.
        self._hidden = {o.name: o.hide_render for o in everything}
        self._saved = (scene.camera, scene.frame_current, scene.render.filepath)
        self.done = 0
        self.written: list[str] = []

    @property
    def total(self) -> int:
        return len(self.shots)

    def step(self) -> bool:
        """Render the next shot. Returns False when all are rendered."""
        if self.done >= len(self.shots):
            return False
        s = self.shots[self.done]
        sc = self.scene
        show = set(s.show)
        for name in self._hidden:
            o = bpy.data.objects.get(name)
            if o is not None:
                o.hide_render = o not in show
        os.makedirs(os.path.dirname(s.path), exist_ok=True)
        sc.camera = s.camera
        sc.frame_set(s.frame)
        sc.render.filepath = s.path
        bpy.ops.render.render(write_still=True, scene=sc.name)
        self.written.append(s.path)
        self.done += 1
        return self.done < len(self.shots)

    def finish(self) -> list[str]:
        """Restore the scene; join side-by-side pairs that were both rendered.
        Returns all written files."""
        sc = self.scene
        for name, hidden in self._hidden.items():
            o = bpy.data.objects.get(name)
            if o is not None:
                o.hide_render = hidden
        cam, frame, path = self._saved
        sc.camera = cam
        sc.frame_set(frame)
        sc.render.filepath = path
        have = set(self.written)
        for a, b, out in self.pairs:
            if a in have and b in have:
                os.makedirs(os.path.dirname(out), exist_ok=True)
                write_png(out, np.concatenate([_load(b), _load(a)], axis=1))
                self.written.append(out)
        return self.written


def _load(path: str) -> np.ndarray:
    """A rendered PNG as [H,W,3] uint8, row 0 = top (read through Blender)."""
    im = bpy.data.images.load(path, check_existing=False)
    try:
        w, h = im.size
        px = np.empty(w * h * 4, np.float32)
        im.pixels.foreach_get(px)
        return np.round(px.reshape(h, w, 4)[::-1, :, :3] * 255).astype(np.uint8)
    finally:
        bpy.data.images.remove(im)
