"""``metamorph avatar-from-text "a wise old wizard with a long nose" --out DIR``: the
pipeline in-process, no server.

DIR receives ``avatar.glb`` (the final avatar: mesh, blendshapes, texture, expression
track), ``entry.glb`` (the codebook entry before sculpting), ``params.json`` (the chosen
entry, the top 5 of the relative and of the absolute query with scores, the anchor, the
codebook), ``result.json`` (everything, with the stylization metadata), ``contact_sheet.png``
(anchor | chosen | final; red caption for the test model) and ``stylized/`` (the
stylization's textures, passes and before/after sheet). Everything is written into a
temporary folder beside DIR and renamed at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.cli_common import ProgressBars, device, parse_settings
from backend.outputs import check_out, json_default, staged_dir, write_json
from shared import text_avatar as contract
from shared.stylize import DEFAULT_GUIDANCE, PRESET_NAMES

PARAMS_KEYS = ("kind", "name", "prompts", "chosen", "top", "absolute_top", "anchor", "codebook", "query_seconds",
               "guidance", "guidance_is_test_model", "warning")


def add_parser(sub) -> None:
    p = sub.add_parser("avatar-from-text", help="make an animatable avatar from a text description")
    p.add_argument("prompt", help="the avatar's description, e.g. \"a wise old wizard with a long nose\"")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--shape-prompt", default="", help="geometry description (default: the prompt)")
    p.add_argument("--appearance-prompt", default="", help="colours and texture (default: the prompt)")
    p.add_argument("--face-prompt", default="", help="the face close-ups (default: the prompt)")
    p.add_argument("--back-prompt", default="", help="views from behind (default: the prompt)")
    p.add_argument("--guidance", default=DEFAULT_GUIDANCE,
                   help="open_clip name:tag, 'local-dir:/folder', or 'test-tiny' (untrained test model)")
    p.add_argument("--clip-checkpoint", default=None, help="local open_clip weights file for --guidance's architecture")
    p.add_argument("--no-download", action="store_true", help="never download guidance weights")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda if available)")
    p.add_argument("--cache-dir", default=None, help="cache root (default $METAMORPH_CACHE or ~/.cache/metamorph)")
    p.add_argument("--preset", default=contract.DEFAULT_PRESET, choices=list(PRESET_NAMES))
    p.add_argument("--steps", type=int, default=contract.DEFAULT_STEPS, help="sculpting steps (0: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--identity", type=float, default=contract.DEFAULT_IDENTITY,
                   help="how much of the retrieved avatar the sculpting keeps, 0..1")
    p.add_argument("--geometry-weight", type=float, default=contract.DEFAULT_GEOMETRY_WEIGHT)
    p.add_argument("--texture-weight", type=float, default=contract.DEFAULT_TEXTURE_WEIGHT)
    p.add_argument("--no-sculpt", action="store_true", help="retrieval only: the codebook entry, unsculpted")
    p.add_argument("--texture-size", type=int, default=contract.DEFAULT_TEXTURE_SIZE)
    p.add_argument("--codebook-entries", type=int, default=contract.DEFAULT_CODEBOOK_ENTRIES)
    p.add_argument("--codebook-samples", type=int, default=contract.DEFAULT_CODEBOOK_SAMPLES)
    p.add_argument("--codebook-render-size", type=int, default=contract.DEFAULT_CODEBOOK_RENDER_SIZE)
    p.add_argument("--setting", action="append", default=[], metavar="NAME=INT",
                   help="stylization engine override, e.g. --setting resolution=64 (repeatable)")
    p.add_argument("--name", default="")
    p.set_defaults(func=cmd_avatar_from_text)


def write_outputs(run, out_dir) -> dict:
    """Write a :class:`backend.textavatar.pipeline.TextAvatarRun` under ``out_dir``
    (atomically: a temporary folder renamed at the end). Returns {kind: final path}."""
    from PIL import Image

    from backend.avatar import save_glb
    from backend.style import bake

    final = Path(out_dir).resolve()
    with staged_dir(final) as work:
        save_glb(run.avatar, str(work / "avatar.glb"))
        save_glb(run.chosen, str(work / "entry.glb"))
        write_json(work / "params.json", {k: run.body[k] for k in PARAMS_KEYS if k in run.body})
        write_json(work / "result.json", run.body)
        Image.fromarray(run.contact_sheet).save(work / "contact_sheet.png")
        if run.stylize is not None:
            bake.write_outputs(run.chosen, run.stylize, work / "stylized", write_glb=False)
    return {k: str(final / k) for k in ("avatar.glb", "entry.glb", "params.json", "result.json", "contact_sheet.png")}


def cmd_avatar_from_text(args) -> int:
    """Errors propagate as typed :mod:`shared.errors` (``backend.cli.main`` prints one
    sentence and exits 2, or 3 when the guidance weights are unavailable)."""
    req = contract.AvatarFromTextRequest(
        prompt=args.prompt, shape_prompt=args.shape_prompt, appearance_prompt=args.appearance_prompt,
        face_prompt=args.face_prompt, back_prompt=args.back_prompt, guidance=args.guidance, preset=args.preset,
        steps=args.steps, seed=args.seed, identity=args.identity, geometry_weight=args.geometry_weight,
        texture_weight=args.texture_weight, sculpt=not args.no_sculpt, texture_size=args.texture_size,
        codebook_entries=args.codebook_entries, codebook_samples=args.codebook_samples,
        codebook_render_size=args.codebook_render_size, name=args.name, settings=parse_settings(args.setting))
    req.validate()
    check_out(args.out)  # fail on an unwritable --out before any work
    from .pipeline import avatar_from_text  # torch and the models: only once the input is known good

    bars = ProgressBars()
    run = avatar_from_text(req, device=device(args.device), clip_checkpoint=args.clip_checkpoint,
                           cache_root=args.cache_dir, allow_download=False if args.no_download else None,
                           progress=bars)
    bars.close()
    files = write_outputs(run, args.out)
    b = run.body
    print(json.dumps({"out": args.out, "avatar": files["avatar.glb"], "contact_sheet": files["contact_sheet.png"],
                 "chosen": {"index": b["chosen"]["index"], "score": round(b["chosen"]["score"], 4)},
                 "codebook_built": b["codebook"]["built"], "query_seconds": round(b["query_seconds"], 4),
                 "seconds": round(b["seconds"], 1), "guidance": b["guidance"],
                 "guidance_is_test_model": b["guidance_is_test_model"]}, indent=2, default=json_default))
    return 0
