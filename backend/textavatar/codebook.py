"""The shape codebook: a few hundred sample avatars, each rendered from the default rig
with plain grey shading and with its texture, embedded by the guidance model (mean over
several views). Built lazily with progress, cached per guidance model, avatar-engine
version and codebook settings under ``backend.cache.cache_dir("textavatar")``, reused.

    cb = load_or_build(guidance, CodebookConfig(), cache_root=None, progress=...)
    cb.grey [N,D], cb.color [N,D]     unit image embeddings of the entries
    cb.vectors [N,VECTOR_SIZE]        their parameter vectors (backend.avatar.params layout)
    cb.anchor_grey, cb.anchor_color   [D] embeddings of the anchor (the average avatar)
    cb.anchor_text                    [D] embedding of the anchor's description (NEUTRAL_PROMPT)

Every entry is rendered from the *anchor's* rig (the same cameras for all), because a rig
framed on each avatar would scale every head to the same size and hide its width.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.errors import CacheUnavailable, Cancelled
from shared.text_avatar import (DEFAULT_CODEBOOK_ENTRIES, DEFAULT_CODEBOOK_RENDER_SIZE, DEFAULT_CODEBOOK_SAMPLES,
                                NEUTRAL_PROMPT, AvatarFromTextRequest)

from backend.avatar.fingerprint import engine_fingerprint
from backend.avatar.params import AvatarParams
from backend.avatar.sample import sample_avatar
from backend.cache import cache_dir

from . import sampling, views

log = logging.getLogger(__name__)

CODEBOOK_VERSION = "2"      # bump when the rendering or embedding below changes
RENDER_TEXTURE_SIZE = 256   # albedo painted for codebook renders (CLIP sees 224 px)
ENTRIES_PER_BATCH = 8       # avatars rendered and embedded together
CACHE_KIND = "textavatar"


@dataclass(frozen=True)
class CodebookConfig:
    entries: int = DEFAULT_CODEBOOK_ENTRIES
    samples: int = DEFAULT_CODEBOOK_SAMPLES
    render_size: int = DEFAULT_CODEBOOK_RENDER_SIZE
    views: tuple = views.CODEBOOK_VIEWS
    seed: int = 0

    @classmethod
    def from_request(cls, req: AvatarFromTextRequest) -> "CodebookConfig":
        return cls(entries=int(req.codebook_entries), samples=int(req.codebook_samples),
                   render_size=int(req.codebook_render_size))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["views"] = list(self.views)
        return d


@dataclass
class Codebook:
    vectors: np.ndarray        # [N,VECTOR_SIZE] float32
    grey: np.ndarray           # [N,D] float32 unit embeddings of grey renders
    color: np.ndarray          # [N,D] float32 unit embeddings of textured renders
    anchor_vector: np.ndarray  # [VECTOR_SIZE]
    anchor_grey: np.ndarray    # [D]
    anchor_color: np.ndarray   # [D]
    anchor_text: np.ndarray    # [D] the neutral description, encoded once with the codebook
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.vectors)

    def params(self, i: int) -> AvatarParams:
        return AvatarParams.from_vector(self.vectors[i])


_lock = threading.Lock()
_memo: dict[str, Codebook] = {}


def engine_version() -> str:
    """The sample avatar engine's fingerprint (:func:`backend.avatar.fingerprint.engine_fingerprint`):
    a stale codebook is never reused."""
    return engine_fingerprint()


def codebook_key(guidance_name: str, cfg: CodebookConfig) -> str:
    blob = json.dumps([CODEBOOK_VERSION, guidance_name, engine_version(), cfg.to_dict(), RENDER_TEXTURE_SIZE])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def codebook_path(cache_root, guidance_name: str, cfg: CodebookConfig) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in guidance_name)[:60]
    return cache_dir(CACHE_KIND, cache_root) / f"codebook-{slug}-{codebook_key(guidance_name, cfg)}.npz"


def entry_avatar(vector, texture_size: int = RENDER_TEXTURE_SIZE, with_track: bool = False):
    """The sample avatar of a parameter vector ``[VECTOR_SIZE]``."""
    return sample_avatar(AvatarParams.from_vector(vector), texture_size=texture_size, with_track=with_track)


def anchor_cameras(cfg: CodebookConfig):
    """The cameras every entry is rendered from: the chosen views of the anchor's rig."""
    rig = views.rig(entry_avatar(sampling.anchor_vector()), cfg.render_size)
    return [rig[i] for i in cfg.views]


def render_entries(avatars, cameras, size: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Grey and textured renders over white, ``[n*V,size,size,3]`` each (avatar-major)."""
    greys, colors = [], []
    for av in avatars:
        out = views.render_avatar(av, cameras, size, passes=("grey", "color"), device=device)
        greys.append(out["grey"])
        colors.append(out["color"])
    return torch.cat(greys), torch.cat(colors)


@torch.no_grad()
def embed_avatars(guidance, avatars, cameras, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit image embeddings ``[n,D]`` (grey, colour) of ``avatars``: the normalized mean
    over the views of the per-view embeddings."""
    grey, color = render_entries(avatars, cameras, size, device=guidance.device)
    n, v = len(avatars), len(cameras)
    eg = F.normalize(guidance.encode_image(grey).float().reshape(n, v, -1).mean(1), dim=-1)
    ec = F.normalize(guidance.encode_image(color).float().reshape(n, v, -1).mean(1), dim=-1)
    return eg.cpu().numpy().astype(np.float32), ec.cpu().numpy().astype(np.float32)


def build(guidance, cfg: CodebookConfig, progress=None, is_cancelled=None) -> Codebook:
    """Sample, cluster, render and embed (see the module docstring).
    ``progress(stage, step, total)``; ``is_cancelled()`` checked per batch."""
    t0 = time.time()
    vectors, info = sampling.codebook_vectors(cfg.entries, cfg.samples, cfg.seed)
    cams = anchor_cameras(cfg)
    ag, ac = embed_avatars(guidance, [entry_avatar(sampling.anchor_vector())], cams, cfg.render_size)
    grey, color = [], []
    n = len(vectors)
    for s in range(0, n, ENTRIES_PER_BATCH):
        if is_cancelled and is_cancelled():
            raise Cancelled("Building the avatar codebook was cancelled.")
        avs = [entry_avatar(v) for v in vectors[s:s + ENTRIES_PER_BATCH]]
        g, c = embed_avatars(guidance, avs, cams, cfg.render_size)
        grey.append(g)
        color.append(c)
        if progress:
            progress("codebook", min(s + ENTRIES_PER_BATCH, n), n)
    info.update({"config": cfg.to_dict(), "guidance": guidance.name, "engine_version": engine_version(),
                 "key": codebook_key(guidance.name, cfg), "build_seconds": time.time() - t0,
                 "guidance_is_test_model": bool(guidance.is_test_model)})
    log.info("built a %d-entry avatar codebook for %s in %.1f s", n, guidance.name, info["build_seconds"])
    at = guidance.encode_text([NEUTRAL_PROMPT]).detach().float().cpu().numpy()[0]
    return Codebook(vectors=vectors, grey=np.concatenate(grey), color=np.concatenate(color),
                    anchor_vector=sampling.anchor_vector(), anchor_grey=ag[0], anchor_color=ac[0], anchor_text=at,
                    info=info)


def save(cb: Codebook, path: Path) -> None:
    """Atomically (tmp + rename) write ``cb`` to ``path`` (.npz)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, vectors=cb.vectors, grey=cb.grey, color=cb.color, anchor_vector=cb.anchor_vector,
                     anchor_grey=cb.anchor_grey, anchor_color=cb.anchor_color, anchor_text=cb.anchor_text,
                     info=np.asarray(json.dumps(cb.info)))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CacheUnavailable(f"Cannot write the avatar codebook to {path.parent} ({e.strerror}): make the "
                               f"cache folder writable or choose another with --cache-dir.",
                               details={"path": str(path.parent)}) from None


def load(path: Path) -> Codebook | None:
    """The codebook stored at ``path``, or None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Codebook(vectors=z["vectors"], grey=z["grey"], color=z["color"], anchor_vector=z["anchor_vector"],
                            anchor_grey=z["anchor_grey"], anchor_color=z["anchor_color"],
                            anchor_text=z["anchor_text"], info=json.loads(str(z["info"])))
    except (OSError, KeyError, ValueError) as e:
        if path.exists():
            log.warning("ignoring an unreadable codebook cache %s: %s", path, e)
        return None


def load_or_build(guidance, cfg: CodebookConfig | None = None, cache_root=None, progress=None,
                  is_cancelled=None) -> tuple[Codebook, bool]:
    """(codebook, built_now). Looked up in this process, then in the cache folder, else
    built (with progress) and cached."""
    cfg = cfg or CodebookConfig()
    path = codebook_path(cache_root, guidance.name, cfg)
    key = str(path)
    with _lock:
        if key in _memo:
            return _memo[key], False
    cb = load(path)
    built = cb is None or cb.info.get("key") != codebook_key(guidance.name, cfg)
    if built:
        cb = build(guidance, cfg, progress, is_cancelled)
        save(cb, path)
    with _lock:
        _memo[key] = cb
    return cb, built
