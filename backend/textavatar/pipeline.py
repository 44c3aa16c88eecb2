"""Avatar from text end to end (shared by ``metamorph avatar-from-text`` and the server's
``avatar_from_text`` job): codebook (built or cached) -> relative query -> the chosen
sample avatar -> sculpting and texturing by the stylization engine -> contact sheet.

    run = avatar_from_text(AvatarFromTextRequest("a wise old wizard with a long nose"), ...)
    run.avatar          the final AvatarData (blendshapes + expression track)
    run.to_result()     the wire result (shared.text_avatar.AvatarFromTextResult)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from shared.avatar import AvatarData, to_wire
from shared.protocol import Limits
from shared.stylize import StyleTerm, StylizeRequest, StylizeResult
from shared.text_avatar import JOB_KIND, NEUTRAL_PROMPT, AvatarFromTextRequest, AvatarFromTextResult

from backend.avatar.params import AvatarParams
from backend.cache import cache_dir
from backend.style import bake
from backend.style.engine import TEST_MODEL_WARNING, run_stylize
from backend.style.guidance import load_guidance

from . import codebook, query, sheet, views
from .sculpt import SculptConfig, SculptLoop

log = logging.getLogger(__name__)

RIG_RESOLUTION = 224       # pixels of the sculpting rig's cameras (renders use the engine's render size)
PASS_RESOLUTION = 128      # pixels of the stylized passes written beside the avatar
SCULPT_FRAMES = 4          # expression-track frames the sculpting draws renders from
SHEET_CELL = 160           # pixels per contact-sheet tile


@dataclass
class TextAvatarRun:
    avatar: AvatarData            # the final avatar (sculpted, or the entry when not sculpting)
    chosen: AvatarData            # the codebook entry, unsculpted
    anchor: AvatarData            # the average avatar
    body: dict                    # the result body without "avatar"
    stylize: StylizeResult | None
    contact_sheet: np.ndarray     # [h,w,3] uint8

    def to_result(self) -> AvatarFromTextResult:
        abody, arrays = to_wire(self.avatar)
        arrays = dict(arrays)
        arrays["contact_sheet"] = self.contact_sheet
        return AvatarFromTextResult(body={**self.body, "avatar": abody}, arrays=arrays)


def text_embeddings(guidance, prompts: dict, neutral: np.ndarray | None = None) -> query.TextEmbeddings:
    """The query's text embeddings; each distinct prompt is encoded once (the text tower
    is most of a query's time on a CPU), ``neutral`` (the codebook's ``anchor_text``)
    is reused when given."""
    texts = list(dict.fromkeys([prompts["shape"], prompts["appearance"]] + ([] if neutral is not None
                                                                             else [NEUTRAL_PROMPT])))
    with torch.inference_mode():   # a query needs no gradients: no autograd graph through the text tower
        e = dict(zip(texts, guidance.encode_text(texts).float().cpu().numpy()))
    return query.TextEmbeddings(shape=e[prompts["shape"]], appearance=e[prompts["appearance"]],
                                neutral=np.asarray(neutral) if neutral is not None else e[NEUTRAL_PROMPT])


def sculpt_frames(av: AvatarData, count: int = SCULPT_FRAMES) -> list[float]:
    """``count`` frames spread over the avatar's track (``[0.0]`` without one)."""
    t = av.track
    if t is None or not len(t.frames):
        return [0.0]
    return [float(f) for f in np.linspace(float(t.frames[0]), float(t.frames[-1]), count)]


def _slug(s: str) -> str:
    return ("".join(c if c.isalnum() else "_" for c in s.lower()).strip("_") or "avatar")[:40]


def avatar_from_text(req: AvatarFromTextRequest, *, device: str = "cpu", clip_checkpoint: str | None = None,
                     cache_root=None, allow_download: bool | None = None, guidance=None, progress=None,
                     is_cancelled=None, overrides: dict | None = None, limits: Limits | None = None,
                     pass_resolution: int = PASS_RESOLUTION, sheet_cell: int = SHEET_CELL) -> TextAvatarRun:
    """Make an avatar from ``req`` (checked here by its contract).

    ``guidance``: an already loaded guidance model (else loaded from ``req.guidance``);
    ``cache_root``: the cache root (codebooks under ``textavatar/``, fitted style networks
    under ``style/``); ``overrides``: stylization engine settings over ``req.settings``.
    ``progress(stage, step, total, losses=None, preview=None)``. Raises typed
    :mod:`shared.errors` (bad input, unavailable guidance, cancellation, cache unwritable).
    """
    t0 = time.time()
    req.validate(limits)
    report = progress or (lambda *a, **k: None)
    g = guidance or load_guidance(req.guidance, clip_checkpoint, device=device, allow_download=allow_download)
    cfg = codebook.CodebookConfig.from_request(req)
    cb, built = codebook.load_or_build(g, cfg, cache_root, report, is_cancelled)
    prompts = req.prompts()
    tq = time.time()
    texts = text_embeddings(g, prompts, cb.anchor_text)
    top = query.query(cb, texts, req.geometry_weight, req.texture_weight, "relative")
    absolute = query.query(cb, texts, req.geometry_weight, req.texture_weight, "absolute")
    query_s = time.time() - tq
    report("query", 1, 1, {"score": top[0]["score"]})
    name = _slug(req.avatar_name())
    chosen = replace(codebook.entry_avatar(cb.vectors[top[0]["index"]], req.texture_size, with_track=True),
                     name=f"text_{name}_entry")
    anchor = codebook.entry_avatar(cb.anchor_vector, req.texture_size, with_track=True)
    res, stylization, final = None, None, chosen
    if req.sculpt:
        loop = SculptLoop(prompts, SculptConfig(geometry_weight=req.geometry_weight,
                                                texture_weight=req.texture_weight))
        sreq = StylizeRequest(
            avatar_id=JOB_KIND, terms=[StyleTerm("text", req.geometry_weight, prompts["shape"]),
                                       StyleTerm("text", req.texture_weight, prompts["appearance"])],
            cameras=views.rig(chosen, RIG_RESOLUTION), frames=sculpt_frames(chosen), identity=req.identity,
            steps=req.steps, preset=req.preset, seed=req.seed, guidance=req.guidance,
            texture_size=req.texture_size, passes=["color", "alpha", "original"], pass_resolution=pass_resolution,
            name=req.avatar_name(), settings=req.settings)
        res = run_stylize(chosen, sreq, device=device, cache_dir=cache_dir("style", cache_root), progress=report,
                          is_cancelled=is_cancelled, overrides=overrides, guidance=g, limits=limits, adapt_fn=loop)
        final = replace(bake.stylized_avatar(chosen, res), name=f"text_{name}")
        stylization = {**res.body["metadata"], "sculpt": loop.summary()}
    test = bool(g.is_test_model)
    cams = [views.rig(anchor, sheet_cell)[i] for i in views.SHEET_VIEWS]
    sheet_img = sheet.contact_sheet([("anchor", anchor), ("chosen entry", chosen),
                                     ("sculpted + textured" if req.sculpt else "final (not sculpted)", final)],
                                    cams, sheet_cell, caption=f"{req.prompt.strip()[:80]}  |  guidance {g.name}",
                                    test_model=test)
    body = {
        "kind": JOB_KIND, "name": final.name,
        "prompts": {"prompt": req.prompt, **prompts, "neutral": NEUTRAL_PROMPT},
        "chosen": top[0], "top": top, "absolute_top": absolute,
        "anchor": {"params": AvatarParams.from_vector(cb.anchor_vector).to_dict(), "prompt": NEUTRAL_PROMPT},
        "codebook": {**{k: cb.info.get(k) for k in ("entries", "samples", "key", "engine_version", "build_seconds",
                                                     "combinations", "combinations_total")},
                     "render_size": cfg.render_size, "views": list(cfg.views), "built": bool(built)},
        "query_seconds": query_s, "stylization": stylization, "sculpted": bool(req.sculpt),
        "guidance": g.name, "guidance_is_test_model": test, "device": str(device), "seconds": time.time() - t0,
    }
    if test:
        body["warning"] = TEST_MODEL_WARNING
    report("done", 1, 1)
    return TextAvatarRun(avatar=final, chosen=chosen, anchor=anchor, body=body, stylize=res, contact_sheet=sheet_img)
