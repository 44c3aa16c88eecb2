"""Sculpting and texturing by CLIP: the adaptation loop the stylization engine runs for
an avatar made from text (``run_stylize(..., adapt_fn=SculptLoop(...))``).

It adapts the same subset of the style network as the engine's own loop
(:func:`backend.style.adapt.adapt`, the bias mappers) under the same regularizers, but
guides it as the published method does:

- geometry by CLIP on plain grey renders (constant albedo, so only the shape, through
  the shading of its normals, can answer) with the *shape* prompt, weighted
  ``geometry_weight``; texture by CLIP on textured renders with the *appearance* prompt,
  weighted ``texture_weight``; each with a directional term relative to the starting
  avatar, cos(E(now) - E(start), E(text) - E(neutral));
- a random key light around the camera and a random ambient level per step, random
  backgrounds (white, noise, blurred checkerboard, black), random crops;
- every ``face_every``-th step a face close-up guided by the *face* prompt; views from
  behind are guided by the *back* prompt.

The expression blendshapes keep working: renders are drawn at frames of the avatar's
expression track and the blendshape offsets stay bounded by the network (the engine
reports the expression dampening).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from shared.errors import Cancelled, InvalidParams
from shared.text_avatar import NEUTRAL_PROMPT

from backend.style import augment as style_augment
from backend.style import losses
from backend.style.adapt import AdaptResult, progress_preview, regularized_total

from . import augment


@dataclass(frozen=True)
class SculptConfig:
    geometry_weight: float = 1.0    # CLIP terms on grey renders (shape prompt)
    texture_weight: float = 1.0     # CLIP terms on textured renders (appearance prompt)
    face_every: int = 4             # every n-th step is a face close-up (0 = never)
    face_zoom: float = augment.FACE_ZOOM
    light_cone_deg: float = augment.LIGHT_CONE_DEG
    ambient_min: float = augment.AMBIENT_RANGE[0]
    ambient_max: float = augment.AMBIENT_RANGE[1]
    backgrounds: tuple[str, ...] = augment.BACKGROUND_KINDS   # the kinds drawn behind each view
    lr: float = 0.0                 # Adam step on the bias mappers; 0 = the engine's

    def to_dict(self) -> dict:
        return asdict(self)


def _cos_loss(emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """1 - cos per row, mean; ``emb``, ``text`` ``[B,D]`` unit."""
    return 1.0 - (emb * text).sum(-1).mean()


def _directional(emb, start, text, neutral) -> torch.Tensor:
    """1 - cos(E(now) - E(start), E(text) - E(neutral)) per row, mean; all ``[B,D]``."""
    d_img = F.normalize(emb - start, dim=-1, eps=1e-6)
    d_txt = F.normalize(text - neutral, dim=-1, eps=1e-6)
    return 1.0 - (d_img * d_txt).sum(-1).mean()


class SculptLoop:
    """Callable with the signature of :func:`backend.style.adapt.adapt`. The engine's
    ``target`` (its encoding of the request's terms) is not used: this loop encodes its
    own shape / appearance / face / back prompts. ``summary()`` after the run says what
    it did (close-up steps, back views, settings) for the result's metadata."""

    def __init__(self, prompts: dict, cfg: SculptConfig | None = None):
        missing = [k for k in ("shape", "appearance", "face", "back") if not str(prompts.get(k, "")).strip()]
        if missing:
            raise InvalidParams(f"Sculpting needs the {missing} prompt(s).")
        self.prompts = {k: str(prompts[k]) for k in ("shape", "appearance", "face", "back")}
        self.cfg = cfg or SculptConfig()
        if self.cfg.geometry_weight + self.cfg.texture_weight <= 0:
            raise InvalidParams("Sculpting needs a geometry or a texture weight above 0.")
        bad = [k for k in self.cfg.backgrounds if k not in augment.BACKGROUND_KINDS]
        if bad or not self.cfg.backgrounds:
            raise InvalidParams(f"Sculpting backgrounds must be some of {list(augment.BACKGROUND_KINDS)}, "
                                f"got {list(self.cfg.backgrounds)}.")
        self.counts = {"face_closeup_steps": 0, "back_views": 0, "views": 0}

    def summary(self) -> dict:
        return {"prompts": dict(self.prompts), "neutral_prompt": NEUTRAL_PROMPT, **self.cfg.to_dict(), **self.counts}

    def __call__(self, ctx, net, guidance, target, cameras, frame_w, cfg, progress=None,
                 is_cancelled=None) -> AdaptResult:
        t0 = time.time()
        if not cameras:
            raise InvalidParams("No cameras were given: add at least one camera to the rig.")
        sc = self.cfg
        gen = torch.Generator().manual_seed(int(cfg.seed))
        names = ("shape", "appearance", "face", "back")
        emb = guidance.encode_text([self.prompts[k] for k in names] + [NEUTRAL_PROMPT]).detach()
        T = dict(zip(names, emb[:4]))
        neutral = emb[4]
        av = ctx.avatar
        kinds = augment.view_kinds(cameras, av.vertices, av.blendshapes)
        face_cams = augment.face_closeups(cameras, kinds, sc.face_zoom)
        mapper_ids = {id(p) for p in net.mapper_parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in mapper_ids)
        with torch.no_grad():
            feats = net.encode(ctx.identity)  # the encoder is frozen: compute once
        opt = torch.optim.Adam(net.mapper_parameters(), lr=sc.lr or cfg.lr)
        S, n, crop = cfg.render_size, cfg.views_per_step, guidance.image_size
        base_tex = list(ctx.base_albedo)
        w_id = float(min(max(cfg.identity, 0.0), 1.0)) * cfg.identity_scale
        wg, wt = float(sc.geometry_weight), float(sc.texture_weight)
        history, stopped = [], "done"
        try:
            for step in range(cfg.steps):
                if is_cancelled and is_cancelled():
                    raise Cancelled("Sculpting was cancelled.")
                if cfg.time_budget_s and time.time() - t0 > cfg.time_budget_s and step > 0:
                    stopped = "time_budget"
                    break
                close = sc.face_every > 0 and step % sc.face_every == sc.face_every - 1
                pool = face_cams if close else cameras
                ci = torch.randint(len(pool), (n,), generator=gen).tolist()
                fi = torch.randint(frame_w.shape[0], (n,), generator=gen).tolist()
                cams = [pool[c] for c in ci]
                if close:
                    tg = tc = T["face"].expand(n, -1)
                    self.counts["face_closeup_steps"] += 1
                else:
                    back = [kinds[c] == "back" for c in ci]
                    tg = torch.stack([T["back"] if b else T["shape"] for b in back])
                    tc = torch.stack([T["back"] if b else T["appearance"] for b in back])
                    self.counts["back_views"] += sum(back)
                self.counts["views"] += n
                lights = augment.random_lights(gen, sc.light_cone_deg, (sc.ambient_min, sc.ambient_max))
                bg = augment.random_backgrounds(n, S, S, gen, device=ctx.device, kinds=sc.backgrounds)
                H = style_augment.crop_params(n, gen)

                dec = ctx.decode(net, feats)
                wts = frame_w[fi]
                # antialiased over the step's backgrounds: the shape prompt reaches the silhouette
                out = ctx.render(ctx.posed(wts, dec), dec.albedo, cams, S, ("color", "grey"), bg, True, lights)
                with torch.no_grad():
                    o = ctx.render(ctx.posed(wts), base_tex, cams, S, ("color", "grey"), bg, True, lights)

                def embed(img):
                    return guidance.encode_image(style_augment.warp(img, H, crop))

                e_g, e_c = embed(out["grey"]), embed(out["color"])
                with torch.no_grad():
                    s_g, s_c = embed(o["grey"]), embed(o["color"])
                dw = cfg.directional_weight
                tn = neutral.expand(n, -1)
                g_cos, g_dir = _cos_loss(e_g, tg), _directional(e_g, s_g, tg, tn)
                l_geo = g_cos + dw * g_dir
                l_tex = _cos_loss(e_c, tc) + dw * _directional(e_c, s_c, tc, tn)
                l_style = (wg * l_geo + wt * l_tex) / (wg + wt)
                l_id = losses.identity_loss(e_c, s_c)
                # The engine's regularizers with its weights.
                total, l_off, l_lap, l_tex_reg = regularized_total(ctx, net, dec, cfg, l_style + w_id * l_id)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                rec = {"total": float(total.detach()), "style": float(l_style.detach()),
                       "geometry": float(l_geo.detach()), "geometry_cos": float(g_cos.detach()),
                       "geometry_dir": float(g_dir.detach()), "texture": float(l_tex.detach()),
                       "identity": float(l_id.detach()), "offset": float(l_off.detach()),
                       "laplacian": float(l_lap.detach()), "texture_reg": float(l_tex_reg.detach()),
                       "face_closeup": 1.0 if close else 0.0}
                history.append(rec)
                if progress:
                    prev = None
                    if cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps - 1):
                        prev = progress_preview(out["color"][0], cfg.preview_size)
                    progress("sculpt", step + 1, cfg.steps, rec, prev)
        finally:
            for p in net.parameters():
                p.requires_grad_(True)
        with torch.no_grad():
            dec = ctx.decode(net)
        return AdaptResult(decoded=dec, history=history, steps_done=len(history), stopped=stopped,
                           seconds=time.time() - t0)
