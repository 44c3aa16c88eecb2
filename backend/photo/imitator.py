"""The imitator: a network that predicts what the fit measures on a true render.

Input: the relaxed avatar vector [35] (AvatarParams.to_vector layout; one-hot blocks may be
soft) concatenated with ARKit expression weights [11]. Outputs (what MediaPipe and the photo
analysis see on the true frontal render, :mod:`backend.photo.synth`):
    landmarks [B,478,2]   MediaPipe face-mesh landmarks, in units of the render side (0..1, y down)
    seg       [B,C,S,S]   part logits (SEG_CLASSES, from the renderer's triangle ids), S = seg_size
                          (32 or 64); the data keeps soft labels at LABEL_SIZE, pooled to S
    colors    [B,5,3]     median sRGB (0..1) of the skin, hair, lips, iris, brows regions

Trained self-supervised on random vectors rendered by the true engine. Two caches, both under
``cache_dir("imitator")``, written atomically and resumable:
    data/<data_key>/data_NNNNN.npz   rendered shards of SHARD samples; the key is the engine
        version + the fields that change a sample (:data:`DATA_FIELDS`); sample i is the same for
        any sample count, so configs that differ in counts or training settings share the shards
    <config_key>/ckpt.pt, imitator.pt   the weights; the key is the engine + the whole config
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

DATA_VERSION = "2"                         # bump when make_sample's output changes (re-renders)
IMITATOR_VERSION = "2"                     # bump when the network or its training changes (retrains)
LABEL_SIZE = 64                            # side of the stored soft part labels (the render is 4x larger)
IN_SIZE = VECTOR_SIZE + synth.NUM_EXPR
SHARD = 16                                 # samples per data shard file
DATA_FIELDS = ("expr_fraction", "seed")   # the config fields make_sample reads
MIN_PARALLEL_SHARDS = 8                    # fewer missing shards render in-process (a worker starts in ~3 s)
# The engine's version is a hash of what it produces (so refactors that keep the output keep the
# cache): the avatar engine's fingerprint and its avatars' part labels, the fit's camera/render
# constants, and the source of the analysis functions that make the colour targets.
_ENGINE_FUNCTIONS = ("region_masks", "region_colors", "polygon_mask", "_lab", "_disk")


@dataclass(frozen=True)
class ImitatorConfig:
    samples: int = 2000          # training renders
    holdout: int = 0             # extra renders kept out of training (benchmarks)
    width: int = 384             # MLP width
    seg_size: int = 32           # segmentation output side (pixels; divides LABEL_SIZE, >= 8)
    seg_channels: int = 64       # decoder width at 4x4; the upsampling stages: 3/4 of it, then halving (>= 16)
    # weight of a soft Dice loss beside cross-entropy. Off: on soft (area share) labels it inflates
    # thin parts beyond their share and their argmax spills into the skin (a run with 0.5 and a
    # wider decoder: part mIoU 0.67 on 200 held-out vectors, where the previous network had 0.77)
    dice: float = 0.0
    steps: int = 3000            # optimizer steps
    batch: int = 64
    lr: float = 2e-3
    expr_fraction: float = 0.6   # share of samples with a random expression
    seed: int = 0
    linear_skip: bool = False    # a linear path input -> landmarks beside the MLP (few samples)


CONFIGS = {
    "default": ImitatorConfig(),
    # tests: trains in well under a minute on a loaded 2-core CPU; fidelity is coarse
    "test": ImitatorConfig(samples=64, width=128, seg_size=32, seg_channels=64, steps=300, batch=32, lr=3e-3,
                           linear_skip=True),
}


@functools.lru_cache(maxsize=1)
def engine_version() -> str:
    import inspect

    from backend.avatar.fingerprint import engine_fingerprint, fingerprint_params
    from backend.face import regions

    h = hashlib.sha256(DATA_VERSION.encode())
    h.update(engine_fingerprint().encode())
    h.update(repr((synth.SEG_CLASSES, synth.RENDER_SIZE, synth.FRAME_CENTER, synth.FRAME_DISTANCE,
                   synth.BACKGROUND, synth.TRAIN_TEXTURE)).encode())
    for p in fingerprint_params():
        h.update(synth.face_classes(p).astype(np.int8).tobytes())
    for name in _ENGINE_FUNCTIONS:
        h.update(inspect.getsource(getattr(regions, name)).encode())
    return h.hexdigest()[:16]


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def data_key(cfg: ImitatorConfig) -> str:
    """Key of the rendered data: the engine version and the config fields a sample depends on."""
    return _key({"engine": engine_version(), "data": {f: getattr(cfg, f) for f in DATA_FIELDS}})


def config_key(cfg: ImitatorConfig) -> str:
    """Key of the trained weights: the engine version, the network version and the whole config."""
    return _key({"engine": engine_version(), "net": IMITATOR_VERSION, "cfg": asdict(cfg)})


def data_dir(cfg: ImitatorConfig, cache_root=None) -> Path:
    return cache_dir("imitator", cache_root) / "data" / data_key(cfg)


# --------------------------------------------------------------------------- data
def make_sample(seed: int, cfg: ImitatorConfig) -> dict:
    """One training sample from the true engine (arrays, see the module docstring)."""
    from backend.face import analysis

    rng = np.random.default_rng([cfg.seed, seed, 7])
    P = random_params(int(rng.integers(0, 2 ** 31 - 1)))
    expr = synth.random_expression(rng) if rng.random() < cfg.expr_fraction else np.zeros(synth.NUM_EXPR, np.float32)
    # one fixed look (synth's grey light and background), not backend.render.looks: an imitator
    # trained on random looks (tried: 2000 renders) learnt noisier targets (held-out landmark
    # error 0.0226 against 0.0155 IOD) and fitted photos of random looks no better (shape
    # error 0.277 against 0.270 on 30 synthetic targets)
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
    onehot = np.eye(len(synth.SEG_CLASSES), dtype=np.float32)[r["classes"]]
    seg = pool_labels(onehot, LABEL_SIZE)                                  # soft labels [L,L,C]
    return {"x": np.concatenate([P.to_vector(), expr]).astype(np.float32), "lm": lm.astype(np.float32),
            "lm_valid": np.float32(a is not None), "seg": seg.astype(np.float16), "colors": cols,
            "colors_valid": cvalid}


def pool_labels(seg: np.ndarray, size: int) -> np.ndarray:
    """Soft labels [..., H, W, C] (area shares) averaged down to [..., size, size, C]."""
    h = seg.shape[-3]
    k = h // size
    if k * size != h:
        raise ValueError(f"segmentation size {size} must divide {h}")
    seg = np.asarray(seg, np.float32)
    return seg.reshape(*seg.shape[:-3], size, k, size, k, seg.shape[-1]).mean((-4, -2))


def _atomic_save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _shard_path(folder: Path, s: int) -> Path:
    return folder / f"data_{s:05d}.npz"


def _load_shard(path: Path) -> dict | None:
    """The shard's arrays, or None when missing or partial (an older layout: rendered again)."""
    if not path.exists():
        return None
    with np.load(path) as f:
        z = {k: f[k] for k in f.files}
    return z if len(z["x"]) >= SHARD else None


def render_shard(cfg: ImitatorConfig, s: int, folder: Path, first: int = 0) -> None:
    """Render shard ``s`` (sample seeds first + s*SHARD ..) into ``folder``, atomically."""
    samples = [make_sample(first + i, cfg) for i in range(s * SHARD, (s + 1) * SHARD)]
    _atomic_save_npz(_shard_path(folder, s), **{k: np.stack([d[k] for d in samples]) for k in samples[0]})


def _cancelled():
    from shared.errors import Cancelled
    return Cancelled("Imitator training was cancelled; finished data is kept and reused.")


def _render_in_workers(cfg: ImitatorConfig, shards: list, folder: Path, first: int, workers: int, report,
                       is_cancelled) -> None:
    """Render ``shards`` in ``workers`` child processes (``python -m backend.photo.imitator JOB``),
    one thread each; shards they leave missing (a crashed worker) are rendered here afterwards."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(paths))
    procs = []
    try:
        for w in range(workers):
            job = json.dumps({"cfg": asdict(cfg), "shards": shards[w::workers], "folder": str(folder), "first": first})
            with open(folder / f"worker{w}.log", "wb") as logf:   # MediaPipe's chatter, and any traceback
                procs.append(subprocess.Popen([sys.executable, "-m", "backend.photo.imitator", job], env=env,
                                              stdout=logf, stderr=subprocess.STDOUT, cwd=root))
        done = 0
        while done < len(shards) and any(p.poll() is None for p in procs):
            time.sleep(0.5)
            now = sum(_shard_path(folder, s).exists() for s in shards)
            if now != done:
                done = now
                report(done)
            if is_cancelled and is_cancelled():
                raise _cancelled()
        for p in procs:             # all shards are written: give the workers a moment to exit cleanly
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    for w, p in enumerate(procs):
        if p.returncode == 0:
            (folder / f"worker{w}.log").unlink(missing_ok=True)
        else:
            log.warning("imitator: data worker %d exited with %s; see %s", w, p.returncode, folder / f"worker{w}.log")


def build_data(cfg: ImitatorConfig, folder: Path, progress=None, is_cancelled=None, workers: int | None = None,
               first: int = 0) -> dict:
    """Render (or reuse) the shards in ``folder`` (:func:`data_dir`); returns the stacked training
    (samples 0..samples-1) and holdout (the next ``holdout``) arrays. Shards are always full
    (SHARD samples), so a larger config extends the same sequence. Missing shards render in
    ``workers`` processes (default: one per CPU core when there are enough to pay for the start).
    ``first`` offsets the sample seeds (benchmarks keep their held-out renders in another folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    total = cfg.samples + cfg.holdout
    n_shards = -(-total // SHARD)
    missing = [s for s in range(n_shards) if _load_shard(_shard_path(folder, s)) is None]
    workers = workers or ((os.cpu_count() or 1) if len(missing) >= MIN_PARALLEL_SHARDS else 1)
    t0 = time.time()

    def report(done):
        if progress:
            progress("imitator_data", min(total, (n_shards - len(missing) + done) * SHARD), total,
                     {"seconds": time.time() - t0})

    if workers > 1 and len(missing) > 1:
        _render_in_workers(cfg, missing, folder, first, min(workers, len(missing)), report, is_cancelled)
    for s in missing:
        if not _shard_path(folder, s).exists():
            if is_cancelled and is_cancelled():
                raise _cancelled()
            render_shard(cfg, s, folder, first)
            report(sum(_shard_path(folder, m).exists() for m in missing))
    parts = [_load_shard(_shard_path(folder, s)) for s in range(n_shards)]
    report(len(missing))
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
            # parts: a 4x4 feature map, doubled by transposed convolutions up to seg_size, then two 3x3
            # convolutions (the last gives the logits); widths seg_channels, 3/4 of it, then halving
            self.c0 = cfg.seg_channels
            self.seg_in = nn.Linear(w, self.c0 * 16)
            layers, cin = [], self.c0
            for k in range(int(np.log2(cfg.seg_size // 4))):
                cout = max(16, cfg.seg_channels * 3 // 2 ** (k + 2))
                layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.SiLU()]
                cin = cout
            self.seg = nn.Sequential(*layers, nn.Conv2d(cin, cin, 3, 1, 1), nn.SiLU(),
                                     nn.Conv2d(cin, len(synth.SEG_CLASSES), 3, 1, 1))
            self.skip = nn.Linear(IN_SIZE, 478 * 2) if cfg.linear_skip else None
            self.register_buffer("mean_lm", torch.as_tensor(mean_lm, dtype=torch.float32))

        def forward(self, x):
            h = self.trunk(x)
            d = self.lm(h) if self.skip is None else self.lm(h) + self.skip(x)
            lm = self.mean_lm + 0.05 * d.view(-1, 478, 2)
            seg = self.seg(self.seg_in(h).view(-1, self.c0, 4, 4))
            col = torch.sigmoid(self.colors(h)).view(-1, len(COLOR_REGIONS), 3)
            return {"landmarks": lm, "seg": seg, "colors": col}

    return Imitator()


def losses(out: dict, batch: dict, dice_weight: float = 0.0) -> dict:
    """Training losses (scalars); batch["seg"] [B,S,S,C] soft labels at the output's size."""
    import torch

    lv = batch["lm_valid"]
    lm = ((out["landmarks"] - batch["lm"]).norm(dim=-1).mean(-1) * lv).sum() / lv.sum().clamp(min=1)
    logp = torch.log_softmax(out["seg"], 1)
    q = batch["seg"].permute(0, 3, 1, 2)
    seg = -(q * logp).sum(1).mean()      # soft-label cross-entropy: calibrated shares, so argmax is right
    cv = batch["colors_valid"]
    col = ((out["colors"] - batch["colors"]).abs().mean(-1) * cv).sum() / cv.sum().clamp(min=1)
    L = {"landmarks": lm, "seg": seg, "colors": col, "total": 40.0 * lm + seg + 2.0 * col}
    if dice_weight:
        # soft Dice per sample and class (1 px smoothing: a class absent from both maps costs nothing)
        p = logp.exp()
        L["dice"] = (1 - (2 * (p * q).sum((2, 3)) + 1) / ((p + q).sum((2, 3)) + 1)).mean()
        L["total"] = L["total"] + dice_weight * L["dice"]
    return L


def train(cfg: ImitatorConfig, data: dict, folder: Path, progress=None, is_cancelled=None):
    """Train (resuming from ``folder/ckpt.pt``); returns the network in eval mode."""
    import torch

    torch.manual_seed(cfg.seed)
    data = dict(data, seg=pool_labels(data["seg"], cfg.seg_size))
    d = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in data.items()}
    valid = d["lm_valid"] > 0
    mean_lm = d["lm"][valid].mean(0).numpy() if valid.any() else np.full((478, 2), 0.5, np.float32)
    net = build_network(cfg, mean_lm)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    step = 0
    folder.mkdir(parents=True, exist_ok=True)
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
    # denormal floats (tiny SiLU tails and gradients) made CPU steps 4-5x slower once training got
    # going (measured 0.19 -> 0.05 CPU s/step at 32 px, 1.17 -> 0.22 at 64 px); flush them to zero
    ftz = torch.set_flush_denormal(True)
    try:
        step = _train_loop(cfg, net, opt, sched, d, n, g, step, ck, progress, is_cancelled)
    finally:
        if ftz:
            torch.set_flush_denormal(False)
    net.eval()
    log.info("imitator: trained %d steps in %.1f s", cfg.steps, time.time() - t0)
    return net, mean_lm


def _train_loop(cfg, net, opt, sched, d, n, g, step, ck, progress, is_cancelled) -> int:
    """The optimizer steps of :func:`train` from ``step``; returns the last step."""
    import torch

    while step < cfg.steps:
        idx = torch.randint(0, n, (min(cfg.batch, n),), generator=g)
        batch = {k: v[idx] for k, v in d.items()}
        out = net(batch["x"])
        L = losses(out, batch, cfg.dice)
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
    return step


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


_LOADED: dict = {}


def load_imitator(config: str | ImitatorConfig = "default", cache_root=None, progress=None, is_cancelled=None):
    """The trained imitator for ``config`` (name in :data:`CONFIGS` or a config), training it first
    when the cache has none (rendering only the data shards :func:`data_dir` lacks). Kept per
    process. Returns (net, info) with info {"config", "key", "data_key", "data_seconds",
    "train_seconds", "trained_seconds", "samples", "cfg", "folder" (the weights folder)}."""
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
        data = build_data(cfg, data_dir(cfg, cache_root), progress, is_cancelled)
        t1 = time.time()
        net, mean_lm = train(cfg, data["train"], folder, progress, is_cancelled)
        info = {"key": key, "data_key": data_key(cfg),
                "data_seconds": round(t1 - t0, 1), "train_seconds": round(time.time() - t1, 1),
                "trained_seconds": round(time.time() - t0, 1), "samples": cfg.samples, "cfg": asdict(cfg)}
        _atomic_torch_save({"net": net.state_dict(), "mean_lm": mean_lm, "info": info}, final)
    # named at load, not at training: weights trained through an equal config object (the
    # benchmark's) are the named config's weights
    name = config if isinstance(config, str) else next((n for n, c in CONFIGS.items() if c == cfg), "custom")
    info = dict(info, config=name, folder=str(folder))
    for p in net.parameters():
        p.requires_grad_(False)
    _LOADED[mem_key] = (net, info)
    return net, info


if __name__ == "__main__":   # a data worker of _render_in_workers: JOB = {"cfg", "shards", "folder", "first"}
    import sys

    import torch

    torch.set_num_threads(1)
    _job = json.loads(sys.argv[1])
    for _s in _job["shards"]:
        render_shard(ImitatorConfig(**_job["cfg"]), _s, Path(_job["folder"]), _job["first"])
