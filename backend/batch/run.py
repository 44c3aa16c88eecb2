"""Run a catalogue batch: in this process, or fanned out over a Ray worker pool.

Both paths run the server's own ``prepare`` / ``stylize`` job handlers, so a batch
result equals what the server returns for the same request and seed. Each
finished task is written atomically (a temp folder renamed into place, with its
key in ``batch.json``), so an interrupted batch resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared import avatar as avatar_mod
from shared.errors import Cancelled, MetamorphError
from shared.stylize import StylizeResult

from .plan import DONE_MARKER, Task, is_done

log = logging.getLogger("metamorph.batch")


@dataclass
class Outcome:
    task: Task
    status: str            # "done" | "skipped" | "failed"
    seconds: float = 0.0
    message: str = ""
    metadata: dict | None = None


class LocalRunner:
    """Runs handlers in this process, one task at a time."""

    slots = 1

    def __init__(self, cache_root: str, device: str = "cpu", extra: dict | None = None):
        from backend import jobs as jobs_mod

        self._jobs = jobs_mod
        self.cache_root, self.device, self.extra = cache_root, device, dict(extra or {})

    def run(self, slot, job_id, kind, params, arrays, avatar, avatar_id, report_progress, is_cancelled):
        ctx = self._jobs.JobContext(job_id=job_id, params=params, arrays=arrays, avatar=avatar, avatar_id=avatar_id,
                                    report_progress=report_progress, is_cancelled=is_cancelled, device=self.device,
                                    workdir=self.cache_root, extra=dict(self.extra))
        res = self._jobs.handlers()[kind].run(ctx)
        return res.body, res.arrays


def run_tasks(tasks: list[Task], runner, load_avatar, *, on_outcome=None, stop: threading.Event | None = None,
              retries: int = 1) -> list[Outcome]:
    """Run every task not already done, ``runner.slots`` at a time, respecting ``after``.

    ``load_avatar(path) -> AvatarData``; ``on_outcome(outcome)`` after each task
    (progress bars). A task whose worker was lost is retried ``retries`` time(s).
    """
    stop = stop or threading.Event()
    outcomes: list[Outcome] = []
    pending = []
    done_keys = set()
    for t in tasks:
        if is_done(t):
            done_keys.add(t.key)
            outcomes.append(Outcome(t, "skipped"))
            if on_outcome:
                on_outcome(outcomes[-1])
        else:
            pending.append(t)
    failed_keys: set[str] = set()
    lock = threading.Condition()
    avatars: dict[str, object] = {}

    def avatar_for(t: Task):
        with lock:
            if t.avatar_hash not in avatars:
                avatars[t.avatar_hash] = load_avatar(t.avatar_path)
            return avatars[t.avatar_hash]

    def next_task():
        with lock:
            while True:
                if stop.is_set():
                    return None
                for i, t in enumerate(pending):
                    if t.after is None or t.after in done_keys:
                        return pending.pop(i)
                    if t.after in failed_keys:  # its prepare failed: run it from the fitted init anyway
                        return pending.pop(i)
                if not pending or not running[0]:
                    return None
                lock.wait(0.2)

    running = [0]

    def work(slot: int):
        while True:
            t = next_task()
            if t is None:
                return
            with lock:
                running[0] += 1
            oc = _run_one(t, runner, slot, avatar_for(t), stop, retries)
            with lock:
                running[0] -= 1
                outcomes.append(oc)
                (done_keys if oc.status == "done" else failed_keys).add(t.key)
                lock.notify_all()
            if on_outcome:
                on_outcome(oc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(runner.slots)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return outcomes


def _run_one(t: Task, runner, slot: int, av, stop: threading.Event, retries: int) -> Outcome:
    from shared.errors import WorkerLost

    t0 = time.monotonic()
    for attempt in range(retries + 1):
        try:
            body, arrays = runner.run(slot, f"batch-{t.key[:16]}-{attempt}", t.kind, request_params(t, av), {}, av,
                                      t.avatar_hash,
                                      lambda *a, **k: None, stop.is_set)
            if stop.is_set():
                raise Cancelled("The batch was interrupted.")
            md = _write(t, av, body, arrays)
            return Outcome(t, "done", time.monotonic() - t0, metadata=md)
        except WorkerLost as e:
            if attempt < retries and e.details.get("retryable", True):
                log.warning("%s %s / %s: %s; retrying once", t.kind, t.avatar, t.style or "-", e.message)
                continue
            return Outcome(t, "failed", time.monotonic() - t0, f"[{e.code}] {e.message}")
        except MetamorphError as e:
            return Outcome(t, "failed", time.monotonic() - t0, f"[{e.code}] {e.message}")
    raise AssertionError("unreachable")


def request_params(t: Task, av) -> dict:
    """The job parameters of ``t`` for avatar ``av``: a stylize task gets the avatar's
    default rig and four frames spread over its expression track (as ``metamorph stylize``)."""
    p = dict(t.params)
    if t.kind != "stylize":
        return p
    from shared.stylize import StyleTerm, StylizeRequest

    from backend.style.rig import default_rig

    if av.track is not None and len(av.track.frames):
        frames = [float(f) for f in np.linspace(av.track.frames[0], av.track.frames[-1], 4)]
    else:
        frames = [0.0]
    req = StylizeRequest(avatar_id=t.avatar_hash, terms=[StyleTerm("text", 1.0, text=t.style)],
                         cameras=default_rig(av.vertices, blendshapes=av.blendshapes), frames=frames, name=t.style,
                         **p)
    return req.to_params()


def _write(t: Task, av, body: dict, arrays: dict) -> dict:
    """Write a finished task atomically; -> its metadata for the summary."""
    out = Path(t.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if t.kind == "prepare":
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"key": t.key, "avatar": t.avatar, "summary": body}, indent=2, default=str))
        os.replace(tmp, out)
        return {"guidance_is_test_model": bool(body.get("guidance_is_test_model", False))}
    from backend.style.bake import write_outputs

    res = StylizeResult.from_wire(body, {k: np.asarray(v) for k, v in arrays.items()})
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_outputs(av, res, tmp)
        (tmp / DONE_MARKER).write_text(json.dumps({"key": t.key, "avatar": t.avatar, "style": t.style,
                                                   "avatar_hash": t.avatar_hash}, indent=2))
        if out.exists():  # an older, unkeyed or stale result under the same name
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dict(res.body.get("metadata", {}))


def avatar_entries(paths, load_avatar) -> list[tuple[str, str, str]]:
    """[(name, path, content hash)] for avatar files; names are file stems made unique."""
    out, seen = [], set()
    for p in paths:
        name = Path(p).stem
        while name in seen:
            name += "_"
        seen.add(name)
        out.append((name, str(p), avatar_mod.content_hash(load_avatar(str(p)))))
    return out
