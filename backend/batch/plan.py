"""What a catalogue batch has to do, and what is already done (pure functions, no torch, no Ray).

A batch is avatars x styles: optionally one ``prepare`` per avatar, then one
``stylize`` per (avatar, style). Each task has a content key: a hash of the
avatar's content hash and every request field that changes the result, so a
re-run finds finished results by key and skips them (resumable), whatever the
files are called.

Output layout under ``--out``::

    <avatar>/<style slug>-<key8>/     one stylize result (write_outputs' files + batch.json)
    <avatar>/prepare-<key8>.json      the prepare summary (its checkpoint is in the cache)
    <avatar>/contact_sheet.png        original + every style, frontal view
    summary.csv                       one row per task
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from shared import validation
from shared.errors import InvalidParams
from shared.stylize import MAX_PROMPT_LENGTH, MAX_STYLES

AVATAR_SUFFIXES = (".glb", ".gltf", ".obj")
DONE_MARKER = "batch.json"


@dataclass(frozen=True)
class Task:
    kind: str                 # "prepare" | "stylize"
    avatar: str               # avatar name (file stem)
    avatar_path: str
    avatar_hash: str
    style: str                # the prompt ("" for prepare)
    key: str                  # content key (hex)
    out: str                  # result folder (stylize) or summary file (prepare)
    params: dict = field(default_factory=dict, hash=False, compare=False)
    after: str | None = None  # key of the task that must finish first (the avatar's prepare)


def list_avatars(folder: str | Path) -> list[Path]:
    """Avatar files in ``folder`` (not recursive), sorted; refuses an empty or missing folder."""
    d = Path(folder)
    if not d.is_dir():
        raise InvalidParams(f"--avatars {folder}: no such folder.")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in AVATAR_SUFFIXES and p.is_file())
    if not files:
        raise InvalidParams(f"--avatars {folder}: no .glb, .gltf or .obj files in it.")
    return files


def read_styles(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and '#' comments skipped; prompt limits applied."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InvalidParams(f"--styles {path}: cannot read it ({e.strerror or e}).") from e
    styles = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    return validation.text_list("styles", styles, 1, MAX_STYLES, MAX_PROMPT_LENGTH)


def content_key(*parts) -> str:
    """A stable hex key over JSON-serializable parts."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def slug(text: str, n: int = 40) -> str:
    s = "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")
    while "__" in s:
        s = s.replace("__", "_")
    return (s or "style")[:n]


def plan(avatars: list[tuple[str, str, str]], styles: list[str], out: str | Path, *, prepare: bool,
         stylize_params: dict, prepare_params: dict) -> list[Task]:
    """Tasks for ``avatars`` [(name, path, content hash)] x ``styles``.

    ``stylize_params`` / ``prepare_params``: the request fields shared by every
    task (guidance, preset, seed, steps, settings...); they enter the keys.
    """
    out = Path(out)
    tasks: list[Task] = []
    for name, path, h in avatars:
        prep_key = None
        if prepare:
            prep_key = content_key("prepare", h, prepare_params)
            tasks.append(Task("prepare", name, path, h, "", prep_key,
                              str(out / name / f"prepare-{prep_key[:8]}.json"), dict(prepare_params)))
        for style in styles:
            key = content_key("stylize", h, style, stylize_params, prep_key)
            tasks.append(Task("stylize", name, path, h, style, key, str(out / name / f"{slug(style)}-{key[:8]}"),
                              dict(stylize_params), after=prep_key))
    return tasks


def is_done(task: Task) -> bool:
    """True when the task's output exists and carries its key (a finished, complete write)."""
    p = Path(task.out)
    marker = p if task.kind == "prepare" else p / DONE_MARKER
    try:
        return json.loads(marker.read_text()).get("key") == task.key
    except (OSError, ValueError):
        return False
