"""The job queue: FIFO, one worker thread per slot (one slot in-process: the device is
shared; one per Ray worker with ``--ray``), cancellation, per-client quota, and the
progress messages that tell each job where it stands.

It never touches a socket: it is handed ``emit(job, frames)``, which the router
implements (on the loop thread it sends directly, from the worker it forwards
through an inproc socket). ``emit`` is never called with the lock held.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable

from shared import protocol
from shared.errors import Busy, Cancelled, TooLarge, UnknownJob

from .config import FINISHED_JOBS_KEPT
from .runner import Job, progress_frames, run_job

log = logging.getLogger("metamorph.server")

ACTIVE = ("queued", "running")


class JobQueue:
    """Jobs by id; ``queue`` the waiting ones in order; ``running`` the ones on the workers.

    ``make_context(job, report_progress) -> JobContext`` builds what an in-process handler
    sees. ``execute(job, slot, report_progress, requeue) -> (frames, state) | None`` runs
    a job elsewhere (the Ray pool); None means it called ``requeue(job)`` for a retry.
    ``slots`` jobs run at once.
    """

    def __init__(self, emit: Callable[[Job, list], None], make_context: Callable, device: str,
                 max_queue: int, max_per_client: int, finished_kept: int = FINISHED_JOBS_KEPT,
                 slots: int = 1, execute: Callable | None = None):
        self.emit = emit
        self.make_context = make_context
        self.device = device
        self.slots = max(1, int(slots))
        self.execute = execute or self._execute_here
        self.max_queue = int(max_queue)
        self.max_per_client = int(max_per_client)
        self.finished_kept = int(finished_kept)
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self.lock = threading.Lock()
        self._work_ready = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    # submit / look up ------------------------------------------------------------------
    def submit(self, job: Job) -> int:
        """Queue ``job`` -> jobs ahead of it (the running one included). Raises
        TooLarge when the queue is full, Busy when its owner is at its quota."""
        with self.lock:
            active = len(self.queue) + len(self.running)
            if active >= self.max_queue:
                raise TooLarge(f"The server's job queue is full ({active} jobs); wait for some to "
                               f"finish or cancel them.", details={"limit": "max_queue", "max": self.max_queue})
            mine = sum(1 for j in self.jobs.values() if j.owner == job.owner and j.state in ACTIVE)
            if mine >= self.max_per_client:
                raise Busy(f"You already have {mine} jobs queued or running on this server, its limit per "
                           f"client; wait for one to finish or cancel one.",
                           details={"limit": "max_jobs_per_client", "max": self.max_per_client})
            self.jobs[job.id] = job
            self.queue.append(job)
            self._work_ready.notify()
        log.info("job %s (%s) queued at position %d", job.id[:8], job.kind, active)
        return active

    def owned(self, owner: str, job_id: str) -> Job:
        """The job ``job_id`` if ``owner`` submitted it; raises UnknownJob otherwise
        (the same answer whether it does not exist or is someone else's)."""
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise UnknownJob(f"There is no job {job_id[:12]} for this client (finished long ago, "
                             f"or submitted from another connection or key).", details={"job_id": job_id})
        return job

    def status(self, owner: str, job_id: str | None = None) -> dict:
        with self.lock:
            mine = [self.owned(owner, job_id)] if job_id is not None else \
                [j for j in self.jobs.values() if j.owner == owner]
            queued = list(self.queue)
            rows = [{"job_id": j.id, "kind": j.kind, "state": j.state,
                     "queue_position": self._position(j, queued)} for j in mine]
            return {"jobs": rows, "running": len(self.running), "queued": len(queued), "workers": self.slots}

    def _position(self, job: Job, queued: list) -> int:
        if job.state == "running":
            return 0
        if job.state == "queued" and job in queued:
            return queued.index(job) + len(self.running)
        return -1

    # cancel / sweep ---------------------------------------------------------------------
    def cancel(self, job: Job, why: str) -> str:
        """Cancel ``job`` -> its state afterwards ("cancelled", "cancelling", or the
        final state it already had). A queued job is answered here; a running one
        stops at its next step and its handler's answer ends the stream."""
        with self.lock:
            dequeued = job.state == "queued"
            if dequeued:
                self.queue.remove(job)
                job.state = "cancelled"
            if job.state in ("cancelled", "running"):
                job.cancel.set()
            state = job.state
        if dequeued:
            log.info("job %s cancelled while queued (%s)", job.id[:8], why)
            self.emit(job, protocol.encode_error(Cancelled(f"The job was cancelled ({why})."),
                                                 job.request_id, job.id))
            self.announce()
            self.trim_finished()
            return "cancelled"
        if state == "running":
            log.info("job %s cancelling (%s)", job.id[:8], why)
            return "cancelling"
        return state

    def active_jobs(self, pred: Callable[[Job], bool]) -> list[Job]:
        with self.lock:
            return [j for j in self.jobs.values() if j.state in ACTIVE and pred(j) and not j.cancel.is_set()]

    def cancel_where(self, pred: Callable[[Job], bool], why: str, detach: bool = False) -> list[Job]:
        """Cancel every active job ``pred`` selects (``detach``: send nothing more for them)."""
        victims = self.active_jobs(pred)
        for job in victims:
            if detach:
                job.detached = True
            self.cancel(job, why)
        return victims

    def busy_identities(self) -> set[bytes]:
        with self.lock:
            return {j.identity for j in self.jobs.values() if j.state in ACTIVE}

    def trim_finished(self) -> None:
        with self.lock:
            done = [k for k, j in self.jobs.items() if j.state not in ACTIVE]
            for k in done[:max(0, len(done) - self.finished_kept)]:
                del self.jobs[k]

    # progress ------------------------------------------------------------------------------
    def announce(self) -> None:
        """Tell every queued job its new position (any thread)."""
        with self.lock:
            queued = list(self.queue)
            offset = len(self.running)
        for i, job in enumerate(queued):
            self.emit(job, progress_frames(job, "queued", 0, 0, None, None, i + offset))

    # workers ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._workers = [threading.Thread(target=self._work, args=(slot,), name=f"metamorph-worker-{slot}",
                                          daemon=True) for slot in range(self.slots)]
        for w in self._workers:
            w.start()

    def stop(self, timeout_s: float = 10.0) -> list[Job]:
        """Cancel everything, wait for the running jobs; -> the jobs that never started."""
        self._stop.set()
        with self.lock:
            for job in self.jobs.values():
                job.cancel.set()
            never_started = list(self.queue)
            self._work_ready.notify_all()
        for w in self._workers:
            w.join(timeout=timeout_s)
            if w.is_alive():
                log.warning("a running job did not stop within %.0f s; exiting anyway", timeout_s)
        return never_started

    def requeue(self, job: Job) -> None:
        """Put a job whose worker was lost back at the head of the queue (one retry)."""
        with self.lock:
            job.state = "queued"
            self.queue.appendleft(job)
            self._work_ready.notify()
        log.warning("job %s (%s) requeued after its worker was lost", job.id[:8], job.kind)

    def _execute_here(self, job: Job, slot: int, report_progress, requeue) -> tuple[list, str]:
        return run_job(job, self.make_context(job, report_progress), self.device)

    def _work(self, slot: int) -> None:
        while True:
            with self.lock:
                while not self.queue and not self._stop.is_set():
                    self._work_ready.wait(0.5)
                if self._stop.is_set():
                    return
                job = self.queue.popleft()
                job.state = "running"
                self.running.append(job)
            # Tell its client it left the queue, and the others that they moved up.
            self.emit(job, progress_frames(job, "started", 0, 0, None, None, 0))
            self.announce()

            def report_progress(stage, step, total, losses=None, preview=None, job=job):
                self.emit(job, progress_frames(job, stage, step, total, losses, preview, 0))

            def requeue(j: Job) -> None:
                with self.lock:
                    self.running.remove(j)
                self.requeue(j)

            out = self.execute(job, slot, report_progress, requeue)
            if out is None:  # requeued for its one retry
                continue
            frames, state = out
            with self.lock:
                job.state = state
                self.running.remove(job)
                job.arrays = {}  # release input frames
                job.avatar = None
            self.emit(job, frames)
            self.trim_finished()
