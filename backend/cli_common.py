"""What every ``metamorph`` subcommand shares: the device, engine-setting overrides,
the avatar and image arguments, progress bars and the one-sentence failure.

Heavy imports (torch, the avatar engine) happen inside the functions, once a command
runs, so ``metamorph --help`` stays fast.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from shared.errors import InvalidParams, MetamorphError, exit_code
from shared.protocol import Limits

from backend.devices import resolve_device


def device(name: str) -> str:
    """``--device`` (auto | cpu | cuda | cuda:N) -> the device to run on."""
    return resolve_device(name)


def parse_settings(items: list[str]) -> dict | None:
    """Repeated ``--setting NAME=INT`` -> {name: int} (None when none); the engine checks names and bounds."""
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        try:
            out[k.strip()] = int(v)
        except ValueError:
            sep = ""
        if not sep or not k.strip():
            raise InvalidParams(f"--setting takes NAME=INTEGER, e.g. resolution=64; got '{it}'.")
    return out or None


def load_avatar_arg(spec: str):
    """``"sample"`` -> the built-in avatar; else the avatar file at ``spec`` (limits applied)."""
    from backend.avatar import load_avatar, sample_avatar

    return sample_avatar() if spec == "sample" else load_avatar(spec)


def read_style_image(path: str):
    """A style reference image file -> ``[H,W,3]`` uint8 sRGB, header-checked against the
    server's image limit, EXIF-upright and downscaled to what guidance needs."""
    from backend.avatar.images import STYLE, read_image

    return read_image(path, Limits().max_image_side, purpose=STYLE)


def fail(e: MetamorphError) -> int:
    """One sentence on stderr (with the error's code), no traceback; the exit status for
    the error (:func:`shared.errors.exit_code`: 3 guidance unavailable, else 2)."""
    print(f"error [{e.code}]: {e.message}", file=sys.stderr)
    return exit_code(e)


class ProgressBars:
    """``progress(stage, step, total, losses=None, preview=None)`` drawn as one tqdm bar per
    stage with its ETA (stderr); the losses that matter ride along as the bar's postfix.
    Stages without a label are drawn under their own name."""

    LABELS = {"fit": "fitting the avatar", "meta": "meta-training", "adapt": "adapting", "bake": "baking",
              "codebook": "building the codebook", "sculpt": "sculpting", "imitator": "training the imitator",
              "search": "searching", "motion": "optimizing the motion", "capture": "capturing",
              "regressor": "training the regressor"}
    SHOWN = ("total", "style", "landmarks", "identity", "eps", "geometry", "texture", "score")
    SILENT = ("done", "load", "queued", "started")

    def __init__(self, file=None):
        self.file = file or sys.stderr
        self.bar = None
        self.stage = None

    def __call__(self, stage, step, total, losses=None, preview=None):
        if stage in self.SILENT or not total:
            if stage == "done":
                self.close()
            return
        if stage != self.stage or self.bar is None or self.bar.total != total:
            self.close()
            tty = getattr(self.file, "isatty", lambda: False)()
            self.bar = tqdm(total=total, desc=self.LABELS.get(stage, stage), unit="step", file=self.file,
                            dynamic_ncols=True, mininterval=0.2 if tty else 2.0, leave=True)
            self.stage = stage
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)
        shown = {k: f"{v:.4f}" for k, v in (losses or {}).items() if k in self.SHOWN}
        if shown:
            self.bar.set_postfix(shown, refresh=False)
        if step >= total:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.bar, self.stage = None, None
