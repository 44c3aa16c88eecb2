"""Expression animation from a motion text: codebook -> candidates -> optimized track.

:func:`run_expression_from_text` is the one entry point (the CLI and the server job
call it). The guidance model is loaded through
:func:`backend.style.guidance.load_guidance`; tests pass a stand-in ``encoder``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from shared import expression as X
from shared.avatar import AvatarData, content_hash

from . import codebook as cbm
from . import motion
from .posing import Poser, sparse

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = {"render_size": 224, "views": 3, "clip_frames": 4, "control_points": 0,
                    "intensities": len(cbm.INTENSITIES)}
MOTION_VIEWS = 1   # the CLIP term renders one frontal view per sampled frame (cost per step)
TEST_MODEL_WARNING = ("made with the TEST guidance model (untrained seeded weights): the candidates and the "
                      "motion only exercise the pipeline; they do not follow the text")


def _label_frames(track: np.ndarray, cand_w: np.ndarray, cand_labels: list[str]) -> list[str]:
    """Per frame, the label of the nearest candidate (or "neutral")."""
    refs = np.concatenate([np.zeros((1, track.shape[1]), np.float32), cand_w], 0)
    names = ["neutral"] + cand_labels
    d = np.linalg.norm(track[:, None, :] - refs[None], axis=-1)
    return [names[i] for i in d.argmin(1)]


def run_expression_from_text(av: AvatarData, req: X.ExpressionFromTextRequest, *, device: str = "cpu",
                             clip_checkpoint: str | None = None, allow_download: bool | None = None,
                             cache_dir=None, limits=None, progress=None, is_cancelled=None,
                             guidance=None, encoder=None, motion_encoder=None) -> X.ExpressionResult:
    """The whole text path. ``guidance``: an already loaded guidance model (else loaded
    from ``req.guidance``); ``encoder``/``motion_encoder``: stand-ins replacing the
    render+guidance encoders (tests). ``cache_dir``: the codebook cache folder
    (None = :func:`backend.cache.cache_dir` ("expression")).
    Returns an :class:`shared.expression.ExpressionResult` over the avatar's ARKit names.
    """
    from backend.cache import cache_dir as default_cache

    t0 = time.time()
    req.validate(limits)
    s = dict(DEFAULT_SETTINGS)
    s.update(req.settings or {})
    poser = Poser(av, device=device)
    if encoder is None:
        if guidance is None:
            from backend.style.guidance import load_guidance
            guidance = load_guidance(req.guidance, clip_checkpoint, device=device, allow_download=allow_download)
        encoder = cbm.RenderEncoder(poser, guidance, views=s["views"], size=s["render_size"])
        motion_encoder = cbm.RenderEncoder(poser, guidance, views=MOTION_VIEWS, size=s["render_size"])
    motion_encoder = motion_encoder or encoder
    is_test = bool(getattr(encoder, "is_test_model", False))
    if is_test:
        log.warning("expression_from_text %s", TEST_MODEL_WARNING)

    weights, labels = cbm.entries(poser.names, cbm.INTENSITIES[:s["intensities"]])
    cb = cbm.Codebook(names=poser.names, weights=weights, labels=labels)
    cache = default_cache("expression") if cache_dir is None else cache_dir
    cbm.embed_codebook(cb, encoder, avatar_hash=content_hash(av), cache_dir=cache, progress=progress,
                       is_cancelled=is_cancelled)

    phrases = motion.split_phrases(req.text)
    text_dirs = cbm.text_directions(encoder, phrases)
    chosen = cbm.select_candidates(cb.directions(), text_dirs, cb.weights, k=req.top_k)
    # playback order: by the phrase that chose it, then by rank
    order = sorted(range(len(chosen)), key=lambda r: (chosen[r].phrase, r))
    cand_w = np.stack([cb.weights[chosen[r].index] for r in order])
    rank_w = np.array([X.rank_weight(r) for r in order], np.float32)

    n = req.num_frames
    steps = req.steps or X.DEFAULT_STEPS
    neutral_m = None
    if motion_encoder is not encoder:
        import torch
        with torch.no_grad():
            neutral_m = motion_encoder.embed(torch.zeros(1, poser.K))[0].cpu().numpy()
    else:
        neutral_m = cb.neutral
    track, history = motion.optimize_track(
        cand_w, rank_w, n, encoder=motion_encoder, text_dirs=text_dirs, neutral=neutral_m, steps=steps,
        control_points=s["control_points"], clip_frames=s["clip_frames"], seed=req.seed,
        progress=progress, is_cancelled=is_cancelled)
    base = motion.baseline_track(cand_w, n)
    ev_kw = dict(encoder=motion_encoder, text_dirs=text_dirs, neutral=neutral_m)
    metrics = {"optimized": motion.evaluate(track, cand_w, rank_w, **ev_kw),
               "baseline_linear": motion.evaluate(base, cand_w, rank_w, **ev_kw)}

    blinks: list[int] = []
    closed = motion.asks_closed_eyes(req.text)
    if req.blinks and not closed:
        track, blinks = motion.add_blinks(track, poser.names, req.fps, seed=req.seed)

    final = np.clip(track, 0.0, 1.0)
    cand_labels = [cb.labels[chosen[r].index] for r in order]
    d_final = np.linalg.norm(final[:, None, :] - cand_w[None], axis=-1)   # [N,C]
    candidates = []
    for r, c in enumerate(chosen):
        j = order.index(r)
        candidates.append({"rank": r + 1, "score": round(c.score, 5), "label": cb.labels[c.index],
                           "weights": sparse(poser.names, cb.weights[c.index]), "phrase": phrases[c.phrase],
                           "frame": int(req.start_frame + int(d_final[:, j].argmin()))})
    md = {"text": req.text, "phrases": phrases, "guidance": getattr(getattr(encoder, "guidance", None), "name",
                                                                       getattr(encoder, "key", req.guidance)),
          "guidance_is_test_model": is_test, "codebook_entries": len(cb.weights), "top_k": req.top_k,
          "steps": steps, "losses": {"first": history[0] if history else {}, "last": history[-1] if history else {}},
          "metrics": metrics, "blinks": [int(req.start_frame + b) for b in blinks],
          "blink_prior": bool(req.blinks and not closed), "text_asks_closed_eyes": closed,
          "unmatched_shape_keys": list(poser.unmatched), "avatar_hash": content_hash(av),
          "seconds": round(time.time() - t0, 3), "device": str(device), "settings": s}
    if is_test:
        md["warning"] = TEST_MODEL_WARNING
    return X.ExpressionResult(names=list(poser.names), weights=final.astype(np.float32), fps=float(req.fps),
                              start_frame=int(req.start_frame), candidates=candidates,
                              labels=_label_frames(final, cand_w, cand_labels), metadata=md).check()
