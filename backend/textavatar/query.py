"""Codebook queries: relative to a neutral anchor (the method) and absolute (for comparison).
Pure functions on numpy arrays of unit embeddings.

Relative score of entry i for a pass (grey or textured renders)::

    cos(img_i - img_anchor, text - text_neutral)

so "a person with a wide face" asks for a face wider than the anchor's rather than for
"a picture of a face". The two passes are mixed with the geometry / texture weights (the
shape prompt scores grey renders, the appearance prompt textured ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.text_avatar import TOP_K

_EPS = 1e-8


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def relative_scores(img: np.ndarray, anchor_img: np.ndarray, text: np.ndarray, neutral_text: np.ndarray) -> np.ndarray:
    """``img`` ``[N,D]``, ``anchor_img``/``text``/``neutral_text`` ``[D]`` -> ``[N]`` in [-1, 1]
    (an entry equal to the anchor scores 0)."""
    return _unit(np.asarray(img) - np.asarray(anchor_img)[None]) @ _unit(np.asarray(text) - np.asarray(neutral_text))


def absolute_scores(img: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Plain cosine ``[N]`` of each entry with the text."""
    return _unit(img) @ _unit(text)


@dataclass
class TextEmbeddings:
    """Unit text embeddings ``[D]`` of the prompts a query uses."""

    shape: np.ndarray
    appearance: np.ndarray
    neutral: np.ndarray


@dataclass
class Anchor:
    """The anchor's unit image embeddings ``[D]`` (grey and textured renders)."""

    grey: np.ndarray
    color: np.ndarray


def scores(codebook, texts: TextEmbeddings, geometry_weight: float, texture_weight: float,
           mode: str = "relative", anchor: Anchor | None = None) -> dict[str, np.ndarray]:
    """{"score", "score_grey", "score_color"}, each ``[N]``, for every codebook entry.
    ``anchor`` defaults to the codebook's own (the average avatar)."""
    a = anchor or Anchor(codebook.anchor_grey, codebook.anchor_color)
    if mode == "relative":
        sg = relative_scores(codebook.grey, a.grey, texts.shape, texts.neutral)
        sc = relative_scores(codebook.color, a.color, texts.appearance, texts.neutral)
    elif mode == "absolute":
        sg = absolute_scores(codebook.grey, texts.shape)
        sc = absolute_scores(codebook.color, texts.appearance)
    else:
        raise ValueError(f"unknown query mode {mode!r}")
    w = float(geometry_weight) + float(texture_weight)
    return {"score": (float(geometry_weight) * sg + float(texture_weight) * sc) / w,
            "score_grey": sg, "score_color": sc}


def top_entries(codebook, s: dict[str, np.ndarray], k: int = TOP_K) -> list[dict]:
    """The ``k`` best entries, best first: {rank, index, score, score_grey, score_color,
    params} (ties broken by index, so the order is deterministic)."""
    order = np.lexsort((np.arange(len(s["score"])), -s["score"]))[:k]
    return [{"rank": r + 1, "index": int(i), "score": float(s["score"][i]), "score_grey": float(s["score_grey"][i]),
             "score_color": float(s["score_color"][i]), "params": codebook.params(int(i)).to_dict()}
            for r, i in enumerate(order)]


def query(codebook, texts: TextEmbeddings, geometry_weight: float = 1.0, texture_weight: float = 1.0,
          mode: str = "relative", k: int = TOP_K, anchor: Anchor | None = None) -> list[dict]:
    """:func:`top_entries` of :func:`scores`."""
    return top_entries(codebook, scores(codebook, texts, geometry_weight, texture_weight, mode, anchor), k)
