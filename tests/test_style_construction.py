"""The style network's starting point reproduces the avatar by construction, and the
blendshape offsets are computed only where blendshapes move, with the same values as
the dense computation (tiny procedural head, real renderer)."""

import numpy as np
import torch

from backend.style import losses
from backend.style.adapt import frame_weights
from backend.style.context import AvatarContext
from backend.style.start import reproduction_error, start_network
from backend.style.rig import default_rig
from backend.style.testing import bench_avatar, tiny_avatar


def test_start_is_the_avatar_and_gradients_reach_the_mappers():
    av = tiny_avatar()
    ctx = AvatarContext(av, 32)
    net = start_network(ctx, ctx.net_config(width=8), seed=5)
    dec = ctx.decode(net)
    assert torch.equal(dec.albedo, ctx.base_albedo)  # exactly the texture, black/white texels included
    assert float(dec.neutral.detach().abs().max()) == 0.0 and float(dec.bs_offsets.detach().abs().max()) == 0.0
    assert float(reproduction_error(net, ctx).detach()) == 0.0
    (dec.albedo.sum() + dec.neutral.sum() + dec.bs_offsets.sum()).backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in net.mapper_parameters())
    with torch.no_grad():
        cams = default_rig(av.vertices)[:3]
        w = frame_weights(ctx, av.track, [2.0]).expand(3, -1)
        a = ctx.render(ctx.posed(w, dec), list(dec.albedo), cams, 48, ("color",))["color"]
        b = ctx.render(ctx.posed(w), list(ctx.base_albedo), cams, 48, ("color",))["color"]
    assert float((a - b).abs().mean()) < 1 / 255


def test_blendshape_head_at_moving_vertices_equals_the_dense_head():
    ctx = AvatarContext(tiny_avatar(), 32)
    net = start_network(ctx, ctx.net_config(width=8), seed=1)
    with torch.no_grad():
        for p in net.mapper_parameters():
            p.add_(torch.randn_like(p) * 0.1)  # away from the start, so offsets are non-zero
        _, _, x = net(ctx.identity)
        dense = ctx.sampler(net.head_bs(x))[ctx.moving]  # conv on every texel, then per-vertex means
        sparse = ctx.bs_sampler.head(net.head_bs, x)
    # Equal wherever a vertex's coincident copies all move (the sparse sampler averages moving copies only).
    grp = ctx.sampler.group.numpy()
    moving = np.zeros(ctx.vertices.shape[0], bool)
    moving[ctx.moving.numpy()] = True
    whole = torch.from_numpy(np.array([moving[grp == grp[v]].all() for v in ctx.moving.numpy()]))
    assert whole.float().mean() > 0.8
    assert torch.allclose(dense[whole], sparse[whole], atol=1e-5), float((dense - sparse)[whole].abs().max())
    with torch.no_grad():
        dec = ctx.decode(net)
    scale = ctx.head_size * net.cfg.max_offset_frac
    offs = torch.cat([dec.neutral[None], dec.bs_offsets], 0)
    ref = (losses.offset_magnitude(offs, scale), losses.laplacian_loss(offs, ctx.edges, ctx.vertices.shape[0], scale))
    got = ctx.offset_regularizers(dec, scale)
    assert float(ref[1]) > 0
    for r, g in zip(ref, got):
        assert torch.allclose(r, g, rtol=1e-4), (float(r), float(g))
    # Offsets stay where the blendshapes move and within their bound.
    bs_norm = ctx.bs_norm.squeeze(-1)
    assert float(dec.bs_offsets.norm(dim=-1)[bs_norm == 0].abs().max()) == 0.0
    assert bool((dec.bs_offsets.norm(dim=-1) <= 0.5 * bs_norm + 1e-7).all())


def test_bench_avatar_has_nine_sets_and_67_blendshapes_that_move_only_the_face():
    av = bench_avatar()
    assert len(av.texture_sets) == 9 and len(av.blendshape_names) == 67
    assert len(set(av.blendshape_names)) == 67 and np.bincount(av.face_material).min() > 0
    moving = np.linalg.norm(av.blendshapes, axis=-1).max(0) > 0
    sets = set(av.face_material[moving[av.faces].any(1)].tolist())
    assert 1 <= len(sets) < 9  # hair, eyes, ears... never move
    assert (np.linalg.norm(av.blendshapes, axis=-1).max(1) > 0).all()  # every blendshape moves something
