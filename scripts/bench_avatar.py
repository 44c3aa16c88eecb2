"""Timings and sizes of the avatar pipeline (no GPU, no Blender):

sample generation (geometry / blendshapes / texture), GLB export and import,
content hash, vertex counts, and what refusing hostile files costs (an OBJ
declaring 10 million faces, a 30000x30000 PNG texture, a 9000x9000 style image:
time to the typed error and the process's peak RSS growth). Prints one line per figure.

    .venv/bin/python scripts/bench_avatar.py [--repeat 3] [--skip-attacks]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import struct
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backend.avatar import load_avatar, random_params, sample_avatar, save_glb  # noqa: E402
from backend.avatar.blendshapes import blendshape_deltas  # noqa: E402
from backend.avatar.images import read_image  # noqa: E402
from backend.avatar.params import AvatarParams  # noqa: E402
from backend.avatar.sample import build_geometry  # noqa: E402
from backend.avatar.texture import paint_albedo  # noqa: E402
from shared.avatar import content_hash  # noqa: E402
from shared.errors import MetamorphError  # noqa: E402


def best(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: KiB


def _black_png(w: int, h: int) -> bytes:
    """A valid 1-bit PNG of w x h black pixels (zeros compress to a few hundred KB)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    row = b"\x00" * (1 + (w + 7) // 8)
    c = zlib.compressobj(9)
    idat = b"".join(c.compress(row * 1000) for _ in range(h // 1000)) + c.compress(row * (h % 1000)) + c.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _refusal(label: str, fn) -> None:
    rss0 = _peak_rss_mb()
    t = time.perf_counter()
    try:
        fn()
        outcome = "ACCEPTED (not refused!)"
    except MetamorphError as e:
        outcome = f"{type(e).__name__}"
    dt = time.perf_counter() - t
    print(f"{label:34s} {dt * 1000:8.1f} ms  {outcome}, peak RSS +{_peak_rss_mb() - rss0:.0f} MB")


def attacks(d: str) -> None:
    """Hostile files: time to the typed error and peak RSS growth (ru_maxrss, so only growth
    past the earlier peak shows)."""
    obj = os.path.join(d, "many.obj")
    with open(obj, "wb") as f:
        f.write(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n")
        for _ in range(100):
            f.write(b"f 1/1 2/2 3/3\n" * 100_000)
    print(f"(OBJ declaring 10,000,000 faces: {os.path.getsize(obj) / 1e6:.0f} MB on disk)")
    _refusal("OBJ 10M faces (load_avatar)", lambda: load_avatar(obj))
    bomb = _black_png(30000, 30000)
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}]}],
           "buffers": [{"byteLength": 60, "uri": "data:application/octet-stream;base64,"
                        + base64.b64encode(bytes(60)).decode()}],
           "bufferViews": [{"buffer": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 24}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
                         {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"}],
           "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
           "textures": [{"source": 0}], "images": [{"uri": "bomb.png"}]}
    with open(os.path.join(d, "bomb.png"), "wb") as f:
        f.write(bomb)
    with open(os.path.join(d, "bomb.gltf"), "w") as f:
        json.dump(doc, f)
    _refusal("glTF with 30000^2 PNG texture", lambda: load_avatar(os.path.join(d, "bomb.gltf")))
    with open(os.path.join(d, "style9k.png"), "wb") as f:
        f.write(_black_png(9000, 9000))
    _refusal("9000^2 style image (read_image)",
             lambda: read_image(os.path.join(d, "style9k.png"), 512, purpose="style image"))
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(os.path.join(d, "photo.jpg"),
                                                                                  quality=90)
    rss0 = _peak_rss_mb()
    t = time.perf_counter()
    arr = read_image(os.path.join(d, "photo.jpg"), 512, purpose="selfie")
    print(f"{'read_image 4000x3000 JPEG -> 512':34s} {(time.perf_counter() - t) * 1000:8.1f} ms  "
          f"{arr.shape[1]}x{arr.shape[0]}, peak RSS +{_peak_rss_mb() - rss0:.0f} MB")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-attacks", action="store_true", help="leave out the hostile-file figures")
    a = ap.parse_args(argv)
    if not a.skip_attacks:
        with tempfile.TemporaryDirectory() as d:
            attacks(d)
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
