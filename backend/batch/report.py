"""A batch's summary: ``summary.csv`` (one row per task) and a contact sheet per avatar."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from shared import passes as mm_passes

from .plan import Task
from .run import Outcome

COLUMNS = ("avatar", "kind", "style", "status", "seconds", "expression_dampening", "guidance_is_test_model",
           "message", "out")


def write_summary(outcomes: list[Outcome], out: str | Path) -> Path:
    """Write ``summary.csv`` under ``out`` (atomically); rows sorted by avatar, kind, style."""
    out = Path(out)
    rows = []
    for oc in sorted(outcomes, key=lambda o: (o.task.avatar, o.task.kind != "prepare", o.task.style)):
        md = oc.metadata or _stored_metadata(oc.task)
        rows.append({
            "avatar": oc.task.avatar, "kind": oc.task.kind, "style": oc.task.style, "status": oc.status,
            "seconds": f"{oc.seconds:.1f}",
            "expression_dampening": (f"{md['expression_dampening']:.4f}"
                                     if md.get("expression_dampening") is not None else ""),
            "guidance_is_test_model": str(bool(md.get("guidance_is_test_model", False))).lower(),
            "message": oc.message, "out": oc.task.out,
        })
    path = out / "summary.csv"
    tmp = path.with_name(f"summary.csv.tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def _stored_result(t: Task) -> dict | None:
    """The result.json of a finished stylize task (this run's or an earlier one's)."""
    if t.kind != "stylize":
        return None
    try:
        return json.loads((Path(t.out) / "result.json").read_text())
    except (OSError, ValueError):
        return None


def _stored_metadata(t: Task) -> dict:
    return (_stored_result(t) or {}).get("metadata", {})


def avatar_sheet(tasks: list[Task], cell: int = 192) -> np.ndarray | None:
    """``[h,w,3]`` uint8: the original frontal render, then each finished style's, captioned.
    None when no style of this avatar has finished."""
    from PIL import Image, ImageDraw

    tiles, labels, test = [], [], False
    for t in tasks:
        res = _stored_result(t)
        if res is None or not res.get("cameras"):
            continue
        cam, frame = mm_passes.camera_names(res["cameras"])[0], (res.get("frames") or [0.0])[0]
        col = Path(mm_passes.pass_path(t.out, cam, "color", frame))
        orig = Path(mm_passes.pass_path(t.out, cam, "original", frame))
        if not col.is_file():
            continue
        if not tiles and orig.is_file():
            tiles.append(Image.open(orig).convert("RGB").resize((cell, cell)))
            labels.append("original")
        tiles.append(Image.open(col).convert("RGB").resize((cell, cell)))
        labels.append(t.style[:28])
        test = test or bool(_stored_metadata(t).get("guidance_is_test_model"))
    if not tiles:
        return None
    cap = 22
    sheet = Image.new("RGB", (cell * len(tiles), cell + cap + (18 if test else 0)), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    for i, (im, lab) in enumerate(zip(tiles, labels)):
        sheet.paste(im, (i * cell, cap))
        draw.text((i * cell + 4, 5), lab, fill=(255, 255, 255))
    if test:  # images travel without their CSV: say it on the image
        draw.rectangle([0, cap + cell, sheet.width, sheet.height], fill=(150, 20, 20))
        draw.text((4, cap + cell + 3), "TEST GUIDANCE MODEL: not a real stylization", fill=(255, 255, 255))
    return np.asarray(sheet)


def write_sheets(tasks: list[Task], out: str | Path) -> list[Path]:
    """One ``<avatar>/contact_sheet.png`` per avatar with at least one finished style."""
    from PIL import Image

    written = []
    by_avatar: dict[str, list[Task]] = {}
    for t in tasks:
        by_avatar.setdefault(t.avatar, []).append(t)
    for name, ts in by_avatar.items():
        img = avatar_sheet(ts)
        if img is None:
            continue
        p = Path(out) / name / "contact_sheet.png"
        tmp = p.with_name(f"contact_sheet.tmp{os.getpid()}.png")
        Image.fromarray(img).save(tmp)
        os.replace(tmp, p)
        written.append(p)
    return written
