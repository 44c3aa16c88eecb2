"""Guidance loading, losses, augmentations and UV <-> vertex mapping of the
stylization engine (backend/style), on real open_clip model code."""

import json

import numpy as np
import pytest
import torch

from shared.errors import GuidanceUnavailable, InvalidParams
from backend.style import augment, losses
from backend.style.guidance import TEST_MODEL, available_models, load_guidance
from backend.style.testing import tiny_avatar
from backend.style.uvmaps import VertexSampler, avatar_uv_maps, rasterize_uv




@pytest.fixture(scope="module")
def tiny_guidance():
    return load_guidance(TEST_MODEL)


def test_missing_pretrained_weights_stop_with_actionable_error():
    # No network here and no cache: must not fall back to random weights.
    with pytest.raises(GuidanceUnavailable) as e:
        load_guidance("ViT-B-32:laion2b_s34b_b79k", allow_download=False)
    msg = str(e.value)
    assert "--clip-checkpoint" in msg and "test-tiny" in msg and e.value.code == "guidance_unavailable"


def test_local_dir_without_weights_is_refused(tmp_path):
    # open_clip itself only logs a warning and continues with random weights here.
    cfg = json.loads(open(__import__("open_clip").__path__[0] + "/model_configs/ViT-B-32.json").read())
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    with pytest.raises(GuidanceUnavailable, match="untrained"):
        load_guidance(f"local-dir:{tmp_path}", allow_download=False)


def test_missing_checkpoint_file_and_unknown_names_are_clear(tmp_path):
    with pytest.raises(GuidanceUnavailable, match="does not exist"):
        load_guidance("ViT-B-32", checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(InvalidParams, match="Unknown guidance model"):
        load_guidance("No-Such-Model:foo", allow_download=False)
    with pytest.raises(InvalidParams, match="Unknown pretrained tag"):
        load_guidance("ViT-B-32:no_such_tag", allow_download=False)


def test_checkpoint_file_loads_real_weights(tmp_path, tiny_guidance):
    # A weights file for the tiny architecture loads through --clip-checkpoint and
    # gives exactly the embeddings of the model it was saved from.
    p = tmp_path / "tiny.pt"
    torch.save(tiny_guidance.model.state_dict(), p)
    g = load_guidance("metamorph-test-tiny", str(p), allow_download=False, cache=False)
    assert not g.is_test_model
    a = g.encode_text(["a bronze statue"])
    b = tiny_guidance.encode_text(["a bronze statue"])
    assert torch.allclose(a, b, atol=1e-6)


def test_test_model_is_deterministic_labelled_and_uses_real_tokenizer(tiny_guidance):
    g2 = load_guidance(TEST_MODEL, allow_download=False, cache=False)  # fresh instance, same seeded weights
    assert tiny_guidance.is_test_model and g2.is_test_model
    t = ["a bronze statue", "an anime character"]
    e1, e2 = tiny_guidance.encode_text(t), g2.encode_text(t)
    assert torch.equal(e1, e2)
    assert e1.shape == (2, 64) and torch.allclose(e1.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(e1[0], e1[1])  # different prompts, different tokens
    assert TEST_MODEL in available_models() and "ViT-B-32:laion2b_s34b_b79k" in available_models()


def test_image_embedding_is_differentiable(tiny_guidance):
    x = torch.rand(2, 80, 80, 3, requires_grad=True)
    e = tiny_guidance.encode_image(x)
    assert e.shape == (2, 64)
    e[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_losses_are_zero_at_their_optimum_and_positive_elsewhere():
    a = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(8), dim=-1)
    assert float(losses.text_loss(t.expand(3, 8), t)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.text_loss(a, t)) > 0
    assert float(losses.identity_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    n = torch.nn.functional.normalize(torch.randn(8), dim=-1)
    d = torch.nn.functional.normalize(t - n, dim=-1)
    o = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    assert float(losses.directional_loss(o + d, o, t, n)) == pytest.approx(0.0, abs=1e-5)
    mix = losses.weighted_mix([(1.0, torch.tensor(1.0)), (3.0, torch.tensor(2.0))])
    assert float(mix) == pytest.approx(1.75)


def test_laplacian_is_zero_for_rigid_shift_and_positive_for_noise():
    av = tiny_avatar()
    faces = torch.from_numpy(av.faces.astype(np.int64))
    e = losses.mesh_edges(faces)
    V = av.num_vertices
    shift = torch.tensor([0.01, -0.02, 0.005]).expand(V, 3)
    assert float(losses.laplacian_loss(shift, e, V, 0.1)) == pytest.approx(0.0, abs=1e-10)
    noise = torch.randn(V, 3) * 0.01
    assert float(losses.laplacian_loss(noise, e, V, 0.1)) > 1e-3
    assert float(losses.offset_magnitude(shift, 0.1)) == pytest.approx(float((shift[0] / 0.1).pow(2).sum()), rel=1e-5)


def test_augmentations_are_seeded_and_keep_shapes():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    b1, b2 = augment.random_backgrounds(6, 32, 32, g1), augment.random_backgrounds(6, 32, 32, g2)
    assert torch.equal(b1, b2) and b1.shape == (6, 32, 32, 3)
    assert 0 <= float(b1.min()) and float(b1.max()) <= 1
    H = augment.crop_params(6, g1)
    img = torch.rand(6, 32, 32, 3)
    w = augment.warp(img, H, 24)
    assert w.shape == (6, 24, 24, 3)
    ident = torch.eye(3).expand(1, 3, 3)
    same = augment.warp(img[:1], ident, 32)
    assert torch.allclose(same, img[:1], atol=1e-5)  # identity homography reproduces the image


@pytest.mark.parametrize("split", [False, True])
def test_vertex_sampler_gives_seam_vertices_one_value(split):
    av = tiny_avatar(rows=8, cols=12, split_seam=split)
    S = len(av.texture_sets)
    sampler = VertexSampler.build(av.vertices, av.faces, av.uvs, av.uv_faces, av.face_material, S, tol=1e-6)
    maps = torch.rand(S, 2, 16, 16)
    vals = sampler(maps).numpy()
    assert vals.shape == (av.num_vertices, 2)
    # Coincident vertices (split seams, poles) carry identical values.
    key = np.round(av.vertices / 1e-6).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    for gid in np.unique(inv):
        members = np.nonzero(inv == gid)[0]
        if len(members) > 1:
            assert np.allclose(vals[members], vals[members[0]], atol=1e-6)
    # A constant map gives that constant on every vertex.
    const = sampler(torch.full((S, 2, 16, 16), 0.25)).numpy()
    assert np.allclose(const, 0.25, atol=1e-6)


def test_uv_maps_cover_the_charts():
    av = tiny_avatar(rows=8, cols=12)
    tri, bary = rasterize_uv(av.uvs, av.uv_faces, np.arange(av.num_faces), 32)
    assert (tri >= 0).mean() > 0.95  # the sphere's UV layout fills the square
    assert np.allclose(bary[tri >= 0].sum(-1), 1, atol=1e-4)
    m = avatar_uv_maps(av, 32)
    assert m["albedo"].shape == (2, 32, 32, 3) and m["mask"].shape == (2, 32, 32, 1)
    # Two texture sets split the UV square between them.
    assert 0.3 < float(m["mask"][0].mean()) < 0.7 and 0.3 < float(m["mask"][1].mean()) < 0.7
