#!/usr/bin/env python
"""Stylization timing benchmark.

Measures, on the sample avatar, the 9-material / 67-blendshape benchmark avatar
(``--avatar bench9``, :func:`backend.style.testing.bench_avatar`) or a GLB:
  * the network's starting point on a new avatar (one forward pass; nothing is fitted),
  * one adaptation step split by stage (augmentations, decoding, render, guidance
    forward, losses, and each backward part; ``--profile-repeats``),
  * wall time per new style: adaptation at the preset's settings + baking the
    textures, offsets and passes (what a user waits for once the avatar is prepared),
  * meta-training time per avatar: a few Reptile iterations timed, extrapolated to
    the preset's iteration count (printed as such).
Every timing is given as wall time and as this process's CPU time: on a shared
machine run ``--threads 1`` and compare CPU times (two OpenMP threads on an
oversubscribed machine spend most of their wall time waiting for each other).

Goals (issue #5): draft on 2 CPU cores with the ViT-B-32 architecture <= 60 s per
style; quality on one H100 <= 10 s per style (8 views/step, 512^2 UV); meta-training
<= 15 min per avatar on one H100. Without downloaded weights use
``--guidance ViT-B-32:untrained`` (same architecture and cost, seeded random weights;
the output is labelled as a test model).

    .venv/bin/python scripts/bench_stylize.py --preset draft --threads 2
    .venv/bin/python scripts/bench_stylize.py --preset quality --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.stylize import DEFAULT_PRESET, DEFAULT_TEXTURE_SIZE, PRESET_NAMES, StyleTerm, StylizeRequest  # noqa: E402
from backend.avatar import load_avatar, sample_avatar  # noqa: E402
from backend.style import meta  # noqa: E402
from backend.style.adapt import frame_weights, make_target  # noqa: E402
from backend.style.config import resolve  # noqa: E402
from backend.style.engine import build_context, run_stylize  # noqa: E402
from backend.style.guidance import load_guidance  # noqa: E402
from backend.style.rig import default_rig  # noqa: E402
from backend.style.testing import bench_avatar, tiny_avatar  # noqa: E402


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def pick_avatar(name: str):
    """``sample``, ``bench9`` (the 9-material, 67-blendshape benchmark avatar), ``tiny`` or a file."""
    if name == "sample":
        return sample_avatar()
    if name == "bench9":
        return bench_avatar()
    if name == "tiny":
        return tiny_avatar()
    return load_avatar(name)


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().requires_grad_(True)


def clock() -> float:
    """Seconds of this process's CPU time on CPU (robust on a shared machine when torch
    runs one thread, as ``--threads 1`` does), wall seconds on a GPU."""
    return time.perf_counter() if CLOCK == "wall" else time.process_time()


CLOCK = "cpu"


def profile_step(ctx, net, g, target, cams, fw, cfg, repeats: int = 3) -> dict:
    """Milliseconds (:func:`clock`) per stage of one adaptation step, mean over ``repeats`` steps after
    one warm-up. Mirrors :func:`backend.style.adapt.adapt`'s step, cut into stages at
    detached leaves (decoded avatar, renders, warped crops) so every backward part is
    timed on its own: the gradients are the same as the fused backward's."""
    from backend.style import augment, losses
    from backend.style.adapt import _style_loss

    dev = ctx.device
    mapper_ids = {id(p) for p in net.mapper_parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in mapper_ids)
    opt = torch.optim.Adam(net.mapper_parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    n, crop = cfg.views_per_step, g.image_size
    S = min(cfg.render_size, crop)
    w_id = float(np.clip(cfg.identity, 0.0, 1.0)) * cfg.identity_scale
    totals: dict[str, float] = {}
    net.to(memory_format=torch.channels_last)  # as adapt does
    with torch.no_grad():
        feats = [f.contiguous(memory_format=torch.channels_last) for f in net.encode(ctx.identity)]
    for it in range(repeats + 1):
        tm: dict[str, float] = {}

        def lap(name, t0):
            sync(dev)
            t1 = clock()
            tm[name] = tm.get(name, 0.0) + (t1 - t0) * 1e3
            return t1

        t = clock()
        ci = torch.randint(len(cams), (n,), generator=gen).tolist()
        fi = torch.randint(fw.shape[0], (n,), generator=gen).tolist()
        bg = augment.random_backgrounds(n, S, S, gen).to(dev)
        H = augment.crop_params(n * cfg.crops_per_view, gen)
        sel = [cams[c] for c in ci]
        t = lap("augment", t)
        dec = ctx.decode(net, feats)
        t = lap("decode_fwd", t)
        alb, neu, bso = _leaf(dec.albedo), _leaf(dec.neutral), _leaf(dec.bs_offsets)
        dec_l = type(dec)(albedo=alb, delta=dec.delta, neutral=neu, bs_offsets=bso)
        out = ctx.render(ctx.posed(fw[fi], dec_l), list(alb), sel, S, ("color", "grey", "alpha"), antialias=True)
        with torch.no_grad():
            orig = ctx.render(ctx.posed(fw[fi]), list(ctx.base_albedo), sel, S, ("color", "alpha"), antialias=True)
        t = lap("render_fwd", t)
        rc, rg, ra = _leaf(out["color"]), _leaf(out["grey"]), _leaf(out["alpha"])
        rep = lambda x: x.repeat_interleave(cfg.crops_per_view, 0)  # noqa: E731
        x_sg = augment.warp(rep(torch.cat([augment.composite(rc, ra, bg), augment.composite(rg, ra, bg)])),
                            H.repeat(2, 1, 1), crop)
        with torch.no_grad():
            x_o = augment.warp(rep(augment.composite(orig["color"], orig["alpha"], bg)), H, crop)
        t = lap("augment", t)
        lsg = _leaf(x_sg)
        e_s, e_g = g.encode_image(lsg).chunk(2)
        with torch.no_grad():
            e_o = g.encode_image(x_o)
        t = lap("guidance_fwd", t)
        l_off, l_lap = ctx.offset_regularizers(dec_l, ctx.head_size * net.cfg.max_offset_frac)
        total = (_style_loss(target, e_s, e_g, e_o, cfg) + w_id * losses.identity_loss(e_s, e_o)
                 + cfg.offset_weight * 1e-2 * l_off + cfg.laplacian_weight * l_lap
                 + cfg.texture_weight * losses.texture_regularizer(alb, ctx.base_albedo, ctx.mask))
        t = lap("losses_fwd", t)
        opt.zero_grad(set_to_none=True)
        total.backward()
        t = lap("guidance_and_losses_bwd", t)
        x_sg.backward(lsg.grad)
        t = lap("augment_bwd", t)
        pairs = [(out[k], lf.grad) for k, lf in (("color", rc), ("grey", rg), ("alpha", ra))
                 if out[k].requires_grad and lf.grad is not None]
        torch.autograd.backward([p for p, _ in pairs], [gr for _, gr in pairs])
        t = lap("render_bwd", t)
        torch.autograd.backward([dec.albedo, dec.neutral, dec.bs_offsets], [alb.grad, neu.grad, bso.grad])
        t = lap("decode_bwd", t)
        opt.step()
        lap("optimizer", t)
        if it > 0:
            for k, v in tm.items():
                totals[k] = totals.get(k, 0.0) + v / repeats
    for p in net.parameters():
        p.requires_grad_(True)
    out = {k: round(v, 1) for k, v in totals.items()}
    out["step_total"] = round(sum(totals.values()), 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", default="sample", help="sample, bench9 (9 materials, 67 blendshapes), tiny or a file")
    ap.add_argument("--guidance", default="ViT-B-32:untrained")
    ap.add_argument("--clip-checkpoint", default=None)
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESET_NAMES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--styles", type=int, default=2, help="styles timed after one warm-up run (0: time that run)")
    ap.add_argument("--meta-iterations", type=int, default=3, help="Reptile iterations actually timed")
    ap.add_argument("--texture-size", type=int, default=DEFAULT_TEXTURE_SIZE)
    ap.add_argument("--pass-resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--profile-repeats", type=int, default=3, help="adaptation steps timed stage by stage (0: skip)")
    ap.add_argument("--profile-only", action="store_true", help="stop after the starting point and the step split")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    global CLOCK
    CLOCK = "wall" if a.device.startswith("cuda") else "cpu"
    av = pick_avatar(a.avatar)
    config = resolve(a.preset)
    s = config.settings()
    t = time.time()
    g = load_guidance(a.guidance, a.clip_checkpoint, device=a.device)
    load_s = time.time() - t
    cache = tempfile.mkdtemp(prefix="bench_stylize_")
    cams = default_rig(av.vertices)
    frames = list(np.linspace(av.track.frames[0], av.track.frames[-1], a.frames)) if av.track is not None else [0.0]

    # 1) the starting point (once per avatar: one forward pass)
    t = time.time()
    ctx = build_context(av, config, a.device)
    ctx_s = time.time() - t
    t, c = time.time(), time.process_time()
    net0 = meta.starting_network(ctx, config)
    sync(a.device)
    fit_s = time.time() - t
    fit_cpu_s = time.process_time() - c
    fw = frame_weights(ctx, av.track, frames)

    # 1b) one adaptation step, stage by stage (on a copy of the starting network)
    prof = None
    if a.profile_repeats:
        net_p = copy.deepcopy(net0)
        tg = make_target(g, [{"kind": "text", "text": "a bronze statue"}])
        prof = profile_step(ctx, net_p, g, tg, cams, fw, config.adaptation, a.profile_repeats)
        print("adaptation step split (ms):", json.dumps(prof), flush=True)
    head = {"preset": a.preset, "device": a.device, "threads": torch.get_num_threads(), "guidance": g.name,
            "guidance_is_test_model": g.is_test_model,
            "avatar": {"name": av.name, "vertices": av.num_vertices, "faces": av.num_faces,
                       "texture_sets": len(av.texture_sets), "blendshapes": len(av.blendshape_names)},
            "uv_maps_s": round(ctx_s, 2), "start_s": round(fit_s, 2), "start_cpu_s": round(fit_cpu_s, 2),
            "step_split_ms": prof, "clock": CLOCK}
    if a.profile_only:
        print(json.dumps(head, indent=2))
        if a.json:
            Path(a.json).write_text(json.dumps(head, indent=2))
        return 0

    # 2) per-style wall time (adapt + bake), first run is a warm-up
    prompts = ["a bronze statue", "a watercolor painting", "a cyberpunk hacker with neon lights", "a zombie"]
    runs = []
    for i in range(a.styles + 1):
        req = StylizeRequest("bench", [StyleTerm("text", 1.0, prompts[i % len(prompts)])], cams, frames=frames,
                             preset=a.preset, guidance=a.guidance, texture_size=a.texture_size,
                             pass_resolution=a.pass_resolution, seed=i)
        t, c = time.time(), time.process_time()
        res = run_stylize(av, req, device=a.device, cache_dir=cache, guidance=g)
        sync(a.device)
        md = res.body["metadata"]
        runs.append({"prompt": req.terms[0].text, "wall_s": time.time() - t, "cpu_s": time.process_time() - c,
                     "adapt_s": md["adapt_seconds"],
                     "steps": md["steps"], "expression_dampening": md["expression_dampening"]})
    timed = runs[1:] or runs  # --styles 0: the one run, warm-up included

    # 3) meta-training: time a few Reptile iterations, extrapolate
    timed_config = resolve(a.preset, {"meta_iterations": a.meta_iterations})
    t, c = time.time(), time.process_time()
    meta.prepare(ctx, g, timed_config, cams, fw, styles=meta.load_styles()[:8], cache_dir=cache)
    sync(a.device)
    meta_iter_s = (time.time() - t) / a.meta_iterations
    meta_iter_cpu_s = (time.process_time() - c) / a.meta_iterations
    fig = {
        "preset": a.preset, "device": a.device, "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        "guidance": g.name, "guidance_is_test_model": g.is_test_model,
        "avatar": {"name": av.name, "vertices": av.num_vertices, "faces": av.num_faces,
                   "blendshapes": len(av.blendshape_names)},
        "settings": s, "cameras": len(cams), "frames": len(frames), "texture_size": a.texture_size,
        "guidance_load_s": round(load_s, 2), "uv_maps_s": round(ctx_s, 2),
        "start_s": round(fit_s, 2), "start_cpu_s": round(fit_cpu_s, 2),
        "per_style_wall_s": [round(r["wall_s"], 1) for r in timed],
        "per_style_wall_s_mean": round(float(np.mean([r["wall_s"] for r in timed])), 1),
        "per_style_adapt_s_mean": round(float(np.mean([r["adapt_s"] for r in timed])), 1),
        "per_style_cpu_s_mean": round(float(np.mean([r["cpu_s"] for r in timed])), 1),
        "steps": timed[0]["steps"],
        "expression_dampening": [round(r["expression_dampening"], 4) for r in runs],
        "meta_iteration_s": round(meta_iter_s, 2),
        "meta_iteration_cpu_s": round(meta_iter_cpu_s, 2),
        "meta_training_cpu_s_extrapolated": round(meta_iter_cpu_s * s["meta_iterations"], 0),
        "meta_training_s_extrapolated": round(meta_iter_s * s["meta_iterations"] + fit_s, 0),
        "meta_iterations_preset": s["meta_iterations"],
        "step_split_ms": prof,
    }
    print(json.dumps(fig, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
