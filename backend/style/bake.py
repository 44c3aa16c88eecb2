"""Turn an adapted network into deliverables: textures at the requested size,
per-vertex offsets (neutral + per blendshape, in the avatar's order), rendered
passes per camera and frame, and the :class:`shared.stylize.StylizeResult`.
Files (GLB, PNGs, contact sheet, result.json) are written by :func:`write_outputs`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from backend.avatar import save_glb
from backend.outputs import staged_dir, write_json
from shared import passes as mm_passes
from shared.avatar import AvatarData, TextureSet
from shared.errors import InvalidParams
from shared.stylize import PASS_NAMES, StylizeResult

from .color import to_srgb_uint8
from .context import AvatarContext, Decoded
from .net import apply_albedo

log = logging.getLogger(__name__)

# Result pass -> renderer pass ("original" is the unstyled avatar's colour, rendered apart).
RENDER_PASS = {"color": "color", "albedo": "albedo", "normal": "normal_world", "depth": "depth", "alpha": "alpha"}


@torch.no_grad()
def bake_textures(ctx: AvatarContext, dec: Decoded, size: int) -> list[torch.Tensor]:
    """Stylized textures, linear ``[size,size,3]`` per texture set: the original
    texture at full detail with the network's low-frequency logit change applied.
    (``size`` is checked by :meth:`shared.stylize.StylizeRequest.validate`.)"""
    out = []
    for s, base in enumerate(ctx.base_textures(size)):
        out.append(apply_albedo(base[None], dec.delta[s:s + 1])[0])
    return out


def _size_for(cam, resolution: int) -> tuple[int, int]:
    """(W,H) with the camera's aspect and the longer side = ``resolution``."""
    w = cam.resolution_x * cam.pixel_aspect_x
    h = cam.resolution_y * cam.pixel_aspect_y
    if w >= h:
        return resolution, max(1, int(round(resolution * h / w)))
    return max(1, int(round(resolution * w / h))), resolution


@torch.no_grad()
def bake_passes(ctx: AvatarContext, dec: Decoded, textures: list[torch.Tensor], cameras, frame_w: torch.Tensor,
                resolution: int, passes=PASS_NAMES, progress=None) -> dict[str, np.ndarray]:
    """Render ``passes`` (names from :data:`shared.stylize.PASS_NAMES`, checked by the
    request) for every camera x frame -> {name: [C,N,h,w,c]} numpy (dtypes and meanings
    as in :mod:`shared.stylize`). All cameras are rendered at the first camera's aspect
    so the arrays stack; the longer side = ``resolution``. ``progress("bake", c, C)``
    after each camera."""
    W, H = _size_for(cameras[0], resolution)
    N = frame_w.shape[0]
    rp = tuple(dict.fromkeys(RENDER_PASS[p] for p in passes if p in RENDER_PASS)) or ("alpha",)
    out = {p: [] for p in passes}
    orig_tex = ctx.base_textures(max(t.shape[0] for t in textures)) if "original" in passes else None
    for cam in cameras:
        cams = [cam] * N
        r = ctx.render(ctx.posed(frame_w, dec), textures, cams, (W, H), rp)
        for p in passes:
            if p in ("color", "albedo"):
                out[p].append(to_srgb_uint8(r[p]))
            elif p == "normal":
                out[p].append(r["normal_world"].cpu().numpy().astype(np.float16))
            elif p == "depth":
                out[p].append(r["depth"].cpu().numpy().astype(np.float32))
            elif p == "alpha":
                out[p].append((r["alpha"].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
        if "original" in passes:
            o = ctx.render(ctx.posed(frame_w), orig_tex, cams, (W, H), ("color",))
            out["original"].append(to_srgb_uint8(o["color"]))
        if progress:
            progress("bake", len(out[passes[0]]), len(cameras))
    return {p: np.stack(v) for p, v in out.items()}


def make_result(ctx: AvatarContext, dec: Decoded, textures: list[torch.Tensor], passes: dict, metadata: dict,
                cameras, frames, name: str) -> StylizeResult:
    av = ctx.avatar
    body = {"name": name, "metadata": metadata, "texture_sets": [t.name for t in av.texture_sets],
            "blendshape_names": list(av.blendshape_names), "cameras": [c.to_dict() for c in cameras],
            "frames": [float(f) for f in frames], "passes": list(passes)}
    return StylizeResult(body=body, textures=[to_srgb_uint8(t) for t in textures],
                         neutral_offsets=dec.neutral.detach().cpu().numpy().astype(np.float32),
                         blendshape_offsets=dec.bs_offsets.detach().cpu().numpy().astype(np.float32),
                         passes=passes)


def stylized_avatar(av: AvatarData, res: StylizeResult) -> AvatarData:
    """A new AvatarData with the stylized rest shape, blendshape deltas and
    textures (the original is not touched)."""
    sets = [TextureSet(name=ts.name, image=res.textures[i], base_color=ts.base_color)
            for i, ts in enumerate(av.texture_sets)]
    return AvatarData(vertices=av.vertices + res.neutral_offsets, faces=av.faces.copy(), uvs=av.uvs.copy(),
                      uv_faces=av.uv_faces.copy(), face_material=av.face_material.copy(), texture_sets=sets,
                      blendshape_names=list(av.blendshape_names),
                      blendshapes=av.blendshapes + res.blendshape_offsets, track=av.track,
                      name=f"{av.name}_{_slug(res.body.get('name', 'stylized'))}")


def _slug(s: str, n: int = 40) -> str:
    s = "".join(c if c.isalnum() else "_" for c in str(s).lower()).strip("_")
    return (s or "style")[:n]


def contact_sheet(res: StylizeResult, max_views: int = 6, max_frames: int = 3, cell: int = 160) -> np.ndarray:
    """Before/after grid ``[h,w,3]`` uint8: for each of a few frames, a row of
    original renders over a row of stylized renders, one column per view."""
    col, orig = res.passes.get("color"), res.passes.get("original")
    if col is None or orig is None:
        raise InvalidParams("A contact sheet needs the 'color' and 'original' passes.")
    C, N = col.shape[:2]
    ci = np.unique(np.linspace(0, C - 1, min(C, max_views)).round().astype(int))
    fi = np.unique(np.linspace(0, N - 1, min(N, max_frames)).round().astype(int))
    alpha = res.passes.get("alpha")

    def tile(src, c, f):
        img = src[c, f].astype(np.float32)
        if alpha is not None:  # over mid grey, so dark styles stay visible
            # The original's silhouette differs from the stylized one (offsets); its
            # background is exact black, which is what marks it.
            a = (alpha[c, f].astype(np.float32) / 255.0 if src is col
                 else (src[c, f].max(-1, keepdims=True) > 0).astype(np.float32))
            img = img * a + 128.0 * (1 - a)
        return np.asarray(Image.fromarray(img.round().astype(np.uint8)).resize((cell, cell), Image.BILINEAR))

    rows = []
    for f in fi:
        for src in (orig, col):
            rows.append(np.concatenate([tile(src, c, f) for c in ci], 1))
    grid = np.concatenate(rows, 0)
    return np.concatenate([_banner(res, grid.shape[1]), grid], 0)


def _banner(res: StylizeResult, width: int, height: int = 28) -> np.ndarray:
    """A caption strip ``[height,width,3]`` uint8 naming the style and guidance.
    Sheets made with a test guidance model say so in red, on the image itself,
    because images travel without their result.json."""
    md = res.body.get("metadata", {})
    test = bool(md.get("guidance_is_test_model"))
    img = Image.new("RGB", (width, height), (150, 20, 20) if test else (30, 30, 30))
    text = f"{res.body.get('name', '')}  |  guidance {md.get('guidance', '?')}  |  rows: original / stylized"
    if test:
        text = "TEST GUIDANCE MODEL: not a real stylization  |  " + text
    ImageDraw.Draw(img).text((6, 8), text, fill=(255, 255, 255))
    return np.asarray(img)


def write_outputs(av: AvatarData, res: StylizeResult, out_dir: str | os.PathLike, write_glb: bool = True) -> dict:
    """Write the stylized GLB, texture PNGs, pass PNGs (:mod:`shared.passes`: the layout and
    encodings the Blender extension uses too, each PNG labelled with its guidance model), a
    contact sheet and ``result.json`` under ``out_dir``.

    Everything is written into a temporary folder beside ``out_dir`` first and renamed
    into place at the end, so a failure leaves no half-written output (an existing
    ``out_dir`` is replaced only then). Returns {kind: path} (final paths)."""
    final = Path(out_dir).resolve()
    md = res.body.get("metadata", {})
    text = mm_passes.provenance_text(md, res.body.get("name", ""))
    files: dict = {"textures": [], "passes": []}
    with staged_dir(final) as work:
        for i, (ts, img) in enumerate(zip(av.texture_sets, res.textures)):
            p = mm_passes.write_texture(str(work), i, ts.name, img, text=text)
            files["textures"].append(str(final / Path(p).relative_to(work)))
        if res.passes:
            C = next(iter(res.passes.values())).shape[0]
            cams = mm_passes.camera_names(res.body.get("cameras"), count=C)[:C]
            saved = mm_passes.write_passes(res.passes, cams, list(res.body.get("frames", [])), str(work), text=text)
            files["passes"] = [str(final / Path(p).relative_to(work)) for v in saved.values() for p in v]
        if "color" in res.passes and "original" in res.passes:
            Image.fromarray(contact_sheet(res)).save(work / "contact_sheet.png")
            files["contact_sheet"] = str(final / "contact_sheet.png")
        if write_glb:
            save_glb(stylized_avatar(av, res), str(work / "stylized.glb"))
            files["glb"] = str(final / "stylized.glb")
        summary = dict(res.body)
        summary["files"] = files
        write_json(work / "result.json", summary)
        files["result"] = str(final / "result.json")
    return files
