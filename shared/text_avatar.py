"""The ``avatar_from_text`` job contract, shared by the add-on, the CLI and the server:
an animatable avatar made from words alone.

Method (``backend/textavatar``): a codebook of sample avatars, embedded with the guidance
model, is queried relative to a neutral anchor (the average avatar described by
:data:`NEUTRAL_PROMPT`); the best entry is then sculpted (CLIP on plain grey renders moves
the geometry) and textured (CLIP on textured renders) by the stylization engine, which keeps
the expression blendshapes.

Request (``submit`` with kind ``avatar_from_text``, no avatar needed), ``params`` =
:meth:`AvatarFromTextRequest.to_params`:
    prompt             str, 1..MAX_PROMPT_CHARS characters: the avatar's description
    shape_prompt       str, optional (""): geometry (codebook query on grey renders, sculpting)
    appearance_prompt  str, optional (""): colours and texture (query on textured renders)
    face_prompt        str, optional (""): the face close-ups every few sculpting steps
    back_prompt        str, optional (""): views from behind
                       (every empty one falls back to ``prompt``: one prompt alone serves all)
    guidance           str: open_clip ``name:tag`` or ``"test-tiny"`` (outputs labelled)
    preset             one of :data:`shared.stylize.PRESET_NAMES`
    steps              int in [0, MAX_STEPS] sculpting steps (0 = the preset's)
    seed               int in [0, MAX_SEED]
    identity           float in [0, 1]: how much of the retrieved avatar the sculpting keeps
    geometry_weight    float in [0, MAX_PASS_WEIGHT]: weight of the grey-render (shape) terms
    texture_weight     float in [0, MAX_PASS_WEIGHT]: weight of the textured-render terms
                       (at least one of the two > 0; both weight the codebook query too)
    sculpt             bool: False = retrieval only (the codebook entry, unsculpted)
    texture_size       int in [MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE] pixels of the result's texture
    codebook_entries   int in [MIN_CODEBOOK_ENTRIES, MAX_CODEBOOK_ENTRIES]
    codebook_samples   int in [codebook_entries, MAX_CODEBOOK_SAMPLES] parameter vectors clustered
    codebook_render_size int in [MIN_CODEBOOK_RENDER_SIZE, MAX_CODEBOOK_RENDER_SIZE] pixels
                       (a codebook is built once per guidance model, engine version and these
                       three numbers, then cached on the server)
    name               str <= MAX_NAME_LENGTH ("" = the prompt)
    settings           optional {name: int} stylization engine overrides (as for ``stylize``)
arrays: none.

Result body (:class:`AvatarFromTextResult`):
    kind               "avatar_from_text"
    name               the avatar's name
    avatar             :func:`shared.avatar.to_wire` body of the final avatar (sculpted and
                       textured, or the codebook entry when ``sculpt`` is False), with its
                       blendshapes and the sample expression track; its arrays are sent as-is
                       (vertices [V,3] float32 m, faces [F,3] int32, uvs, uv_faces, face_material,
                       blendshapes [K,V,3] float32 m, texture_0 [S,S,3] uint8 sRGB,
                       track_frames, track_weights)
    prompts            {prompt, shape, appearance, face, back, neutral} as used
    chosen             {rank, index, score, score_grey, score_color, params} of the best entry
                       (params: the sample engine's parameters, ``backend/avatar/params.py``)
    top                the TOP_K best entries of the relative query, best first (same keys)
    absolute_top       the TOP_K best of the absolute query (no anchor), for comparison
    anchor             {params, prompt}: the anchor avatar and its neutral description
    codebook           {entries, samples, render_size, views, key, engine_version, built,
                       build_seconds, combinations}
    query_seconds      time of the relative + absolute query (text encoding included)
    stylization        the stylize metadata of the sculpting run (steps, losses, expression
                       dampening, sculpt settings...), None when ``sculpt`` is False
    guidance, guidance_is_test_model (+ ``warning`` when True), seconds, device
arrays: the avatar's arrays, plus ``contact_sheet`` [H,W,3] uint8 sRGB (columns: anchor |
    chosen entry | final avatar; rows: views x expressions; a red caption when the test
    guidance model made it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import validation as check
from .avatar import from_wire
from .errors import InvalidParams
from .protocol import Limits
from .stylize import (DEFAULT_GUIDANCE, DEFAULT_PRESET, MAX_GUIDANCE_LENGTH, MAX_NAME_LENGTH, MAX_SEED,
                      MAX_STEPS, MAX_TEXTURE_SIZE, MIN_TEXTURE_SIZE, PRESET_NAMES, check_settings)

JOB_KIND = "avatar_from_text"

# CLIP reads 77 tokens (about 300 characters of English); longer text would be cut silently.
MAX_PROMPT_CHARS = 300
NEUTRAL_PROMPT = "a 3D rendering of a person's head"  # the anchor's description
TOP_K = 5                       # codebook entries reported with their scores

DEFAULT_STEPS = 0               # sculpting steps; 0 = the preset's
DEFAULT_IDENTITY = 0.2          # low: the sculpting may move away from the retrieved entry
DEFAULT_GEOMETRY_WEIGHT = 1.0
DEFAULT_TEXTURE_WEIGHT = 1.0
MAX_PASS_WEIGHT = 10.0
DEFAULT_TEXTURE_SIZE = 1024     # pixels, side of the result's texture

DEFAULT_CODEBOOK_ENTRIES = 256  # a few hundred, as published
MIN_CODEBOOK_ENTRIES = 8
MAX_CODEBOOK_ENTRIES = 1024
DEFAULT_CODEBOOK_SAMPLES = 3072  # parameter vectors clustered into the entries
MAX_CODEBOOK_SAMPLES = 20000
DEFAULT_CODEBOOK_RENDER_SIZE = 224  # pixels, CLIP's input size
MIN_CODEBOOK_RENDER_SIZE = 32
MAX_CODEBOOK_RENDER_SIZE = 448

PROMPT_FIELDS = ("prompt", "shape_prompt", "appearance_prompt", "face_prompt", "back_prompt")


@dataclass
class AvatarFromTextRequest:
    prompt: str
    shape_prompt: str = ""
    appearance_prompt: str = ""
    face_prompt: str = ""
    back_prompt: str = ""
    guidance: str = DEFAULT_GUIDANCE
    preset: str = DEFAULT_PRESET
    steps: int = DEFAULT_STEPS
    seed: int = 0
    identity: float = DEFAULT_IDENTITY
    geometry_weight: float = DEFAULT_GEOMETRY_WEIGHT
    texture_weight: float = DEFAULT_TEXTURE_WEIGHT
    sculpt: bool = True
    texture_size: int = DEFAULT_TEXTURE_SIZE
    codebook_entries: int = DEFAULT_CODEBOOK_ENTRIES
    codebook_samples: int = DEFAULT_CODEBOOK_SAMPLES
    codebook_render_size: int = DEFAULT_CODEBOOK_RENDER_SIZE
    name: str = ""
    settings: dict | None = None

    def to_params(self) -> dict:
        p = {f.name: getattr(self, f.name) for f in fields(self)}
        p["settings"] = dict(self.settings) if self.settings else None
        return p

    @classmethod
    def from_params(cls, p) -> "AvatarFromTextRequest":
        """The request from wire params (types as sent: :meth:`validate` checks them)."""
        if not isinstance(p, dict):
            raise InvalidParams("The avatar-from-text request must be a mapping of parameters.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(p) - known)
        if unknown:
            raise InvalidParams(f"Unknown avatar-from-text parameters {unknown}; known: {sorted(known)}.")
        if "prompt" not in p:
            raise InvalidParams("Describe the avatar: 'prompt' is missing.")
        return cls(**{k: p[k] for k in known if k in p})

    def validate(self, limits: Limits | None = None) -> "AvatarFromTextRequest":
        """Check every field (bounds above; prompts also under ``limits.max_prompt_length``).
        Raises InvalidParams / TooLarge with a sentence naming the field; returns self."""
        lim = limits if limits is not None else Limits()
        n = min(MAX_PROMPT_CHARS, lim.max_prompt_length)
        if isinstance(self.prompt, str) and not self.prompt.strip():
            raise InvalidParams("The prompt is empty: describe the avatar, e.g. 'a wise old wizard with a long nose'.")
        check.text("prompt", self.prompt, n)
        for k in PROMPT_FIELDS[1:]:
            check.text(k, getattr(self, k), n, allow_empty=True)
        check.text("guidance", self.guidance, MAX_GUIDANCE_LENGTH)
        check.choice("preset", self.preset, PRESET_NAMES)
        check.integer("steps", self.steps, 0, MAX_STEPS)
        check.integer("seed", self.seed, 0, MAX_SEED)
        check.number("identity", self.identity, 0.0, 1.0)
        gw = check.number("geometry_weight", self.geometry_weight, 0.0, MAX_PASS_WEIGHT)
        tw = check.number("texture_weight", self.texture_weight, 0.0, MAX_PASS_WEIGHT)
        if gw + tw == 0:
            raise InvalidParams("'geometry_weight' and 'texture_weight' are both 0: give at least one a weight.")
        if not isinstance(self.sculpt, bool):
            raise InvalidParams(f"'sculpt' must be true or false, got {self.sculpt!r}.")
        check.integer("texture_size", self.texture_size, MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE)
        e = check.integer("codebook_entries", self.codebook_entries, MIN_CODEBOOK_ENTRIES, MAX_CODEBOOK_ENTRIES)
        check.integer("codebook_samples", self.codebook_samples, e, MAX_CODEBOOK_SAMPLES)
        check.integer("codebook_render_size", self.codebook_render_size, MIN_CODEBOOK_RENDER_SIZE,
                      MAX_CODEBOOK_RENDER_SIZE)
        check.text("name", self.name, MAX_NAME_LENGTH, allow_empty=True)
        check_settings(self.settings)
        return self

    def prompts(self) -> dict:
        """{shape, appearance, face, back}: each one's text, falling back to ``prompt``."""
        base = self.prompt.strip()
        return {k: (getattr(self, f"{k}_prompt").strip() or base) for k in ("shape", "appearance", "face", "back")}

    def avatar_name(self) -> str:
        return self.name or self.prompt.strip()[:60]


@dataclass
class AvatarFromTextResult:
    body: dict
    arrays: dict

    def to_wire(self) -> tuple[dict, dict]:
        return dict(self.body), dict(self.arrays)

    @classmethod
    def from_wire(cls, body: dict, arrays: dict) -> "AvatarFromTextResult":
        if not isinstance(body, dict) or body.get("kind") != JOB_KIND or "avatar" not in body:
            raise InvalidParams("This result is not an avatar-from-text result.")
        return cls(dict(body), dict(arrays))

    def avatar(self):
        """The final avatar as :class:`shared.avatar.AvatarData`."""
        return from_wire(self.body["avatar"], self.arrays)
