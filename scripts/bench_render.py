"""Benchmark the differentiable renderer against Blender's Workbench engine.

Forward + backward (gradients to vertices and texture) for 8 views at 224x224
of a 20,000-triangle mesh with a 1024x1024 texture, then Blender Workbench
rendering the same views in the same process (flat textured shading, no
anti-aliasing). Prints milliseconds per 8-view batch (median of repeats) and
the ratio. Run from the repository root:

    .venv/bin/python scripts/bench_render.py [--repeats 10] [--threads N] [--device cuda] [--no-blender]

On a machine shared with other busy processes, torch's OpenMP threads spin in
barriers and multi-threaded figures collapse; compare with ``--threads 1`` or
run with ``OMP_WAIT_POLICY=PASSIVE`` in the environment. The "cpu" column is
this process's CPU time, which stays meaningful under contention.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from backend.render import render  # noqa: E402
from backend.render.camera import camera_batch, project, to_camera_space  # noqa: E402
from backend.render.procedural import checker_texture, look_at, uv_sphere  # noqa: E402
from backend.render.raster import rasterize  # noqa: E402
from shared.camera import Camera  # noqa: E402


def make_scene(views=8, size=224, segments=100, rings=101, tex_size=1024):
    v, f, uv, uf = uv_sphere(segments, rings, bumps=0.1)
    tex = checker_texture(tex_size, 16)
    cams = []
    for k in range(views):
        a = 2 * np.pi * k / views
        cams.append(Camera(look_at((4 * np.cos(a), 4 * np.sin(a), 1.0 + 0.5 * np.sin(2 * a))),
                           lens=50.0, resolution_x=size, resolution_y=size))
    return v, f, uv, uf, tex, cams


def time_it(fn, repeats, sync=lambda: None):
    """-> (median wall ms, best wall ms, median process CPU ms). CPU time shows
    the work itself when other processes compete for the cores."""
    fn()
    sync()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times) * 1000.0, min(times) * 1000.0, statistics.median(cpu) * 1000.0


def bench_torch(scene, device, repeats):
    v, f, uv, uf, tex, cams = scene
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    verts = torch.tensor(v, device=dev)[None].repeat(len(cams), 1, 1).requires_grad_(True)
    faces, uvs, uv_faces = torch.tensor(f, device=dev), torch.tensor(uv, device=dev), torch.tensor(uf, device=dev)
    texture = torch.tensor(tex, device=dev).requires_grad_(True)

    def fwd_bwd():
        verts.grad = None
        texture.grad = None
        out = render(verts, faces, uvs, uv_faces, [texture], None, cams, passes=("color",))
        out["color"].mean().backward()
        return out

    out = fwd_bwd()
    coverage = float((render(verts.detach(), faces, uvs, uv_faces, [texture.detach()], None, cams,
                             passes=("alpha",))["alpha"] > 0).float().mean())

    def fwd():
        with torch.no_grad():
            render(verts, faces, uvs, uv_faces, [texture], None, cams, passes=("color",))

    cb = camera_batch(cams, device=dev)
    scr, dep = project(to_camera_space(verts.detach(), cb), cb)
    scr_np, dep_np, f_np = scr.cpu().numpy(), dep.cpu().numpy(), f.astype(np.int32)
    o, n, fa = cb.ortho.cpu().numpy(), cb.near.cpu().numpy(), cb.far.cpu().numpy()

    def raster():
        rasterize(scr_np, dep_np, f_np, cb.width, cb.height, o, n, fa)

    return {
        "fwd_bwd": time_it(fwd_bwd, repeats, sync),
        "fwd": time_it(fwd, repeats, sync),
        "raster": time_it(raster, repeats),
        "coverage": coverage,
        "out_shape": tuple(out["color"].shape),
    }


def bench_blender(scene, repeats):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import bpy  # noqa: F401  (same process as torch, on purpose)
    import _render_blender_scene as ref

    v, f, uv, uf, tex, cams = scene
    data = {"vertices": v, "faces": f, "uvs": uv, "uv_faces": uf, "texture": tex}
    bscene, cam_obj = ref.build_scene(data, "BLENDER_WORKBENCH")

    def render_views():
        for c in cams:
            ref.apply_camera(bscene, cam_obj, c.to_dict())
            bpy.ops.render.render()

    t0 = time.perf_counter()
    render_views()  # first call compiles shaders
    first = (time.perf_counter() - t0) * 1000.0
    return {"views": time_it(render_views, max(1, repeats // 2)), "first": first}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-blender", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scene = make_scene()
    v, f, uv, uf, tex, cams = scene
    print(f"mesh: {len(v)} vertices, {len(f)} triangles; texture {tex.shape[1]}x{tex.shape[0]}; "
          f"{len(cams)} views at {cams[0].resolution_x}x{cams[0].resolution_y}; device {args.device}; "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    r = bench_torch(scene, args.device, args.repeats)
    print(f"coverage: {100 * r['coverage']:.1f}% of pixels; load average before: {os.getloadavg()[0]:.2f}")

    def line(label, t):
        print(f"{label:<36} median {t[0]:8.1f} ms   best {t[1]:8.1f} ms   cpu {t[2]:8.1f} ms")

    line("numba z-buffer (8 views)", r["raster"])
    line("render forward only (no grad)", r["fwd"])
    line("render forward + backward", r["fwd_bwd"])
    print("  (goal: forward + backward <= 100 ms on the 2-core CPU)")
    if not args.no_blender:
        b = bench_blender(scene, args.repeats)
        line("Blender Workbench, same 8 views", b["views"])
        print(f"  (Blender's first call, incl. shader compilation: {b['first']:.0f} ms)")
        print(f"ratio Blender / ours (fwd+bwd, median wall): {b['views'][0] / r['fwd_bwd'][0]:.1f}x   "
              f"best: {b['views'][1] / r['fwd_bwd'][1]:.1f}x   (goal >= 10x)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
