"""Motion optimization: a smooth expression track through the candidate expressions.

The track is a clamped uniform cubic B-spline over time: ``track = B @ C`` with the
basis ``B`` [N,M] (N frames, M control points) and control points ``C`` [M,K] kept in
[0,1]. B-spline basis functions are non-negative and sum to one, so every frame's
weights stay in [0,1] as well.

Losses (the published reference-based animation, on expression weights):
    pose    sum_i r_i * min_t ||x_t - c_i||     candidates c_i, rank weights r_i (1, .8, .6, .4, .2)
    clip    sum_t w_t (1 - cos(f(x_t) - f(0), d_t)) / sum_t w_t   on a few sampled frames,
            w_t growing toward later frames; d_t = the text (or the phrase covering t) direction
    motion  -mean_t ||x_{t+1} - x_t||           a small reward for change, so the face moves
Blinks come from a prior (one every 2-6 s) unless the text asks for closed eyes.
The baseline to report against: linear interpolation neutral -> candidates.
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F

from shared import expression as X
from shared.errors import Cancelled

LAMBDA_CLIP = 1.0
LAMBDA_MOTION = 0.05
LEARNING_RATE = 0.03

_THEN = re.compile(r"\s*(?:,|;|\.)?\s*\b(?:and then|then|after that|afterwards|followed by|before)\b\s*",
                   re.IGNORECASE)
_CLOSED_EYES = re.compile(r"\b(eyes?\s+(?:are\s+|stay\s+|kept\s+)?(?:closed|shut)"
                          r"|(?:close[sd]?|closing|shut(?:s|ting)?)\s+(?:\w+\s+)?eyes?"
                          r"|sleep\w*|asleep|blink\w*|wink\w*|dozing)\b", re.IGNORECASE)


def split_phrases(text: str) -> list[str]:
    """ "laughing, then surprised" -> ["laughing", "surprised"]; a text without a sequence -> [text]."""
    parts = [p.strip(" ,;.") for p in _THEN.split(text)]
    parts = [p for p in parts if p]
    return parts or [text.strip()]


def asks_closed_eyes(text: str) -> bool:
    """True when the text itself asks for closed eyes, blinks or winks (then no blink prior)."""
    return bool(_CLOSED_EYES.search(text))


def bspline_basis(n_frames: int, n_ctrl: int, degree: int = 3) -> np.ndarray:
    """Clamped uniform B-spline basis [n_frames, n_ctrl] (rows sum to 1, entries >= 0;
    the first and last frames equal the first and last control points)."""
    n_ctrl = max(n_ctrl, degree + 1)
    inner = np.linspace(0.0, 1.0, n_ctrl - degree + 1)
    knots = np.concatenate([np.zeros(degree), inner, np.ones(degree)])
    t = np.linspace(0.0, 1.0, n_frames)
    # Cox-de Boor; the last knot span is closed so t = 1 lands in it
    B = np.zeros((n_frames, len(knots) - 1))
    for i in range(len(knots) - 1):
        if knots[i] < knots[i + 1]:
            last = knots[i + 1] == 1.0
            B[:, i] = (t >= knots[i]) & ((t < knots[i + 1]) | (last & (t <= 1.0)))
    for d in range(1, degree + 1):
        nb = np.zeros((n_frames, len(knots) - 1 - d))
        for i in range(len(knots) - 1 - d):
            a = knots[i + d] - knots[i]
            b = knots[i + d + 1] - knots[i + 1]
            if a > 0:
                nb[:, i] += (t - knots[i]) / a * B[:, i]
            if b > 0:
                nb[:, i] += (knots[i + d + 1] - t) / b * B[:, i + 1]
        B = nb
    return B.astype(np.float32)


def key_frames(n_frames: int, count: int) -> np.ndarray:
    """Frames (indices) of ``count`` keys spread after the neutral first frame, the last at the end."""
    return np.round(np.linspace(0, n_frames - 1, count + 1)[1:]).astype(int)


def baseline_track(candidates: np.ndarray, n_frames: int) -> np.ndarray:
    """Linear interpolation neutral -> candidates[0] -> ... -> candidates[-1] at evenly spaced keys.

    candidates [C,K] in playback order -> [N,K] float32.
    """
    C, K = candidates.shape
    keys = np.concatenate([[0], key_frames(n_frames, C)]).astype(np.float64)
    vals = np.concatenate([np.zeros((1, K)), candidates], 0)
    t = np.arange(n_frames, dtype=np.float64)
    return np.stack([np.interp(t, keys, vals[:, k]) for k in range(K)], -1).astype(np.float32)


def pose_loss(track: torch.Tensor, candidates: torch.Tensor, rank_w: torch.Tensor) -> torch.Tensor:
    """sum_i r_i min_t ||track_t - c_i||. track [N,K], candidates [C,K], rank_w [C]."""
    d = torch.cdist(candidates, track)                # [C,N]
    return (rank_w * d.min(1).values).sum()


def motion_energy(track: torch.Tensor) -> torch.Tensor:
    """mean_t ||x_{t+1} - x_t|| (the motion term's reward)."""
    return (track[1:] - track[:-1]).norm(dim=-1).mean()


def frame_weights(n_frames: int) -> np.ndarray:
    """CLIP term weights growing toward later frames: 0.5 at the first frame, 1 at the last."""
    return (0.5 + 0.5 * np.linspace(0.0, 1.0, n_frames)).astype(np.float32)


def frame_targets(text_dirs: np.ndarray, n_frames: int) -> np.ndarray:
    """[N,D] target direction per frame: phrase p of P covers the p-th P-th of the timeline."""
    P = len(text_dirs)
    seg = np.minimum((np.arange(n_frames) * P) // n_frames, P - 1)
    return text_dirs[seg]


def clip_loss(track: torch.Tensor, idx: torch.Tensor, encoder, neutral: torch.Tensor, targets: torch.Tensor,
              fw: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the sampled frames ``idx`` of 1 - cos(f(x_t) - f(0), d_t)."""
    e = encoder.embed(track[idx])
    dev = e.device  # the encoder may run on a GPU while the track lives on the CPU
    e = e - neutral.to(dev)[None]
    cos = F.cosine_similarity(e, targets[idx].to(dev), dim=-1)
    w = fw[idx].to(dev)
    return (((1 - cos) * w).sum() / w.sum()).cpu()


def _sample_frames(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """``m`` stratified random frames of ``n`` (one per equal slice, so the whole track is seen)."""
    m = min(m, n)
    edges = np.linspace(0, n, m + 1)
    return np.array([int(rng.integers(int(a), max(int(a) + 1, int(b)))) for a, b in zip(edges[:-1], edges[1:])])


def optimize_track(candidates: np.ndarray, rank_w: np.ndarray, n_frames: int, *, encoder=None,
                   text_dirs: np.ndarray | None = None, neutral: np.ndarray | None = None, steps: int = X.DEFAULT_STEPS,
                   control_points: int = 0, clip_frames: int = 4, seed: int = 0,
                   lambda_clip: float = LAMBDA_CLIP, lambda_motion: float = LAMBDA_MOTION,
                   progress=None, is_cancelled=None) -> tuple[np.ndarray, list[dict]]:
    """Optimize the track. candidates [C,K] in playback order with their rank weights
    [C]; ``encoder`` (``embed(weights [B,K]) -> [B,D]``, differentiable), ``text_dirs``
    [P,D] and ``neutral`` [D] enable the CLIP term (else it is left out).

    Starts from the B-spline closest to :func:`baseline_track`. Returns (track [N,K]
    float32 in [0,1], losses per step).
    """
    C, K = candidates.shape
    # enough control points for a cubic to reach every key (about three per key), at most one per frame
    M = min(n_frames, control_points or max(3 * (C + 1), min(48, n_frames // 6)))
    B = torch.from_numpy(bspline_basis(n_frames, M))
    base = torch.from_numpy(baseline_track(candidates, n_frames))
    ctrl = torch.linalg.lstsq(B, base).solution.clamp(0, 1)
    ctrl.requires_grad_(True)
    cand = torch.from_numpy(np.asarray(candidates, np.float32))
    rw = torch.from_numpy(np.asarray(rank_w, np.float32))
    use_clip = encoder is not None and text_dirs is not None and neutral is not None and lambda_clip > 0
    if use_clip:
        targets = torch.from_numpy(frame_targets(np.asarray(text_dirs, np.float32), n_frames))
        neutral_t = torch.as_tensor(np.asarray(neutral, np.float32))
        fw = torch.from_numpy(frame_weights(n_frames))
    opt = torch.optim.Adam([ctrl], lr=LEARNING_RATE)
    rng = np.random.default_rng(seed)
    history = []
    for step in range(steps):
        if is_cancelled and is_cancelled():
            raise Cancelled("The expression job was cancelled.")
        track = B @ ctrl
        lp = pose_loss(track, cand, rw)
        lm = motion_energy(track)
        loss = lp - lambda_motion * lm
        rec = {"pose": lp.item(), "motion": lm.item()}
        if use_clip:
            idx = torch.from_numpy(_sample_frames(rng, n_frames, clip_frames))
            lc = clip_loss(track, idx, encoder, neutral_t, targets, fw)
            loss = loss + lambda_clip * lc
            rec["clip"] = lc.item()
        rec["total"] = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            ctrl.clamp_(0.0, 1.0)
        history.append(rec)
        if progress:
            progress("motion", step + 1, steps, losses=rec)
    with torch.no_grad():
        track = (B @ ctrl).clamp(0, 1).numpy().astype(np.float32)
    return track, history


def evaluate(track: np.ndarray, candidates: np.ndarray, rank_w: np.ndarray, *, encoder=None, text_dirs=None,
             neutral=None, eval_frames: int = 8) -> dict:
    """Figures for a track (the optimized one and the baseline alike): pose loss, the
    distance from each candidate to its nearest frame, motion energy, jitter (mean
    |second difference|) and, with an encoder, the CLIP score (mean relative cosine
    with the frame's target) on ``eval_frames`` evenly spaced frames."""
    t = torch.from_numpy(np.asarray(track, np.float32))
    c = torch.from_numpy(np.asarray(candidates, np.float32))
    d = torch.cdist(c, t).min(1).values
    out = {"pose": float(pose_loss(t, c, torch.from_numpy(np.asarray(rank_w, np.float32)))),
           "candidate_distance": [round(float(x), 4) for x in d],
           "motion": float(motion_energy(t)),
           "jitter": float(np.abs(np.diff(track, 2, axis=0)).mean()) if len(track) > 2 else 0.0}
    if encoder is not None and text_dirs is not None and neutral is not None:
        n = len(track)
        idx = np.unique(np.round(np.linspace(0, n - 1, min(eval_frames, n))).astype(int))
        targets = frame_targets(np.asarray(text_dirs, np.float32), n)[idx]
        with torch.no_grad():
            e = encoder.embed(t[idx]).cpu().numpy() - np.asarray(neutral)[None]
        cos = (e * targets).sum(1) / np.maximum(np.linalg.norm(e, axis=1), 1e-8)
        out["clip_score"] = float(cos.mean())
    return out


def add_blinks(track: np.ndarray, names: list[str], fps: float, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Blinks by the prior: one every 2-6 s (first within the first 0.5-2 s), each a
    raised-cosine close-open of ``BLINK_DURATION_S``, on both eyeBlink columns (max with
    what the track has). Returns (new track, blink centre frames); unchanged when the
    avatar has no eyeBlink blendshapes."""
    cols = [names.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight") if n in names]
    if not cols:
        return track, []
    rng = np.random.default_rng(seed + 7919)
    n = len(track)
    half = max(1.0, X.BLINK_DURATION_S * fps / 2)
    t = rng.uniform(0.5, 2.0) * fps
    centres = []
    out = track.copy()
    f = np.arange(n, dtype=np.float64)
    while t < n - 1:
        tc = int(round(t))  # on a frame, so every blink closes the eyes fully
        centres.append(tc)
        shape = np.where(np.abs(f - tc) < half, 0.5 + 0.5 * np.cos(np.pi * (f - tc) / half), 0.0)
        for c in cols:
            out[:, c] = np.maximum(out[:, c], shape)
        t += rng.uniform(*X.BLINK_INTERVAL_S) * fps
    return out.astype(np.float32), centres
