"""The front end's side of the Ray worker pool.

    pool = RayPool(PoolConfig(address="auto"), cache_root="/shared/cache")
    body, arrays = pool.run(slot, job_id, kind, params, arrays, avatar, avatar_id,
                            report_progress, is_cancelled)

``pool.slots`` jobs run at once, one per actor: one actor per GPU when the cluster
has GPUs, else one per CPU (or ``num_workers``). Each actor keeps its guidance
models and avatar contexts warm between jobs. An avatar goes into the object store
once per content hash and every actor reads it from there (zero-copy on one node).

Faults: an actor that dies mid-job (killed, out of memory) raises
:class:`shared.errors.WorkerLost` (``retryable=True`` in its details) and is
replaced; a job past ``job_deadline_s`` has its actor killed and replaced and
raises ``WorkerLost`` too (not retryable: it would hang again). The caller (the
server's queue, the batch runner) decides about the one retry.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

from shared.errors import WorkerLost, error_from_body

from .worker import JobWorker

log = logging.getLogger("metamorph.cluster")

ADDRESS_HELP = ("'auto' joins the cluster in RAY_ADDRESS or the one `ray start` left on this machine, else starts "
                "a local one; 'local' always starts a local one; else a cluster address such as 10.0.0.5:6379")


@dataclass(frozen=True)
class PoolConfig:
    address: str = "auto"
    num_workers: int = 0           # 0: one per GPU, else one per CPU
    torch_threads: int = 1         # per CPU actor (GPU actors use torch's default)
    cpus_per_worker: float = 1.0   # Ray CPU resource each CPU actor holds
    job_deadline_s: float = 6 * 3600.0
    poll_s: float = 0.05           # progress forwarding interval
    max_avatar_refs: int = 32      # avatars kept in the object store (LRU)
    start_timeout_s: float = 180.0


def init_ray(address: str, num_cpus: int | None = None) -> None:
    """Join or start Ray once per process (see :data:`ADDRESS_HELP`)."""
    import ray

    if ray.is_initialized():
        return
    kw = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    if address in ("", "auto", None):
        try:
            ray.init(address="auto", **kw)
            return
        except ConnectionError:
            address = "local"
    if address == "local":
        ray.init(num_cpus=num_cpus or None, **kw)
    else:
        ray.init(address=address, **kw)


def actor_class():
    import ray

    return ray.remote(JobWorker)


class RayPool:
    def __init__(self, cfg: PoolConfig, cache_root: str, extra: dict | None = None, guidance: dict | None = None):
        """``extra``: the handlers' ``JobContext.extra``; ``guidance``: the guidance policy each
        worker applies (:class:`backend.cluster.worker.JobWorker`); None = handlers load their own."""
        import ray

        self.cfg = cfg
        init_ray(cfg.address, cfg.num_workers or None)
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        if gpus:
            self.device, n = "cuda", cfg.num_workers or gpus
            self._options = {"num_gpus": 1, "num_cpus": max(1, cpus // gpus)}
            threads = 0
        else:
            self.device, n = "cpu", cfg.num_workers or int(cpus / cfg.cpus_per_worker)
            self._options = {"num_cpus": cfg.cpus_per_worker}
            threads = cfg.torch_threads
        self._args = (self.device, str(cache_root), dict(extra or {}), threads, guidance)
        self._cls = actor_class()
        self._lock = threading.Lock()
        self._refs: collections.OrderedDict[str, object] = collections.OrderedDict()
        self.stats = {"avatar_puts": 0, "replacements": 0}
        self._actors = [self._spawn() for _ in range(n)]
        self.pids = [ray.get(a.ping.remote(), timeout=cfg.start_timeout_s)["pid"] for a in self._actors]
        log.info("Ray pool: %d %s worker(s), pids %s", n, self.device, self.pids)

    @property
    def slots(self) -> int:
        return len(self._actors)

    def _spawn(self):
        # Threaded actor: run() works while take_events()/cancel() are answered.
        return self._cls.options(max_concurrency=4, **self._options).remote(*self._args)

    def _replace(self, slot: int) -> None:
        import ray

        try:
            ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._actors[slot] = self._spawn()
        self.stats["replacements"] += 1
        try:
            self.pids[slot] = ray.get(self._actors[slot].ping.remote(), timeout=self.cfg.start_timeout_s)["pid"]
            log.info("Ray worker %d replaced: pid %d", slot, self.pids[slot])
        except Exception as e:  # noqa: BLE001 - reported on the next job on this slot
            log.error("replacement worker %d did not start: %s", slot, e)

    def worker_pid(self, slot: int) -> int:
        return self.pids[slot]

    def avatar_ref(self, avatar_id: str, avatar):
        """The object-store reference of an avatar, put there once per content hash."""
        import ray

        with self._lock:
            ref = self._refs.get(avatar_id)
            if ref is not None:
                self._refs.move_to_end(avatar_id)
                return ref
            ref = ray.put(avatar)
            self.stats["avatar_puts"] += 1
            log.info("avatar %s put into the object store (%d so far)", str(avatar_id)[:12],
                     self.stats["avatar_puts"])
            self._refs[avatar_id] = ref
            while len(self._refs) > self.cfg.max_avatar_refs:
                self._refs.popitem(last=False)
            return ref

    def run(self, slot: int, job_id: str, kind: str, params: dict, arrays: dict, avatar, avatar_id,
            report_progress, is_cancelled) -> tuple[dict, dict]:
        """Run one job on ``slot``'s actor -> (result body, result arrays); raises typed errors."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayError

        actor = self._actors[slot]
        aref = self.avatar_ref(avatar_id, avatar) if avatar is not None else None
        ref = actor.run.remote(job_id, kind, params, arrays, aref, avatar_id)
        t0, cancel_sent = time.monotonic(), False
        while True:
            ready, _ = ray.wait([ref], timeout=self.cfg.poll_s)
            self._forward(actor, job_id, report_progress)
            if ready:
                break
            if is_cancelled() and not cancel_sent:
                actor.cancel.remote(job_id)
                cancel_sent = True
            if time.monotonic() - t0 > self.cfg.job_deadline_s:
                self._replace(slot)
                raise WorkerLost(f"The '{kind}' job ran past the {self.cfg.job_deadline_s:.0f} s deadline; its "
                                 f"worker was stopped and replaced.", details={"retryable": False})
        try:
            out = ray.get(ref, timeout=60)
        except (RayActorError, GetTimeoutError, RayError) as e:
            self._replace(slot)
            raise WorkerLost(f"The worker running the '{kind}' job stopped ({type(e).__name__}); a replacement "
                             f"worker has started.", details={"retryable": True}) from e
        self._forward(actor, job_id, report_progress)
        if out[0] == "error":
            raise error_from_body(out[1])
        return out[1], out[2]

    def _forward(self, actor, job_id: str, report_progress) -> None:
        import ray

        try:
            events = ray.get(actor.take_events.remote(job_id), timeout=10)
        except Exception:  # noqa: BLE001 - a dead actor is reported by run()
            return
        for ev in events:
            report_progress(*ev[1:])

    def shutdown(self) -> None:
        import ray

        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self._actors = []
