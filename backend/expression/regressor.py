"""The landmark -> ARKit weight regressor, trained self-supervised on the avatar engine.

Training data: random sample avatars (:func:`backend.avatar.params.random_params`) posed
with known random sparse ARKit weights, turned by a random head rotation, framed at a
random distance and lit by random lights over a random background (one draw of framing,
light and background per avatar, like one video session); MediaPipe's face mesh
(:mod:`backend.face.landmarks`) on each render; :mod:`.features` on its output and the render.

A small MLP maps features to weights (sigmoid outputs; minibatch Adam, MSE for the first
third of the steps, then L1: the L1 answer is the conditional median, which for sparse
animation is 0 where the features cannot tell, so blendshapes the features barely see
stop reporting false positives; L1 from the start stalls at all-zero). A second one, the
calibrated model, maps the features relative to a reference of the same person
(:func:`.features.relative`): either their neutral face (one neutral render per avatar;
a user-marked neutral frame at capture) or :func:`auto_neutral` over their renders (a
video's own estimate when no frame is marked; for the mouth outputs, capture refines it
with :func:`.capture.clip_neutral`). Trained once per configuration
and cached under ``cache_dir("expression")`` (atomic write).

Configurations: ``"test"`` trains in seconds (tests); ``"full"`` (a few minutes on a CPU)
is the one for users and benchmarks. Many avatars with few renders each: the identity
spread (brow height, mouth width) is what the models must learn to see past.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from shared.arkit import ARKIT_NAMES, symmetric_pairs
from shared.avatar import euler_xyz_matrix
from shared.errors import Cancelled, Internal

from backend.render import Lights
from backend.render.looks import random_lights

from . import features as ft
from .posing import Poser, frontal_cameras

log = logging.getLogger(__name__)

REGRESSOR_VERSION = "6"


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
    batch: int = 1024       # minibatch size (the whole set when smaller)


CONFIGS = {
    "test": RegressorConfig(avatars=16, per_avatar=16, size=192, hidden=64, steps=600),
    "full": RegressorConfig(avatars=320, per_avatar=32, size=256, hidden=256, steps=2000),
}


def auto_neutral(feats: np.ndarray) -> np.ndarray:
    """[N,F] one person's features over many frames -> [F] an estimate of their neutral face's:
    the per-feature median (animation is sparse, so most frames are near neutral for each
    feature). Used on a video's frames at capture and on each avatar's renders in training."""
    return np.median(np.asarray(feats), axis=0).astype(np.float32)


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


def render_batch(poser: Poser, weights: np.ndarray, rotations_deg: np.ndarray, size: int, margin: float,
                 lights: Lights | None = None, background=(0.55, 0.55, 0.55)) -> np.ndarray:
    """[B,K] weights, [B,3] head rotations (degrees) -> [B,size,size,3] uint8 sRGB frontal renders."""
    from .posing import to_uint8

    cams = frontal_cameras(poser.avatar, 1, size, margin=margin)
    R = torch.from_numpy(euler_xyz_matrix(rotations_deg).astype(np.float32))
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
    """Render the training set, run the face mesh on it and take the features.

    Returns {"features" [N,F] (NaN rows = no face), "weights" [N,K], "rotation" [N,3] deg,
    "neutral" [A,F] (each avatar's neutral face), "owner" [N] (avatar of each sample),
    "names" [K], "template" [478,3]} (the template from the default avatar, frontal, neutral).
    """
    from backend.avatar.params import random_params
    from backend.avatar.sample import sample_avatar
    from backend.face.landmarks import face_landmarks

    rng = np.random.default_rng(cfg.seed + seed_offset)
    base = Poser(sample_avatar(texture_size=256, with_track=False))
    img = render_batch(base, np.zeros((1, base.K), np.float32), np.zeros((1, 3)), cfg.size, 1.0)[0]
    lm0 = face_landmarks(img)
    if lm0 is None:
        raise Internal("The face mesh found no face on the sample avatar's frontal render; the capture "
                       "regressor cannot be trained.")
    names, template = base.names, ft.normalize_template(lm0)
    missing = np.full(ft.num_features(), np.nan, np.float32)

    def feats(img):
        lm = face_landmarks(img)
        return missing if lm is None else ft.features(lm, template, img)[0]

    out_lm, out_w, out_r, out_neutral, out_owner = [], [], [], [], []
    total = cfg.avatars * cfg.per_avatar
    done = 0
    for a in range(cfg.avatars):
        seed = 10_000 * (cfg.seed + seed_offset + 1) + a
        poser = Poser(sample_avatar(random_params(seed), texture_size=256, with_track=False))
        if poser.names != names:
            raise Internal("The sample avatars disagree on their ARKit blendshapes.")
        # one session per person (framing, lights, background), as in a video: the calibrated model
        # compares frames with a reference taken under the same light
        session = (rng.uniform(0.85, 1.4), random_lights(rng), tuple(rng.uniform(0.15, 0.85, 3)))
        # this person's neutral face: the calibration frame of the calibrated model
        nimg = render_batch(poser, np.zeros((1, len(names)), np.float32), np.zeros((1, 3)), cfg.size, *session)[0]
        out_neutral.append(feats(nimg))
        for b in range(0, cfg.per_avatar, 16):
            if is_cancelled and is_cancelled():
                raise Cancelled("Training the capture regressor was cancelled.")
            n = min(16, cfg.per_avatar - b)
            w = random_weights(rng, names, n, cfg.active)
            rot = np.stack([rng.uniform(-cfg.max_pitch, cfg.max_pitch, n), rng.uniform(-cfg.max_roll, cfg.max_roll, n),
                            rng.uniform(-cfg.max_yaw, cfg.max_yaw, n)], -1)
            imgs = render_batch(poser, w, rot, cfg.size, *session)
            for i in range(n):
                img = _jpeg(imgs[i], int(rng.integers(30, 90))) if rng.random() < 0.5 else imgs[i]
                out_lm.append(feats(img))
            out_w.append(w)
            out_owner.append(np.full(n, a))
            out_r.append(rot.astype(np.float32))
            done += n
            if progress:
                progress("capture_data", done, total)
    return {"features": np.stack(out_lm), "weights": np.concatenate(out_w), "rotation": np.concatenate(out_r),
            "neutral": np.stack(out_neutral), "owner": np.concatenate(out_owner), "names": names,
            "template": template}


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
    a reference of the same person (a neutral frame, or :func:`auto_neutral` over a
    video's frames): brow height and mouth shape vary between people as much as
    expressions move them.
    """

    names: list[str]
    template: np.ndarray          # [478,3]
    mean: np.ndarray              # [F]
    std: np.ndarray               # [F]
    model: MLP
    config: dict
    train_figures: dict
    calibrated: MLP | None = None
    cal_std: np.ndarray | None = None   # [F'] scale of the calibrated model's inputs (features.relative)

    def predict(self, feats: np.ndarray, neutral: np.ndarray | None = None) -> np.ndarray:
        """[N,F] (and optionally the person's reference features [F]: a neutral frame's or
        :func:`auto_neutral`'s) -> [N,K] float32 in [0,1]; with a reference, the calibrated model."""
        def run(m, x):
            with torch.no_grad():
                return m(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float32)

        if neutral is None or self.calibrated is None:
            return run(self.model, (feats - self.mean) / self.std)
        return run(self.calibrated, ft.relative(feats, neutral) / self.cal_std)


def _fit(X: np.ndarray, Y: np.ndarray, cfg: RegressorConfig, stage: str, progress=None) -> tuple[MLP, float]:
    """Adam on minibatches, cosine schedule, MSE then L1 (see the module docstring); X already
    standardized. -> (model, final-step L1 loss)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = MLP(X.shape[1], Y.shape[1], cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(Y.astype(np.float32))
    for step in range(cfg.steps):
        xb, yb = xt, yt
        if cfg.batch < len(xt):
            idx = torch.randint(0, len(xt), (cfg.batch,), generator=gen)
            xb, yb = xt[idx], yt[idx]
        err = model(xb) - yb
        loss = (err ** 2).mean() if step < cfg.steps // 3 else err.abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step % 100 == 0 or step == cfg.steps - 1):
            progress(stage, step + 1, cfg.steps, losses={"loss": float(loss.detach())})
    model.eval()
    return model, float(loss.detach())


def train(data: dict, cfg: RegressorConfig, progress=None) -> Regressor:
    """Fit both MLPs on :func:`synthesize` output (frames without a face are dropped)."""
    t0 = time.time()
    feats, nfeats = data["features"], data["neutral"]
    found, nfound = np.isfinite(feats).all(1), np.isfinite(nfeats).all(1)
    if found.sum() < 16:
        raise Internal(f"The face mesh found faces on only {int(found.sum())} of {len(found)} training renders.")
    X, Y = feats[found], data["weights"][found]
    # train in ARKit order whatever order the engine lists its blendshapes in
    names = [n for n in ARKIT_NAMES if n in data["names"]]
    Y = Y[:, [list(data["names"]).index(n) for n in names]]
    mean, std = X.mean(0), X.std(0) + 1e-4
    model, loss = _fit((X - mean) / std, Y, cfg, "capture_train", progress)
    # the calibrated model sees both references: each sample minus its avatar's neutral render
    # (a marked neutral frame) and minus auto_neutral over its avatar's renders (a video's estimate)
    owner, order = data["owner"], [list(data["names"]).index(n) for n in names]
    cal = found & nfound[owner]
    auto = np.zeros_like(nfeats)
    for a in np.unique(owner[found]):
        auto[a] = auto_neutral(feats[found & (owner == a)])
    Xc = np.concatenate([ft.relative(feats[cal], nfeats[owner[cal]]), ft.relative(feats[found], auto[owner[found]])])
    Yc = np.concatenate([data["weights"][cal], data["weights"][found]])[:, order]
    cal_std = Xc.std(0) + 1e-4
    calibrated, loss_c = _fit(Xc / cal_std, Yc, cfg, "capture_train_calibrated", progress)
    figs = {"frames": int(len(found)), "faces_found": int(found.sum()), "train_l1": round(loss, 4),
            "train_l1_calibrated": round(loss_c, 4), "fit_seconds": round(time.time() - t0, 1)}
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
        for key, n_in in (("state", len(d["mean"])), ("state_calibrated", len(d["cal_std"]))):
            m = MLP(n_in, len(d["names"]), d["config"]["hidden"])
            m.load_state_dict(d[key])
            models.append(m.eval())
        return Regressor(names=d["names"], template=d["template"], mean=d["mean"], std=d["std"], model=models[0],
                         config=d["config"], train_figures=d["train_figures"], calibrated=models[1],
                         cal_std=d["cal_std"])
    log.info("training the '%s' capture regressor (%d renders; cached afterwards at %s)", name,
             cfg.avatars * cfg.per_avatar, path)
    t0 = time.time()
    data = synthesize(cfg, progress=progress, is_cancelled=is_cancelled)
    t1 = time.time()
    reg = train(data, cfg, progress=progress)
    reg.train_figures.update(render_seconds=round(t1 - t0, 1), train_seconds=round(time.time() - t0, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"names": reg.names, "template": reg.template, "mean": reg.mean, "std": reg.std,
                "state": reg.model.state_dict(), "state_calibrated": reg.calibrated.state_dict(),
                "cal_std": reg.cal_std, "config": reg.config, "train_figures": reg.train_figures}, tmp)
    os.replace(tmp, path)
    return reg
