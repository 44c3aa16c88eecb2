"""The expression codebook: sparse ARKit weight vectors, embedded by the guidance model,
and the CLIP-guided choice of candidate expressions for a motion text.

Entries (over the avatar's ARKit names, see :class:`backend.expression.posing.Poser`):
every single blendshape and every symmetric Left/Right pair at a few intensities,
plus common combinations (smile + eye squint, jaw open + brows up, ...) restricted
to the blendshapes the avatar has. Each entry is rendered from a few frontal
views and embedded; the embeddings are cached per avatar content hash, guidance
model and codebook version under ``cache_dir("expression")``.

Scoring follows the published shape query: directions relative to an anchor,
``cos(f_I(entry) - f_I(neutral face), f_T(text) - f_T(neutral text))``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared import expression as X
from shared.arkit import symmetric_pairs

from .posing import dense

log = logging.getLogger(__name__)

CODEBOOK_VERSION = "1"
INTENSITIES = (1.0, 0.7, 0.4)    # strongest first: with 1 level only full strength is used
COMBO_INTENSITIES = (1.0, 0.6)
EMBED_BATCH = 8

# Common combinations, by what they look like. Terms the avatar lacks are dropped;
# a combination left with fewer than two blendshapes is skipped.
COMBINATIONS: dict[str, dict[str, float]] = {
    "smile": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 0.6, "cheekSquintRight": 0.6,
              "eyeSquintLeft": 0.4, "eyeSquintRight": 0.4},
    "laugh": {"jawOpen": 0.6, "mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 0.7,
              "cheekSquintRight": 0.7, "eyeSquintLeft": 0.6, "eyeSquintRight": 0.6},
    "surprise": {"jawOpen": 0.6, "browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0,
                 "eyeWideLeft": 0.8, "eyeWideRight": 0.8},
    "anger": {"browDownLeft": 1.0, "browDownRight": 1.0, "noseSneerLeft": 0.5, "noseSneerRight": 0.5,
              "mouthPressLeft": 0.5, "mouthPressRight": 0.5, "jawForward": 0.2},
    "sadness": {"browInnerUp": 0.8, "mouthFrownLeft": 0.8, "mouthFrownRight": 0.8, "mouthShrugLower": 0.3,
                "eyeSquintLeft": 0.2, "eyeSquintRight": 0.2},
    "disgust": {"noseSneerLeft": 1.0, "noseSneerRight": 1.0, "mouthUpperUpLeft": 0.6, "mouthUpperUpRight": 0.6,
                "browDownLeft": 0.4, "browDownRight": 0.4},
    "fear": {"browInnerUp": 1.0, "eyeWideLeft": 1.0, "eyeWideRight": 1.0, "mouthStretchLeft": 0.6,
             "mouthStretchRight": 0.6, "jawOpen": 0.2},
    "shout": {"jawOpen": 0.9, "browDownLeft": 0.7, "browDownRight": 0.7, "mouthStretchLeft": 0.5,
              "mouthStretchRight": 0.5},
    "yawn": {"jawOpen": 1.0, "eyeSquintLeft": 0.6, "eyeSquintRight": 0.6, "eyeBlinkLeft": 0.5,
             "eyeBlinkRight": 0.5, "browInnerUp": 0.3},
    "kiss": {"mouthPucker": 1.0, "eyeBlinkLeft": 0.4, "eyeBlinkRight": 0.4},
    "ooh": {"mouthFunnel": 0.8, "jawOpen": 0.3},
    "talking": {"jawOpen": 0.35, "mouthFunnel": 0.3},
    "wink": {"eyeBlinkLeft": 1.0, "mouthSmileLeft": 0.5, "cheekSquintLeft": 0.4},
    "puffed cheeks": {"cheekPuff": 1.0, "mouthClose": 0.5, "browInnerUp": 0.2},
    "frown": {"browDownLeft": 0.8, "browDownRight": 0.8, "mouthFrownLeft": 0.6, "mouthFrownRight": 0.6},
    "smug": {"mouthSmileLeft": 0.8, "browDownRight": 0.4, "eyeSquintLeft": 0.3},
}


@dataclass
class Codebook:
    """weights [E,K] float32 over ``names``; labels [E]; embeddings [E,D] unit-norm
    (mean over views); neutral [D] (the avatar without expression)."""

    names: list[str]
    weights: np.ndarray
    labels: list[str]
    embeddings: np.ndarray | None = None
    neutral: np.ndarray | None = None

    def directions(self) -> np.ndarray:
        """[E,D] unit directions from the neutral face to each entry (the relative query)."""
        d = self.embeddings - self.neutral[None]
        return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-8)


def _pair_label(a: str) -> str:
    return a[:-4] + " L+R"


def entries(names: list[str], intensities=INTENSITIES, combo_intensities=COMBO_INTENSITIES
            ) -> tuple[np.ndarray, list[str]]:
    """The codebook's weight vectors over ``names`` and their labels (duplicates removed).

    Returns (weights [E,K] float32, labels [E]).
    """
    rows, labels, seen = [], [], set()

    def add(vec: np.ndarray, label: str):
        key = tuple(np.round(vec, 3))
        if vec.max() <= 0 or key in seen:
            return
        seen.add(key)
        rows.append(vec.astype(np.float32))
        labels.append(label)

    for a in intensities:
        for n in names:
            add(dense(names, {n: a}), f"{n} {a:g}")
        for left, right in symmetric_pairs(names):
            add(dense(names, {left: a, right: a}), f"{_pair_label(left)} {a:g}")
    for a in combo_intensities:
        for cname, terms in COMBINATIONS.items():
            have = {n: w * a for n, w in terms.items() if n in names}
            if len(have) >= 2:
                add(dense(names, have), f"{cname} {a:g}")
    return np.stack(rows), labels


class RenderEncoder:
    """Embeds expressions by rendering them on the avatar (a few frontal views) and
    encoding with a guidance model; texts with the same model's text encoder.

    ``embed(weights [B,K]) -> [B,D]`` unit-norm, differentiable in ``weights``.
    """

    def __init__(self, poser, guidance, views: int = 3, size: int = 224):
        from .posing import frontal_cameras

        self.poser, self.guidance = poser, guidance
        self.cameras = frontal_cameras(poser.avatar, views, size)
        self.views, self.size = views, size
        self.is_test_model = bool(guidance.is_test_model)
        self.key = f"{guidance.name}|views={views}|size={size}"

    def embed(self, weights: torch.Tensor) -> torch.Tensor:
        imgs = self.poser.render(weights, self.cameras)              # [B*C,H,W,3]
        e = self.guidance.encode_image(imgs.to(self.guidance.device))  # [B*C,D]
        e = e.reshape(weights.shape[0], len(self.cameras), -1).mean(1)
        return F.normalize(e, dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        return self.guidance.encode_text(list(texts))


def prompt(text: str) -> str:
    """A motion text (or phrase) as the prompt the text encoder sees."""
    return X.TEXT_TEMPLATE.format(text.strip())


def text_directions(encoder, texts: list[str]) -> np.ndarray:
    """[P,D] unit directions from the neutral description to each text."""
    with torch.no_grad():
        e = encoder.embed_text([prompt(X.NEUTRAL_TEXT)] + [prompt(t) for t in texts]).cpu().numpy()
    d = e[1:] - e[:1]
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-8)


def _cache_file(cache_dir: Path, avatar_hash: str, encoder_key: str, weights: np.ndarray) -> Path:
    h = hashlib.sha256()
    for part in (CODEBOOK_VERSION, avatar_hash, encoder_key):
        h.update(part.encode() + b"\x00")
    h.update(np.ascontiguousarray(weights, np.float32).tobytes())
    return Path(cache_dir) / f"codebook_{h.hexdigest()[:24]}.npz"


def embed_codebook(cb: Codebook, encoder, *, avatar_hash: str, cache_dir=None, progress=None,
                   is_cancelled=None) -> Codebook:
    """Fill ``cb.embeddings`` / ``cb.neutral`` (from the cache when there, else rendered
    and embedded in batches, then cached atomically). ``cache_dir`` None = no cache."""
    from shared.errors import Cancelled

    path = _cache_file(cache_dir, avatar_hash, encoder.key, cb.weights) if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            cb.embeddings, cb.neutral = z["embeddings"], z["neutral"]
        log.info("expression codebook from cache %s", path.name)
        return cb
    out = []
    E = len(cb.weights)
    with torch.no_grad():
        neutral = encoder.embed(torch.zeros(1, cb.weights.shape[1]))[0].cpu().numpy()
        for i in range(0, E, EMBED_BATCH):
            if is_cancelled and is_cancelled():
                raise Cancelled("The expression job was cancelled.")
            out.append(encoder.embed(torch.from_numpy(cb.weights[i:i + EMBED_BATCH])).cpu().numpy())
            if progress:
                progress("codebook", min(i + EMBED_BATCH, E), E)
    cb.embeddings, cb.neutral = np.concatenate(out).astype(np.float32), neutral.astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, embeddings=cb.embeddings, neutral=cb.neutral, weights=cb.weights,
                 labels=np.array(json.dumps(cb.labels)), encoder=np.array(encoder.key))
        os.replace(tmp, path)
    return cb


@dataclass
class Candidate:
    index: int       # codebook entry
    score: float     # relative cosine with its phrase's direction
    phrase: int      # which phrase of the text chose it (0 for a single-phrase text)


def select_candidates(entry_dirs: np.ndarray, text_dirs: np.ndarray, weights: np.ndarray, *,
                      k: int = X.DEFAULT_TOP_K, pool: int = X.CANDIDATE_POOL,
                      duplicate_distance: float = X.DUPLICATE_DISTANCE) -> list[Candidate]:
    """Top-``k`` codebook entries for a text, best first.

    entry_dirs [E,D], text_dirs [P,D] (one row per phrase of the text, see
    :func:`backend.expression.motion.split_phrases`), weights [E,K].
    Per phrase: score every entry, keep the top ``pool``; then take entries
    round-robin over the phrases (so "laughing, then surprised" gets both), skipping
    any closer than ``duplicate_distance`` (L2 of the weight vectors) to one taken.
    """
    S = text_dirs @ entry_dirs.T                       # [P,E]
    lists = [list(np.argsort(-S[p], kind="stable")[:pool]) for p in range(len(S))]
    taken: list[Candidate] = []
    pos = [0] * len(lists)
    while len(taken) < k and any(pos[p] < len(lists[p]) for p in range(len(lists))):
        for p, lst in enumerate(lists):
            while pos[p] < len(lst):
                e = int(lst[pos[p]])
                pos[p] += 1
                if all(np.linalg.norm(weights[e] - weights[c.index]) >= duplicate_distance for c in taken):
                    taken.append(Candidate(index=e, score=float(S[p, e]), phrase=p))
                    break
            if len(taken) >= k:
                break
    return taken
