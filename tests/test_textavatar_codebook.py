"""The shape codebook: stratified sampling, k-means entries, rendering + embedding, and the
cache (keyed by guidance model, engine version and settings; built once, then reused)."""

import numpy as np
import pytest
import torch

from shared.text_avatar import NEUTRAL_PROMPT
from backend.avatar.params import DISCRETE, VECTOR_SIZE, AvatarParams
from backend.cache import cache_dir
from backend.textavatar import codebook as C
from backend.textavatar import sampling, standin, views

SMALL = C.CodebookConfig(entries=8, samples=48, render_size=32)


def test_samples_cover_every_discrete_combination_and_entries_are_valid_members():
    vecs = sampling.sample_vectors(len(sampling.combinations()) * 3, seed=1)
    assert len(np.unique(sampling.combo_of(vecs))) == len(sampling.combinations()) == 4 * 3 * 3
    entries, info = sampling.codebook_vectors(40, 360, seed=2)
    assert entries.shape == (40, VECTOR_SIZE) and info["sample_combinations"] == 36
    again, _ = sampling.codebook_vectors(40, 360, seed=2)
    np.testing.assert_array_equal(entries, again)  # deterministic for a seed
    pool = sampling.sample_vectors(360, seed=2)
    assert all((pool == e).all(1).any() for e in entries)  # every entry is a real sampled vector
    for e in entries:  # strict one-hot blocks, in range: a valid parameter set
        p = AvatarParams.from_vector(e)
        np.testing.assert_allclose(p.to_vector(), e, atol=1e-6)
    i = sampling.N_CONTINUOUS
    for choices in DISCRETE.values():
        block = entries[:, i:i + len(choices)]
        assert set(np.unique(block)) <= {0.0, 1.0} and (block.sum(1) == 1).all()
        i += len(choices)


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.concatenate([c + rng.normal(size=(30, 2)) for c in centres])
    cent, labels = sampling.kmeans(x, 3, seed=0)
    assert len(np.unique(labels)) == 3
    for c in centres:
        assert np.linalg.norm(cent - c, axis=1).min() < 1.0
    with pytest.raises(ValueError):
        sampling.kmeans(x, 1000, seed=0)


def test_codebook_is_built_once_cached_and_reused(tmp_path):
    torch.set_num_threads(1)
    enc = standin.LinearStatsEncoder()
    enc.plant(NEUTRAL_PROMPT, np.ones(len(standin.STAT_NAMES)))  # the anchor's description
    calls = []
    cb, built = C.load_or_build(enc, SMALL, tmp_path, progress=lambda *a: calls.append(a))
    assert built and calls and calls[-1] == ("codebook", SMALL.entries, SMALL.entries)
    path = C.codebook_path(tmp_path, enc.name, SMALL)
    assert path.parent == cache_dir("textavatar", tmp_path) and path.is_file()
    assert not list(path.parent.glob("*.tmp*"))  # written atomically
    assert cb.grey.shape == cb.color.shape == (SMALL.entries, enc.M.shape[0])
    np.testing.assert_allclose(np.linalg.norm(cb.grey, axis=1), 1.0, atol=1e-5)
    assert cb.info["guidance"] == enc.name and cb.info["engine_version"] == C.engine_version()
    # a second query in this process reuses it; a new process reads the file instead of rebuilding
    again, built_again = C.load_or_build(enc, SMALL, tmp_path)
    assert again is cb and not built_again
    C._memo.clear()
    cb2, built2 = C.load_or_build(enc, SMALL, tmp_path, progress=lambda *a: pytest.fail("rebuilt"))
    assert not built2
    np.testing.assert_array_equal(cb2.color, cb.color)
    np.testing.assert_array_equal(cb2.vectors, cb.vectors)
    np.testing.assert_array_equal(cb2.anchor_text, cb.anchor_text)
    # another guidance model or other settings get their own codebook
    other = standin.LinearStatsEncoder(seed=1)
    assert C.codebook_path(tmp_path, other.name, SMALL) != path
    assert C.codebook_key(enc.name, SMALL) != C.codebook_key(enc.name, C.CodebookConfig(entries=9, samples=48))


def test_entries_differ_where_their_parameters_do():
    """Rendered from the anchor's rig, a wider head covers more of the grey render."""
    torch.set_num_threads(1)
    cams = C.anchor_cameras(SMALL)
    narrow, wide = (AvatarParams(head_width=w, jaw_width=w, hairstyle="none") for w in (-1.0, 1.0))
    cover = []
    for p in (narrow, wide):
        out = views.render_avatar(C.entry_avatar(p.to_vector()), cams[:1], 64, passes=("alpha",))
        cover.append(float(out["alpha"].mean()))
    assert cover[1] > cover[0] * 1.05
