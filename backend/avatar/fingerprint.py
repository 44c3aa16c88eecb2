"""A fingerprint of the sample avatar engine's output, for the caches built from it (the photo
imitator's renders and weights, the text-avatar codebook): any change to what the engine builds
changes it, so a stale cache is never reused.

It hashes the parameter layout and a few avatars that between them wear every discrete choice
(hairstyle, eyebrow style, glasses) on shapes and colours away from the average: a change to one
asset (a hairstyle's mesh, say) shows even if no other part of the engine moved.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

from shared.avatar import content_hash

from .params import COLOR_NAMES, DISCRETE, SHAPE_NAMES, VECTOR_SIZE, AvatarParams, random_params

_SEED = 7   # the continuous part of the fingerprint avatars: random_params(_SEED + i)


def fingerprint_params() -> list[AvatarParams]:
    """The average avatar, then max(choices) avatars, the i-th wearing choice i of every asset
    (modulo its number of choices)."""
    n = max(len(c) for c in DISCRETE.values())
    return [AvatarParams()] + [dataclasses.replace(random_params(_SEED + i),
                                                   **{k: c[i % len(c)] for k, c in DISCRETE.items()})
                               for i in range(n)]


@functools.lru_cache(maxsize=None)
def engine_fingerprint() -> str:
    """16 hex digits; the same on every platform for the same engine output."""
    from .sample import sample_avatar   # heavy: only when a cache needs its key

    h = hashlib.sha256(json.dumps([SHAPE_NAMES, COLOR_NAMES, DISCRETE, VECTOR_SIZE]).encode())
    for p in fingerprint_params():
        h.update(content_hash(sample_avatar(p, texture_size=64, with_track=False)).encode())
    return h.hexdigest()[:16]
