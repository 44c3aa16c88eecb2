"""Render turntables of results: every frame of the turntable range from every rig
camera (or the orbit camera) to ``<result folder>/renders/<camera>/####.png``.

:class:`TurntableJob` renders one frame per :meth:`step` so a modal operator can
show progress and cancel between frames; in background mode the operator just
loops. Render settings, camera, frame and object visibility are restored by
:meth:`finish`, whatever happened. Workbench renders show the textures (its default
colour is the flat material colour: grey); :func:`lighting_problem` says when an
Eevee/Cycles render would come out black.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import bpy
import numpy as np

from . import images
from ._shared import passes as mm_passes
from ._shared import png


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
        """``items``: [(style name, result objects, result folder)] (a folder of None:
        ``<root>/renders/<style>/``); ``cameras``: camera objects; ``frames``: frame
        numbers (default: the scene's range); ``originals``: the source avatar's
        objects (needed for ``side_by_side``)."""
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
        items = [tuple(it) + (None,) * (3 - len(it)) for it in items]
        for style, objs, folder in items:
            base = os.path.join(folder, "renders") if folder else \
                os.path.join(root, "renders", mm_passes.safe_name(style))
            for cam in cameras:
                d = os.path.join(base, mm_passes.safe_name(cam.name))
                for f in frames:
                    p = os.path.join(d, f"{f:04d}.png")
                    self.shots.append(Shot(style, list(objs), cam, f, p))
                    if self.side_by_side:
                        po = os.path.join(d, "original", f"{f:04d}.png")
                        self.shots.append(Shot(style, list(originals), cam, f, po, "original"))
                        self.pairs.append((p, po, os.path.join(d, "side_by_side", f"{f:04d}.png")))
        everything = {o for _, objs, _ in items for o in objs} | set(originals or [])
        # Remember what we change so finish() puts it back exactly.
        self._hidden = {o.name: o.hide_render for o in everything}
        self._saved = (scene.camera, scene.frame_current, scene.render.filepath)
        shading = scene.display.shading
        self._color_type = shading.color_type
        if scene.render.engine == "BLENDER_WORKBENCH":
            shading.color_type = "TEXTURE"  # the stylized textures, not the material grey
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
        sc.display.shading.color_type = self._color_type
        sc.camera = cam
        sc.frame_set(frame)
        sc.render.filepath = path
        have = set(self.written)
        for a, b, out in self.pairs:
            if a in have and b in have:
                os.makedirs(os.path.dirname(out), exist_ok=True)
                png.write_png(out, np.concatenate([images.load_srgb_u8(b), images.load_srgb_u8(a)], axis=1))
                self.written.append(out)
        return self.written


def lighting_problem(scene) -> str | None:
    """Why an Eevee/Cycles render of ``scene`` would come out black, or None: no light
    that renders and no world."""
    if scene.render.engine == "BLENDER_WORKBENCH":
        return None
    lights = [o for o in scene.objects if o.type == "LIGHT" and not o.hide_render]
    if lights or scene.world is not None:
        return None
    return (f"The scene has no light and no world, so {scene.render.engine.title()} renders "
            "come out black: tick 'Three-point lights' and recreate the rig, add a world, or "
            "render with Workbench.")
