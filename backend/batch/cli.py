"""``metamorph batch``: prepare-then-stylize a catalogue (avatars x styles), locally or on Ray."""

from __future__ import annotations

import functools
import json
import sys

from backend.cli_common import device, fail, parse_settings
from shared.stylize import DEFAULT_GUIDANCE, DEFAULT_PRESET, PRESET_NAMES


def add_parser(sub) -> None:
    from backend.cluster.pool import ADDRESS_HELP

    p = sub.add_parser("batch", help="stylize a folder of avatars with a list of styles (resumable; Ray optional)")
    p.add_argument("--avatars", required=True, help="folder of .glb/.gltf/.obj avatars")
    p.add_argument("--styles", required=True, help="text file, one style prompt per line")
    p.add_argument("--out", required=True, help="output folder (re-running skips finished results)")
    p.add_argument("--prepare", action="store_true", help="meta-train each avatar's initialization first")
    p.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help=f"run on a Ray cluster: {ADDRESS_HELP} (default: in this process)")
    p.add_argument("--workers", type=int, default=0, help="Ray workers (default: one per GPU, else per CPU)")
    p.add_argument("--guidance", default=DEFAULT_GUIDANCE, help="guidance model name (see `metamorph stylize`)")
    p.add_argument("--clip-checkpoint", default=None, help="local weights file for --guidance's architecture")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESET_NAMES))
    p.add_argument("--steps", type=int, default=0, help="adaptation steps (default: the preset's)")
    p.add_argument("--iterations", type=int, default=0, help="prepare: Reptile iterations (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setting", action="append", default=[], metavar="KEY=INT",
                   help="engine setting override, e.g. resolution=64 (repeatable; bounds as for `stylize`)")
    p.add_argument("--pass-resolution", type=int, default=128)
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--device", default="auto", help="in-process device: cpu, cuda, auto")
    p.add_argument("--cache-dir", default=None, help="cache root (on Ray: a folder every node mounts)")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from tqdm import tqdm

    from shared.errors import MetamorphError
    from shared.stylize import PrepareRequest, StylizeRequest

    from backend.avatar import load_avatar as _load
    from backend.cache import cache_root

    from . import plan as plan_mod, report, run as run_mod

    try:
        load = functools.lru_cache(maxsize=4)(_load)
        paths = plan_mod.list_avatars(args.avatars)
        styles = plan_mod.read_styles(args.styles)
        settings = parse_settings(args.setting)
        sparams = {"guidance": args.guidance, "preset": args.preset, "seed": args.seed, "steps": args.steps,
                   "texture_size": args.texture_size, "pass_resolution": args.pass_resolution, "settings": settings,
                   "passes": ["color", "alpha", "original"]}
        pparams = PrepareRequest(avatar_id="", guidance=args.guidance, preset=args.preset, seed=args.seed,
                                 iterations=args.iterations, settings=settings).to_params()
        entries = run_mod.avatar_entries(paths, load)
        tasks = plan_mod.plan(entries, styles, args.out, prepare=args.prepare, stylize_params=sparams,
                              prepare_params=pparams)
        # Refuse a bad bound or setting before any work, with the checks the server makes.
        first = next(t for t in tasks if t.kind == "stylize")
        StylizeRequest.from_params(run_mod.request_params(first, load(first.avatar_path))).validate()
        PrepareRequest.from_params(pparams).validate()
        root = str(cache_root(args.cache_dir))
        extra = {"clip_checkpoints": {args.guidance: args.clip_checkpoint}} if args.clip_checkpoint else {}
        if args.ray:
            from backend.cluster.pool import PoolConfig, RayPool

            runner = RayPool(PoolConfig(address=args.ray, num_workers=args.workers), root, extra)
        else:
            runner = run_mod.LocalRunner(root, device(args.device), extra)
        bar = tqdm(total=len(tasks), unit="job", desc="batch", file=sys.stderr)

        def tick(oc):
            bar.update(1)
            bar.set_postfix_str(f"{oc.task.avatar}/{oc.task.style or oc.task.kind}: {oc.status}")

        outcomes = run_mod.run_tasks(tasks, runner, load, on_outcome=tick)
        bar.close()
        csv_path = report.write_summary(outcomes, args.out)
        sheets = report.write_sheets(tasks, args.out)
    except MetamorphError as e:
        return fail(e)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(json.dumps({"summary": str(csv_path), "contact_sheets": [str(s) for s in sheets], **counts}, indent=2))
    return 0 if counts["failed"] == 0 else 1
