#!/usr/bin/env python
"""Stylization timing benchmark.

Measures, on the sample avatar (or a GLB):
  * avatar fitting time (once per avatar and settings; cached afterwards),
  * wall time per new style: adaptation at the preset's settings + baking the
    textures, offsets and passes (what a user waits for once the avatar is prepared),
  * meta-training time per avatar: a few Reptile iterations timed, extrapolated to
    the preset's iteration count (printed as such).

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
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.stylize import StyleTerm, StylizeRequest  # noqa: E402
from backend.style import meta  # noqa: E402
from backend.style.adapt import AdaptConfig, frame_weights  # noqa: E402
from backend.style.engine import PRESETS, build_context, run_stylize, settings  # noqa: E402
from backend.style.guidance import load_guidance  # noqa: E402
from backend.style.meta import MetaConfig  # noqa: E402
from backend.style.rig import default_rig  # noqa: E402


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", default="sample")
    ap.add_argument("--guidance", default="ViT-B-32:untrained")
    ap.add_argument("--clip-checkpoint", default=None)
    ap.add_argument("--preset", default="draft", choices=["draft", "quality"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--styles", type=int, default=2, help="styles timed (after one warm-up run)")
    ap.add_argument("--meta-iterations", type=int, default=3, help="Reptile iterations actually timed")
    ap.add_argument("--texture-size", type=int, default=1024)
    ap.add_argument("--pass-resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--fit-steps", type=int, default=0,
                    help="override the preset's fitting steps (timing of the per-style run does not depend on it)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.avatar == "sample":
        from backend.avatar import sample_avatar
        av = sample_avatar()
    else:
        from backend.avatar import load_avatar
        av = load_avatar(a.avatar)
    s = settings(a.preset, {"fit_steps": a.fit_steps} if a.fit_steps else None)
    t = time.time()
    g = load_guidance(a.guidance, a.clip_checkpoint, device=a.device)
    load_s = time.time() - t
    cache = tempfile.mkdtemp(prefix="bench_stylize_")
    cams = default_rig(av.vertices)
    frames = list(np.linspace(av.track.frames[0], av.track.frames[-1], a.frames)) if av.track is not None else [0.0]

    # 1) fitting (once per avatar)
    t = time.time()
    ctx = build_context(av, s, a.device)
    ctx_s = time.time() - t
    t = time.time()
    net = meta.load_or_fit(ctx, ctx.net_config(width=s["width"], levels=s["levels"]), s["fit_steps"], cache)
    sync(a.device)
    fit_s = time.time() - t

    # 2) per-style wall time (adapt + bake), first run is a warm-up
    prompts = ["a bronze statue", "a watercolor painting", "a cyberpunk hacker with neon lights", "a zombie"]
    runs = []
    for i in range(a.styles + 1):
        req = StylizeRequest("bench", [StyleTerm("text", 1.0, prompts[i % len(prompts)])], cams, frames=frames,
                             preset=a.preset, guidance=a.guidance, texture_size=a.texture_size,
                             pass_resolution=a.pass_resolution, seed=i)
        t = time.time()
        res = run_stylize(av, req, device=a.device, cache_dir=cache, guidance=g,
                          overrides={"fit_steps": s["fit_steps"]})
        sync(a.device)
        md = res.body["metadata"]
        runs.append({"prompt": req.terms[0].text, "wall_s": time.time() - t, "adapt_s": md["adapt_seconds"],
                     "steps": md["steps"], "expression_dampening": md["expression_dampening"]})
    timed = runs[1:]

    # 3) meta-training: time a few Reptile iterations, extrapolate
    cfg = ctx.net_config(width=s["width"], levels=s["levels"])
    fw = frame_weights(ctx, av.track, frames)
    acfg = AdaptConfig(views_per_step=s["views_per_step"], render_size=s["render_size"])
    t = time.time()
    meta.prepare(ctx, g, cfg, acfg, MetaConfig(iterations=a.meta_iterations, inner_steps=s["inner_steps"],
                                               fit_steps=s["fit_steps"]), cams, fw,
                 styles=meta.load_styles()[:8], cache_dir=cache)
    sync(a.device)
    meta_iter_s = (time.time() - t) / a.meta_iterations
    fig = {
        "preset": a.preset, "device": a.device, "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        "guidance": g.name, "guidance_is_test_model": g.is_test_model,
        "avatar": {"name": av.name, "vertices": av.num_vertices, "faces": av.num_faces,
                   "blendshapes": len(av.blendshape_names)},
        "settings": s, "cameras": len(cams), "frames": len(frames), "texture_size": a.texture_size,
        "guidance_load_s": round(load_s, 2), "uv_maps_s": round(ctx_s, 2), "fit_s": round(fit_s, 1),
        "per_style_wall_s": [round(r["wall_s"], 1) for r in timed],
        "per_style_wall_s_mean": round(float(np.mean([r["wall_s"] for r in timed])), 1),
        "per_style_adapt_s_mean": round(float(np.mean([r["adapt_s"] for r in timed])), 1),
        "steps": timed[0]["steps"],
        "expression_dampening": [round(r["expression_dampening"], 4) for r in runs],
        "meta_iteration_s": round(meta_iter_s, 2),
        "fit_s_at_preset_steps_extrapolated": round(fit_s / s["fit_steps"] * PRESETS[a.preset]["fit_steps"], 0),
        "meta_training_s_extrapolated": round(meta_iter_s * s["meta_iterations"]
                                              + fit_s / s["fit_steps"] * PRESETS[a.preset]["fit_steps"], 0),
        "meta_iterations_preset": s["meta_iterations"],
    }
    print(json.dumps(fig, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
