"""The style engine's settings: one frozen :class:`StyleConfig` per run, built by
:func:`resolve` from a named preset plus checked overrides (the one factory).

    cfg = resolve("draft", {"resolution": 64, "steps": 10})
    cfg.network      NetConfig        the style network (UV resolution, width, levels, bounds)
    cfg.adaptation   AdaptConfig      few-step adaptation (steps, views per step, render size, loss weights)
    cfg.meta         MetaConfig       Reptile meta-training (iterations, inner steps, outer step size)
    cfg.meta_key()                    the key that names this config's meta checkpoints

Presets are data files, ``data/presets/<name>.json`` (one per name in
:data:`shared.stylize.PRESET_NAMES`), holding ``{section: {field: value}}`` for the
fields that differ from the defaults below. A client may override the fields that
declare an ``override`` name and bounds in their metadata (declared once, here); their
bounds may name constants of :mod:`shared.stylize` (the request contract), read when
checked. This module imports neither torch nor numpy: the server checks overrides with
it on its socket loop.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from shared import stylize as contract
from shared.errors import InvalidParams

PRESET_DIR = Path(__file__).with_name("data") / "presets"
CHECKPOINT_VERSION = "style-ckpt-2"  # bump when a change makes cached networks invalid


def _bounded(default: int, lo, hi, override: str):
    """A client-overridable integer field. ``lo``/``hi``: ints, or names of constants in
    :mod:`shared.stylize` (so a request bound and an engine bound are one number)."""
    return field(default=default, metadata={"bounds": (lo, hi), "override": override})


@dataclass(frozen=True)
class NetConfig:
    """The style network's architecture (see :mod:`backend.style.net`)."""

    resolution: int = _bounded(128, 16, 1024, "resolution")  # UV working resolution R (pixels)
    width: int = _bounded(32, 4, 128, "width")      # channels W of every layer
    levels: int = _bounded(3, 1, 6, "levels")       # encoder/decoder levels L (R must divide by 2^(L-1))
    num_blendshapes: int = 0   # K (the avatar's; set by StyleConfig.for_avatar)
    max_offset_frac: float = 0.03  # neutral offset bound, fraction of head size (bbox diagonal)
    bs_offset_frac: float = 0.5    # blendshape offset bound, fraction of the blendshape's own delta
    padding: str = "replicate"     # conv padding; zeros would make UV-square borders (often seams) special

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AdaptConfig:
    """Few-step adaptation of the bias mappers (see :mod:`backend.style.adapt`)."""

    steps: int = _bounded(30, "MIN_STEPS", "MAX_STEPS", "steps")
    lr: float = 1e-2
    views_per_step: int = _bounded(2, 1, 32, "views_per_step")
    render_size: int = _bounded(128, 16, 1024, "render_size")  # pixels, square renders fed to CLIP crops
    crops_per_view: int = 1
    identity: float = 0.5          # user's identity strength 0..1
    identity_scale: float = 2.0    # identity loss weight at identity = 1
    directional_weight: float = 0.5
    geometry_weight: float = 0.5   # text loss on plain shaded renders
    offset_weight: float = 1.0
    laplacian_weight: float = 10.0
    texture_weight: float = 0.05
    seed: int = 0
    time_budget_s: float = 0.0
    preview_every: int = 5
    preview_size: int = 64


@dataclass(frozen=True)
class MetaConfig:
    """Reptile meta-training of the mapper initialization (see :mod:`backend.style.meta`)."""

    iterations: int = _bounded(200, 1, "MAX_ITERATIONS", "meta_iterations")  # Reptile outer iterations
    inner_steps: int = _bounded(5, 1, 100, "inner_steps")  # adaptation steps per sampled style
    outer_lr: float = 0.5      # eps, annealed linearly to 0.1 * eps
    save_every: int = 10
    seed: int = 0
    identity: float = 0.5


SECTIONS = {"network": NetConfig, "adaptation": AdaptConfig, "meta": MetaConfig}


@dataclass(frozen=True)
class StyleConfig:
    preset: str
    network: NetConfig
    adaptation: AdaptConfig
    meta: MetaConfig

    def settings(self) -> dict:
        """The overridable values by override name (``{"resolution": 128, ...}``), for metadata."""
        return {name: getattr(getattr(self, sec), f) for name, (sec, f, _) in overridable().items()}

    def for_avatar(self, num_blendshapes: int) -> "StyleConfig":
        """This config with the network sized for an avatar with ``num_blendshapes``."""
        return replace(self, network=replace(self.network, num_blendshapes=int(num_blendshapes)))

    def meta_key(self) -> str:
        """Names the meta-training checkpoint: the network only (a meta init serves every
        adaptation setting; the guidance model is named beside it)."""
        return _key(self.network)

    def to_dict(self) -> dict:
        return {"preset": self.preset, **{s: asdict(getattr(self, s)) for s in SECTIONS}}


def _key(*sections) -> str:
    blob = json.dumps([CHECKPOINT_VERSION, *(asdict(s) for s in sections)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def overridable() -> dict[str, tuple[str, str, tuple]]:
    """``{override name: (section, field, (lo, hi))}`` of every client-overridable setting."""
    out = {}
    for sec, cls in SECTIONS.items():
        for f in fields(cls):
            if "override" in f.metadata:
                out[f.metadata["override"]] = (sec, f.name, f.metadata["bounds"])
    return out


def bounds(name: str) -> tuple[int, int]:
    """(lo, hi) of the override ``name``, constants of :mod:`shared.stylize` resolved now."""
    lo, hi = overridable()[name][2]
    return (getattr(contract, lo) if isinstance(lo, str) else lo,
            getattr(contract, hi) if isinstance(hi, str) else hi)


def _check_value(name: str, value) -> int:
    lo, hi = bounds(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidParams(f"Engine setting '{name}' must be a whole number in [{lo}, {hi}], got {value!r}.")
    return int(value)


def check_overrides(overrides: dict | None) -> dict:
    """``overrides`` checked against the declared names and bounds; returns a copy."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise InvalidParams("Engine settings must be a mapping of setting names to whole numbers.")
    known = overridable()
    for k, v in overrides.items():
        if k not in known:
            raise InvalidParams(f"Unknown engine setting '{k}'; known: {sorted(known)}.")
        _check_value(k, v)
    return dict(overrides)


def _check_network(net: NetConfig) -> None:
    step = 2 ** (net.levels - 1)
    if net.resolution % step:
        raise InvalidParams(f"Engine setting 'resolution' ({net.resolution}) must divide by 2^(levels-1) = {step} "
                            f"with levels = {net.levels}.")


@functools.lru_cache(maxsize=None)
def preset(name: str) -> StyleConfig:
    """The preset ``name`` from ``data/presets/<name>.json`` (cached; frozen)."""
    if name not in contract.PRESET_NAMES:
        raise InvalidParams(f"Unknown preset '{name}'; use one of {list(contract.PRESET_NAMES)}.")
    path = PRESET_DIR / f"{name}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)}; known: {list(SECTIONS)}")
    parts = {}
    for sec, cls in SECTIONS.items():
        try:
            parts[sec] = cls(**data.get(sec, {}))
        except TypeError as e:
            raise ValueError(f"{path}: section '{sec}': {e}") from e
    cfg = StyleConfig(preset=name, **parts)
    for k, v in cfg.settings().items():  # shipped presets obey the same bounds as clients
        _check_value(k, v)
    _check_network(cfg.network)
    return cfg


def preset_files() -> list[str]:
    """Names of the preset data files shipped (must equal ``shared.stylize.PRESET_NAMES``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def resolve(preset_name: str = contract.DEFAULT_PRESET, overrides: dict | None = None) -> StyleConfig:
    """The config of ``preset_name`` with ``overrides`` (``{override name: int}``) applied.
    Raises :class:`InvalidParams` naming the setting for an unknown name, a value out of
    its bounds, or a resolution the network's levels cannot halve."""
    cfg = preset(preset_name)
    changes: dict[str, dict] = {}
    for k, v in check_overrides(overrides).items():
        sec, f, _ = overridable()[k]
        changes.setdefault(sec, {})[f] = v
    cfg = replace(cfg, **{sec: replace(getattr(cfg, sec), **kw) for sec, kw in changes.items()})
    _check_network(cfg.network)
    return cfg
