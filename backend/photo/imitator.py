"""The imitator: a network that predicts what the fit measures on a true render.

Input: the relaxed avatar vector [35] (AvatarParams.to_vector layout; one-hot blocks may be
soft) concatenated with ARKit expression weights [11]. Outputs (what MediaPipe and the photo
analysis see on the true frontal render, :mod:`backend.photo.synth`):
    landmarks [B,478,2]   MediaPipe face-mesh landmarks, in units of the render side (0..1, y down)
    seg       [B,C,S,S]   part logits (SEG_CLASSES, from the renderer's triangle ids), S = seg_size
    colors    [B,5,3]     median sRGB (0..1) of the skin, hair, lips, iris, brows regions

Trained self-supervised on random vectors rendered by the true engine; data shards and the
weights are cached under ``cache_dir("imitator")/<key>`` (key = engine version + config), written
atomically, resumable (finished shards and the last training checkpoint are kept).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend.avatar.params import VECTOR_SIZE, random_params
from backend.cache import cache_dir
from backend.face.regions import COLOR_REGIONS

from . import synth

log = logging.getLogger(__name__)

IMITATOR_VERSION = "1"
IN_SIZE = VECTOR_SIZE + synth.NUM_EXPR
SHARD = 16                                 # samples per data shard file
# The engine's version is a hash of what it produces (so refactors that keep the output keep the
# cache): sample avatars of these seeds, the fit's camera/render constants, and the source of the
# analysis functions that make the colour targets.
_VERSION_SEEDS = (1, 2)
_ENGINE_FUNCTIONS = ("region_masks", "region_colors", "polygon_mask", "_lab", "_disk")


@dataclass(frozen=True)
class ImitatorConfig:
    samples: int = 2000          # training renders
    holdout: int = 0             # extra renders kept out of training (benchmarks)
    width: int = 384             # MLP width
    seg_size: int = 32           # segmentation side (pixels; the render is 8x larger)
    steps: int = 2000            # optimizer steps
    batch: int = 64
    lr: float = 2e-3
    expr_fraction: float = 0.6   # share of samples with a random expression
    seed: int = 0
    linear_skip: bool = False    # a linear path input -> landmarks beside the MLP (few samples)


CONFIGS = {
    "default": ImitatorConfig(),
    # tests: trains in well under a minute on a loaded 2-core CPU; fidelity is coarse
    "test": ImitatorConfig(samples=64, width=128, seg_size=32, steps=300, batch=32, lr=3e-3, linear_skip=True),
}


@functools.lru_cache(maxsize=1)
def engine_version() -> str:
    import inspect

    from backend.avatar.sample import sample_avatar
    from backend.face import regions

    h = hashlib.sha256(IMITATOR_VERSION.encode())
    h.update(repr((synth.SEG_CLASSES, synth.RENDER_SIZE, synth.FRAME_CENTER, synth.FRAME_DISTANCE,
                   synth.BACKGROUND, synth.TRAIN_TEXTURE)).encode())
    for seed in _VERSION_SEEDS:
        av = sample_avatar(random_params(seed), texture_size=64, with_track=False)
        for arr in (av.vertices, av.faces, av.blendshapes, av.texture_sets[0].image):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(synth.face_classes(random_params(seed)).astype(np.int8).tobytes())
    for name in _ENGINE_FUNCTIONS:
        h.update(inspect.getsource(getattr(regions, name)).encode())
    return h.hexdigest()[:16]


def config_key(cfg: ImitatorConfig) -> str:
    blob = json.dumps({"engine": engine_version(), "cfg": asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- data
def make_sample(seed: int, cfg: ImitatorConfig) -> dict:
    """One training sample from the true engine (arrays, see the module docstring)."""
    from backend.face import analysis

    rng = np.random.default_rng([cfg.seed, seed, 7])
    P = random_params(int(rng.integers(0, 2 ** 31 - 1)))
    expr = synth.random_expression(rng) if rng.random() < cfg.expr_fraction else np.zeros(synth.NUM_EXPR, np.float32)
    r = synth.render_avatar(P, expr)
    size = r["image"].shape[0]
    a = analysis.analyze_render(r["image"])
    lm = np.zeros((478, 2), np.float32) if a is None else a.landmarks[:, :2] / size
    cols = np.zeros((len(COLOR_REGIONS), 3), np.float32)
    cvalid = np.zeros(len(COLOR_REGIONS), np.float32)
    if a is not None:
        for i, k in enumerate(COLOR_REGIONS):
            if a.colors[k] is not None:
                cols[i], cvalid[i] = a.colors[k], 1.0
    k = size // cfg.seg_size
    onehot = np.eye(len(synth.SEG_CLASSES), dtype=np.float32)[r["classes"]]
    seg = onehot.reshape(cfg.seg_size, k, cfg.seg_size, k, -1).mean((1, 3))           # soft labels [S,S,C]
    return {"x": np.concatenate([P.to_vector(), expr]).astype(np.float32), "lm": lm.astype(np.float32),
            "lm_valid": np.float32(a is not None), "seg": seg.astype(np.float16), "colors": cols,
            "colors_valid": cvalid}


def _atomic_save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def build_data(cfg: ImitatorConfig, folder: Path, progress=None, is_cancelled=None) -> dict:
    """Render (or reuse) all shards; returns the stacked training and holdout arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    total = cfg.samples + cfg.holdout
    n_shards = -(-total // SHARD)
    parts = []
    t0 = time.time()
    for s in range(n_shards):
        path = folder / f"data_{s:05d}.npz"
        if not path.exists():
            if is_cancelled and is_cancelled():
                from shared.errors import Cancelled
                raise Cancelled("Imitator training was cancelled; finished data is kept and reused.")
            samples = [make_sample(i, cfg) for i in range(s * SHARD, min(total, (s + 1) * SHARD))]
            _atomic_save_npz(path, **{k: np.stack([d[k] for d in samples]) for k in samples[0]})
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
        if progress:
            progress("imitator_data", min(total, (s + 1) * SHARD), total, {"seconds": time.time() - t0})
    data = {k: np.concatenate([p[k] for p in parts])[:total] for k in parts[0]}
    train = {k: v[:cfg.samples] for k, v in data.items()}
    hold = {k: v[cfg.samples:] for k, v in data.items()}
    return {"train": train, "holdout": hold}


# --------------------------------------------------------------------------- network
def build_network(cfg: ImitatorConfig, mean_lm: np.ndarray):
    import torch  # heavy: only the photo fit needs it
    from torch import nn

    class Imitator(nn.Module):
        def __init__(self):
            super().__init__()
            w = cfg.width
            self.trunk = nn.Sequential(nn.Linear(IN_SIZE, w), nn.SiLU(), nn.Linear(w, w), nn.SiLU(),
                                       nn.Linear(w, w), nn.SiLU())
            self.lm = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, 478 * 2))
            self.colors = nn.Linear(w, len(COLOR_REGIONS) * 3)
            s0 = cfg.seg_size // 8
            self.s0 = s0
            self.seg_in = nn.Linear(w, 64 * s0 * s0)
            self.seg = nn.Sequential(
                nn.ConvTranspose2d(64, 48, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(48, 32, 4, 2, 1), nn.SiLU(),
                nn.ConvTranspose2d(32, 24, 4, 2, 1), nn.SiLU(), nn.Conv2d(24, len(synth.SEG_CLASSES), 3, 1, 1))
            self.skip = nn.Linear(IN_SIZE, 478 * 2) if cfg.linear_skip else None
            self.register_buffer("mean_lm", torch.as_tensor(mean_lm, dtype=torch.float32))

        def forward(self, x):
            h = self.trunk(x)
            d = self.lm(h) if self.skip is None else self.lm(h) + self.skip(x)
            lm = self.mean_lm + 0.05 * d.view(-1, 478, 2)
            seg = self.seg(self.seg_in(h).view(-1, 64, self.s0, self.s0))
            col = torch.sigmoid(self.colors(h)).view(-1, len(COLOR_REGIONS), 3)
            return {"landmarks": lm, "seg": seg, "colors": col}

    return Imitator()


def losses(out: dict, batch: dict) -> dict:
    import torch

    lv = batch["lm_valid"]
    lm = ((out["landmarks"] - batch["lm"]).norm(dim=-1).mean(-1) * lv).sum() / lv.sum().clamp(min=1)
    logp = torch.log_softmax(out["seg"], 1)
    seg = -(batch["seg"].permute(0, 3, 1, 2) * logp).sum(1).mean()
    cv = batch["colors_valid"]
    col = ((out["colors"] - batch["colors"]).abs().mean(-1) * cv).sum() / cv.sum().clamp(min=1)
    return {"landmarks": lm, "seg": seg, "colors": col, "total": 40.0 * lm + seg + 2.0 * col}


def train(cfg: ImitatorConfig, data: dict, folder: Path, progress=None, is_cancelled=None):
    """Train (resuming from ``folder/ckpt.pt``); returns the network in eval mode."""
    import torch

    torch.manual_seed(cfg.seed)
    d = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in data.items()}
    valid = d["lm_valid"] > 0
    mean_lm = d["lm"][valid].mean(0).numpy() if valid.any() else np.full((478, 2), 0.5, np.float32)
    net = build_network(cfg, mean_lm)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    step = 0
    ck = folder / "ckpt.pt"
    if ck.exists():
        st = torch.load(ck, map_location="cpu", weights_only=True)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step = int(st["step"])
        log.info("imitator: resuming training at step %d/%d", step, cfg.steps)
    n = len(d["x"])
    g = torch.Generator().manual_seed(cfg.seed + step)
    t0 = time.time()
    net.train()
    while step < cfg.steps:
        idx = torch.randint(0, n, (min(cfg.batch, n),), generator=g)
        batch = {k: v[idx] for k, v in d.items()}
        out = net(batch["x"])
        L = losses(out, batch)
        opt.zero_grad()
        L["total"].backward()
        opt.step()
        sched.step()
        step += 1
        if progress and (step % 50 == 0 or step == cfg.steps):
            progress("imitator_train", step, cfg.steps, {k: float(v.detach()) for k, v in L.items()})
        if step % 500 == 0 or step == cfg.steps:
            _atomic_torch_save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                "step": step}, ck)
        if is_cancelled and is_cancelled():
            from shared.errors import Cancelled
            _atomic_torch_save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                "step": step}, ck)
            raise Cancelled("Imitator training was cancelled; it resumes from here next time.")
    net.eval()
    log.info("imitator: trained %d steps in %.1f s", cfg.steps, time.time() - t0)
    return net, mean_lm


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


_LOADED: dict = {}


def load_imitator(config: str | ImitatorConfig = "default", cache_root=None, progress=None, is_cancelled=None):
    """The trained imitator for ``config`` (name in :data:`CONFIGS` or a config), training it first
    when the cache has none. Kept per process. Returns (net, info) with info {"config", "key",
    "trained_seconds", "folder"}."""
    import torch

    cfg = CONFIGS[config] if isinstance(config, str) else config
    key = config_key(cfg)
    folder = cache_dir("imitator", cache_root) / key
    mem_key = (str(folder), key)
    if mem_key in _LOADED:
        return _LOADED[mem_key]
    final = folder / "imitator.pt"
    if final.exists():
        st = torch.load(final, map_location="cpu", weights_only=False)
        net = build_network(cfg, st["mean_lm"])
        net.load_state_dict(st["net"])
        net.eval()
        info = st["info"]
    else:
        t0 = time.time()
        data = build_data(cfg, folder, progress, is_cancelled)
        t1 = time.time()
        net, mean_lm = train(cfg, data["train"], folder, progress, is_cancelled)
        info = {"config": config if isinstance(config, str) else "custom", "key": key,
                "data_seconds": round(t1 - t0, 1), "train_seconds": round(time.time() - t1, 1),
                "trained_seconds": round(time.time() - t0, 1), "samples": cfg.samples, "cfg": asdict(cfg)}
        _atomic_torch_save({"net": net.state_dict(), "mean_lm": mean_lm, "info": info}, final)
    info = dict(info, folder=str(folder))
    for p in net.parameters():
        p.requires_grad_(False)
    _LOADED[mem_key] = (net, info)
    return net, info
