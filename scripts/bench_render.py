"""Benchmark the differentiable renderer against two peers on the same scene.

Scene: 8 views at 224x224 of a 20,000-triangle mesh with a 1024x1024 texture.
Timed, in milliseconds per 8-view batch (median and best of repeats, and the
process's CPU time, which stays meaningful under contention):

* ours (``backend.render``): forward only, and forward + backward (gradients to
  the vertices and the texture), Lambert shading with smooth normals; forward +
  backward again with ``antialias=True`` (analytic silhouette coverage);
* Mitsuba 3 (``mitsuba==3.5.2``, variant ``llvm_ad_rgb``, the LLVM CPU backend):
  the same mesh (split at UV seams: Mitsuba keeps one UV per vertex), texture
  (bitmap BSDF, bilinear, repeat), cameras (the same camera-to-world matrices and
  field of view) and two directional lights, ``direct`` integrator at 1 sample per
  pixel (one camera ray and one light sample per pixel), all views in one
  ``batch`` sensor. Forward, and forward + ``dr.backward`` to the texture and the
  vertex positions (including the scene update a changed mesh needs: normals and
  the ray-tracing BVH, as every step of an optimisation does). Skipped with a
  message when mitsuba is not installed (``pip install mitsuba==3.5.2``;
  ``DRJIT_LIBLLVM_PATH`` must name an LLVM Dr.Jit accepts, e.g. Debian's
  ``libLLVM-15.so.1``: it is set here when unset and that file exists);
* Blender Workbench (flat textured shading, no anti-aliasing): forward only.

Each peer runs in its own process (this script with ``--worker``): bpy and torch
never share a process, and no peer's thread pool competes with another's. A
sanity line compares Mitsuba's albedo AOV and coverage with ours, to show the
scenes agree. Run from the repository root:

    .venv/bin/python scripts/bench_render.py [--repeats 10] [--threads N] [--device cuda]
                                             [--no-blender] [--no-mitsuba]

On a machine shared with other busy processes, torch's OpenMP threads spin in
barriers and multi-threaded figures collapse; compare with ``--threads 1`` or
run with ``OMP_WAIT_POLICY=PASSIVE`` in the environment.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shared.camera import Camera, projection  # noqa: E402  (numpy only: safe in every worker)

LLVM_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1", "/usr/lib/x86_64-linux-gnu/libLLVM-15.so")
MITSUBA_VARIANT = "llvm_ad_rgb"
WORKER_TIMEOUT_S = 900


def make_scene(views=8, size=224, segments=100, rings=101, tex_size=1024):
    # The procedural assets live in backend.render, whose package imports torch:
    # only the main process builds the scene; workers read it from a file.
    from backend.render.procedural import checker_texture, look_at, uv_sphere

    v, f, uv, uf = uv_sphere(segments, rings, bumps=0.1)
    tex = checker_texture(tex_size, 16)
    cams = []
    for k in range(views):
        a = 2 * np.pi * k / views
        cams.append(Camera(look_at((4 * np.cos(a), 4 * np.sin(a), 1.0 + 0.5 * np.sin(2 * a))),
                           lens=50.0, resolution_x=size, resolution_y=size))
    return v, f, uv, uf, tex, cams


def save_scene(scene, path):
    """The scene file format of tests/_render_blender_scene.py (cameras as JSON)."""
    v, f, uv, uf, tex, cams = scene
    np.savez(path, vertices=v, faces=f, uvs=uv, uv_faces=uf, texture=tex,
             cameras=json.dumps([c.to_dict() for c in cams]))


def load_scene(path):
    d = dict(np.load(path))
    cams = [Camera.from_dict(c) for c in json.loads(str(d["cameras"]))]
    return d["vertices"], d["faces"], d["uvs"], d["uv_faces"], d["texture"], cams


def time_it(fn, repeats, sync=lambda: None):
    """-> (median wall ms, best wall ms, median process CPU ms) after one warm-up call."""
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


# --- ours ---------------------------------------------------------------------------------------------------------

def bench_ours(scene, device, repeats):
    import torch  # never in the Blender worker (bpy and torch crash in one process)

    from backend.render import render
    from backend.render.camera import camera_batch, project, to_camera_space
    from backend.render.raster import rasterize

    v, f, uv, uf, tex, cams = scene
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    verts = torch.tensor(v, device=dev)[None].repeat(len(cams), 1, 1).requires_grad_(True)
    faces, uvs, uv_faces = torch.tensor(f, device=dev), torch.tensor(uv, device=dev), torch.tensor(uf, device=dev)
    texture = torch.tensor(tex, device=dev).requires_grad_(True)

    def fwd_bwd(antialias=False):
        verts.grad = None
        texture.grad = None
        out = render(verts, faces, uvs, uv_faces, [texture], None, cams, passes=("color",), antialias=antialias)
        out["color"].mean().backward()
        return out

    out = fwd_bwd()
    with torch.no_grad():
        ref = render(verts, faces, uvs, uv_faces, [texture], None, cams, passes=("alpha", "albedo"))

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
        "fwd_bwd_antialias": time_it(lambda: fwd_bwd(True), repeats, sync),
        "fwd": time_it(fwd, repeats, sync),
        "raster": time_it(raster, repeats),
        "alpha": ref["alpha"][..., 0].cpu().numpy(),
        "albedo": ref["albedo"].cpu().numpy(),
        "out_shape": tuple(out["color"].shape),
        "threads": torch.get_num_threads(),
    }


# --- Mitsuba 3 (worker process) -----------------------------------------------------------------------------------

def mitsuba_camera(cam: Camera, mi) -> dict:
    """A Blender camera as a Mitsuba ``perspective`` sensor: the same camera-to-world
    matrix with Mitsuba's axes (Blender looks down -Z with +X right; Mitsuba looks down
    +Z with +X left) and the same horizontal field of view. Covers centred perspective
    cameras with square pixels (the benchmark's); anything else raises ValueError."""
    p = projection(cam)
    if p.orthographic or abs(p.cx - p.width / 2) > 1e-6 or abs(p.cy - p.height / 2) > 1e-6 \
            or abs(p.fx - p.fy) > 1e-6 * p.fx:
        raise ValueError("the Mitsuba scene covers centred perspective cameras with square pixels only")
    to_world = np.asarray(p.camera_to_world, np.float64) @ np.diag([-1.0, 1.0, -1.0, 1.0])
    return {"type": "perspective", "fov_axis": "x", "fov": math.degrees(2.0 * math.atan(p.width / (2.0 * p.fx))),
            "near_clip": float(p.clip_start), "far_clip": float(p.clip_end),
            "to_world": mi.ScalarTransform4f(to_world.tolist())}


def mitsuba_mesh(v, f, uv, uf, tex, mi, dr):
    """One Mitsuba vertex per distinct (vertex, UV) corner pair; UV v flipped (Mitsuba's
    bitmaps start at the top row, Blender's UV origin is bottom-left)."""
    pairs, inverse = np.unique(np.stack([f.reshape(-1), uf.reshape(-1)], 1), axis=0, return_inverse=True)
    positions = v[pairs[:, 0]].astype(np.float32)
    texcoords = uv[pairs[:, 1]].astype(np.float32)
    texcoords[:, 1] = 1.0 - texcoords[:, 1]
    bsdf = mi.load_dict({"type": "diffuse", "reflectance": {
        "type": "bitmap", "bitmap": mi.Bitmap(np.ascontiguousarray(tex, np.float32)), "raw": True,
        "filter_type": "bilinear", "wrap_mode": "repeat"}})
    props = mi.Properties()
    props["bsdf"] = bsdf
    mesh = mi.Mesh("avatar", len(positions), len(f), props=props, has_vertex_normals=True, has_vertex_texcoords=True)
    mp = mi.traverse(mesh)
    mp["vertex_positions"] = dr.ravel(mi.TensorXf(positions))
    mp["faces"] = dr.ravel(mi.TensorXu(inverse.reshape(-1, 3).astype(np.uint32)))
    mp["vertex_texcoords"] = dr.ravel(mi.TensorXf(texcoords))
    mp.update()  # computes the smooth vertex normals
    return mesh, len(positions)


def mitsuba_worker(scene_path, out_path, repeats):
    import drjit as dr  # benchmark-only peer, imported only in this worker
    import mitsuba as mi

    mi.set_variant(MITSUBA_VARIANT)
    v, f, uv, uf, tex, cams = load_scene(scene_path)
    w, h = cams[0].resolution_x, cams[0].resolution_y
    mesh, n_split = mitsuba_mesh(v, f, uv, uf, tex, mi, dr)
    sensors = {f"view{i}": mitsuba_camera(c, mi) for i, c in enumerate(cams)}
    # Our default lights (camera-space key + fill) as two world-space directional lights
    # of the same irradiance; Mitsuba's diffuse BSDF divides by pi, so scale by pi.
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "direct", "emitter_samples": 1, "bsdf_samples": 0},
        "avatar": mesh,
        "views": {"type": "batch", **sensors,
                  "film": {"type": "hdrfilm", "width": w * len(cams), "height": h, "pixel_format": "rgb",
                           "rfilter": {"type": "box"}},
                  "sampler": {"type": "independent", "sample_count": 1}},
        "key": {"type": "directional", "direction": [-0.3, -0.4, -0.8],
                "irradiance": {"type": "rgb", "value": 0.75 * math.pi}},
        "fill": {"type": "directional", "direction": [0.6, 0.2, -0.3],
                 "irradiance": {"type": "rgb", "value": 0.25 * math.pi}},
    })
    params = mi.traverse(scene)
    key_v, key_t = "avatar.vertex_positions", "avatar.bsdf.reflectance.data"
    base_v = mi.Float(params[key_v])
    seed = [0]

    def fwd():
        seed[0] += 1
        with dr.suspend_grad():
            img = mi.render(scene, spp=1, seed=seed[0])
            dr.eval(img)
        dr.sync_thread()

    def fwd_bwd():
        seed[0] += 1
        params[key_v] = mi.Float(base_v)  # a changed mesh: normals and BVH are rebuilt
        dr.enable_grad(params[key_v])
        dr.enable_grad(params[key_t])
        params.update()
        img = mi.render(scene, params, spp=1, seed=seed[0])
        dr.backward(dr.mean(dr.ravel(img)))
        gv, gt = dr.grad(params[key_v]), dr.grad(params[key_t])
        dr.eval(gv, gt)
        dr.sync_thread()
        return gv, gt

    t0 = time.perf_counter()
    fwd()
    gv, gt = fwd_bwd()  # first calls compile (or load cached) kernels
    first = (time.perf_counter() - t0) * 1000.0
    grad_ok = bool(np.abs(np.array(gv)).max() > 0 and np.abs(np.array(gt)).max() > 0)
    res = {"fwd": time_it(fwd, repeats), "fwd_bwd": time_it(fwd_bwd, repeats), "first": first,
           "grad_nonzero": grad_ok, "split_vertices": n_split, "version": mi.__version__, "variant": MITSUBA_VARIANT}
    # Same-scene check: albedo and depth AOVs at 1 spp (pixel-centre-ish: box filter, random offsets).
    with dr.suspend_grad():
        aov = np.array(mi.render(scene, spp=1, seed=0,
                                 integrator=mi.load_dict({"type": "aov", "aovs": "al:albedo,dd:depth"})))
    aov = aov.reshape(h, len(cams), w, -1).transpose(1, 0, 2, 3)  # [B,H,W,C]: views side by side in the film
    np.savez(out_path, albedo=aov[..., -4:-1], depth=aov[..., -1], timings=json.dumps(res))


def bench_mitsuba(scene_path, tmp, repeats):
    """-> (result dict, None) or (None, reason it was skipped)."""
    if importlib.util.find_spec("mitsuba") is None:
        return None, ("Mitsuba 3 is not installed: skipping the Mitsuba peer "
                      "(install it with `.venv/bin/pip install mitsuba==3.5.2`, the `bench` extra)")
    env = dict(os.environ)
    if not env.get("DRJIT_LIBLLVM_PATH"):
        found = [p for p in LLVM_CANDIDATES if os.path.exists(p)]
        if not found:
            return None, ("Mitsuba 3 is installed but no libLLVM-15 was found for its LLVM backend: skipping it "
                          "(`apt-get install libllvm15`, or set DRJIT_LIBLLVM_PATH)")
        env["DRJIT_LIBLLVM_PATH"] = found[0]
    out = os.path.join(tmp, "mitsuba.npz")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "mitsuba", scene_path, out,
                           "--repeats", str(repeats)], env=env, capture_output=True, text=True, errors="replace",
                          timeout=WORKER_TIMEOUT_S)
    if proc.returncode != 0 or not os.path.exists(out):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, f"the Mitsuba worker failed (exit {proc.returncode}): {' | '.join(tail)}"
    d = np.load(out)
    return {**json.loads(str(d["timings"])), "albedo": d["albedo"], "depth": d["depth"]}, None


# --- Blender Workbench (worker process) ---------------------------------------------------------------------------

def blender_worker(scene_path, out_path, repeats):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import _render_blender_scene as ref  # imports bpy: only ever in this worker process
    import bpy

    v, f, uv, uf, tex, cams = load_scene(scene_path)
    data = {"vertices": v, "faces": f, "uvs": uv, "uv_faces": uf, "texture": tex}
    bscene, cam_obj = ref.build_scene(data, "BLENDER_WORKBENCH")

    def render_views():
        for c in cams:
            ref.apply_camera(bscene, cam_obj, c.to_dict())
            bpy.ops.render.render()

    t0 = time.perf_counter()
    render_views()  # the first call compiles shaders
    first = (time.perf_counter() - t0) * 1000.0
    with open(out_path, "w") as fh:
        json.dump({"fwd": time_it(render_views, repeats), "first": first, "version": bpy.app.version_string}, fh)


def bench_blender(scene_path, tmp, repeats):
    if importlib.util.find_spec("bpy") is None:
        return None, "bpy is not installed: skipping Blender Workbench"
    out = os.path.join(tmp, "blender.json")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "blender", scene_path, out,
                           "--repeats", str(repeats)], capture_output=True, text=True, errors="replace",
                          timeout=WORKER_TIMEOUT_S)
    if proc.returncode != 0 or not os.path.exists(out):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, f"the Blender worker failed (exit {proc.returncode}): {' | '.join(tail)}"
    with open(out) as fh:
        return json.load(fh), None


# --- report -------------------------------------------------------------------------------------------------------

def agreement(ours, mits) -> str:
    """Coverage IoU and mean |albedo difference| on pixels both cover: the scenes match."""
    a, m = ours["alpha"] > 0, mits["depth"] > 0
    both = a & m
    iou = both.sum() / max(1, (a | m).sum())
    diff = np.abs(ours["albedo"][both] - mits["albedo"][both]).mean() if both.any() else float("nan")
    return (f"same scene: coverage ours {100 * a.mean():.1f}%, Mitsuba {100 * m.mean():.1f}%, IoU {iou:.3f}; "
            f"mean |albedo difference| {diff:.4f} on shared pixels (Mitsuba samples at random sub-pixel offsets)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-blender", action="store_true")
    ap.add_argument("--no-mitsuba", action="store_true")
    ap.add_argument("--worker", choices=("mitsuba", "blender"), help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        {"mitsuba": mitsuba_worker, "blender": blender_worker}[args.worker](*args.paths, args.repeats)
        return 0
    if args.threads:
        import torch  # the main process only

        torch.set_num_threads(args.threads)
    scene = make_scene()
    v, f, uv, uf, tex, cams = scene
    r = bench_ours(scene, args.device, args.repeats)
    print(f"mesh: {len(v)} vertices, {len(f)} triangles; texture {tex.shape[1]}x{tex.shape[0]}; "
          f"{len(cams)} views at {cams[0].resolution_x}x{cams[0].resolution_y}; ours on {args.device}; "
          f"torch threads {r['threads']}, cpus {os.cpu_count()}")
    print(f"coverage: {100 * (r['alpha'] > 0).mean():.1f}% of pixels; load average before: {os.getloadavg()[0]:.2f}")

    def line(label, t):
        print(f"{label:<50} median {t[0]:8.1f} ms   best {t[1]:8.1f} ms   cpu {t[2]:8.1f} ms")

    line("ours: numba z-buffer (8 views)", r["raster"])
    line("ours: forward only (no grad)", r["fwd"])
    line("ours: forward + backward", r["fwd_bwd"])
    line("ours: forward + backward, antialiased silhouettes", r["fwd_bwd_antialias"])
    mits = blend = None
    with tempfile.TemporaryDirectory(prefix="bench_render_") as tmp:
        scene_path = os.path.join(tmp, "scene.npz")
        save_scene(scene, scene_path)
        if not args.no_mitsuba:
            mits, why = bench_mitsuba(scene_path, tmp, args.repeats)
            if mits is None:
                print(f"Mitsuba: {why}")
            else:
                tag = f"Mitsuba {mits['version']} {mits['variant']}"
                line(f"{tag}: forward", mits["fwd"])
                line(f"{tag}: forward + backward", mits["fwd_bwd"])
                print(f"  (direct integrator, 1 spp, all views in one batch sensor; {mits['split_vertices']} vertices "
                      f"after the UV-seam split; first calls incl. kernel compilation/cache: {mits['first']:.0f} ms; "
                      f"gradients non-zero: {mits['grad_nonzero']})")
                print("  " + agreement(r, mits))
        if not args.no_blender:
            blend, why = bench_blender(scene_path, tmp, max(1, args.repeats // 2))
            if blend is None:
                print(f"Blender: {why}")
            else:
                line(f"Blender {blend['version']} Workbench: forward", blend["fwd"])
                print(f"  (Blender's first call, incl. shader compilation: {blend['first']:.0f} ms)")
    print("ratios from this run (median wall time; in brackets process CPU time, steadier on a busy machine):")

    def ratio(label, peer, ours, goal=""):
        print(f"  {label:<36} {peer[0] / ours[0]:5.1f}x  [cpu {peer[2] / ours[2]:5.1f}x]{goal}")

    if mits is not None:
        ratio("Mitsuba / ours, forward + backward:", mits["fwd_bwd"], r["fwd_bwd"], "   (goal >= 2x)")
        ratio("Mitsuba / ours, forward:", mits["fwd"], r["fwd"])
    if blend is not None:
        ratio("Workbench / ours, forward:", blend["fwd"], r["fwd"], "   (goal >= 3x)")
        ratio("Workbench forward / ours fwd+bwd:", blend["fwd"], r["fwd_bwd"])
    if mits is None and blend is None:
        print("  (no peer ran)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
