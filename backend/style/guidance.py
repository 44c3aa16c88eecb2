"""CLIP guidance models through open_clip, loaded so they can never silently be
untrained.

Names understood by :func:`load_guidance`:
    ``"ViT-B-32:laion2b_s34b_b79k"``  open_clip model name ``:`` pretrained tag
                                      (weights from the Hugging Face cache; downloaded
                                      there if allowed and missing)
    ``"ViT-B-32"`` + ``checkpoint=PATH`` an open_clip architecture with a local weights file
    ``"local-dir:/path"``             a folder with ``open_clip_config.json`` + weights
    ``"test-tiny"``                   a tiny CLIP-architecture config registered with
                                      open_clip, deterministic seeded weights, the real
                                      tokenizer. For tests, CI and benchmarks of mechanics
                                      only; everything made with it is labelled.
    ``"ViT-B-32:untrained"``          the architecture with seeded random weights, for
                                      timing benchmarks only (labelled the same way).

Every model but the two test ones is created with open_clip's
``require_pretrained=True``, so open_clip itself refuses to hand back random weights
(local-dir without weights, hf-hub without a weights file); :func:`load_guidance`
turns that refusal into :class:`shared.errors.GuidanceUnavailable`. Weight file names
and the default normalization come from ``open_clip.constants``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip import pretrained as oc_pretrained
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from shared.avatar import srgb_to_linear
from shared.errors import GuidanceUnavailable, InvalidParams
from shared.stylize import DEFAULT_GUIDANCE, TEST_GUIDANCE

from .color import linear_to_srgb

log = logging.getLogger(__name__)

TEST_MODEL = TEST_GUIDANCE
TEST_CONFIG = "metamorph-test-tiny"  # open_clip config name (data/metamorph-test-tiny.json)
UNTRAINED_TAG = "untrained"
_TEST_SEED = 1234

__all__ = ["DEFAULT_GUIDANCE", "TEST_MODEL", "TEST_CONFIG", "UNTRAINED_TAG", "Guidance", "available_models",
           "load_guidance", "parse_guidance"]

_lock = threading.Lock()
_cache: dict[tuple, "Guidance"] = {}


@dataclass
class Guidance:
    """A frozen CLIP model ready to embed renders and prompts.

    ``is_test_model`` is True for ``test-tiny`` and for ``*:untrained``: results made
    with it must say so (``guidance_is_test_model`` in metadata).
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    image_size: int
    mean: torch.Tensor  # [3]
    std: torch.Tensor  # [3]
    is_test_model: bool
    device: str = "cpu"

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """``prompts`` (N strings) -> ``[N,D]`` unit-norm float32 embeddings."""
        tokens = self.tokenizer(list(prompts)).to(self.device)
        e = self.model.encode_text(tokens).float()
        return F.normalize(e, dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` ``[B,H,W,3]`` *linear* RGB in [0,1] (row 0 top) -> ``[B,D]`` unit-norm.

        Differentiable w.r.t. ``images``: converts to sRGB (what CLIP was trained
        on), resizes to the model's input size and normalizes.
        """
        x = linear_to_srgb(images).permute(0, 3, 1, 2)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        e = self.model.encode_image(x).float()
        return F.normalize(e, dim=-1)

    def encode_image_uint8(self, image) -> torch.Tensor:
        """A style image ``[H,W,3]`` uint8 sRGB (numpy) -> ``[1,D]`` embedding (no grad).
        Centre-cropped to a square first, as CLIP's own preprocessing does."""
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
            raise InvalidParams(f"A style image must be [H,W,3] uint8 sRGB, got {a.dtype} {list(a.shape)}.")
        h, w = a.shape[:2]
        s = min(h, w)
        a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
        lin = torch.from_numpy(srgb_to_linear(a.astype(np.float32) / 255.0)).to(self.device)
        with torch.no_grad():
            return self.encode_image(lin[None])


def _register_test_config() -> None:
    if TEST_CONFIG not in open_clip.list_models():
        open_clip.add_model_config(Path(__file__).with_name("data") / f"{TEST_CONFIG}.json")


def available_models() -> list[str]:
    """Guidance names this backend understands, test model first, then every
    open_clip ``name:tag`` pair (weights may still need downloading)."""
    _register_test_config()
    return [TEST_MODEL] + [f"{m}:{t}" for m, t in open_clip.list_pretrained()]


def parse_guidance(name: str) -> tuple[str, str | None]:
    """``"ViT-B-32:laion2b_s34b_b79k"`` -> ``("ViT-B-32", "laion2b_s34b_b79k")``;
    ``"local-dir:/x"`` and ``"hf-hub:org/repo"`` pass through whole."""
    name = (name or "").strip()
    if not name:
        raise InvalidParams(f"No guidance model named; use e.g. '{DEFAULT_GUIDANCE}' or '{TEST_MODEL}'.")
    if name.startswith(("local-dir:", "hf-hub:")):
        return name, None
    if ":" in name:
        model, tag = name.split(":", 1)
        return model, (tag or None)
    return name, None


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip reports its steps at INFO on the root logger: keep them out of the
    CLI's and the server's logs unless debugging."""
    root = logging.getLogger()
    level = root.level
    if root.getEffectiveLevel() < logging.WARNING and not log.isEnabledFor(logging.DEBUG):
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def _fetch_hint(model: str, tag: str | None) -> str:
    what = f"{model}:{tag}" if tag else model
    return (f"Fetch the weights on a machine with internet access (python -c \"import open_clip; "
            f"open_clip.create_model('{model}', pretrained='{tag or '<tag>'}')\" fills the Hugging Face "
            f"cache at {os.environ.get('HF_HOME', '~/.cache/huggingface')}; copy it here), or pass a "
            f"local weights file with --clip-checkpoint PATH, "
            f"or use 'local-dir:/folder'. For a mechanics-only test run use --guidance test-tiny. "
            f"(wanted: {what})")


def _resolve_tag(model: str, tag: str, allow_download: bool) -> str:
    """Local file path of the weights of ``model``/``tag``: from the HF cache, or
    downloaded when allowed. Raises GuidanceUnavailable naming how to get them."""
    cfg = oc_pretrained.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise InvalidParams(f"Unknown pretrained tag '{tag}' for guidance model '{model}'. "
                            f"Known tags: {tags or 'none (unknown model)'}; see available_models().")
    hub = (cfg.get("hf_hub") or "").rstrip("/")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
            repo_id = "/".join(hub.split("/")[:2])
            fname_prefix = "/".join(hub.split("/")[2:])
            for fname in (HF_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME):
                fn = f"{fname_prefix}/{fname}" if fname_prefix else fname
                p = try_to_load_from_cache(repo_id, fn)
                if isinstance(p, str) and os.path.isfile(p):
                    return p
        except Exception:  # cache lookup must never decide; fall through to download
            pass
    if not allow_download:
        raise GuidanceUnavailable(f"The weights of guidance model '{model}:{tag}' are not in the local "
                                  f"cache and downloading is disabled. " + _fetch_hint(model, tag))
    try:
        path = oc_pretrained.download_pretrained(cfg)
    except Exception as e:
        raise GuidanceUnavailable(f"Could not download the weights of guidance model '{model}:{tag}' "
                                  f"({type(e).__name__}). " + _fetch_hint(model, tag)) from e
    if not path or not os.path.isfile(path):
        raise GuidanceUnavailable(f"No weights file was found for '{model}:{tag}'. " + _fetch_hint(model, tag))
    return path


def load_guidance(name: str = DEFAULT_GUIDANCE, checkpoint: str | None = None, device: str = "cpu",
                  allow_download: bool | None = None, cache: bool = True) -> Guidance:
    """Load (and keep per process, unless ``cache`` is False) a frozen guidance model.

    ``allow_download`` defaults to False when ``HF_HUB_OFFLINE`` is set, else True.
    Raises :class:`GuidanceUnavailable` whenever real weights cannot be loaded
    (never returns randomly initialized weights except for the explicitly named
    ``test-tiny`` / ``*:untrained``), :class:`InvalidParams` for unknown names.
    """
    if allow_download is None:
        allow_download = os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0", "false", "False")
    key = (name, checkpoint, str(device))
    if not cache:
        return _load(name, checkpoint, device, allow_download)
    with _lock:
        if key in _cache:
            return _cache[key]
        g = _load(name, checkpoint, device, allow_download)
        _cache[key] = g
        return g


def _load(name, checkpoint, device, allow_download) -> Guidance:
    _register_test_config()
    model_name, tag = parse_guidance(name)
    is_test = False
    seeded = False
    if model_name == TEST_MODEL:
        model_name, tag, is_test, seeded = TEST_CONFIG, None, True, True
    elif tag == UNTRAINED_TAG:
        tag, is_test, seeded = None, True, True
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise GuidanceUnavailable(f"The guidance checkpoint '{checkpoint}' does not exist or is not a file.")
        if model_name.startswith(("local-dir:", "hf-hub:")):
            raise InvalidParams("--clip-checkpoint needs an open_clip architecture name such as 'ViT-B-32', "
                                f"not '{model_name}'.")
        pretrained = checkpoint
        is_test, seeded = False, False
    elif seeded or model_name.startswith(("local-dir:", "hf-hub:")):
        pretrained = None
    else:
        if model_name not in open_clip.list_models():
            raise InvalidParams(f"Unknown guidance model '{model_name}'. Use an open_clip name:tag such as "
                                f"'{DEFAULT_GUIDANCE}', 'local-dir:/folder', or 'test-tiny'.")
        if tag is None:
            raise InvalidParams(f"Guidance '{model_name}' names no weights: add a pretrained tag "
                                f"(e.g. '{model_name}:{_first_tag(model_name)}') "
                                f"or pass --clip-checkpoint PATH.")
        pretrained = _resolve_tag(model_name, tag, allow_download)

    with _quiet_open_clip(), torch.random.fork_rng(devices=[]):
        if seeded:
            torch.manual_seed(_TEST_SEED)
        try:
            # Only the explicitly named test models may come without weights.
            model = open_clip.create_model(model_name, pretrained=pretrained, device=device,
                                           require_pretrained=not seeded)
        except Exception as e:
            raise GuidanceUnavailable(f"open_clip could not load real weights for guidance model '{name}' ({e}); "
                                      f"Metamorph never guides with untrained weights. "
                                      + _fetch_hint(model_name, tag)) from e
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with _quiet_open_clip():
        tokenizer = open_clip.get_tokenizer(model_name)
    # The tag's own normalization when it names one (weights were loaded from a file path,
    # so open_clip could not attach it), else the model's, else CLIP's.
    tag_cfg = (oc_pretrained.get_pretrained_cfg(model_name, tag) or {}) if tag else {}
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = torch.tensor(tag_cfg.get("mean") or pp.get("mean") or OPENAI_DATASET_MEAN, dtype=torch.float32,
                        device=device)
    std = torch.tensor(tag_cfg.get("std") or pp.get("std") or OPENAI_DATASET_STD, dtype=torch.float32,
                       device=device)
    if is_test:
        log.warning("GUIDANCE '%s' IS A TEST MODEL WITH UNTRAINED SEEDED WEIGHTS: results only exercise the "
                    "mechanics and are labelled guidance_is_test_model=true. Do not judge style quality from them.",
                    name)
    return Guidance(name=name, model=model, tokenizer=tokenizer, image_size=size, mean=mean, std=std,
                    is_test_model=is_test, device=str(device))


def _first_tag(model_name: str) -> str:
    return (open_clip.list_pretrained_tags_by_model(model_name) or ["?"])[0]
