"""Analytic antialiasing of silhouettes: coverage along occlusion edges, differentiable in
the vertex positions, so that moving an outline changes the image smoothly and gradients
reach the silhouette (the z-buffer alone gives none there).

For every pair of horizontally or vertically neighbouring pixels whose centres see
different surfaces at an occlusion boundary (one is the background, or the two
triangles share no vertex), the nearer pixel's triangle ``T`` is the foreground. The
segment between the two centres leaves ``T`` where an edge line of ``T`` crosses it, at
``t`` in [0, 1] pixels from the foreground centre. The edge is found by walking from ``T``
across shared edges to the surface's outline (a boundary edge, or one whose neighbour
faces the other way on screen): near an outline the triangles are slivers, and the edge
of ``T`` itself is usually not the outline. ``t`` is a function of that edge's projected
vertices. Each pixel spans half the segment, so::

    t > 0.5:  the other pixel is covered by t - 0.5:  C_o += (t - 0.5) (C_f - C_o)
    t < 0.5:  the foreground pixel misses 0.5 - t:    C_f += (0.5 - t) (C_o - C_f)

(continuous at t = 0.5, where both terms vanish). An edge is blended along the pixel
axis most across it (horizontal pairs for steep edges, vertical ones for flat edges), so
its coverage is counted once. Colour
passes are blended with what is behind them, their background included, so composite
by passing ``background=`` to the render, not afterwards; the alpha pass becomes the
coverage. Edges inside one surface (triangles sharing a vertex) are left alone: the
shading is continuous across them.
"""

from __future__ import annotations

import numpy as np
import torch

#: Passes whose values are colours or coverage, blended across silhouettes.
BLENDED_PASSES = ("color", "grey", "albedo", "alpha")
#: Triangles crossed at most on the way from a pixel centre to its neighbour's outline.
MAX_WALK = 16


def edge_pairs(tri: np.ndarray, zbuf: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The occlusion-boundary pixel pairs of a batch of views.

    tri [B,H,W] int (-1 = background), zbuf [B,H,W] depth (+inf on background), faces [F,3].
    Returns (fg [N], other [N], dir [N]): flat pixel indices into B*H*W of the foreground
    and the other pixel of each pair, and 0 for a horizontal pair, 1 for a vertical one.
    """
    B, H, W = tri.shape
    flat = np.arange(B * H * W).reshape(B, H, W)
    fg_all, ot_all, dir_all = [], [], []
    every = slice(None)
    neighbours = (((every, every, slice(0, W - 1)), (every, every, slice(1, W))),      # horizontal pairs
                  ((every, slice(0, H - 1), every), (every, slice(1, H), every)))      # vertical pairs
    for d, (a, b) in enumerate(neighbours):
        ta, tb = tri[a].ravel(), tri[b].ravel()
        ia, ib = flat[a].ravel(), flat[b].ravel()
        za, zb = zbuf[a].ravel(), zbuf[b].ravel()
        sel = ta != tb
        both = sel & (ta >= 0) & (tb >= 0)
        if both.any():
            # triangles of one surface (sharing a vertex) meet without an occlusion edge
            fa, fb = faces[ta[both]], faces[tb[both]]
            shared = (fa[:, :, None] == fb[:, None, :]).any((1, 2))
            idx = np.flatnonzero(both)
            sel[idx[shared]] = False
        a_front = za < zb
        fg = np.where(a_front, ia, ib)[sel]
        ot = np.where(a_front, ib, ia)[sel]
        fg_all.append(fg)
        ot_all.append(ot)
        dir_all.append(np.full(len(fg), d, np.int64))
    return np.concatenate(fg_all), np.concatenate(ot_all), np.concatenate(dir_all)


def edge_neighbours(faces: np.ndarray) -> np.ndarray:
    """[F,3] triangles -> [F,3] the triangle across edge k (vertex k -> k+1), -1 on a boundary
    (an edge of more than two triangles pairs its first two)."""
    F = len(faces)
    a = faces[:, [0, 1, 2]].reshape(-1).astype(np.int64)
    b = faces[:, [1, 2, 0]].reshape(-1).astype(np.int64)
    key = np.minimum(a, b) * (int(faces.max()) + 1) + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    same = np.flatnonzero(ks[1:] == ks[:-1])
    adj = np.full(3 * F, -1, np.int64)
    adj[order[same]] = order[same + 1] // 3
    adj[order[same + 1]] = order[same] // 3
    return adj.reshape(F, 3)


def _exit_edge(c: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles c [N,3,2], segment p -> q [N,2]: (edge [N] through which the segment leaves
    the triangle, -1 when q is inside it; t [N] along p -> q)."""
    v0, v1 = c, np.roll(c, -1, axis=1)
    e = v1 - v0
    area = e[:, 0, 0] * (c[:, 2, 1] - c[:, 0, 1]) - e[:, 0, 1] * (c[:, 2, 0] - c[:, 0, 0])
    orient = np.sign(area)[:, None]

    def side(x):
        r = x[:, None, :] - v0
        return (e[..., 0] * r[..., 1] - e[..., 1] * r[..., 0]) * orient      # > 0 inside

    sp, sq = side(p), side(q)
    leaving = (sp >= 0) & (sq < 0)
    t = np.where(leaving, sp / np.where(leaving, sp - sq, 1.0), np.inf)
    k = t.argmin(1)
    return np.where(leaving.any(1), k, -1), t[np.arange(len(t)), k]


def silhouette_edges(screen: np.ndarray, faces: np.ndarray, tri0: np.ndarray, view: np.ndarray, p: np.ndarray,
                     q: np.ndarray, max_steps: int = MAX_WALK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk from triangle ``tri0`` [N] (containing p) along p -> q across shared edges until an
    outline: a boundary edge or one whose neighbour faces the other way on screen.

    screen [B,V,2] projected vertices (numpy), faces [F,3], view [N], p, q [N,2].
    Returns (found [N] bool, triangle [N], edge [N]): the outline edge the segment crosses
    first; not found when q lies on the same surface (or the walk is longer than ``max_steps``).
    """
    adj = edge_neighbours(faces)
    N = len(tri0)
    cur = tri0.astype(np.int64).copy()
    found = np.zeros(N, bool)
    edge = np.zeros(N, np.int64)
    active = np.arange(N)

    def facing(t, v):
        c = screen[v[:, None], faces[t]]
        return ((c[:, 1, 0] - c[:, 0, 0]) * (c[:, 2, 1] - c[:, 0, 1])
                - (c[:, 1, 1] - c[:, 0, 1]) * (c[:, 2, 0] - c[:, 0, 0])) < 0

    for _ in range(max_steps):
        if not len(active):
            break
        t, v = cur[active], view[active]
        k, _ = _exit_edge(screen[v[:, None], faces[t]], p[active], q[active])
        going = k >= 0
        active, t, v, k = active[going], t[going], v[going], k[going]
        nb = adj[t, k]
        outline = nb < 0
        inner = ~outline
        outline[inner] = facing(nb[inner], v[inner]) != facing(t[inner], v[inner])
        found[active[outline]] = True
        edge[active[outline]] = k[outline]
        cur[active[~outline]] = nb[~outline]
        active = active[~outline]
    return found, cur, edge


def crossing(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Where the segment p -> q crosses the line through a and b: t [N] in [0, 1] along
    p -> q (all [N,2]). Differentiable in ``a`` and ``b``."""
    e = b - a

    def side(x):
        r = x - a
        return e[:, 0] * r[:, 1] - e[:, 1] * r[:, 0]

    sp, sq = side(p), side(q)
    den = sp - sq
    den = torch.where(den.abs() < 1e-12, torch.full_like(den, 1e-12), den)
    return (sp / den).clamp(0.0, 1.0)


def antialias(images: dict[str, torch.Tensor], tri: np.ndarray, zbuf: np.ndarray, screen: torch.Tensor,
              faces: torch.Tensor, num_vertices: int) -> dict[str, torch.Tensor]:
    """Blend ``images`` across silhouettes.

    images        {pass: [B,H,W,C]}: the passes of :data:`BLENDED_PASSES` are blended, the rest returned as they are
    tri, zbuf     [B,H,W] the z-buffer's triangle ids and depths (numpy, no gradients)
    screen        [B*V,2] projected vertices in pixels (u right, v down), differentiable
    faces         [F,3] int64; ``num_vertices`` = V
    """
    names = [n for n in BLENDED_PASSES if n in images]
    if not names:
        return images
    B, H, W = tri.shape
    fnp = faces.detach().cpu().numpy()
    fg, ot, axis = edge_pairs(tri, zbuf, fnp)
    if not len(fg):
        return images
    device = screen.device
    scr = screen.detach().cpu().numpy().astype(np.float64).reshape(B, num_vertices, 2)

    def centres(i):
        rc = i % (H * W)
        return np.stack([rc % W + 0.5, rc // W + 0.5], -1)

    view = fg // (H * W)
    pc, qc = centres(fg), centres(ot)
    found, t_id, k = silhouette_edges(scr, fnp, tri.reshape(-1)[fg], view, pc, qc)
    if not found.any():
        return images
    ea, eb = fnp[t_id, k], fnp[t_id, (k + 1) % 3]
    ev = np.abs(scr[view, eb] - scr[view, ea])                     # [N,2] |dx|, |dy| of the edge
    # Each edge is blended along the pixel axis most across it (horizontal pairs for steep
    # edges, vertical pairs for flat ones): counting it along both would double its coverage.
    across = np.where(axis == 0, ev[:, 1] >= ev[:, 0], ev[:, 0] > ev[:, 1])
    sel = np.flatnonzero(found & across)
    if not len(sel):
        return images
    view = view[sel]
    ia = ea[sel] + view * num_vertices
    ib = eb[sel] + view * num_vertices
    a = screen.index_select(0, torch.from_numpy(ia).to(device))
    b = screen.index_select(0, torch.from_numpy(ib).to(device))
    t = crossing(a, b, torch.from_numpy(pc[sel]).to(device, screen.dtype),
                 torch.from_numpy(qc[sel]).to(device, screen.dtype))
    fg_i = torch.from_numpy(fg[sel]).to(device)
    ot_i = torch.from_numpy(ot[sel]).to(device)
    w_ot = (t - 0.5).clamp(min=0.0)[:, None]
    w_fg = (0.5 - t).clamp(min=0.0)[:, None]
    out = dict(images)
    for name in names:
        img = images[name]
        flat = img.reshape(B * H * W, -1)
        cf, co = flat.index_select(0, fg_i), flat.index_select(0, ot_i)
        flat = flat.index_add(0, ot_i, (w_ot * (cf - co)).to(flat.dtype))
        flat = flat.index_add(0, fg_i, (w_fg * (co - cf)).to(flat.dtype))
        out[name] = flat.reshape(img.shape)
    return out
