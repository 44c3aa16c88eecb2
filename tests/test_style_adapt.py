"""Fitting, few-step adaptation and Reptile meta-learning of the style network,
with the test guidance model on the small procedural head and the real renderer."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from shared.errors import Cancelled
from backend.style import meta
from backend.style.adapt import adapt, evaluate, frame_weights, load_mapper_state, make_target
from backend.style.config import resolve
from backend.style.context import AvatarContext
from backend.style.start import reproduction_error, start_network
from backend.style.guidance import TEST_MODEL, load_guidance
from backend.style.net import StyleNet
from backend.style.rig import default_rig
from backend.style.testing import tiny_avatar



R = 32
RENDER = 48
# The module's network: UV 32, width 16, at its starting point; renders at 48 while adapting.
CONFIG = resolve("draft", {"resolution": R, "width": 16, "render_size": RENDER})


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    av = tiny_avatar()
    ctx = AvatarContext(av, R)
    net = start_network(ctx, ctx.net_config(CONFIG.network))
    with torch.no_grad():
        hist = [float(reproduction_error(net, ctx))]
    g = load_guidance(TEST_MODEL)
    cams = default_rig(av.vertices)
    fw = frame_weights(ctx, av.track, [0.0, 2.0, 4.0])
    return dict(av=av, ctx=ctx, net=net, state={k: v.clone() for k, v in net.state_dict().items()}, hist=hist,
                g=g, cams=cams, fw=fw, acfg=replace(CONFIG.adaptation, preview_every=0))


def with_meta(s, **meta_fields):
    """The module's config with its adaptation settings and these meta-training settings."""
    return replace(CONFIG, adaptation=s["acfg"], meta=replace(CONFIG.meta, **meta_fields))


def fresh(s):
    net = StyleNet(s["net"].cfg)
    net.load_state_dict(s["state"])
    return net


def test_fitted_network_reproduces_the_avatar(setup):
    s = setup
    ctx = s["ctx"]
    # The starting point reproduces the avatar by construction (no fitting): its error is exactly 0.
    assert s["hist"] == [0.0]
    with torch.no_grad():
        dec = ctx.decode(fresh(s))
        assert float(dec.neutral.abs().max()) < 1e-3 * ctx.head_size * 30  # < 1 mm-ish on a 0.3 m head
        assert float(dec.bs_offsets.abs().max()) < 1e-3
        w = s["fw"]
        cams = s["cams"][:4]
        sty = ctx.render(ctx.posed(w[:1].expand(4, -1), dec), list(dec.albedo), cams, 64, ("color", "alpha"))
        org = ctx.render(ctx.posed(w[:1].expand(4, -1)), list(ctx.base_albedo), cams, 64, ("color", "alpha"))
    cover = org["alpha"] > 0.5
    assert float(cover.float().mean()) > 0.05
    diff = (sty["color"] - org["color"]).abs()[cover.expand_as(sty["color"])]
    assert float(diff.mean()) < 0.01, float(diff.mean())


def test_adapt_changes_only_the_bias_mappers_and_lowers_the_loss(setup):
    s = setup
    net = fresh(s)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    tg = make_target(s["g"], [{"kind": "text", "text": "a bronze statue"}])
    ecams = s["cams"][::3]
    l0 = evaluate(s["ctx"], net, s["g"], tg, ecams, s["fw"][:2], RENDER)
    r = adapt(s["ctx"], net, s["g"], tg, s["cams"], s["fw"], replace(s["acfg"], steps=15))
    l1 = evaluate(s["ctx"], net, s["g"], tg, ecams, s["fw"][:2], RENDER)
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("mappers.") for k in changed), changed
    assert {k for k in before if k.startswith("mappers.")} == changed
    assert l1 < l0 - 0.01, (l0, l1)
    assert r.steps_done == 15 and len(r.history) == 15
    assert np.mean([h["style"] for h in r.history[-5:]]) < r.history[0]["style"]


def test_adapt_is_deterministic_for_a_seed(setup):
    s = setup
    tg = make_target(s["g"], [{"kind": "text", "text": "a watercolor painting"}])
    outs = []
    for _ in range(2):
        net = fresh(s)
        r = adapt(s["ctx"], net, s["g"], tg, s["cams"], s["fw"], replace(s["acfg"], steps=3, seed=7))
        outs.append((r.decoded.albedo, [h["total"] for h in r.history]))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]


def test_cancel_stops_within_one_step_and_progress_streams(setup):
    s = setup
    seen = []
    tg = make_target(s["g"], [{"kind": "text", "text": "a zombie"}])

    def prog(stage, step, total, losses, preview):
        seen.append((step, preview is not None))

    with pytest.raises(Cancelled):
        adapt(s["ctx"], fresh(s), s["g"], tg, s["cams"], s["fw"], replace(s["acfg"], steps=50, preview_every=2),
              progress=prog, is_cancelled=lambda: len(seen) >= 3)
    assert [x[0] for x in seen] == [1, 2, 3]  # no step after the one during which cancel came
    assert seen[0][1]  # a preview came with step 1


def test_time_budget_stops_early(setup):
    s = setup
    tg = make_target(s["g"], [{"kind": "text", "text": "a zombie"}])
    r = adapt(s["ctx"], fresh(s), s["g"], tg, s["cams"], s["fw"], replace(s["acfg"], steps=10000, time_budget_s=0.5))
    assert r.stopped == "time_budget" and 1 <= r.steps_done < 10000


def test_meta_init_beats_fitted_init_on_heldout_styles(setup, tmp_path):
    s = setup
    ctx, g = s["ctx"], s["g"]
    cfg = s["net"].cfg
    config = with_meta(s, iterations=30, inner_steps=5, outer_lr=1.0, save_every=10)
    info = meta.prepare(ctx, g, config, s["cams"], s["fw"], cache_dir=tmp_path)
    assert info["iterations"] == 30 and info["guidance_is_test_model"]
    fitted, mappers, _ = meta.load_meta_init(tmp_path, ctx, g.name, config)
    ecams, efw = s["cams"][::3], s["fw"][:2]
    auc = {"fitted": [], "meta": []}
    for style in meta.load_styles(heldout=True)[:2]:
        assert style not in meta.load_styles()
        tg = make_target(g, [{"kind": "text", "text": style}])
        for init in auc:
            net = StyleNet(cfg)
            net.load_state_dict(fitted)
            if init == "meta":
                load_mapper_state(net, mappers)
            vals = [evaluate(ctx, net, g, tg, ecams, efw, RENDER)]

            def prog(stage, step, total, losses, preview):
                if step % 2 == 0:
                    vals.append(evaluate(ctx, net, g, tg, ecams, efw, RENDER))

            adapt(ctx, net, g, tg, s["cams"], s["fw"], replace(s["acfg"], steps=6), progress=prog)
            auc[init].append(np.mean(vals))
    assert np.mean(auc["meta"]) < np.mean(auc["fitted"]), auc


def test_prepare_resumes_and_cancel_keeps_progress(setup, tmp_path):
    s = setup
    ctx, g = s["ctx"], s["g"]
    config = with_meta(s, iterations=4, inner_steps=1, save_every=2)
    bound = meta.bind(config, ctx)
    calls = []
    with pytest.raises(Cancelled):
        meta.prepare(ctx, g, config, s["cams"], s["fw"], styles=["a", "b"], cache_dir=tmp_path,
                     progress=lambda *a: calls.append(a), is_cancelled=lambda: len(calls) >= 3)
    ck = torch.load(meta.meta_path(tmp_path, ctx.hash, g.name, bound), weights_only=True)
    assert ck["iteration"] == 3 and ck["guidance"] == g.name and ck["avatar_hash"] == ctx.hash
    info = meta.prepare(ctx, g, config, s["cams"], s["fw"], styles=["a", "b"], cache_dir=tmp_path)
    assert info["resumed_from"] == 3
    assert torch.load(meta.meta_path(tmp_path, ctx.hash, g.name, bound), weights_only=True)["iteration"] == 4
    # A different guidance model never picks up this checkpoint.
    assert meta.load_meta_init(tmp_path, ctx, "ViT-B-32:laion2b_s34b_b79k", config) is None


def test_a_damaged_meta_checkpoint_is_set_aside_and_rebuilt(setup, tmp_path):
    s = setup
    ctx, g = s["ctx"], s["g"]
    config = with_meta(s, iterations=1, inner_steps=1, save_every=1)
    meta.prepare(ctx, g, config, s["cams"], s["fw"], styles=["a"], cache_dir=tmp_path)
    p = meta.meta_path(tmp_path, ctx.hash, g.name, meta.bind(config, ctx))
    assert meta.load_checkpoint(p, "cpu")["iteration"] == 1
    p.write_bytes(p.read_bytes()[:100])  # a crash or a full disk half-way
    assert meta.load_meta_init(tmp_path, ctx, g.name, config) is None  # damaged: not used
    assert any(x.name.startswith(p.name + ".bad-") for x in tmp_path.iterdir())
    info = meta.prepare(ctx, g, config, s["cams"], s["fw"], styles=["a"], cache_dir=tmp_path)
    assert info["resumed_from"] == 0 and meta.load_meta_init(tmp_path, ctx, g.name, config) is not None
