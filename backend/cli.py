"""The ``metamorph`` console command.

Each subcommand lives in the module that owns its work and exposes
``add_parser(subparsers)`` which registers the subcommand and sets
``func(args) -> int``. The modules are imported explicitly below, so a renamed or
broken one fails loudly at start instead of silently dropping its subcommands;
they keep their heavy imports (torch, models) inside the commands so
``metamorph --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys

from shared.errors import MetamorphError, exit_code, one_sentence

from backend import keys
from backend import server
from backend.avatar import cli as avatar_cli
from backend.batch import cli as batch_cli
from backend.photo import cli as photo_cli
from backend.expression import cli as expression_cli
from backend.style import cli as style_cli
from backend.textavatar import cli as textavatar_cli

# Subcommand modules in the order shown by --help. Add yours here (and its import above).
COMMAND_MODULES = [
    server,          # serve
    keys,            # keys generate
    avatar_cli,      # sample-avatar
    style_cli,       # stylize, prepare
    photo_cli,       # avatar-from-photo
    textavatar_cli,  # avatar-from-text
    expression_cli,  # expression-from-text, expression-from-video
    batch_cli,       # batch
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metamorph",
                                description="Stylize animatable 3D avatars (Metamorph backend).")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (MetamorphError, OSError) as e:
        code = exit_code(e)
        if code is None:  # an OS error no user causes: a bug, keep its traceback
            raise
        logging.getLogger("metamorph").debug("%s failed", args.command, exc_info=True)
        print(f"metamorph {args.command}: {one_sentence(e)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
