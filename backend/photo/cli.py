"""``metamorph avatar-from-photo PHOTO --out DIR``: fit the sample avatar to a selfie.

Writes into DIR (via a temporary folder beside it, renamed at the end, so a failure leaves
nothing): ``avatar.glb`` (neutral fitted avatar, ARKit blendshapes, default expression track),
``params.json`` (vector, relaxed vector, searched and rounded choices, fitted expression weights,
figures), ``fit_sheet.png``, and with style terms ``stylized/`` (the stylize outputs:
stylized.glb, textures, passes, contact sheet, result.json with the independent measures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backend.cli_common import ProgressBars
from backend.outputs import check_out, staged_dir, write_json

from shared.errors import InvalidParams, MetamorphError, exit_code, one_sentence
from shared.photo import IMITATOR_CONFIGS, WORK_SIDE
from shared.stylize import DEFAULT_GUIDANCE, DEFAULT_PRESET, PRESET_NAMES


def add_parser(sub) -> None:
    p = sub.add_parser("avatar-from-photo", help="fit an animatable avatar to a frontal selfie (optionally stylize it)",
                       description="Fit the parametric sample avatar (shape, colours, hairstyle, eyebrows, glasses) "
                                   "to the face in a frontal photo and write it as a GLB, with the fitted parameters "
                                   "and a fit sheet; with --prompt/--style-image also stylize it in the same run.")
    p.add_argument("photo", help="the selfie (PNG, JPEG, ...; frontal, the whole face visible)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--face", type=int, default=None, help="which face when there are several (0 = largest)")
    p.add_argument("--imitator", default="default", choices=list(IMITATOR_CONFIGS),
                   help="imitator configuration ('test' is small and coarse, for tests)")
    p.add_argument("--no-search", action="store_true", help="plain argmax rounding instead of the discrete search")
    p.add_argument("--fit-steps", type=int, default=0, help="relaxed-fit steps (default: the configuration's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="cache root (imitator, style networks)")
    p.add_argument("--prompt", action="append", default=[], help="style text (repeatable)")
    p.add_argument("--style-image", action="append", default=[], help="style reference image (repeatable)")
    p.add_argument("--identity", type=float, default=0.5, help="identity strength of the stylization 0..1")
    p.add_argument("--guidance", default=DEFAULT_GUIDANCE,
                   help="open_clip name:tag, 'local-dir:/folder', or 'test-tiny' (untrained test model)")
    p.add_argument("--clip-checkpoint", default=None)
    p.add_argument("--no-download", action="store_true", help="never download guidance weights")
    p.add_argument("--steps", type=int, default=0, help="stylization steps (default: the preset's)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESET_NAMES))
    p.add_argument("--style-settings", default=None, help="JSON of stylize engine overrides (tests)")
    p.set_defaults(func=run)


def _stylize(av, args, images, work: Path) -> dict:
    import numpy as np

    from shared.stylize import StyleTerm, StylizeRequest

    from backend.cache import cache_dir
    from backend.style import bake, engine
    from backend.style.rig import default_rig

    terms = [StyleTerm("text", 1.0, text=t) for t in args.prompt]
    terms += [StyleTerm("image", 1.0, image_index=j) for j in range(len(images))]
    frames = [float(f) for f in np.linspace(av.track.frames[0], av.track.frames[-1], 4)]
    req = StylizeRequest(avatar_id="local", terms=terms, cameras=default_rig(av.vertices, blendshapes=av.blendshapes),
                         frames=frames, identity=args.identity, steps=args.steps, preset=args.preset, seed=args.seed,
                         guidance=args.guidance, texture_size=1024, pass_resolution=256)
    overrides = json.loads(args.style_settings) if args.style_settings else None
    res = engine.run_stylize(av, req, images, clip_checkpoint=args.clip_checkpoint,
                             cache_dir=cache_dir("style", args.cache_dir), progress=ProgressBars(), overrides=overrides,
                             allow_download=False if args.no_download else None)
    bake.write_outputs(av, res, work / "stylized")
    return res.body["metadata"]


def run(args) -> int:
    try:
        return _run(args)
    except (MetamorphError, OSError) as e:
        code = exit_code(e)
        if code is None:
            raise
        print(f"metamorph avatar-from-photo: {one_sentence(e)}", file=sys.stderr)
        return code


def _run(args) -> int:
    from backend.avatar.images import SELFIE, STYLE, read_image

    out = check_out(args.out)
    if not 0.0 <= args.identity <= 1.0:
        raise InvalidParams(f"--identity must be between 0 and 1, got {args.identity}.")
    if args.face is not None and args.face < 0:
        raise InvalidParams(f"--face must be 0 or more, got {args.face}.")
    photo = read_image(args.photo, WORK_SIDE, purpose=SELFIE)
    images = {j: read_image(p, 1024, purpose=STYLE) for j, p in enumerate(args.style_image)}

    import numpy as np
    from PIL import Image

    from backend.avatar import save_glb

    from .pipeline import avatar_from_photo, params_record
    from .sheet import fit_sheet

    fit = avatar_from_photo(photo, face_index=args.face, imitator=args.imitator, search=not args.no_search,
                            fit_steps=args.fit_steps, seed=args.seed, cache_root=args.cache_dir,
                            progress=ProgressBars())
    for n in fit.notes:
        print(f"note: {n}", file=sys.stderr)
    with staged_dir(out) as work:
        save_glb(fit.avatar, work / "avatar.glb")
        rec = params_record(fit)
        if args.prompt or images:
            md = _stylize(fit.avatar, args, images, work)
            rec["stylize"] = {k: md.get(k) for k in ("guidance", "guidance_is_test_model", "warning", "steps",
                                                     "seconds", "independent_measures") if k in md}
        Image.fromarray(np.asarray(fit_sheet(fit))).save(work / "fit_sheet.png")
        write_json(work / "params.json", rec)
    f = fit.figures
    print(json.dumps({"out": str(out), "searched": fit.searched, "rounded": fit.rounded,
                      "landmark_error_iod": f["landmark_error_iod"], "dlib_distance": f["dlib_distance"],
                      "mean_iou": f["mean_iou"], "seconds": f["seconds"]["total"], "notes": fit.notes,
                      "stylized": bool(args.prompt or images)}, indent=2))
    return 0


