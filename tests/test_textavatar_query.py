"""The relative codebook query against a known embedding (the deterministic stand-in
encoder of backend/textavatar/standin.py), on a real tiny codebook of rendered sample
avatars: a prompt planted as "the anchor moved a little towards entry j" must retrieve
j with the relative query, while the absolute query is biased toward the anchor; a
broken anchor must make the retrieval miss (so these tests can fail)."""

import numpy as np
import pytest
import torch

from shared.text_avatar import NEUTRAL_PROMPT, TOP_K
from backend.textavatar import codebook as C
from backend.textavatar import query as Q
from backend.textavatar import standin, views

CFG = C.CodebookConfig(entries=24, samples=240, render_size=64)
ALPHA = 0.3  # the planted text moves this fraction of the way from the anchor to the entry
PASS_WEIGHTS = {"grey": (1.0, 0.0), "color": (0.0, 1.0)}


def _stats(av, cams, p):
    out = views.render_avatar(av, cams, CFG.render_size, passes=(p,))
    return standin.image_stats(out[p]).mean(0).numpy()


@pytest.fixture(scope="module")
def book():
    torch.set_num_threads(1)
    enc = standin.LinearStatsEncoder()
    cams = C.anchor_cameras(CFG)
    anchor = C.entry_avatar(C.sampling.anchor_vector())
    sa = {p: _stats(anchor, cams, p) for p in PASS_WEIGHTS}
    enc.plant(NEUTRAL_PROMPT, sa["grey"])  # the codebook encodes the anchor's description once
    cb = C.build(enc, CFG)
    entries = [C.entry_avatar(v) for v in cb.vectors]
    stats = {p: (sa[p], np.stack([_stats(a, cams, p) for a in entries])) for p in PASS_WEIGHTS}
    return enc, cb, stats


def _texts(enc, s_anchor, s_target) -> Q.TextEmbeddings:
    enc.targets.clear()
    enc.plant(NEUTRAL_PROMPT, s_anchor)
    enc.plant("target", s_target)
    e = enc.encode_text(["target", NEUTRAL_PROMPT]).numpy()
    return Q.TextEmbeddings(shape=e[0], appearance=e[0], neutral=e[1])


def _retrieve_all(book, p, mode="relative", anchor=None):
    enc, cb, stats = book
    sa, se = stats[p]
    picks = []
    for j in range(len(cb)):
        texts = _texts(enc, sa, sa + ALPHA * (se[j] - sa))
        picks.append(Q.query(cb, texts, *PASS_WEIGHTS[p], mode=mode, anchor=anchor)[0]["index"])
    return np.asarray(picks)


@pytest.mark.parametrize("p", ["grey", "color"])
def test_relative_query_retrieves_the_planted_entry_where_the_absolute_one_is_biased_to_the_anchor(book, p):
    enc, cb, _ = book
    n = len(cb)
    rel = _retrieve_all(book, p)
    assert (rel == np.arange(n)).all(), f"relative query missed entries {np.flatnonzero(rel != np.arange(n))}"
    ab = _retrieve_all(book, p, mode="absolute")
    assert (ab == np.arange(n)).mean() <= 0.25
    emb = cb.grey if p == "grey" else cb.color
    anchor = cb.anchor_grey if p == "grey" else cb.anchor_color
    # biased toward the anchor: what the absolute query picks looks more like the anchor than what was asked for
    assert (emb[ab] @ anchor).mean() > (emb @ anchor).mean()


def _far_entry(cb):
    return int(np.argmin(cb.grey @ cb.anchor_grey + cb.color @ cb.anchor_color))


@pytest.mark.parametrize("anchor_kind", ["average avatar", "broken: another avatar", "broken: anchor and text swapped"])
def test_the_retrieval_depends_on_the_anchor(book, anchor_kind):
    """The correct anchor retrieves every planted entry; a broken one misses most of them."""
    enc, cb, stats = book
    n = len(cb)
    if anchor_kind == "average avatar":
        picks = _retrieve_all(book, "grey")
    elif anchor_kind == "broken: another avatar":
        k = _far_entry(cb)
        picks = _retrieve_all(book, "grey", anchor=Q.Anchor(cb.grey[k], cb.color[k]))
    else:  # the neutral description and the target swapped: the direction is reversed
        sa, se = stats["grey"]
        picks = []
        for j in range(n):
            t = _texts(enc, sa, sa + ALPHA * (se[j] - sa))
            t = Q.TextEmbeddings(shape=t.neutral, appearance=t.neutral, neutral=t.shape)
            picks.append(Q.query(cb, t, 1.0, 0.0)[0]["index"])
        picks = np.asarray(picks)
    hit = (picks == np.arange(n)).mean()
    if anchor_kind == "average avatar":
        assert hit == 1.0
    else:
        assert hit < 0.5, f"a broken anchor still retrieved {hit:.0%} of the planted entries"


def test_top_list_is_ranked_and_names_valid_parameters(book):
    enc, cb, stats = book
    sa, se = stats["color"]
    top = Q.query(cb, _texts(enc, sa, sa + ALPHA * (se[3] - sa)), 0.5, 0.5)
    assert [t["rank"] for t in top] == list(range(1, TOP_K + 1))
    scores = [t["score"] for t in top]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    for t in top:
        assert t["score"] == pytest.approx(0.5 * t["score_grey"] + 0.5 * t["score_color"])
        assert cb.params(t["index"]).to_dict() == t["params"]
    # the anchor itself scores 0 under the relative query (no direction away from itself)
    s = Q.relative_scores(cb.anchor_grey[None], cb.anchor_grey, cb.grey[0], cb.grey[1])
    assert s[0] == pytest.approx(0.0, abs=1e-6)
