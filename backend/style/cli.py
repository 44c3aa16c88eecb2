"""``metamorph stylize`` and ``metamorph prepare``: the engine in-process, no server.

Defaults, bounds and choices come from the request contract (:mod:`shared.stylize`,
read when the parser is built) and the request is checked by that contract before any
work, so the CLI refuses exactly what the server refuses. Outputs are written into a
temporary folder beside ``--out`` and renamed at the end. Progress: one tqdm bar per
stage (meta-training, adaptation, baking) with its ETA, on stderr.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from backend.cache import cache_dir
from backend.cli_common import ProgressBars, device, fail, load_avatar_arg, read_style_image
from backend.outputs import check_out
from shared import stylize as contract
from shared.errors import InvalidParams, MetamorphError

from .rig import default_rig, turntable

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    c = contract
    p = sub.add_parser("stylize", help="stylize an avatar in-process and write GLB, textures, passes, result.json")
    p.add_argument("--avatar", default="sample", help="'sample' (the built-in avatar) or a .glb/.gltf/.obj path")
    p.add_argument("--prompt", action="append", default=[], help="style text (repeatable)")
    p.add_argument("--style-image", action="append", default=[], help="style reference image path (repeatable)")
    p.add_argument("--weight", action="append", type=float, default=[],
                   help=f"weight per prompt then per style image, in order (default {c.DEFAULT_WEIGHT} each; "
                        f"{c.MIN_WEIGHT}..{c.MAX_WEIGHT})")
    p.add_argument("--identity", type=float, default=c.DEFAULT_IDENTITY,
                   help=f"identity strength {c.MIN_IDENTITY}..{c.MAX_IDENTITY} (default {c.DEFAULT_IDENTITY})")
    p.add_argument("--steps", type=int, default=c.DEFAULT_STEPS,
                   help=f"adaptation steps, up to {c.MAX_STEPS} (default: the preset's)")
    p.add_argument("--preset", default=c.DEFAULT_PRESET, choices=list(c.PRESET_NAMES))
    _common(p)
    p.add_argument("--views", type=int, default=0, help="number of turntable views (default: 8 + 4 above)")
    p.add_argument("--frames", default="",
                   help="comma-separated track frames to use (default: 4 spread over the track)")
    p.add_argument("--texture-size", type=int, default=c.DEFAULT_TEXTURE_SIZE,
                   help=f"pixels, {c.MIN_TEXTURE_SIZE}..{c.MAX_TEXTURE_SIZE} (default {c.DEFAULT_TEXTURE_SIZE})")
    p.add_argument("--pass-resolution", type=int, default=c.DEFAULT_PASS_RESOLUTION,
                   help=f"pixels, longer side, {c.MIN_PASS_RESOLUTION}..{c.MAX_PASS_RESOLUTION} "
                        f"(default {c.DEFAULT_PASS_RESOLUTION})")
    p.add_argument("--time-budget", type=float, default=0.0, help="seconds (0 = none)")
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_stylize)

    q = sub.add_parser("prepare", help="meta-train the style network's initialization for an avatar")
    q.add_argument("--avatar", default="sample")
    q.add_argument("--styles", default=None, help="text file of style prompts (default: the shipped list)")
    q.add_argument("--style-image", action="append", default=[])
    q.add_argument("--iterations", type=int, default=c.DEFAULT_ITERATIONS,
                   help=f"Reptile iterations, up to {c.MAX_ITERATIONS} (default: the preset's)")
    q.add_argument("--preset", default=c.DEFAULT_PRESET, choices=list(c.PRESET_NAMES))
    _common(q)
    q.set_defaults(func=cmd_prepare)


def _common(p) -> None:
    c = contract
    p.add_argument("--guidance", default=c.DEFAULT_GUIDANCE,
                   help=f"open_clip name:tag, 'local-dir:/folder', or '{c.TEST_GUIDANCE}' (untrained test model)")
    p.add_argument("--clip-checkpoint", default=None, help="local open_clip weights file for --guidance's architecture")
    p.add_argument("--no-download", action="store_true", help="never download guidance weights")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda if available)")
    p.add_argument("--cache-dir", default=None,
                   help="cache root (default $METAMORPH_CACHE or ~/.cache/metamorph; checkpoints go in its style/)")
    p.add_argument("--seed", type=int, default=c.DEFAULT_SEED)
    p.add_argument("--uv-resolution", type=int, default=0, help="UV working resolution (default: the preset's)")


def _overrides(args) -> dict:
    o = {}
    if args.uv_resolution:
        o["resolution"] = args.uv_resolution
    return o


def parse_frames(text: str) -> list[float]:
    try:
        return [float(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise InvalidParams(f"--frames must be comma-separated frame numbers, got '{text}'.") from None


def cmd_stylize(args) -> int:
    bars = ProgressBars()
    try:
        from . import bake, engine  # torch and the models: only once the command runs

        out = check_out(args.out)
        if not args.prompt and not args.style_image:
            raise InvalidParams("Give at least one --prompt or --style-image.")
        n_terms = len(args.prompt) + len(args.style_image)
        if args.weight and len(args.weight) != n_terms:
            raise InvalidParams(f"Give one --weight per prompt and style image ({n_terms}), or none.")
        weights = args.weight or [contract.DEFAULT_WEIGHT] * n_terms
        terms = [contract.StyleTerm("text", weights[i], text=t) for i, t in enumerate(args.prompt)]
        images = {}
        for j, path in enumerate(args.style_image):
            images[j] = read_style_image(path)
            terms.append(contract.StyleTerm("image", weights[len(args.prompt) + j], image_index=j))
        av = load_avatar_arg(args.avatar)
        cams = (turntable(av.vertices, args.views, (0.0,), 360.0, blendshapes=av.blendshapes) if args.views
                else default_rig(av.vertices, blendshapes=av.blendshapes))
        if args.frames:
            frames = parse_frames(args.frames)
        elif av.track is not None and len(av.track.frames):
            frames = [float(f) for f in np.linspace(av.track.frames[0], av.track.frames[-1], 4)]
        else:
            frames = [0.0]
        req = contract.StylizeRequest(avatar_id="local", terms=terms, cameras=cams, frames=frames,
                                      identity=args.identity, steps=args.steps, preset=args.preset,
                                      seed=args.seed, guidance=args.guidance, texture_size=args.texture_size,
                                      pass_resolution=args.pass_resolution, name=args.name,
                                      time_budget_s=args.time_budget)
        req.validate(None, images)
        engine.style_config(req.preset, _overrides(args))  # bad engine settings: refused before any work
        res = engine.run_stylize(av, req, images, device=device(args.device), clip_checkpoint=args.clip_checkpoint,
                                 cache_dir=cache_dir("style", args.cache_dir), progress=bars,
                                 overrides=_overrides(args), allow_download=False if args.no_download else None)
        files = bake.write_outputs(av, res, out)
    except MetamorphError as e:
        return fail(e)
    finally:
        bars.close()
    md = res.body["metadata"]
    print(json.dumps({"out": str(out), "contact_sheet": files.get("contact_sheet"), "glb": files.get("glb"),
                      "steps": md["steps"], "seconds": round(md["seconds"], 1), "guidance": md["guidance"],
                      "guidance_is_test_model": md["guidance_is_test_model"],
                      "expression_dampening": round(md["expression_dampening"], 4)}, indent=2))
    return 0


def cmd_prepare(args) -> int:
    bars = ProgressBars()
    try:
        from . import engine, meta  # torch and the models: only once the command runs

        styles = meta.load_styles(args.styles) if args.styles else None
        images = [read_style_image(p) for p in args.style_image]
        req = contract.PrepareRequest(avatar_id="local", guidance=args.guidance, preset=args.preset,
                                      iterations=args.iterations, seed=args.seed, styles=styles)
        req.validate(None, dict(enumerate(images)))
        engine.style_config(req.preset, _overrides(args))  # bad engine settings: refused before any work
        av = load_avatar_arg(args.avatar)
        info = engine.run_prepare(av, request=req, style_images=images, device=device(args.device),
                                  clip_checkpoint=args.clip_checkpoint, cache_dir=cache_dir("style", args.cache_dir),
                                  progress=bars, overrides=_overrides(args),
                                  allow_download=False if args.no_download else None)
    except MetamorphError as e:
        return fail(e)
    finally:
        bars.close()
    print(json.dumps(info, indent=2, default=str))
    return 0


