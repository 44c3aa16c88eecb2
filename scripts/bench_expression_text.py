"""Precision@5 of the expression-from-text candidates with real CLIP weights.

    .venv/bin/python scripts/bench_expression_text.py --clip-checkpoint /models/vit_b_32.bin
    .venv/bin/python scripts/bench_expression_text.py --guidance ViT-B-32:laion2b_s34b_b79k   # HF cache
    .venv/bin/python scripts/bench_expression_text.py --guidance test-tiny   # mechanics only, labelled

For each prompt with its intended blendshapes ("opening the mouth wide" -> jawOpen,
"smiling" -> mouthSmile*, ...) the avatar's codebook is scored against the prompt
(relative to the neutral face and the neutral description) and the top 5 candidates
taken; a candidate is a hit when it holds an intended blendshape at >= 0.3.
precision@5 = hits / 5, averaged over the prompts (goal >= 0.6). Then one motion
("laughing, then surprised") is optimized and its figures are printed beside the
linear-interpolation baseline's.

Without real weights (no --clip-checkpoint and nothing in the open_clip cache) it says so
and exits 3, unless --guidance test-tiny is asked for explicitly: those figures are NOT a
measure of anything but the mechanics and are labelled so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = {
    "opening the mouth wide": ["jawOpen"],
    "smiling": ["mouthSmileLeft", "mouthSmileRight"],
    "a big happy grin": ["mouthSmileLeft", "mouthSmileRight"],
    "closing the eyes": ["eyeBlinkLeft", "eyeBlinkRight"],
    "raising the eyebrows in surprise": ["browInnerUp", "browOuterUpLeft", "browOuterUpRight"],
    "frowning angrily": ["browDownLeft", "browDownRight"],
    "puckering the lips for a kiss": ["mouthPucker"],
    "puffing out the cheeks": ["cheekPuff"],
    "saying ooh with rounded lips": ["mouthFunnel", "mouthPucker"],
    "shouting": ["jawOpen"],
}
HIT_WEIGHT = 0.3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guidance", default="ViT-B-32:laion2b_s34b_b79k")
    ap.add_argument("--clip-checkpoint", default=None)
    ap.add_argument("--avatar", default="sample")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--render-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=100, help="motion optimization steps for the motion figures")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)

    import torch

    from backend.cache import cache_dir
    from backend.expression import codebook as cbm
    from backend.expression.posing import Poser
    from backend.expression.text import run_expression_from_text
    from backend.style.cli import load_avatar_arg
    from backend.style.guidance import load_guidance
    from shared.avatar import content_hash
    from shared.errors import GuidanceUnavailable
    from shared.expression import ExpressionFromTextRequest

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        g = load_guidance(args.guidance, args.clip_checkpoint, device=device, allow_download=False)
    except GuidanceUnavailable as e:
        print("NO REAL CLIP WEIGHTS GIVEN: precision@5 not measured. Pass --clip-checkpoint PATH (open_clip "
              f"weights for {args.guidance.split(':')[0]}) or fill the open_clip/Hugging Face cache.\n  ({e.message})")
        return 3
    if g.is_test_model:
        print("=" * 100 + f"\nTEST GUIDANCE MODEL '{args.guidance}' (untrained seeded weights): the figures below "
              "measure the mechanics only, NOT the method. Give real weights for real figures.\n" + "=" * 100)
    av = load_avatar_arg(args.avatar)
    poser = Poser(av, device=device)
    t0 = time.time()
    enc = cbm.RenderEncoder(poser, g, views=args.views, size=args.render_size)
    w, labels = cbm.entries(poser.names)
    cb = cbm.embed_codebook(cbm.Codebook(poser.names, w, labels), enc, avatar_hash=content_hash(av),
                            cache_dir=cache_dir("expression", args.cache_dir))
    print(f"guidance {g.name} ({'TEST MODEL' if g.is_test_model else 'real weights'}), avatar {av.name}: "
          f"{len(w)} codebook entries over {len(poser.names)} ARKit blendshapes, {args.views} views at "
          f"{args.render_size} px ({time.time() - t0:.1f} s incl. cache)")
    precisions = {}
    for text, intended in PROMPTS.items():
        have = [n for n in intended if n in poser.names]
        if not have:
            print(f"  skip '{text}': the avatar has none of {intended}")
            continue
        dirs = cbm.text_directions(enc, [text])
        chosen = cbm.select_candidates(cb.directions(), dirs, cb.weights, k=5)
        hits = [any(cb.weights[c.index][poser.names.index(n)] >= HIT_WEIGHT for n in have) for c in chosen]
        precisions[text] = sum(hits) / 5.0
        print(f"  p@5 {precisions[text]:.1f}  '{text}' -> " + ", ".join(
            f"{cb.labels[c.index]}{'*' if h else ''}" for c, h in zip(chosen, hits)))
    mean = float(np.mean(list(precisions.values())))
    print(f"mean precision@5 over {len(precisions)} prompts: {mean:.3f} (goal >= 0.6)"
          + ("  [TEST MODEL: not a measure]" if g.is_test_model else ""))

    req = ExpressionFromTextRequest(avatar_id="local", text="laughing, then surprised", guidance=args.guidance,
                                    steps=args.steps, settings={"views": args.views, "render_size": args.render_size})
    t1 = time.time()
    res = run_expression_from_text(av, req, device=device, guidance=g,
                                   cache_dir=cache_dir("expression", args.cache_dir))
    m = res.metadata["metrics"]
    print(f"\nmotion 'laughing, then surprised' ({req.num_frames} frames, {args.steps} steps, "
          f"{time.time() - t1:.1f} s): candidates " + ", ".join(c["label"] for c in res.candidates))
    for k in ("optimized", "baseline_linear"):
        print(f"  {k:16s} " + json.dumps({a: (round(b, 4) if isinstance(b, float) else b) for a, b in m[k].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
