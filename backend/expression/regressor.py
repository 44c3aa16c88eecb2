"""The landmark -> ARKit weight regressor, trained self-supervised on the avatar engine.

Training data: random sample avatars (:func:`backend.avatar.params.random_params`) posed
with known random sparse ARKit weights, turned by a random head rotation, framed at a
random distance and lit by random lights over a random background; MediaPipe's face
mesh (:mod:`backend.face.landmarks`) on each render; :mod:`.features` on its output.
A small MLP maps features to weights (sigmoid outputs, MSE); a second one maps features
minus those of the same person's neutral face (one neutral render per avatar) for when
the user marks a neutral frame. Trained once per configuration and cached under
``cache_dir("expression")`` (atomic write).

Configurations: ``"test"`` trains in seconds (tests); ``"full"`` (a few minutes on a CPU)
is the one for users and benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from shared.arkit import ARKIT_NAMES, symmetric_pairs
from shared.errors import Cancelled, Internal

from backend.render import Lights

from . import features as ft
from .posing import Poser, frontal_cameras

log = logging.getLogger(__name__)

REGRESSOR_VERSION = "5"


@dataclass(frozen=True)
class RegressorConfig:
    avatars: int            # random sample avatars rendered
    per_avatar: int         # renders per avatar
    size: int               # render size, pixels
    hidden: int             # MLP width
    steps: int              # training steps (full batch, Adam)
    seed: int = 0
    max_yaw: float = 25.0   # degrees of random head rotation
    max_pitch: float = 15.0
    max_roll: float = 10.0
    active: float = 0.2     # mean probability a blendshape is active in a sample (animation is mostly sparse)


CONFIGS = {
    "test": RegressorConfig(avatars=3, per_avatar=56, size=192, hidden=64, steps=400),
    "full": RegressorConfig(avatars=32, per_avatar=160, size=256, hidden=256, steps=3000),
}


def random_weights(rng: np.random.Generator, names: list[str], n: int, active: float) -> np.ndarray:
    """[n,K] sparse random weights: each blendshape active (uniform 0..1) with a per-sample
    probability of ``active`` on average, Left/Right pairs usually together; 1 in 5 samples neutral."""
    K = len(names)
    # the number of active blendshapes varies from sample to sample (one at a time .. many at once)
    p = rng.uniform(0.05, 2 * active - 0.05, (n, 1))
    w = np.where(rng.random((n, K)) < p, rng.random((n, K)), 0.0)
    for left, right in symmetric_pairs(names):
        i, j = names.index(left), names.index(right)
        both = rng.random(n) < 0.7
        w[both, j] = np.clip(w[both, i] + rng.normal(0, 0.08, both.sum()), 0, 1) * (w[both, i] > 0)
    w[rng.random(n) < 0.2] = 0.0
    return w.astype(np.float32)


def random_lights(rng: np.random.Generator) -> Lights:
    key = (rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.9), rng.uniform(0.4, 1.0))
    fill = (rng.uniform(-0.8, 0.8), rng.uniform(-0.5, 0.5), rng.uniform(0.5, 1.0))
    k, f, a = rng.uniform(0.5, 0.95), rng.uniform(0.1, 0.35), rng.uniform(0.12, 0.35)
    tint = rng.uniform(0.9, 1.1, 3)
    return Lights(directions=(key, fill), colors=(tuple(k * tint), (f, f, f)), ambient=(a, a, a))


def render_batch(poser: Poser, weights: np.ndarray, rotations_deg: np.ndarray, size: int, margin: float,
                 lights: Lights | None = None, background=(0.55, 0.55, 0.55)) -> np.ndarray:
    """[B,K] weights, [B,3] head rotations (degrees) -> [B,size,size,3] uint8 sRGB frontal renders."""
    from .posing import to_uint8

    cams = frontal_cameras(poser.avatar, 1, size, margin=margin)
    R = torch.from_numpy(np.stack([ft.rotation_xyz(r) for r in rotations_deg]).astype(np.float32))
    with torch.no_grad():
        img = poser.render(torch.from_numpy(weights), cams, rotation=R, lights=lights, background=background)
    return to_uint8(img)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip: video and photo compression in the training data."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def synthesize(cfg: RegressorConfig, progress=None, is_cancelled=None, seed_offset: int = 0) -> dict:
    """Render the training set and run the face mesh on it.

    Returns {"landmarks" [N,478,3] (NaN = no face), "weights" [N,K], "rotation" [N,3] deg,
    "neutral" [A,478,3] (each avatar's neutral face), "owner" [N] (avatar of each sample),
    "names" [K], "template" [478,3]} (the template from the default avatar, frontal, neutral).
    """
    from backend.avatar.params import random_params
    from backend.avatar.sample import sample_avatar
    from backend.face.landmarks import NUM_LANDMARKS, face_landmarks

    rng = np.random.default_rng(cfg.seed + seed_offset)
    base = Poser(sample_avatar(texture_size=256, with_track=False))
    img = render_batch(base, np.zeros((1, base.K), np.float32), np.zeros((1, 3)), cfg.size, 1.0)[0]
    lm0 = face_landmarks(img)
    if lm0 is None:
        raise Internal("The face mesh found no face on the sample avatar's frontal render; the capture "
                       "regressor cannot be trained.")
    names = base.names
    out_lm, out_w, out_r, out_neutral, out_owner = [], [], [], [], []
    total = cfg.avatars * cfg.per_avatar
    done = 0
    for a in range(cfg.avatars):
        seed = 10_000 * (cfg.seed + seed_offset + 1) + a
        poser = Poser(sample_avatar(random_params(seed), texture_size=256, with_track=False))
        if poser.names != names:
            raise Internal("The sample avatars disagree on their ARKit blendshapes.")
        # this person's neutral face (own light and framing): the calibration frame of the calibrated model
        nimg = render_batch(poser, np.zeros((1, len(names)), np.float32), np.zeros((1, 3)), cfg.size,
                            rng.uniform(0.85, 1.4), random_lights(rng), tuple(rng.uniform(0.15, 0.85, 3)))[0]
        lm = face_landmarks(nimg)
        out_neutral.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32) if lm is None else lm)
        for b in range(0, cfg.per_avatar, 16):
            if is_cancelled and is_cancelled():
                raise Cancelled("Training the capture regressor was cancelled.")
            n = min(16, cfg.per_avatar - b)
            w = random_weights(rng, names, n, cfg.active)
            rot = np.stack([rng.uniform(-cfg.max_pitch, cfg.max_pitch, n), rng.uniform(-cfg.max_roll, cfg.max_roll, n),
                            rng.uniform(-cfg.max_yaw, cfg.max_yaw, n)], -1)
            bg = tuple(rng.uniform(0.15, 0.85, 3))
            imgs = render_batch(poser, w, rot, cfg.size, rng.uniform(0.85, 1.4), random_lights(rng), bg)
            for i in range(n):
                img = _jpeg(imgs[i], int(rng.integers(30, 90))) if rng.random() < 0.5 else imgs[i]
                lm = face_landmarks(img)
                out_lm.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32) if lm is None else lm)
            out_w.append(w)
            out_owner.append(np.full(n, a))
            out_r.append(rot.astype(np.float32))
            done += n
            if progress:
                progress("capture_data", done, total)
    return {"landmarks": np.stack(out_lm), "weights": np.concatenate(out_w), "rotation": np.concatenate(out_r),
            "neutral": np.stack(out_neutral), "owner": np.concatenate(out_owner),
            "names": names, "template": ft.normalize_template(lm0)}


class MLP(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, n_out))

    def forward(self, x):
        return torch.sigmoid(self.net(x))


@dataclass
class Regressor:
    """A trained regressor: features -> weights over ``names`` (ARKit order).

    Two models: ``model`` on the features alone, and ``calibrated`` on the features minus
    those of the same person's neutral face (used when a neutral frame is known: brow
    height and mouth shape vary between people as much as expressions move them).
    """

    names: list[str]
    template: np.ndarray          # [478,3]
    mean: np.ndarray              # [F]
    std: np.ndarray               # [F]
    model: MLP
    config: dict
    train_figures: dict
    calibrated: MLP | None = None
    cal_std: np.ndarray | None = None   # [F] scale of the calibrated features

    def predict(self, feats: np.ndarray, neutral: np.ndarray | None = None) -> np.ndarray:
        """[N,F] (and optionally the neutral face's features [F]) -> [N,K] float32 in [0,1].

        With a neutral face the calibrated and the plain model are averaged: on 300 frames of
        unseen avatars that beat either alone (weight MAE 0.164 vs 0.173 plain, 0.178 calibrated).
        """
        def run(m, x):
            with torch.no_grad():
                return m(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float32)

        plain = run(self.model, (feats - self.mean) / self.std)
        if neutral is None or self.calibrated is None:
            return plain
        return 0.5 * (plain + run(self.calibrated, (feats - neutral[None]) / self.cal_std))


def _fit(X: np.ndarray, Y: np.ndarray, cfg: RegressorConfig, stage: str, progress=None) -> tuple[MLP, float]:
    """Adam, full batch, cosine schedule; X already standardized. -> (model, final MSE)."""
    torch.manual_seed(cfg.seed)
    model = MLP(X.shape[1], Y.shape[1], cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(Y)
    for step in range(cfg.steps):
        loss = torch.nn.functional.mse_loss(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step % 100 == 0 or step == cfg.steps - 1):
            progress(stage, step + 1, cfg.steps, losses={"mse": float(loss.detach())})
    model.eval()
    return model, float(loss.detach())


def train(data: dict, cfg: RegressorConfig, progress=None) -> Regressor:
    """Fit both MLPs on :func:`synthesize` output (frames without a face are dropped)."""
    feats, _, found = ft.features_batch(data["landmarks"], data["template"])
    nfeats, _, nfound = ft.features_batch(data["neutral"], data["template"])
    if found.sum() < 16:
        raise Internal(f"The face mesh found faces on only {int(found.sum())} of {len(found)} training renders.")
    X, Y = feats[found], data["weights"][found]
    # train in ARKit order whatever order the engine lists its blendshapes in
    names = [n for n in ARKIT_NAMES if n in data["names"]]
    Y = Y[:, [list(data["names"]).index(n) for n in names]]
    mean, std = X.mean(0), X.std(0) + 1e-4
    model, mse = _fit((X - mean) / std, Y, cfg, "capture_train", progress)
    cal = found & nfound[data["owner"]]
    Xc = feats[cal] - nfeats[data["owner"][cal]]
    cal_std = Xc.std(0) + 1e-4
    calibrated, mse_c = _fit(Xc / cal_std, data["weights"][cal][:, [list(data["names"]).index(n) for n in names]],
                             cfg, "capture_train_calibrated", progress)
    figs = {"frames": int(len(found)), "faces_found": int(found.sum()), "train_mse": mse,
            "train_mse_calibrated": mse_c}
    return Regressor(names=names, template=data["template"], mean=mean, std=std, model=model,
                     config=asdict(cfg), train_figures=figs, calibrated=calibrated, cal_std=cal_std)


def _cache_path(cache_dir: Path, cfg: RegressorConfig) -> Path:
    key = json.dumps({"v": REGRESSOR_VERSION, **asdict(cfg)}, sort_keys=True)
    return Path(cache_dir) / f"regressor_{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def load_regressor(name: str = "full", *, cache_dir=None, progress=None, is_cancelled=None,
                   config: RegressorConfig | None = None) -> Regressor:
    """The regressor of configuration ``name`` ("test" | "full"), trained on first use and
    cached under ``cache_dir`` (default ``cache_dir("expression")``)."""
    from backend.cache import cache_dir as default_cache

    cfg = config or CONFIGS[name]
    path = _cache_path(Path(cache_dir) if cache_dir else default_cache("expression"), cfg)
    if path.is_file():
        d = torch.load(path, map_location="cpu", weights_only=False)
        models = []
        for key in ("state", "state_calibrated"):
            m = MLP(len(d["mean"]), len(d["names"]), d["config"]["hidden"])
            m.load_state_dict(d[key])
            models.append(m.eval())
        return Regressor(names=d["names"], template=d["template"], mean=d["mean"], std=d["std"], model=models[0],
                         config=d["config"], train_figures=d["train_figures"], calibrated=models[1],
                         cal_std=d["cal_std"])
    log.info("training the '%s' capture regressor (%d renders; cached afterwards at %s)", name,
             cfg.avatars * cfg.per_avatar, path)
    reg = train(synthesize(cfg, progress=progress, is_cancelled=is_cancelled), cfg, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"names": reg.names, "template": reg.template, "mean": reg.mean, "std": reg.std,
                "state": reg.model.state_dict(), "state_calibrated": reg.calibrated.state_dict(),
                "cal_std": reg.cal_std, "config": reg.config, "train_figures": reg.train_figures}, tmp)
    os.replace(tmp, path)
    return reg
