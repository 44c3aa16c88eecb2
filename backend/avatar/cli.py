"""``metamorph sample-avatar``: write the parametric sample avatar as a GLB."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from shared.errors import InvalidParams, MetamorphError, exit_code

from . import AvatarParams, random_params, sample_avatar, save_glb

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sample-avatar", help="write the parametric sample avatar as a GLB",
        description="Generate the built-in head-and-shoulders avatar (ARKit blendshapes, 1024px "
                    "albedo, a 72-frame expression animation) and write it as a GLB that Blender's "
                    "glTF importer opens with its shape keys and keyframes.")
    p.add_argument("--out", required=True, help="output .glb path")
    p.add_argument("--params", help="JSON object of avatar parameters (see backend/avatar/params.py); "
                                    "missing ones take their defaults")
    p.add_argument("--seed", type=int, help="random parameters from this seed instead of --params")
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--no-animation", action="store_true", help="leave the expression track out")
    p.add_argument("--print-params", action="store_true", help="print the parameters used as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.params and args.seed is not None:
            raise InvalidParams("Give --params or --seed, not both.")
        if args.params:
            params = AvatarParams.from_json(args.params)
        elif args.seed is not None:
            params = random_params(args.seed)
        else:
            params = AvatarParams()
        t = time.perf_counter()
        av = sample_avatar(params, texture_size=args.texture_size, with_track=not args.no_animation)
        dt = time.perf_counter() - t
        save_glb(av, args.out)
    except MetamorphError as e:
        print(f"metamorph sample-avatar: {e.message}", file=sys.stderr)
        return exit_code(e)
    if args.print_params:
        print(json.dumps(params.to_dict(), indent=2))
    log.info("wrote %s: %d vertices, %d triangles, %d blendshapes, generated in %.2f s",
             args.out, av.num_vertices, av.num_faces, len(av.blendshape_names), dt)
    return 0
