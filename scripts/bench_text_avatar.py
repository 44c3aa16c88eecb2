"""Avatar from text with real CLIP weights: does the relative codebook query move the
attributes a prompt asks for, and how long do codebook build, query and sculpting take.

    .venv/bin/python scripts/bench_text_avatar.py [--guidance ViT-B-32:laion2b_s34b_b79k]
        [--clip-checkpoint PATH] [--device auto] [--cache-dir DIR] [--rebuild] [--preset quality]
        [--prompts FILE] [--codebook-entries 256] [--no-sculpt]

For every prompt of a list with intended attributes (built in; ``--prompts FILE`` takes
lines ``prompt | attribute=high|low|<choice>, ...``), the best entry of the relative query
"moves an attribute the right way" when, compared with the anchor (the average avatar), a
continuous parameter is higher (``high``) or lower (``low``), or a discrete one has the
intended choice. Prints that fraction (goal >= 0.8), the same for the absolute query, the
codebook build time, the mean query time (goal < 1 s) and the time of one full run with
sculpting at the preset (goal <= 2 minutes on a GPU at ``quality``).

Without real weights (none given and none in the open_clip / Hugging Face cache) it says
so and exits 0: the figures need a trained model. ``--guidance test-tiny`` or
``ViT-B-32:untrained`` time the mechanics; their retrieval figures are meaningless and
labelled so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.avatar.params import DISCRETE, AvatarParams  # noqa: E402
from shared.errors import GuidanceUnavailable  # noqa: E402
from shared.stylize import DEFAULT_GUIDANCE  # noqa: E402

PROMPTS = [
    ("a person with a very wide face", {"head_width": "high"}),
    ("a person with a very narrow face", {"head_width": "low"}),
    ("a person with a long nose", {"nose_length": "high"}),
    ("a person with a tiny short nose", {"nose_length": "low"}),
    ("a person with a broad nose", {"nose_width": "high"}),
    ("a bald person", {"hairstyle": "none"}),
    ("a person with long hair", {"hairstyle": "long"}),
    ("a person with a hair bun", {"hairstyle": "bun"}),
    ("a person wearing round glasses", {"glasses": "round"}),
    ("a person wearing rectangular glasses", {"glasses": "rectangular"}),
    ("a person with thick bushy eyebrows", {"eyebrow_style": "thick"}),
    ("a person with very dark skin", {"skin_tone": "high"}),
    ("a person with very pale skin", {"skin_tone": "low"}),
    ("a person with platinum blond hair", {"hair_lightness": "high"}),
    ("a person with jet black hair", {"hair_lightness": "low"}),
    ("a person with red hair", {"hair_redness": "high"}),
    ("a person with big eyes", {"eye_size": "high"}),
    ("a person with blue eyes", {"eye_color": "high"}),
    ("a person with a wide mouth", {"mouth_width": "high"}),
    ("a person with full lips", {"lip_fullness": "high"}),
    ("a person with big ears", {"ear_size": "high"}),
    ("a person with chubby cheeks", {"cheek_fullness": "high"}),
    ("a person with a long chin", {"chin_length": "high"}),
    ("a person with broad shoulders", {"shoulder_width": "high"}),
    ("a bald person with a long nose wearing round glasses",
     {"hairstyle": "none", "nose_length": "high", "glasses": "round"}),
]


def read_prompts(path: str) -> list:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompt, _, attrs = line.partition("|")
        want = dict(a.strip().split("=", 1) for a in attrs.split(",") if "=" in a)
        out.append((prompt.strip(), {k.strip(): v.strip() for k, v in want.items()}))
    return out


def moved_right(entry: dict, anchor: AvatarParams, attr: str, want: str) -> bool:
    """Does the entry's ``attr`` differ from the anchor's the way ``want`` says?"""
    if attr in DISCRETE:
        return entry[attr] == want
    delta = float(entry[attr]) - float(getattr(anchor, attr))
    return delta > 0 if want == "high" else delta < 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guidance", default=DEFAULT_GUIDANCE)
    ap.add_argument("--clip-checkpoint", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache-dir", default=None, help="cache root (default: the user's)")
    ap.add_argument("--rebuild", action="store_true", help="build the codebook afresh in a temporary cache")
    ap.add_argument("--preset", default="quality")
    ap.add_argument("--prompts", default=None)
    ap.add_argument("--codebook-entries", type=int, default=None)
    ap.add_argument("--codebook-samples", type=int, default=None)
    ap.add_argument("--no-sculpt", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from shared.text_avatar import AvatarFromTextRequest
    from backend.style.guidance import load_guidance
    from backend.textavatar import codebook, pipeline, query

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        g = load_guidance(args.guidance, args.clip_checkpoint, device=device, allow_download=False)
    except GuidanceUnavailable as e:
        print(f"NO REAL CLIP WEIGHTS: the text-avatar benchmark needs a trained guidance model and none was "
              f"given or cached, so no figures were measured.\n  ({e.message})\n  Pass --clip-checkpoint PATH "
              f"(with --guidance ARCH) or fill the open_clip cache, then run this again.")
        return 0
    if g.is_test_model:
        print(f"WARNING: '{g.name}' is a TEST MODEL with untrained weights: the retrieval fractions below are "
              f"meaningless; only the timings mean something.")
    kw = {}
    if args.codebook_entries:
        kw["codebook_entries"] = args.codebook_entries
    if args.codebook_samples:
        kw["codebook_samples"] = args.codebook_samples
    base = AvatarFromTextRequest("x", guidance=args.guidance, preset=args.preset, **kw)
    cfg = codebook.CodebookConfig.from_request(base)
    root = tempfile.mkdtemp(prefix="bench-text-avatar-") if args.rebuild else args.cache_dir
    t0 = time.time()
    cb, built = codebook.load_or_build(g, cfg, root, progress=lambda st, i, n, *a: print(
        f"[codebook] {i}/{n}", file=sys.stderr, flush=True) if i % 64 == 0 or i == n else None)
    build_s = time.time() - t0
    print(f"guidance {g.name} on {device}; codebook {len(cb)} entries from {cfg.samples} samples at "
          f"{cfg.render_size} px, {cb.info['combinations']}/{cb.info['combinations_total']} discrete combinations: "
          f"{'built' if built else 'loaded from the cache'} in {build_s:.1f} s "
          f"(build time {cb.info['build_seconds']:.1f} s)")
    items = read_prompts(args.prompts) if args.prompts else PROMPTS
    anchor = AvatarParams.from_vector(cb.anchor_vector)
    hits = {"relative": [], "absolute": []}
    q_times = []
    for prompt, want in items:
        tq = time.time()
        texts = pipeline.text_embeddings(g, AvatarFromTextRequest(prompt).prompts(), cb.anchor_text)
        rel = query.query(cb, texts, 1.0, 1.0, "relative")
        q_times.append(time.time() - tq)
        ab = query.query(cb, texts, 1.0, 1.0, "absolute")
        marks = []
        for attr, w in want.items():
            r, a = moved_right(rel[0]["params"], anchor, attr, w), moved_right(ab[0]["params"], anchor, attr, w)
            hits["relative"].append(r)
            hits["absolute"].append(a)
            marks.append(f"{attr}={w}: {'ok' if r else 'MISS'} ({rel[0]['params'][attr]!s:.6})")
        print(f"  {prompt!r:60} entry {rel[0]['index']:4d} score {rel[0]['score']:+.3f}  " + "; ".join(marks))
    for mode, h in hits.items():
        print(f"{mode} query: {sum(h)}/{len(h)} = {sum(h) / len(h):.2f} of intended attributes moved the right way"
              + ("  (goal >= 0.8)" if mode == "relative" else "  (comparison)"))
    print(f"query time: mean {sum(q_times) / len(q_times) * 1000:.1f} ms, max {max(q_times) * 1000:.1f} ms "
          f"(text encoding included; goal < 1 s)")
    if not args.no_sculpt:
        req = AvatarFromTextRequest("a wise old wizard with a long nose", guidance=args.guidance, preset=args.preset,
                                    texture_size=512, **kw)
        t1 = time.time()
        run = pipeline.avatar_from_text(req, device=device, cache_root=root, guidance=g)
        st = run.body["stylization"]
        print(f"full run with sculpting ({args.preset}, {st['steps']} steps): {time.time() - t1:.1f} s "
              f"(sculpt loop {st['adapt_seconds']:.1f} s, expression dampening {st['expression_dampening']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
