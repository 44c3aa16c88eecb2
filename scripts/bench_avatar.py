"""Timings and sizes of the avatar pipeline (no GPU, no Blender):

sample generation (geometry / blendshapes / texture), GLB export and import,
content hash, vertex counts. Prints one line per figure.

    .venv/bin/python scripts/bench_avatar.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backend.avatar import load_avatar, random_params, sample_avatar, save_glb  # noqa: E402
from backend.avatar.blendshapes import blendshape_deltas  # noqa: E402
from backend.avatar.params import AvatarParams  # noqa: E402
from backend.avatar.sample import build_geometry  # noqa: E402
from backend.avatar.texture import paint_albedo  # noqa: E402
from shared.avatar import content_hash  # noqa: E402


def best(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    P = AvatarParams()
    t, g = best(lambda: build_geometry(P), a.repeat)
    print(f"geometry            {t * 1000:8.1f} ms  ({len(g.vertices)} vertices, {len(g.faces)} triangles)")
    t, _ = best(lambda: blendshape_deltas(g), a.repeat)
    print(f"blendshapes (11)    {t * 1000:8.1f} ms")
    t, _ = best(lambda: paint_albedo(g, 1024), a.repeat)
    print(f"albedo 1024^2       {t * 1000:8.1f} ms")
    t, av = best(lambda: sample_avatar(P), a.repeat)
    print(f"sample_avatar total {t * 1000:8.1f} ms")
    for seed in range(3):
        p = random_params(seed)
        t, r = best(lambda: sample_avatar(p), 1)
        print(f"random seed {seed}       {t * 1000:8.1f} ms  {r.num_vertices:6d} vertices  "
              f"hair={p.hairstyle} brows={p.eyebrow_style} glasses={p.glasses}")
    t, h = best(lambda: content_hash(av), a.repeat)
    print(f"content_hash        {t * 1000:8.1f} ms")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sample.glb")
        t, _ = best(lambda: save_glb(av, path), a.repeat)
        print(f"save_glb            {t * 1000:8.1f} ms  ({os.path.getsize(path) / 1e6:.2f} MB)")
        t, b = best(lambda: load_avatar(path), a.repeat)
        print(f"load_avatar (GLB)   {t * 1000:8.1f} ms  ({b.num_vertices} vertices after UV-seam splits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
