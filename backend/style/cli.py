"""``metamorph stylize`` and ``metamorph prepare``: the engine in-process, no server."""

from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser("stylize", help="stylize an avatar in-process and write GLB, textures, passes, result.json")
    p.add_argument("--avatar", default="sample", help="'sample' (the built-in avatar) or a .glb/.gltf/.obj path")
    p.add_argument("--prompt", action="append", default=[], help="style text (repeatable)")
    p.add_argument("--style-image", action="append", default=[], help="style reference image path (repeatable)")
    p.add_argument("--weight", action="append", type=float, default=[],
                   help="weight per prompt then per style image, in order (default 1 each)")
    p.add_argument("--identity", type=float, default=0.5, help="identity strength 0..1 (default 0.5)")
    p.add_argument("--steps", type=int, default=0, help="adaptation steps (default: the preset's)")
    p.add_argument("--preset", default="draft", choices=["draft", "quality"])
    _common(p)
    p.add_argument("--views", type=int, default=0, help="number of turntable views (default: 8 + 4 above)")
    p.add_argument("--frames", default="", help="comma-separated track frames to use (default: 4 spread over the track)")
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--pass-resolution", type=int, default=256)
    p.add_argument("--time-budget", type=float, default=0.0, help="seconds (0 = none)")
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_stylize)

    q = sub.add_parser("prepare", help="fit the style network to an avatar and meta-train its initialization")
    q.add_argument("--avatar", default="sample")
    q.add_argument("--styles", default=None, help="text file of style prompts (default: the shipped list)")
    q.add_argument("--style-image", action="append", default=[])
    q.add_argument("--iterations", type=int, default=0, help="Reptile iterations (default: the preset's)")
    q.add_argument("--preset", default="draft", choices=["draft", "quality"])
    _common(q)
    q.set_defaults(func=cmd_prepare)


def _common(p) -> None:
    p.add_argument("--guidance", default="ViT-B-32:laion2b_s34b_b79k",
                   help="open_clip name:tag, 'local-dir:/folder', or 'test-tiny' (untrained test model)")
    p.add_argument("--clip-checkpoint", default=None, help="local open_clip weights file for --guidance's architecture")
    p.add_argument("--no-download", action="store_true", help="never download guidance weights")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda if available)")
    p.add_argument("--cache-dir", default=None, help="checkpoint cache (default ~/.cache/metamorph/style)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--uv-resolution", type=int, default=0, help="UV working resolution (default: the preset's)")
    p.add_argument("--fit-steps", type=int, default=0, help="avatar fitting steps (default: the preset's)")


def _overrides(args) -> dict:
    o = {}
    if args.uv_resolution:
        o["resolution"] = args.uv_resolution
    if args.fit_steps:
        o["fit_steps"] = args.fit_steps
    return o


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_avatar_arg(spec: str):
    if spec == "sample":
        from backend.avatar import sample_avatar
        return sample_avatar()
    from backend.avatar import load_avatar
    return load_avatar(spec)


def _read_image(path: str):
    import numpy as np
    from PIL import Image

    from shared.errors import InvalidParams
    try:
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise InvalidParams(f"Cannot read style image '{path}': {e}.") from e


def _progress(stage, step, total, losses=None, preview=None):
    if stage == "adapt" or (stage in ("fit", "meta") and (step % 25 == 0 or step == total)):
        extra = " ".join(f"{k}={v:.4f}" for k, v in (losses or {}).items() if k in ("total", "style", "fit", "identity"))
        print(f"[{stage}] {step}/{total} {extra}", file=sys.stderr, flush=True)


def cmd_stylize(args) -> int:
    from shared.errors import MetamorphError
    from shared.stylize import StyleTerm, StylizeRequest

    try:
        import numpy as np

        from . import bake, engine, meta
        from .rig import default_rig, turntable

        if not args.prompt and not args.style_image:
            raise _usage("Give at least one --prompt or --style-image.")
        n_terms = len(args.prompt) + len(args.style_image)
        if args.weight and len(args.weight) != n_terms:
            raise _usage(f"Give one --weight per prompt and style image ({n_terms}), or none.")
        weights = args.weight or [1.0] * n_terms
        terms = [StyleTerm("text", weights[i], text=t) for i, t in enumerate(args.prompt)]
        images = {}
        for j, path in enumerate(args.style_image):
            images[j] = _read_image(path)
            terms.append(StyleTerm("image", weights[len(args.prompt) + j], image_index=j))
        device = _device(args.device)
        av = load_avatar_arg(args.avatar)
        cams = (turntable(av.vertices, args.views, (0.0,), 360.0, blendshapes=av.blendshapes) if args.views
                else default_rig(av.vertices, blendshapes=av.blendshapes))
        if args.frames:
            frames = [float(f) for f in args.frames.split(",") if f.strip()]
        elif av.track is not None and len(av.track.frames):
            frames = [float(f) for f in np.linspace(av.track.frames[0], av.track.frames[-1], 4)]
        else:
            frames = [0.0]
        req = StylizeRequest(avatar_id="local", terms=terms, cameras=cams, frames=frames, identity=args.identity,
                             steps=args.steps, preset=args.preset, seed=args.seed, guidance=args.guidance,
                             texture_size=args.texture_size, pass_resolution=args.pass_resolution,
                             name=args.name, time_budget_s=args.time_budget)
        res = engine.run_stylize(av, req, images, device=device, clip_checkpoint=args.clip_checkpoint,
                                 cache_dir=args.cache_dir or meta.default_cache_dir(), progress=_progress,
                                 overrides=_overrides(args),
                                 allow_download=False if args.no_download else None)
        files = bake.write_outputs(av, res, args.out)
    except MetamorphError as e:
        return _fail(e)
    md = res.body["metadata"]
    print(json.dumps({"out": args.out, "contact_sheet": files.get("contact_sheet"), "glb": files.get("glb"),
                      "steps": md["steps"], "seconds": round(md["seconds"], 1), "guidance": md["guidance"],
                      "guidance_is_test_model": md["guidance_is_test_model"],
                      "expression_dampening": round(md["expression_dampening"], 4)}, indent=2))
    return 0


def cmd_prepare(args) -> int:
    from shared.errors import MetamorphError

    try:
        from . import engine, meta

        styles = meta.load_styles(args.styles) if args.styles else None
        images = [_read_image(p) for p in args.style_image]
        av = load_avatar_arg(args.avatar)
        info = engine.run_prepare(av, args.guidance, styles=styles, style_images=images, device=_device(args.device),
                                  clip_checkpoint=args.clip_checkpoint, cache_dir=args.cache_dir, preset=args.preset,
                                  iterations=args.iterations or None, progress=_progress, seed=args.seed,
                                  overrides=_overrides(args),
                                  allow_download=False if args.no_download else None)
    except MetamorphError as e:
        return _fail(e)
    print(json.dumps(info, indent=2, default=str))
    return 0


# Exit status when the guidance model's weights cannot be had, distinct from other
# errors (2) so scripts can tell "fetch weights or choose another model" apart.
EXIT_GUIDANCE_UNAVAILABLE = 3


def _fail(e) -> int:
    print(f"error [{e.code}]: {e.message}", file=sys.stderr)
    return EXIT_GUIDANCE_UNAVAILABLE if e.code == "guidance_unavailable" else 2


def _usage(msg):
    from shared.errors import InvalidParams
    return InvalidParams(msg)
