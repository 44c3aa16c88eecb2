"""``python -m backend.server [serve options]``: the same as ``metamorph serve``."""

import sys

from backend.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
