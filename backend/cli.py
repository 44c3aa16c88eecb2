"""The ``metamorph`` console command.

Each subcommand lives in the module that owns its work and exposes
``add_parser(subparsers)`` which registers the subcommand and sets
``func(args) -> int``. Modules are imported lazily so ``metamorph --help``
stays fast and a missing optional part does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (module, purpose) in the order shown by --help. Add yours here.
COMMAND_MODULES = [
    "backend.server",          # serve
    "backend.keys",            # keys generate
    "backend.avatar.cli",      # sample-avatar
    "backend.style.cli",       # stylize, prepare
    "backend.bench",           # bench
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metamorph",
                                description="Stylize animatable 3D avatars (Metamorph backend).")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        m.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
