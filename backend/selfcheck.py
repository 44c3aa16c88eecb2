"""The ``selfcheck`` job: exercises the whole job path without a model.

It runs ``steps`` steps of ``step_delay_s`` seconds each, reporting progress
(with a small preview image and a fake loss) and checking for cancellation at
every step, then echoes every input array back transformed, so tests and the
transport benchmark check arrays both ways with exact expected values.

Params (all optional):
    steps         int   1..100000, default 3
    step_delay_s  float 0..10 s, default 0.0
    transform     "affine" (default): numbers x -> 2*x + 1 in their own dtype
                  (integers wrap), bools negated; "echo": arrays returned as-is
    fail          bool  raise a RuntimeError at step ``fail_at`` (tests the error path)
    fail_at       int   default 0
    oom           bool  raise MemoryError instead (tests the out_of_memory path)
    avatar_id     str   if given, the server resolves it; the result reports its size
    guidance      str   if given, the job loads that guidance model through the server's
                        bounded cache (``ctx.guidance``) and reports it: the cache's path
                        without a stylization (tests, the soak benchmark)

Result body: {"steps": done, "device", "arrays": {name: {"dtype", "shape", "sum"}},
              "avatar": {"vertices", "faces", "blendshapes"} | None,
              "guidance": {"name", "is_test_model"} | None}
Result arrays: the inputs, same names, transformed.
"""

from __future__ import annotations

import time

import numpy as np

from shared.errors import Cancelled, InvalidParams

from .jobs import JobContext, JobResult, register

TRANSFORMS = ("affine", "echo")


def transform(a: np.ndarray, how: str) -> np.ndarray:
    """``affine``: 2*x + 1 in ``a``'s dtype (wrapping for ints), not for bools."""
    if how == "echo":
        return a
    if a.dtype == np.bool_:
        return ~a
    with np.errstate(over="ignore"):
        return (a * a.dtype.type(2) + a.dtype.type(1)).astype(a.dtype, copy=False)


class SelfCheck:
    name = "selfcheck"
    needs_avatar = False

    def validate(self, params: dict, arrays: dict[str, np.ndarray], limits=None) -> None:
        def num(key, lo, hi, kind, default):
            v = params.get(key, default)
            if isinstance(v, bool) or not isinstance(v, kind) or not lo <= v <= hi:
                raise InvalidParams(f"selfcheck: '{key}' must be a number in [{lo}, {hi}], got {v!r}.")
        num("steps", 1, 100_000, int, 3)
        num("step_delay_s", 0.0, 10.0, (int, float), 0.0)
        num("fail_at", 0, 100_000, int, 0)
        if params.get("transform", "affine") not in TRANSFORMS:
            raise InvalidParams(f"selfcheck: 'transform' must be one of {TRANSFORMS}.")
        for key in ("fail", "oom"):
            if not isinstance(params.get(key, False), bool):
                raise InvalidParams(f"selfcheck: '{key}' must be true or false.")
        if not isinstance(params.get("guidance", ""), str):
            raise InvalidParams("selfcheck: 'guidance' must name a guidance model.")

    def run(self, ctx: JobContext) -> JobResult:
        p = ctx.params
        steps, delay = int(p.get("steps", 3)), float(p.get("step_delay_s", 0.0))
        how = p.get("transform", "affine")
        yy, xx = np.mgrid[0:32, 0:32]
        for step in range(steps):
            if ctx.is_cancelled():
                raise Cancelled("The selfcheck job was cancelled.")
            if step == int(p.get("fail_at", 0)):
                if p.get("oom"):
                    raise MemoryError("selfcheck: simulated out-of-memory")
                if p.get("fail"):
                    raise RuntimeError(f"selfcheck: failure requested at step {step}")
            if delay:
                time.sleep(delay)
            preview = np.stack([xx * 8, yy * 8, np.full_like(xx, (step * 37) % 256)], -1).astype(np.uint8)
            ctx.report_progress("selfcheck", step + 1, steps, {"loss": 1.0 / (step + 1)}, preview)
        g = None
        if p.get("guidance"):
            if ctx.guidance is None:
                raise InvalidParams("selfcheck: 'guidance' needs a server (its guidance cache).")
            g = ctx.guidance(p["guidance"])
        out = {name: transform(a, how) for name, a in ctx.arrays.items()}
        summary = {name: {"dtype": a.dtype.str, "shape": list(a.shape),
                          "sum": float(a.sum(dtype=np.float64)) if a.size else 0.0}
                   for name, a in ctx.arrays.items()}
        av = ctx.avatar
        return JobResult(body={
            "steps": steps, "device": ctx.device, "arrays": summary,
            "avatar": None if av is None else {"vertices": av.num_vertices, "faces": av.num_faces,
                                               "blendshapes": len(av.blendshape_names)},
            "guidance": None if g is None else {"name": g.name, "is_test_model": bool(g.is_test_model)},
        }, arrays=out)


register(SelfCheck())
