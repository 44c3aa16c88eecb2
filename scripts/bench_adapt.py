#!/usr/bin/env python
"""Adaptation benchmark (the method's headline): guidance loss versus step on
held-out styles (backend/style/data/styles_heldout.txt, never meta-trained),
from the meta-learned initialization and from the network's starting point (the
non-meta init, which reproduces the avatar by construction; still reported under
the key "fitted", as when it was fitted), with the same seeds, views and optimizer.

Prints per-step mean losses at fixed budgets, the area under the curve, and
the ratio: steps the fitted init needs to reach its own 200-step loss divided
by the steps the meta init needs to reach that same loss (goal: >= 10, i.e. the
meta init gets there in <= 20 steps).

CPU default (a few minutes): test-tiny guidance on the small procedural head.
GPU: --guidance ViT-B-32:laion2b_s34b_b79k --avatar sample --resolution 256 ...
With test-tiny the numbers measure the mechanics, not style quality.

    .venv/bin/python scripts/bench_adapt.py [--avatar tiny|sample|PATH] [--guidance test-tiny]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.stylize import DEFAULT_PRESET  # noqa: E402
from backend.style import meta  # noqa: E402
from backend.style.adapt import adapt, evaluate, frame_weights, load_mapper_state, make_target  # noqa: E402
from backend.style.config import resolve  # noqa: E402
from backend.style.context import AvatarContext  # noqa: E402
from backend.style.guidance import load_guidance  # noqa: E402
from backend.style.net import StyleNet  # noqa: E402
from backend.style.rig import default_rig  # noqa: E402
from backend.style.testing import tiny_avatar  # noqa: E402


def curve(ctx, cfg, fitted, mappers, g, target, cams, fw, ecams, efw, acfg, steps, eval_at, render):
    net = StyleNet(cfg).to(ctx.device)
    net.load_state_dict(fitted)
    if mappers is not None:
        load_mapper_state(net, mappers)
    out = {0: evaluate(ctx, net, g, target, ecams, efw, render)}

    def prog(stage, step, total, losses, preview):
        if step in eval_at:
            out[step] = evaluate(ctx, net, g, target, ecams, efw, render)

    adapt(ctx, net, g, target, cams, fw, replace(acfg, steps=steps, preview_every=0), progress=prog)
    return out


def steps_to_reach(c: dict, level: float) -> float:
    for s in sorted(c):
        if c[s] <= level:
            return s
    return float("inf")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", default="tiny", help="tiny (procedural head), sample, or a GLB path")
    ap.add_argument("--guidance", default="test-tiny")
    ap.add_argument("--clip-checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resolution", type=int, default=64, help="UV working resolution")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--render", type=int, default=64, help="render size during adaptation")
    ap.add_argument("--views", type=int, default=2, help="views per step")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--meta-iterations", type=int, default=300)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--outer-lr", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=200, help="non-meta reference budget")
    ap.add_argument("--heldout", type=int, default=5, help="number of held-out styles")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    if a.avatar == "tiny":
        av = tiny_avatar()
    elif a.avatar == "sample":
        from backend.avatar import sample_avatar
        av = sample_avatar()
    else:
        from backend.avatar import load_avatar
        av = load_avatar(a.avatar)
    g = load_guidance(a.guidance, a.clip_checkpoint, device=a.device)
    config = resolve(DEFAULT_PRESET, {"resolution": a.resolution, "width": a.width, "render_size": a.render,
                               "views_per_step": a.views,
                               "meta_iterations": a.meta_iterations, "inner_steps": a.inner_steps})
    config = replace(config, adaptation=replace(config.adaptation, lr=a.lr),
                     meta=replace(config.meta, outer_lr=a.outer_lr))
    ctx = AvatarContext(av, a.resolution, device=a.device)
    cfg = ctx.net_config(config.network)
    cams = default_rig(av.vertices)
    frames = list(np.asarray(av.track.frames)[:: max(1, len(av.track.frames) // 4)]) if av.track is not None else [0.0]
    fw = frame_weights(ctx, av.track, frames)
    ecams, efw = cams[::3], fw[:2]
    acfg = config.adaptation
    cache = tempfile.mkdtemp(prefix="bench_adapt_")
    tm = time.time()
    meta.prepare(ctx, g, config, cams, fw, cache_dir=cache)
    meta_s = time.time() - tm
    fitted, mappers, _ = meta.load_meta_init(cache, ctx, g.name, config)
    eval_at = sorted({1, 2, 3, 5, 10, 15, 20, 30, 50, 100, 150, a.steps} & set(range(1, a.steps + 1)))
    styles = meta.load_styles(heldout=True)[: a.heldout]
    curves = {"fitted": [], "meta": []}
    for s in styles:
        tg = make_target(g, [{"kind": "text", "text": s}])
        for init, m, budget in (("fitted", None, a.steps), ("meta", mappers, 20)):
            curves[init].append(curve(ctx, cfg, fitted, m, g, tg, cams, fw, ecams, efw, acfg, budget, eval_at,
                                      a.render))
        print(f"  {s!r}: fitted@0 {curves['fitted'][-1][0]:.4f} @20 {curves['fitted'][-1][20]:.4f} "
              f"@{a.steps} {curves['fitted'][-1][a.steps]:.4f} | meta@0 {curves['meta'][-1][0]:.4f} "
              f"@20 {curves['meta'][-1][20]:.4f}", flush=True)
    mean = {k: {s: float(np.mean([c[s] for c in v])) for s in v[0]} for k, v in curves.items()}
    ref = mean["fitted"][a.steps]
    n_fit = steps_to_reach(mean["fitted"], ref)
    n_meta = steps_to_reach(mean["meta"], ref)
    budgets = [0, 5, 10, 20]

    def auc(c, upto=20):
        xs = [s for s in sorted(c) if s <= upto]
        return float(np.trapz([c[s] for s in xs], xs) / upto)

    fig = {
        "guidance": g.name, "guidance_is_test_model": g.is_test_model, "avatar": a.avatar, "device": a.device,
        "heldout_styles": styles, "meta_iterations": a.meta_iterations, "meta_training_seconds": round(meta_s, 1),
        "fitted_loss_at": {b: round(mean["fitted"][b], 4) for b in budgets + [a.steps]},
        "meta_loss_at": {b: round(mean["meta"][b], 4) for b in budgets},
        "auc_0_20": {"fitted": round(auc(mean["fitted"]), 4), "meta": round(auc(mean["meta"]), 4)},
        "reference_loss_fitted_at_%d" % a.steps: round(ref, 4),
        "steps_to_reference": {"fitted": n_fit, "meta": n_meta},
        "ratio": (n_fit / n_meta) if n_meta not in (0, float("inf")) else (float("inf") if n_meta == 0 else 0.0),
        "meta_reaches_reference_within_20_steps": n_meta <= 20,
        "total_seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(fig, indent=2, default=str))
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
