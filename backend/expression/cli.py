"""``metamorph expression-from-text`` and ``metamorph expression-from-video``: in-process, no server.

Both write ``track.json`` (:meth:`shared.expression.ExpressionResult.to_json`), an
animated ``expression.glb`` (the avatar with the track as its morph-target animation)
and ``strip.png`` (frames of the track rendered on the avatar) into ``--out``.
Defaults and bounds come from :mod:`shared.expression`; the request is checked by
that contract before any work. Exit status: 0 ok, 2 bad input, 3 guidance weights
unavailable.
"""

from __future__ import annotations

import json

from shared import expression as X
from shared.errors import MetamorphError

from backend.cli_common import ProgressBars, device, fail, load_avatar_arg
from backend.outputs import check_out


def add_parser(sub) -> None:
    p = sub.add_parser("expression-from-text", help="animate an avatar's expression from a motion text")
    p.add_argument("text", help='the motion, e.g. "laughing, then surprised"')
    _avatar_out(p)
    p.add_argument("--fps", type=float, default=X.DEFAULT_FPS, help=f"frame rate (default {X.DEFAULT_FPS:g})")
    p.add_argument("--duration", type=float, default=X.DEFAULT_DURATION_S,
                   help=f"seconds, {X.MIN_DURATION_S:g}..{X.MAX_DURATION_S:g} (default {X.DEFAULT_DURATION_S:g})")
    p.add_argument("--top-k", type=int, default=X.DEFAULT_TOP_K, help="candidate expressions (default 5)")
    p.add_argument("--steps", type=int, default=0, help=f"motion optimization steps (default {X.DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-blinks", action="store_true", help="no blinks by the prior")
    p.add_argument("--guidance", default=X.DEFAULT_GUIDANCE,
                   help="open_clip name:tag, 'local-dir:/folder', or 'test-tiny' (untrained test model)")
    p.add_argument("--clip-checkpoint", default=None, help="local open_clip weights file for --guidance's architecture")
    p.add_argument("--no-download", action="store_true", help="never download guidance weights")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (auto: cuda if available)")
    p.add_argument("--render-size", type=int, default=0, help="pixels of the codebook/CLIP renders (default 224)")
    p.add_argument("--views", type=int, default=0, help="frontal views per codebook entry (default 3)")
    p.set_defaults(func=cmd_text)

    q = sub.add_parser("expression-from-video", help="capture expressions from a photo, image folder or video")
    q.add_argument("input", help="an image, a folder of images or a video file")
    _avatar_out(q)
    q.add_argument("--fps", type=float, default=0.0,
                   help="video: resample to this rate (default: the file's); images: the track's rate "
                        f"(default {X.DEFAULT_FPS:g})")
    q.add_argument("--smoothing", type=float, default=X.DEFAULT_SMOOTHING,
                   help=f"Gaussian sigma in frames, 0..{X.MAX_SMOOTHING:g} (default {X.DEFAULT_SMOOTHING:g})")
    q.add_argument("--regressor", default=X.DEFAULT_REGRESSOR, choices=list(X.REGRESSORS),
                   help="'full' (trained once, a few minutes, then cached) or 'test' (seconds; tests only)")
    q.add_argument("--no-head-rotation", action="store_true", help="do not estimate the head rotation")
    q.add_argument("--neutral-frame", type=int, default=-1,
                   help="index (from 0) of a frame with a relaxed face: calibrates for the person (default none)")
    q.add_argument("--max-frames", type=int, default=0, help="at most this many frames (default: the server limit)")
    q.set_defaults(func=cmd_video)


def _avatar_out(p) -> None:
    p.add_argument("--avatar", default="sample", help="'sample' (the built-in avatar) or a .glb/.gltf/.obj path")
    p.add_argument("--out", required=True, help="output folder (replaced as a whole at the end)")
    p.add_argument("--start-frame", type=int, default=X.DEFAULT_START_FRAME)
    p.add_argument("--cache-dir", default=None,
                   help="cache root (default $METAMORPH_CACHE or ~/.cache/metamorph; codebooks and regressors "
                        "go in its expression/)")


def cmd_text(args) -> int:
    try:
        from backend.cache import cache_dir

        from .outputs import write_outputs
        from .text import run_expression_from_text

        check_out(args.out)
        settings = {k: v for k, v in (("render_size", args.render_size), ("views", args.views)) if v}
        req = X.ExpressionFromTextRequest(avatar_id="local", text=args.text, fps=args.fps, duration_s=args.duration,
                                          start_frame=args.start_frame, guidance=args.guidance, top_k=args.top_k,
                                          steps=args.steps, seed=args.seed, blinks=not args.no_blinks,
                                          settings=settings or None)
        req.validate()
        av = load_avatar_arg(args.avatar)
        res = run_expression_from_text(av, req, device=device(args.device), clip_checkpoint=args.clip_checkpoint,
                                       allow_download=False if args.no_download else None,
                                       cache_dir=cache_dir("expression", args.cache_dir), progress=ProgressBars())
        files = write_outputs(av, res, args.out, caption=f'"{args.text}"  |  guidance {res.metadata["guidance"]}')
    except MetamorphError as e:
        return fail(e)
    md = res.metadata
    print(json.dumps({"out": args.out, **{k: files[k] for k in ("track", "glb", "strip")},
                      "candidates": [f'{c["rank"]}. {c["label"]} ({c["score"]:.3f}) @ frame {c["frame"]}'
                                     for c in res.candidates],
                      "guidance": md["guidance"], "guidance_is_test_model": md["guidance_is_test_model"],
                      "optimized": md["metrics"]["optimized"], "baseline_linear": md["metrics"]["baseline_linear"],
                      "skipped_names": files["skipped"], "seconds": md["seconds"]}, indent=2))
    return 0


def cmd_video(args) -> int:
    try:
        from backend.cache import cache_dir
        from shared.protocol import Limits

        from .capture import run_expression_from_video
        from .media import read_frames
        from .outputs import write_outputs

        check_out(args.out)
        limits = Limits()
        frames, rate, still = read_frames(args.input, args.max_frames or limits.max_frames,
                                          fps=args.fps or None)
        fps = rate if rate else (args.fps or X.DEFAULT_FPS)
        req = X.ExpressionFromVideoRequest(fps=float(fps), start_frame=args.start_frame, smoothing=args.smoothing,
                                           regressor=args.regressor, head_rotation=not args.no_head_rotation,
                                           neutral_frame=args.neutral_frame)
        if still and len(frames) > 1:
            req.smoothing = 0.0  # unrelated photos: nothing to smooth over
        av = load_avatar_arg(args.avatar)
        res = run_expression_from_video(frames, req, still=still, cache_dir=cache_dir("expression", args.cache_dir),
                                        limits=limits, progress=ProgressBars())
        files = write_outputs(av, res, args.out, caption=f"capture of {args.input}  |  regressor {args.regressor}")
    except MetamorphError as e:
        return fail(e)
    md = res.metadata
    print(json.dumps({"out": args.out, **{k: files[k] for k in ("track", "glb", "strip")}, "frames": md["frames"],
                      "detected_fraction": md["detected_fraction"], "fps": res.fps, "jitter": md["jitter"],
                      "mean_weights": {n: round(float(res.weights[:, k].mean()), 3) for k, n in enumerate(res.names)},
                      "skipped_names": files["skipped"], "seconds": md["seconds"]}, indent=2))
    return 0
