"""Relaxed fit through the imitator: continuous parameters, temperature-annealed discrete
logits and ARKit expression weights, against a photo's landmarks, region masks and colours.

Targets (:class:`Targets`) come from :func:`backend.face.analysis.analyze_photo`. The photo's
landmarks are aligned onto the predicted ones by a least-squares similarity at every step
(the photo's scale and position are unknown; proportions are what the fit recovers); region
masks are warped into the render frame with that alignment.

All tensors are batched: B independent fits run at once (restarts, or the 36 candidates of
the search with their discrete blocks fixed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.avatar.params import COLOR_NAMES, DISCRETE, SHAPE_NAMES, VECTOR_SIZE, AvatarParams
from backend.face import landmarks as LM
from backend.face.regions import COLOR_REGIONS

from . import synth

NS, NC = len(SHAPE_NAMES), len(COLOR_NAMES)
BLOCKS = [(name, len(ch)) for name, ch in DISCRETE.items()]
# what a frontal photo cannot see: held near the average by a strong prior
UNOBSERVABLE = ("head_depth", "chin_protrusion", "nose_projection", "ear_size", "neck_width", "shoulder_width",
                "cheek_fullness")
# "head" (the photo's person mask above the chin, backend.face.analysis) is compared with
# everything the imitator draws that is not background, above its chin: the hair's outline
# whatever its colour (on 30 synthetic targets, seeds 50000-50029, it took the relaxed fit's
# hairstyle from 0.67 to 0.80 right, the shape error unchanged)
MASK_REGIONS = ("hair", "brows", "glasses", "eyes", "head")
MASK_WEIGHTS = (1.0, 2.0, 3.0, 1.0, 1.0)
_SEG_OF_REGION = {"hair": synth.SEG_CLASSES.index("hair"), "brows": synth.SEG_CLASSES.index("brows"),
                  "glasses": synth.SEG_CLASSES.index("glasses"), "eyes": synth.SEG_CLASSES.index("eyes")}
_BACKGROUND = synth.SEG_CLASSES.index("background")


def landmark_weights() -> np.ndarray:
    """[478] weights: 1 on the scored groups (eyes, brows, mouth, jaw, nose), 0.2 elsewhere."""
    w = np.full(478, 0.2, np.float32)
    for idx in LM.GROUPS.values():
        w[list(idx)] = 1.0
    return w


@dataclass(frozen=True)
class FitConfig:
    steps: int = 300
    lr: float = 0.05
    restarts: int = 4
    t_start: float = 1.0          # softmax temperature of the discrete logits, annealed geometrically
    t_end: float = 0.05
    w_landmarks: float = 100.0     # the landmark term is a squared error in IOD^2 units (~1e-3)
    w_masks: float = 1.0
    w_colors: float = 1.0
    w_prior_unobservable: float = 0.5
    w_prior_shape: float = 0.002
    w_prior_expression: float = 0.004
    # the photo's light is brighter or dimmer than the imitator's: one brightness gain on every
    # predicted region colour, fitted (log gain, this prior holds it near 1). On 30 synthetic
    # targets (seeds 50000-50029) colour error 0.109 -> 0.090 (skin tone 0.072 -> 0.044, eye
    # colour 0.076 -> 0.045). A weaker prior (0.03) gave 0.085 there but read the astronaut's
    # bright studio light as 1.42x and her skin as tan (tone 0.40; this prior: 1.14x, 0.19); a
    # gain per channel (the light's tint) read the tint as skin warmth (colour 0.107).
    w_prior_gain: float = 0.3
    refit_steps: int = 60         # search: continuous re-fit per candidate
    search_top_k: int = 36        # search: candidates rendered with the true engine (at most all searched)
    # search: the assets the true-render scores decide; the others keep the relaxed fit's argmax.
    # The hairstyle is not searched: on 30 synthetic targets (seeds 50000-50029, not the
    # benchmark's) every weighting of the scores tried picked it worse than rounding (0.43-0.60
    # against 0.63), while fixing it and searching the rest beat rounding on every asset
    # (measured while the bun sat low on the back of the head, where no frontal photo sees it).
    search_assets: tuple = ("eyebrow_style", "glasses")


@dataclass
class Targets:
    """The photo's measurements. landmarks [478,2] photo pixels; masks {region: [h,w] float 0..1}
    at ``mask_scale`` photo pixels per mask pixel; colors [5,3] sRGB and colors_valid [5]."""

    landmarks: np.ndarray
    masks: dict
    mask_scale: float
    colors: np.ndarray
    colors_valid: np.ndarray
    image_shape: tuple
    masks_valid: np.ndarray = None   # [len(MASK_REGIONS)] 1 = use, 0 = the photo's mask says nothing


def targets_from_analysis(a, mask_px_per_iod: float = 40.0) -> Targets:
    iod = LM.interocular(a.landmarks)
    f = max(1, int(iod / mask_px_per_iod))
    h, w = a.image.shape[:2]
    masks = {}
    for k in MASK_REGIONS:
        m = a.masks[k].astype(np.float32)
        hh, ww = h // f * f, w // f * f
        masks[k] = m[:hh, :ww].reshape(hh // f, f, ww // f, f).mean((1, 3))
    cols = np.zeros((len(COLOR_REGIONS), 3), np.float32)
    valid = np.zeros(len(COLOR_REGIONS), np.float32)
    for i, k in enumerate(COLOR_REGIONS):
        if a.colors.get(k) is not None:
            cols[i], valid[i] = a.colors[k], 1.0
    mvalid = np.array([k not in a.unseen for k in MASK_REGIONS], np.float32)
    return Targets(a.landmarks[:, :2].astype(np.float32), masks, float(f), cols, valid, a.image.shape[:2], mvalid)


# --------------------------------------------------------------------------- parameterisation
def _logit(p):
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


@dataclass
class FitState:
    """Free variables [B,...] (tensors with grad): z_shape -> tanh, z_color -> sigmoid, logits per
    discrete block, z_expr -> sigmoid."""

    z_shape: torch.Tensor
    z_color: torch.Tensor
    logits: list
    z_expr: torch.Tensor
    fixed_onehot: torch.Tensor | None = None    # [B, 10] when the discrete part is fixed (search)
    z_gain: torch.Tensor | None = None          # [B, 1] log brightness gain of the photo's light

    def params(self):
        return ([self.z_shape, self.z_color, self.z_expr, self.z_gain]
                + ([] if self.fixed_onehot is not None else self.logits))

    def relaxed(self, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(vector [B,35] with softmax one-hot blocks, expression [B,11])."""
        if self.fixed_onehot is not None:
            disc = self.fixed_onehot
        else:
            disc = torch.cat([torch.softmax(lg / temperature, -1) for lg in self.logits], -1)
        vec = torch.cat([torch.tanh(self.z_shape), torch.sigmoid(self.z_color), disc], -1)
        return vec, torch.sigmoid(self.z_expr)


def init_state(batch: int, seed: int = 0, shape=None, color=None, onehot=None, expr=None, noise=0.3) -> FitState:
    g = torch.Generator().manual_seed(seed)
    default = AvatarParams().to_vector()
    zs = torch.as_tensor(np.arctanh(np.clip(shape if shape is not None else default[:NS], -0.97, 0.97)),
                         dtype=torch.float32).expand(batch, NS).clone()
    zc = torch.as_tensor(_logit(color if color is not None else default[NS:NS + NC]),
                         dtype=torch.float32).expand(batch, NC).clone()
    ze = torch.as_tensor(_logit(expr if expr is not None else np.full(synth.NUM_EXPR, 0.12)),
                         dtype=torch.float32).expand(batch, synth.NUM_EXPR).clone()
    logits = [noise * torch.randn(batch, n, generator=g) for _, n in BLOCKS]
    st = FitState(zs, zc, logits, ze, None if onehot is None else torch.as_tensor(onehot, dtype=torch.float32),
                  torch.zeros(batch, 1))
    for p in [st.z_shape, st.z_color, st.z_expr, st.z_gain] + st.logits:
        p.requires_grad_(True)
    return st


# --------------------------------------------------------------------------- losses
def similarity_torch(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor):
    """Batched least-squares similarity taking src [B,N,2] onto dst [B,N,2] with weights [N].
    Returns (aligned src [B,N,2], scale [B], R [B,2,2], t [B,2])."""
    wn = (w / w.sum())[None, :, None]
    ms, md = (wn * src).sum(1, keepdim=True), (wn * dst).sum(1, keepdim=True)
    a, b = src - ms, dst - md
    cov = (wn * b).transpose(1, 2) @ a                              # [B,2,2]
    # closed form for 2-D: rotation angle from the cross-covariance
    ang = torch.atan2(cov[:, 1, 0] - cov[:, 0, 1], cov[:, 0, 0] + cov[:, 1, 1])
    c, s = torch.cos(ang), torch.sin(ang)
    R = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    var = (wn[..., 0] * (a ** 2).sum(-1)).sum(1)
    scale = ((R * cov).sum((1, 2))) / var.clamp(min=1e-12)
    t = md[:, 0] - scale[:, None] * (R @ ms[:, 0, :, None])[..., 0]
    aligned = scale[:, None, None] * (a @ R.transpose(1, 2)) + md
    return aligned, scale, R, t


def warp_masks(tg: Targets, scale, R, t, size: int) -> torch.Tensor:
    """Photo masks in the render frame: [B,R,size,size]; the similarity maps photo pixels to
    render units (0..1)."""
    B = scale.shape[0]
    u = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    pts = torch.stack([gx, gy], -1).reshape(1, -1, 2) - t[:, None, :]         # render -> photo px
    photo = (pts @ R) / scale[:, None, None]                                   # R^T (x - t) / s
    stack = torch.as_tensor(np.stack([tg.masks[k] for k in MASK_REGIONS]))[None].expand(B, -1, -1, -1)
    mh, mw = stack.shape[-2:]
    grid = torch.stack([photo[..., 0] / tg.mask_scale / mw * 2 - 1, photo[..., 1] / tg.mask_scale / mh * 2 - 1], -1)
    out = F.grid_sample(stack, grid.reshape(B, size, size, 2), mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out


def fit_losses(out: dict, vec, expr, tg: Targets, cfg: FitConfig, mask_target, lm_w, z_gain=None) -> dict:
    """Per-fit losses [B] (dict), and the photo->render alignment (detached)."""
    B = vec.shape[0]
    pred = out["landmarks"]                                              # [B,478,2] render units
    tgt = torch.as_tensor(tg.landmarks)[None].expand(B, -1, -1)
    aligned, s, R, t = similarity_torch(tgt, pred, lm_w)
    iod = (pred[:, LM.IRIS_CENTERS[0]] - pred[:, LM.IRIS_CENTERS[1]]).norm(dim=-1).clamp(min=1e-4)
    d2 = ((aligned - pred) ** 2).sum(-1)
    lm = ((d2 * lm_w).sum(-1) / lm_w.sum()) / iod ** 2
    probs = torch.softmax(out["seg"], 1)
    mw = torch.as_tensor(MASK_WEIGHTS)
    norm = mw.sum()                       # a region the photo cannot show adds nothing, takes nothing
    if tg.masks_valid is not None:
        mw = mw * torch.as_tensor(tg.masks_valid)
    if mask_target is not None:
        S = probs.shape[-1]
        chin = pred[:, LM.CHIN, 1].detach()                                  # render units
        above = ((torch.arange(S, dtype=torch.float32) + 0.5) / S < chin[:, None]).float()[:, :, None]
        pm = torch.stack([(1 - probs[:, _BACKGROUND]) * above if k == "head" else probs[:, _SEG_OF_REGION[k]]
                          for k in MASK_REGIONS], 1)
        masks = (((pm - mask_target) ** 2).mean((2, 3)) * mw).sum(-1) / norm * 10.0
    else:
        masks = torch.zeros(B)
    cv = torch.as_tensor(tg.colors_valid)
    pc = out["colors"] if z_gain is None else out["colors"] * torch.exp(z_gain)[:, :, None]
    colors = ((pc - torch.as_tensor(tg.colors)).abs().mean(-1) * cv).sum(-1) / cv.sum().clamp(min=1)
    shape = vec[:, :NS]
    unobs = torch.zeros(NS)
    unobs[[SHAPE_NAMES.index(n) for n in UNOBSERVABLE]] = 1.0
    prior = (cfg.w_prior_unobservable * (shape ** 2 * unobs).sum(-1)
             + cfg.w_prior_shape * (shape ** 2 * (1 - unobs)).sum(-1) + cfg.w_prior_expression * expr.sum(-1))
    if z_gain is not None:
        prior = prior + cfg.w_prior_gain * (z_gain ** 2).sum(-1)
    total = cfg.w_landmarks * lm + cfg.w_masks * masks + cfg.w_colors * colors + prior
    return {"total": total, "landmarks": lm, "masks": masks, "colors": colors, "prior": prior,
            "align": (s.detach(), R.detach(), t.detach())}


def run_fit(net, tg: Targets, st: FitState, cfg: FitConfig, steps: int, anneal: bool = True, progress=None,
            is_cancelled=None) -> dict:
    """Optimise ``st`` in place for ``steps``; returns {"history", "losses" (last, per fit [B]),
    "temperature", "vector" [B,35], "expression" [B,11], "light_gain" [B]}."""
    opt = torch.optim.Adam(st.params(), lr=cfg.lr)
    lm_w = torch.as_tensor(landmark_weights())
    seg_size = None
    mask_target = None
    hist = []
    T = cfg.t_end
    L = None
    for i in range(steps):
        T = cfg.t_start * (cfg.t_end / cfg.t_start) ** (i / max(steps - 1, 1)) if anneal else cfg.t_end
        vec, expr = st.relaxed(T)
        out = net(torch.cat([vec, expr], -1))
        if seg_size is None:
            seg_size = out["seg"].shape[-1]
        L = fit_losses(out, vec, expr, tg, cfg, mask_target, lm_w, st.z_gain)
        if i % 20 == 0 or mask_target is None:
            with torch.no_grad():
                mask_target = warp_masks(tg, *L["align"], seg_size)
        opt.zero_grad()
        L["total"].sum().backward()
        opt.step()
        if i % 10 == 0 or i == steps - 1:
            hist.append({"step": i, "temperature": round(T, 4),
                         **{k: round(float(L[k].detach().min()), 5) for k in ("total", "landmarks", "masks",
                                                                                "colors", "prior")}})
            if progress:
                progress("fit", i + 1, steps, {k: v for k, v in hist[-1].items() if k != "step"})
        if is_cancelled and is_cancelled():
            from shared.errors import Cancelled
            raise Cancelled("The photo fit was cancelled.")
    with torch.no_grad():
        vec, expr = st.relaxed(T)
        out = net(torch.cat([vec, expr], -1))
        L = fit_losses(out, vec, expr, tg, cfg, mask_target, lm_w, st.z_gain)
    return {"history": hist, "losses": {k: v.detach() for k, v in L.items() if k != "align"},
            "temperature": T, "vector": vec.detach().numpy(), "expression": expr.detach().numpy(),
            "light_gain": torch.exp(st.z_gain.detach())[:, 0].numpy()}


def relaxed_fit(net, tg: Targets, cfg: FitConfig, seed: int = 0, steps: int | None = None, progress=None,
                is_cancelled=None) -> dict:
    """The annealed relaxed fit with ``cfg.restarts`` random discrete starts; returns the best:
    {"vector" [35] relaxed, "expression" [11], "light_gain" (the photo's light's brightness over
    the imitator's), "history", "losses" {name: float}, "restart", "temperature"}."""
    st = init_state(cfg.restarts, seed)
    r = run_fit(net, tg, st, cfg, steps or cfg.steps, True, progress, is_cancelled)
    b = int(torch.argmin(r["losses"]["total"]))
    return {"vector": r["vector"][b], "expression": r["expression"][b], "light_gain": float(r["light_gain"][b]),
            "history": r["history"],
            "losses": {k: float(v[b]) for k, v in r["losses"].items()}, "restart": b,
            "temperature": r["temperature"]}


def onehot_of(choice_idx: tuple) -> np.ndarray:
    """Indices (one per DISCRETE block) -> concatenated one-hot [10]."""
    return np.concatenate([np.eye(n, dtype=np.float32)[i] for (_, n), i in zip(BLOCKS, choice_idx)])


def rounded_choice(vec: np.ndarray) -> tuple:
    """Argmax of each one-hot block of a relaxed vector [35]."""
    out, i = [], NS + NC
    for _, n in BLOCKS:
        out.append(int(np.argmax(vec[i:i + n])))
        i += n
    return tuple(out)


def strict_vector(vec: np.ndarray, choice_idx: tuple) -> np.ndarray:
    v = np.asarray(vec, np.float32).copy()
    v[NS + NC:VECTOR_SIZE] = onehot_of(choice_idx)
    return v


def choice_names(choice_idx: tuple) -> dict:
    return {name: DISCRETE[name][i] for (name, _), i in zip(BLOCKS, choice_idx)}
