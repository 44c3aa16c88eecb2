"""The codebook's parameter vectors: stratified sampling of the sample avatar's space and
k-means clustering down to a few hundred entries. Pure numpy, deterministic for a seed.

Vectors use the :meth:`backend.avatar.params.AvatarParams.to_vector` layout
(``[VECTOR_SIZE]`` float32: shapes in [-1, 1], colours in [0, 1], one-hot blocks).
"""

from __future__ import annotations

import itertools

import numpy as np

from backend.avatar.params import COLOR_NAMES, DISCRETE, SHAPE_NAMES, VECTOR_SIZE, AvatarParams

N_CONTINUOUS = len(SHAPE_NAMES) + len(COLOR_NAMES)
# A different discrete choice counts like this many standard deviations of one continuous
# parameter (squared distance 2 * ONEHOT_SCALE^2), so clusters rarely mix hairstyles or glasses.
ONEHOT_SCALE = 2.0


def combinations() -> list[tuple[str, ...]]:
    """Every discrete combination (hairstyle, eyebrow style, glasses), in DISCRETE order."""
    return list(itertools.product(*DISCRETE.values()))


def combo_of(vectors: np.ndarray) -> np.ndarray:
    """``[N,VECTOR_SIZE]`` -> ``[N]`` int index into :func:`combinations` (argmax per block)."""
    idx = np.zeros(len(vectors), np.int64)
    i = N_CONTINUOUS
    for choices in DISCRETE.values():
        idx = idx * len(choices) + np.argmax(vectors[:, i:i + len(choices)], axis=1)
        i += len(choices)
    return idx


def sample_vectors(n: int, seed: int) -> np.ndarray:
    """``[n,VECTOR_SIZE]`` float32: uniform shapes and colours; the discrete combinations
    cycle so every one is represented (n >= number of combinations) in equal shares."""
    rng = np.random.default_rng(seed)
    combos = combinations()
    out = np.zeros((n, VECTOR_SIZE), np.float32)
    out[:, :len(SHAPE_NAMES)] = rng.uniform(-1, 1, (n, len(SHAPE_NAMES)))
    out[:, len(SHAPE_NAMES):N_CONTINUOUS] = rng.uniform(0, 1, (n, len(COLOR_NAMES)))
    order = rng.permutation(n) % len(combos)
    for r, c in enumerate(order):
        i = N_CONTINUOUS
        for (name, choices), pick in zip(DISCRETE.items(), combos[c]):
            out[r, i + choices.index(pick)] = 1.0
            i += len(choices)
    return out


def normalize(vectors: np.ndarray) -> np.ndarray:
    """The space k-means runs in: each continuous column divided by its standard deviation
    under uniform sampling (so shapes and colours weigh the same), one-hot blocks scaled
    by :data:`ONEHOT_SCALE`. Fixed scales, independent of the sample."""
    scale = np.ones(VECTOR_SIZE, np.float32)
    scale[:len(SHAPE_NAMES)] = 1.0 / (2.0 / np.sqrt(12.0))
    scale[len(SHAPE_NAMES):N_CONTINUOUS] = 1.0 / (1.0 / np.sqrt(12.0))
    scale[N_CONTINUOUS:] = ONEHOT_SCALE
    return np.asarray(vectors, np.float32) * scale


def _sqdist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :], 0.0)


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding. ``x`` ``[N,D]`` -> (centroids ``[k,D]``,
    labels ``[N]``). An emptied cluster is re-seeded at the point farthest from its centroid."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= {n} points, got k={k}")
    cent = np.empty((k, x.shape[1]))
    cent[0] = x[rng.integers(n)]
    d2 = _sqdist(x, cent[:1])[:, 0]
    for j in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        cent[j] = x[rng.choice(n, p=p)]
        d2 = np.minimum(d2, _sqdist(x, cent[j:j + 1])[:, 0])
    labels = np.full(n, -1)
    for _ in range(iterations):
        d = _sqdist(x, cent)
        new = d.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            m = labels == j
            if m.any():
                cent[j] = x[m].mean(0)
            else:
                far = int(d[np.arange(n), labels].argmax())
                cent[j] = x[far]
                labels[far] = j
    return cent.astype(np.float32), labels


def codebook_vectors(entries: int, samples: int, seed: int) -> tuple[np.ndarray, dict]:
    """The codebook's parameter vectors ``[entries,VECTOR_SIZE]`` and a summary.

    ``samples`` vectors are drawn (:func:`sample_vectors`), clustered by k-means in the
    :func:`normalize` space, and each cluster is represented by its member nearest the
    centroid, so every entry is a real, valid parameter vector (strict one-hot).
    """
    if samples < entries:
        raise ValueError(f"a codebook of {entries} entries needs at least as many samples, got {samples}")
    vecs = sample_vectors(samples, seed)
    z = normalize(vecs)
    cent, labels = kmeans(z, entries, seed)
    picks = []
    for j in range(entries):
        members = np.flatnonzero(labels == j)
        d = ((z[members] - cent[j]) ** 2).sum(1)
        picks.append(int(members[d.argmin()]))
    out = vecs[np.asarray(picks)]
    info = {"samples": int(samples), "entries": int(entries),
            "combinations": int(len(np.unique(combo_of(out)))), "combinations_total": len(combinations()),
            "sample_combinations": int(len(np.unique(combo_of(vecs))))}
    return out, info


def anchor_vector() -> np.ndarray:
    """The average avatar (all shape parameters 0, default colours and assets)."""
    return AvatarParams().to_vector()
