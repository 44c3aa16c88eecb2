"""Turn an adapted network into deliverables: textures at the requested size,
per-vertex offsets (neutral + per blendshape, in the avatar's order), rendered
passes per camera and frame, and the :class:`shared.stylize.StylizeResult`.
Files (GLB, PNGs, contact sheet, result.json) are written by :func:`write_outputs`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from shared.avatar import AvatarData, TextureSet
from shared.errors import InvalidParams
from shared.stylize import PASS_NAMES, StylizeResult

from .context import AvatarContext, Decoded
from .net import apply_albedo

log = logging.getLogger(__name__)

MAX_TEXTURE_SIZE = 4096


def to_srgb_uint8(x: torch.Tensor) -> np.ndarray:
    """Linear ``[...,3]`` tensor in [0,1] -> sRGB uint8 numpy."""
    x = x.detach().clamp(0, 1)
    x = torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-6) ** (1 / 2.4) - 0.055)
    return (x * 255 + 0.5).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def bake_textures(ctx: AvatarContext, dec: Decoded, size: int) -> list[torch.Tensor]:
    """Stylized textures, linear ``[size,size,3]`` per texture set: the original
    texture at full detail with the network's low-frequency logit change applied."""
    if not 1 <= size <= MAX_TEXTURE_SIZE:
        raise InvalidParams(f"Texture size must be between 1 and {MAX_TEXTURE_SIZE}, got {size}.")
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
                resolution: int, passes=PASS_NAMES, render_fn=None) -> dict[str, np.ndarray]:
    """Render ``passes`` for every camera x frame -> {name: [C,N,h,w,c]} numpy
    (dtypes and meanings as in :mod:`shared.stylize`). All cameras are rendered at
    the first camera's aspect so the arrays stack; the longer side = ``resolution``."""
    if render_fn is None:
        from backend.render import render as render_fn
    unknown = [p for p in passes if p not in PASS_NAMES]
    if unknown:
        raise InvalidParams(f"Unknown passes {unknown}; choose from {list(PASS_NAMES)}.")
    W, H = _size_for(cameras[0], resolution)
    N = frame_w.shape[0]
    want = {"color": "color", "albedo": "albedo", "normal": "normal_world", "depth": "depth", "alpha": "alpha"}
    rp = tuple(dict.fromkeys(want[p] for p in passes if p in want)) or ("alpha",)
    out = {p: [] for p in passes}
    orig_tex = ctx.base_textures(max(t.shape[0] for t in textures)) if "original" in passes else None
    for cam in cameras:
        cams = [cam] * N
        r = render_fn(ctx.posed(frame_w, dec), ctx.faces, ctx.uvs, ctx.uv_faces, textures, ctx.face_material,
                      cams, size=(W, H), passes=rp)
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
            o = render_fn(ctx.posed(frame_w), ctx.faces, ctx.uvs, ctx.uv_faces, orig_tex, ctx.face_material,
                          cams, size=(W, H), passes=("color",))
            out["original"].append(to_srgb_uint8(o["color"]))
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
    from PIL import Image

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
    from PIL import Image, ImageDraw

    md = res.body.get("metadata", {})
    test = bool(md.get("guidance_is_test_model"))
    img = Image.new("RGB", (width, height), (150, 20, 20) if test else (30, 30, 30))
    text = f"{res.body.get('name', '')}  |  guidance {md.get('guidance', '?')}  |  rows: original / stylized"
    if test:
        text = "TEST GUIDANCE MODEL: not a real stylization  |  " + text
    ImageDraw.Draw(img).text((6, 8), text, fill=(255, 255, 255))
    return np.asarray(img)


def write_outputs(av: AvatarData, res: StylizeResult, out_dir: str | os.PathLike, write_glb: bool = True) -> dict:
    """Write the stylized GLB, texture PNGs, pass PNGs (normal as PNG-encoded
    0.5+0.5n, depth as .npy), a contact sheet and ``result.json`` under ``out_dir``.
    Returns {kind: path}."""
    from PIL import Image

    out = Path(out_dir)
    (out / "textures").mkdir(parents=True, exist_ok=True)
    (out / "passes").mkdir(parents=True, exist_ok=True)
    files: dict = {"textures": [], "passes": []}
    for i, (ts, img) in enumerate(zip(av.texture_sets, res.textures)):
        p = out / "textures" / f"{i:02d}_{_slug(ts.name)}.png"
        Image.fromarray(img).save(p)
        files["textures"].append(str(p))
    for name, arr in res.passes.items():
        C, N = arr.shape[:2]
        for c in range(C):
            for f in range(N):
                stem = out / "passes" / f"{name}_cam{c:02d}_frame{f:03d}"
                a = arr[c, f]
                if name == "depth":
                    np.save(f"{stem}.npy", a[..., 0].astype(np.float32))
                    continue
                if name == "normal":
                    a = ((a.astype(np.float32) * 0.5 + 0.5).clip(0, 1) * 255 + 0.5).astype(np.uint8)
                img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
                img.save(f"{stem}.png")
                files["passes"].append(f"{stem}.png")
    if "color" in res.passes and "original" in res.passes:
        p = out / "contact_sheet.png"
        Image.fromarray(contact_sheet(res)).save(p)
        files["contact_sheet"] = str(p)
    if write_glb:
        from backend.avatar import save_glb

        p = out / "stylized.glb"
        try:
            save_glb(stylized_avatar(av, res), str(p))
            files["glb"] = str(p)
        except ImportError as e:  # the GLB writer lives in backend.avatar; never lose the other outputs
            log.error("could not write the stylized GLB: %s", e)
            files["glb"] = None
    summary = dict(res.body)
    summary["files"] = files
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    files["result"] = str(out / "result.json")
    return files


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
