#!/usr/bin/env python3
"""Benchmark the add-on's data path on a production-sized avatar.

    .venv/bin/python scripts/bench_addon.py [--vertices 50000] [--keys 52] [--texture 2048]
                                             [--no-upload]

Builds (in the real bpy) a mesh of about ``--vertices`` vertices with UVs,
``--keys`` shape keys, a ``--texture``^2 base-colour image, then times:
  extract  blender_addon.scene_io.extract_avatar (scene -> AvatarData)
  hash     shared.avatar.content_hash
  upload   put_avatar to a `metamorph serve` started on loopback (and a second
           call that the content hash makes a no-op)
  apply    blender_addon.results.apply_result of a result with offsets for every
           vertex and shape key and a stylized texture of the same size (goal <= 2 s)
Prints one line per figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import bpy  # noqa: E402
import numpy as np  # noqa: E402


def build_avatar(n_vertices: int, n_keys: int, tex: int):
    """A UV-mapped grid-sphere with about ``n_vertices`` vertices, ``n_keys`` shape keys
    and a ``tex``^2 image material. Returns the object."""
    import bmesh
    bpy.ops.wm.read_factory_settings(use_empty=True)
    seg = int(np.sqrt(n_vertices / 0.5))
    mesh = bpy.data.meshes.new("BenchHead")
    bm = bmesh.new()
    bm.loops.layers.uv.new("UVMap")
    bmesh.ops.create_uvsphere(bm, u_segments=seg, v_segments=max(3, seg // 2), radius=0.1,
                              calc_uvs=True)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new("BenchHead", mesh)
    bpy.context.scene.collection.objects.link(obj)
    n = len(mesh.vertices)
    co = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(n, 3)
    obj.shape_key_add(name="Basis")
    rng = np.random.default_rng(0)
    for k in range(n_keys):
        kb = obj.shape_key_add(name=f"key{k:02d}", from_mix=False)
        kb.data.foreach_set("co", (co + rng.normal(0, 0.002, co.shape).astype(np.float32)).ravel())
    img = bpy.data.images.new("BenchSkin", tex, tex)
    px = np.empty((tex, tex, 4), np.float32)
    px[..., :3] = rng.uniform(size=(1, tex, 3))
    px[..., 3] = 1
    img.pixels.foreach_set(px.ravel())
    img.pack()
    mat = bpy.data.materials.new("BenchSkin")
    nt = mat.node_tree
    t = nt.nodes.new("ShaderNodeTexImage")
    t.image = img
    nt.links.new(t.outputs["Color"], nt.nodes["Principled BSDF"].inputs["Base Color"])
    mesh.materials.append(mat)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    return obj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vertices", type=int, default=50_000)
    ap.add_argument("--keys", type=int, default=52)
    ap.add_argument("--texture", type=int, default=2048)
    ap.add_argument("--no-upload", action="store_true", help="skip the server upload")
    ap.add_argument("--repeat", type=int, default=3, help="apply repetitions (best is printed)")
    a = ap.parse_args(argv)

    from addon_scene import fake_result
    from blender_addon import results
    from shared.avatar import content_hash

    t = time.perf_counter()
    obj = build_avatar(a.vertices, a.keys, a.texture)
    n = len(obj.data.vertices)
    print(f"avatar: {n} vertices, {len(obj.data.polygons)} faces, {a.keys} shape keys, "
          f"{a.texture}x{a.texture} texture (built in {time.perf_counter() - t:.2f} s)")

    av = None
    try:
        from blender_addon import scene_io
        t = time.perf_counter()
        av = scene_io.extract_avatar([obj], scene=bpy.context.scene)
        print(f"extract: {time.perf_counter() - t:.3f} s")
        t = time.perf_counter()
        aid = content_hash(av)
        print(f"hash: {time.perf_counter() - t:.3f} s")
    except ImportError as e:
        print(f"extract: skipped ({e})")

    if av is not None and not a.no_upload:
        from conftest import start_server  # the test suite's server launcher
        from shared.client import Client
        with tempfile.TemporaryDirectory() as tmp:
            sp = start_server(tmp_path=tmp)
            try:
                with Client(sp.endpoint, timeout_s=120) as c:
                    c.hello()
                    t = time.perf_counter()
                    got = c.put_avatar(av)
                    up = time.perf_counter() - t
                    t = time.perf_counter()
                    c.put_avatar(av)
                    again = time.perf_counter() - t
                assert got == aid
                print(f"upload: {up:.3f} s; again (server has the hash): {again * 1000:.1f} ms "
                      f"(skipped={c.last_upload_skipped})")
            finally:
                sp.stop()

    res = fake_result([obj], name="bench", tex_size=a.texture)
    best = float("inf")
    for i in range(a.repeat):
        t = time.perf_counter()
        copies = results.apply_result(bpy.context.scene, [obj], res, name=f"bench{i}")
        best = min(best, time.perf_counter() - t)
        assert len(copies[0].data.shape_keys.key_blocks) == a.keys + 1
    print(f"apply: {best:.3f} s (best of {a.repeat}; goal <= 2 s)")

    # The whole user-facing apply: copy + colour/alpha passes (8 cameras x 4 frames at
    # 512^2) written as PNGs in the result's folder and loaded as images, all or nothing.
    import blender_addon
    from blender_addon import result_apply
    blender_addon.register()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bpy.context.scene.metamorph.output_dir = tmp
            C, N, R = 8, 4, 512
            rng = np.random.default_rng(1)
            res.passes = {"color": rng.integers(0, 256, (C, N, R, R, 3), dtype=np.uint8),
                          "alpha": np.full((C, N, R, R, 1), 255, np.uint8)}
            res.body.update(cameras=[{"name": f"cam{i}"} for i in range(C)],
                            frames=[float(f) for f in range(1, N + 1)])
            t = time.perf_counter()
            result_apply.apply_stylize_result(bpy.context, [obj], res)
            print(f"apply with passes ({C} cameras x {N} frames x 2 passes at {R}^2): "
                  f"{time.perf_counter() - t:.3f} s")
    finally:
        blender_addon.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main())
