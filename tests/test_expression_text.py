"""Expression from text: the algorithm with a known stand-in encoder, and the plumbing
with the labelled test guidance model.

The stand-in encoder embeds a weight vector by a fixed linear map (no renders), and
each planted text embeds as the neutral text plus the map of a chosen codebook
entry, so the right candidates are known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared import expression as X
from shared.errors import InvalidParams, TooLarge
from shared.protocol import Limits

from backend.avatar import sample_avatar
from backend.expression import codebook as cbm
from backend.expression import motion
from backend.expression.posing import Poser, dense
from backend.expression.text import run_expression_from_text


class LinearEncoder:
    """embed(w) = w @ A + b (differentiable); planted texts map to b_t + w_planted @ A."""

    is_test_model = True

    def __init__(self, K: int, planted: dict[str, np.ndarray], D: int = 48, seed: int = 3):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(K, D, generator=g)
        self.b = torch.randn(D, generator=g)
        self.bt = torch.randn(D, generator=g)
        self.planted = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in planted.items()}
        self.key = f"linear-standin-{seed}"

    def embed(self, w: torch.Tensor) -> torch.Tensor:
        return w.float() @ self.A + self.b

    def embed_text(self, texts):
        out = []
        for t in texts:
            hit = [w for phrase, w in self.planted.items() if t.endswith(", " + phrase)]
            out.append(self.bt + (hit[0] @ self.A if hit else 0.0))
        return torch.stack(out)


@pytest.fixture(scope="module")
def avatar():
    return sample_avatar(texture_size=128, with_track=False)


def test_name_contract_roundtrip_and_validation():
    req = X.ExpressionFromTextRequest(avatar_id="a" * 8, text="laughing, then surprised", fps=24, duration_s=2)
    back = X.ExpressionFromTextRequest.from_params(req.to_params())
    assert back == req and back.validate(Limits()).num_frames == 48
    for bad in ({"fps": 0.0}, {"duration_s": 1e9}, {"top_k": 0}, {"steps": -1}, {"blinks": "yes"},
                {"text": "  "}, {"guidance": ""}, {"settings": {"views": 99}},
                {"settings": {"bogus": 1}}, {"fps": float("nan")}):
        with pytest.raises(InvalidParams):
            X.ExpressionFromTextRequest.from_params({**req.to_params(), **bad}).validate(Limits())
    with pytest.raises(TooLarge):
        X.ExpressionFromTextRequest.from_params({**req.to_params(), "text": "x" * 2000}).validate(Limits())
    with pytest.raises(InvalidParams, match="frames"):
        X.ExpressionFromTextRequest.from_params({**req.to_params(), "duration_s": 20.0, "fps": 30.0}).validate(Limits())
    with pytest.raises(InvalidParams):
        X.ExpressionFromTextRequest.from_params({"text": "hi"})


def test_phrases_and_closed_eyes():
    assert motion.split_phrases("laughing, then surprised") == ["laughing", "surprised"]
    assert motion.split_phrases("a big smile") == ["a big smile"]
    assert motion.asks_closed_eyes("sleeping peacefully") and motion.asks_closed_eyes("with eyes closed")
    assert not motion.asks_closed_eyes("laughing, then surprised")


def test_bspline_basis_is_a_partition_of_unity():
    B = motion.bspline_basis(50, 9)
    assert B.shape == (50, 9) and (B >= 0).all()
    np.testing.assert_allclose(B.sum(1), 1.0, atol=1e-5)
    assert B[0, 0] == pytest.approx(1.0) and B[-1, -1] == pytest.approx(1.0)


def test_standin_encoder_finds_planted_expressions_and_track_passes_them(avatar, tmp_path):
    poser = Poser(avatar)
    names = poser.names
    w, labels = cbm.entries(names)
    laugh = w[labels.index("laugh 1")]
    surprise = w[labels.index("surprise 1")]
    enc = LinearEncoder(len(names), {"laughing": laugh, "surprised": surprise})
    req = X.ExpressionFromTextRequest(avatar_id="local", text="laughing, then surprised", fps=12, duration_s=3,
                                      guidance="standin", steps=60, seed=1, blinks=False)
    res = run_expression_from_text(avatar, req, encoder=enc, cache_dir=tmp_path)
    got = [c["label"] for c in res.candidates]
    assert len(got) == 5 and "laugh 1" in got and "surprise 1" in got, got
    assert res.candidates[0]["label"] in ("laugh 1", "surprise 1")
    # the track passes within tolerance of every candidate, the planted ones tightest
    cand = np.stack([dense(names, c["weights"]) for c in res.candidates])
    dist = np.linalg.norm(res.weights[:, None] - cand[None], axis=-1).min(0)
    assert dist.max() < 0.2, dict(zip(got, dist))
    for lab in ("laugh 1", "surprise 1"):
        assert dist[got.index(lab)] < 0.1
    # "then": laughing comes before surprised
    assert res.candidates[got.index("laugh 1")]["frame"] < res.candidates[got.index("surprise 1")]["frame"]
    assert 0.0 <= res.weights.min() and res.weights.max() <= 1.0
    m = res.metadata["metrics"]
    assert m["optimized"]["clip_score"] >= m["baseline_linear"]["clip_score"] - 0.05
    assert res.metadata["guidance_is_test_model"] is True


def test_blinks_by_prior_unless_closed_eyes(avatar, tmp_path):
    names = Poser(avatar).names
    track = np.zeros((24 * 10, len(names)), np.float32)
    out, centres = motion.add_blinks(track, names, 24.0, seed=0)
    gaps = np.diff(centres) / 24.0
    assert len(centres) >= 2 and (gaps >= 2.0 - 1e-6).all() and (gaps <= 6.0 + 1e-6).all()
    assert out[:, names.index("eyeBlinkLeft")].max() == pytest.approx(1.0)
    assert out[:, names.index("jawOpen")].max() == 0.0
    w, labels = cbm.entries(names)
    enc = LinearEncoder(len(names), {"sleeping": w[labels.index("eyeBlink L+R 1")]})
    req = X.ExpressionFromTextRequest(avatar_id="local", text="sleeping", fps=12, duration_s=6, steps=5)
    res = run_expression_from_text(avatar, req, encoder=enc, cache_dir=tmp_path)
    assert res.metadata["blinks"] == [] and res.metadata["text_asks_closed_eyes"]


def test_test_tiny_plumbing_is_labelled_and_cached(avatar, tmp_path):
    req = X.ExpressionFromTextRequest(avatar_id="local", text="smiling", fps=8, duration_s=1.5, guidance="test-tiny",
                                      steps=3, settings={"render_size": 48, "views": 1, "intensities": 1})
    res = run_expression_from_text(avatar, req, cache_dir=tmp_path)
    assert res.metadata["guidance_is_test_model"] is True and "TEST guidance" in res.metadata["warning"]
    assert res.weights.shape == (12, len(res.names)) and len(res.labels) == 12
    assert len(list(tmp_path.glob("codebook_*.npz"))) == 1
    body, arrays = res.to_wire()
    back = X.ExpressionResult.from_wire(body, arrays)
    np.testing.assert_array_equal(back.weights, res.weights)
    assert back.frames[0] == req.start_frame
    res2 = run_expression_from_text(avatar, req, cache_dir=tmp_path)   # from the cache, same answer
    assert [c["label"] for c in res2.candidates] == [c["label"] for c in res.candidates]
