"""``serve --ray``: run the queue's jobs on a Ray worker pool instead of in-process.

The ZeroMQ front end (router, protocol, validation, CURVE, job ownership, queue,
positions, progress, cancel) is unchanged; only where a job runs differs. Each
queue slot owns one Ray actor (:mod:`backend.cluster`); its progress is forwarded
as it comes; a job whose worker died is requeued once (at the head of the queue,
so the next free worker takes it) before its client gets a ``worker_lost`` error.
"""

from __future__ import annotations

import logging
import time

from shared.errors import WorkerLost

from backend.cluster.pool import PoolConfig, RayPool

from .runner import Job, final_message

log = logging.getLogger("metamorph.server")


class RayExecutor:
    def __init__(self, pool_cfg: PoolConfig, cache_root: str, extra: dict, guidance: dict):
        self.pool = RayPool(pool_cfg, cache_root, extra, guidance)
        self.device = self.pool.device

    @property
    def slots(self) -> int:
        return self.pool.slots

    def __call__(self, job: Job, slot: int, report_progress, requeue):
        t0 = time.monotonic()
        log.info("job %s (%s) running on Ray worker %d", job.id[:8], job.kind, slot)
        try:
            outcome = self.pool.run(slot, job.id, job.kind, job.params, job.arrays, job.avatar, job.avatar_id,
                                    report_progress, job.cancel.is_set)
        except WorkerLost as e:
            if e.details.get("retryable") and not job.retried and not job.cancel.is_set():
                job.retried = True
                log.warning("job %s: %s; retrying once", job.id[:8], e.message)
                requeue(job)
                return None
            outcome = e
        except BaseException as e:  # noqa: BLE001 - typed by final_message
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            outcome = e
        return final_message(job, outcome, self.device, t0)

    def shutdown(self) -> None:
        self.pool.shutdown()
