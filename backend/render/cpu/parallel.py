"""Threads and memory hints shared by the CPU kernels.

Work is split over ``threads()`` Python threads (the numba kernels release the
GIL) by whole views, pixel ranges or texture row bands, so no two threads write
the same memory and every sum runs in the same order whatever the thread count:
results are bit-identical for 1 or N threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit


def _make_prefetch():
    """``prefetch(a, i, j)``: hint the CPU to fetch the cache line of a[i, j] (a 2-d
    array) or a[i, j, 0] (3-d), with LLVM's prefetch intrinsic. Texture lookups are
    random memory reads; issuing them a few pixels ahead overlaps their latency.
    Falls back to a no-op where the intrinsic cannot be built (results never depend on it)."""
    try:
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic

        @intrinsic
        def prefetch(typingctx, arr, row, col):
            if not isinstance(arr, types.Array) or arr.ndim not in (2, 3):
                return None

            def codegen(context, builder, signature, args):
                aryty = signature.args[0]
                ary = context.make_array(aryty)(context, builder, args[0])
                idx = [context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2)]
                idx += [context.get_constant(types.intp, 0)] * (aryty.ndim - 2)
                ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
                i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
                fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
                fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
                builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])  # read, keep, data
                return context.get_dummy_value()

            return types.void(arr, row, col), codegen

        @njit(nogil=True)
        def _check(a):
            prefetch(a, 0, 0)

        _check(np.zeros((1, 1, 1), np.float32))
        return prefetch
    except Exception:  # pragma: no cover - depends on the llvmlite build
        @njit(nogil=True, inline="always")
        def prefetch(arr, row, col):
            pass

        return prefetch


prefetch = _make_prefetch()
PREFETCH_AHEAD = 8  # pixels; measured 4..32 equally good

_POOL: ThreadPoolExecutor | None = None
_CPUS = os.cpu_count() or 1  # a system call: read once
_POOL_PID = -1  # a forked child must not reuse its parent's (thread-less) pool


def threads() -> int:
    """Kernel threads: ``METAMORPH_RENDER_THREADS`` if set, else torch's CPU thread
    setting; capped at the CPU count and 8."""
    env = os.environ.get("METAMORPH_RENDER_THREADS", "").strip()
    n = int(env) if env.isdigit() else torch.get_num_threads()
    return max(1, min(n, _CPUS, 8))


def run(jobs) -> None:
    """Run callables; on several threads when allowed. The kernels release the GIL."""
    global _POOL, _POOL_PID
    jobs = list(jobs)
    if len(jobs) <= 1:
        for job in jobs:
            job()
        return
    if _POOL is None or _POOL_PID != os.getpid():
        _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="metamorph-render")
        _POOL_PID = os.getpid()
    for fut in [_POOL.submit(job) for job in jobs]:
        fut.result()


def chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """Split range(n) into at most ``parts`` contiguous (start, stop) pieces."""
    parts = max(1, min(parts, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def view_chunks(pixel: np.ndarray, views: int, hw: int, parts: int) -> list[tuple[int, int]]:
    """Pixel ranges made of whole views (pixels are sorted by flat index, so by view)."""
    out = []
    for b0, b1 in chunks(views, parts):
        lo, hi = np.searchsorted(pixel, [b0 * hw, b1 * hw])
        if hi > lo:
            out.append((int(lo), int(hi)))
    return out
