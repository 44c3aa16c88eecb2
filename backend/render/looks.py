"""Random looks for synthetic training and benchmark renders: lights and backgrounds.

One home for the looks of synthetic *photos*: the expression regressor trains on them and
the capture and selfie benchmarks draw their targets from them. (The photo imitator renders
one fixed look on purpose: see ``backend.photo.imitator.make_sample``.) numpy generators
throughout; the text-avatar sculpting loop draws its own, with torch generators, in
``backend.textavatar.augment``.
"""

from __future__ import annotations

import numpy as np

from .shade import Lights


def random_lights(rng: np.random.Generator) -> Lights:
    """A key light (anywhere in front, from below the eyes to well above), a weaker fill, a grey
    ambient of 0.12-0.35 and a slight colour tint on the key."""
    key = (rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.9), rng.uniform(0.4, 1.0))
    fill = (rng.uniform(-0.8, 0.8), rng.uniform(-0.5, 0.5), rng.uniform(0.5, 1.0))
    k, f, a = rng.uniform(0.5, 0.95), rng.uniform(0.1, 0.35), rng.uniform(0.12, 0.35)
    tint = rng.uniform(0.9, 1.1, 3)
    return Lights(directions=(key, fill), colors=(tuple(k * tint), (f, f, f)), ambient=(a, a, a))


def random_background(rng: np.random.Generator, size: int):
    """Half the time a flat linear colour [3] (0.05-0.9), else a smooth random sRGB uint8 image
    [size,size,3] (blurred noise at 1/16 of the side: out-of-focus clutter)."""
    if rng.random() < 0.5:
        return rng.uniform(0.05, 0.9, 3)
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.random((size, size, 3)), (size / 16, size / 16, 0))
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-9)
    return (noise * 255).astype(np.uint8)
