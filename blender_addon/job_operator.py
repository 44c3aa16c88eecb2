"""The reusable part of every backend operator: send one job, show its progress,
apply its result in one undo step (or change nothing).

A new operator (Stylize, Prepare, and later Avatar from Photo/Text, Expression from
Text/Video) is a subclass of :class:`JobOperator` and ``bpy.types.Operator``::

    class MM_OT_avatar_from_photo(JobOperator, bpy.types.Operator):
        bl_idname = "metamorph.avatar_from_photo"
        bl_label = "Avatar from Photo"

        @classmethod
        def problem(cls, context):          # why the button cannot run now (None = it can)
            return None if context.scene.metamorph_photo else "Choose a photo first."

        def make_job(self, context) -> JobSpec:   # main thread; raise MetamorphError/ValueError
            req = photo.PhotoRequest(...); req.validate()
            return JobSpec("avatar_from_photo", req.to_params(), arrays, apply=self.apply)

        @staticmethod
        def apply(context, body, arrays) -> str:  # main thread; all or nothing (see datablocks)
            objs = avatar_build.build(context, *avatar_from_wire(body, arrays))
            return f"'{objs[0].name}' created."

Everything else is here: the poll message, the address check, upload of the avatar
only when the backend lacks it (``JobSpec.avatar``), the worker thread, the modal
timer (Esc cancels), background mode (``blender -b``: runs blocking and prints
progress lines), the panel and status bar, and :func:`conclude`, which applies the
result. ``bl_options`` has ``UNDO`` so the whole apply is one undo step; a failed or
cancelled job returns CANCELLED and pushes none.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass, field

import bpy

from . import connection, jobs, progress, selection, state
from ._shared import errors

TIMER_S = 0.05


@dataclass
class JobSpec:
    """What :class:`JobOperator` sends: job ``kind``, request ``params`` and ``arrays``,
    optionally the avatar to upload first (with its content hash), and ``apply``
    (``(context, body, arrays) -> message``) run on the result."""

    kind: str
    params: dict
    arrays: dict = field(default_factory=dict)
    apply: object = None
    avatar: object = None
    avatar_id: str | None = None

    def job(self, context) -> "jobs.Job":
        work = functools.partial(jobs.run_job, kind=self.kind, params=self.params,
                                 arrays=self.arrays, avatar=self.avatar, avatar_id=self.avatar_id)
        return jobs.Job(self.kind, work, connection.client_options(context))


def report_text(err) -> str:
    return err.message if isinstance(err, errors.MetamorphError) else str(err)


class JobOperator:
    """Shared modal/background machinery (see the module docstring)."""

    bl_options = {"REGISTER", "UNDO"}
    _timer = None
    action = "stylize"  # the readiness check of selection.why_not

    # Blender collects property annotations from mixins too: every job operator takes it.
    settings: bpy.props.StringProperty(
        name="Engine settings", default="", options={"HIDDEN", "SKIP_SAVE"},
        description='Scripts: JSON engine overrides for the backend, e.g. {"resolution": 64}')

    @classmethod
    def problem(cls, context) -> str | None:
        return selection.why_not(context, cls.action, connection.is_connected(context))

    @classmethod
    def poll(cls, context):
        why = cls.problem(context)
        if why:
            cls.poll_message_set(why)
            return False
        return True

    def make_job(self, context) -> JobSpec:
        raise NotImplementedError

    def execute(self, context):
        return self.invoke(context, None)

    def _fail(self, context, msg: str):
        progress.clear(context, msg, "ERROR")  # never leave the previous job's message
        self.report({"ERROR"}, f"Metamorph: {msg}")
        return {"CANCELLED"}

    def invoke(self, context, event):
        # The same checks as poll, for scripts that call the operator directly.
        why = self.problem(context)
        if why is None:
            why = connection.address_problem(connection.client_options(context)["address"])
        if why:
            return self._fail(context, why)
        try:
            spec = self.make_job(context)
        except (errors.MetamorphError, ValueError) as e:
            return self._fail(context, report_text(e))
        self.job = spec.job(context)
        self._apply = spec.apply or (lambda context, body, arrays: f"{spec.kind} done.")
        progress.clear(context)
        if bpy.app.background or context.window_manager.windows[:] == []:
            self.job.run_blocking()
            return self.finish(context)
        self.job.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        context.workspace.status_text_set(f"Metamorph {self.job.kind}: starting (Esc cancels)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self.job.cancel()
            state.set_message(context, "Cancelling...")
            return {"RUNNING_MODAL"}  # consumed: Esc must not also reach other tools
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if timer_step(context, self.job) == "running":
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        return self.finish(context)

    def finish(self, context):
        level, msg = conclude(context, self.job, self._apply)
        self.report({level}, f"Metamorph: {msg}")
        return {"FINISHED"} if level == "INFO" else {"CANCELLED"}


def timer_step(context, job) -> str:
    """What the modal timer does on the main thread: drain the worker's events,
    update panel and status bar. Returns the job's state. Must stay short."""
    st = job.tick()
    progress.update(context, job)
    progress.status_bar(context, job)
    return st


def conclude(context, job, apply) -> tuple[str, str]:
    """End ``job`` on the main thread: apply its result with ``apply(context, body,
    arrays) -> message`` if it succeeded. Returns (report level, message).
    A cancelled or failed job changes nothing in the scene; so does an apply that
    raises (it must clean up after itself: :mod:`datablocks`)."""
    job.release()
    progress.update(context, job)
    print(f"Metamorph {job.kind}: {job.state}; longest main-thread stall "
          f"{job.max_tick_s * 1000:.1f} ms")
    if job.state == "cancelled":
        progress.clear(context, "Cancelled; nothing was changed.", "WARNING")
        return "WARNING", "cancelled; nothing was changed."
    if job.state != "done":
        err = job.error or errors.Internal("The job ended unexpectedly.")
        if isinstance(err, errors.ServerUnavailable):
            connection.set_connected(context, None)
        msg = blender_hint(err)
        progress.clear(context, msg, "ERROR")
        return "ERROR", msg
    try:
        msg = apply(context, *job.result)
    except (errors.MetamorphError, ValueError) as e:
        m = report_text(e)
        progress.clear(context, m, "ERROR")
        return "ERROR", m
    except Exception as e:  # a malformed result must end in a sentence, not a traceback
        traceback.print_exc()
        m = (f"The backend's result could not be applied ({type(e).__name__}: {e}); nothing was "
             "changed. The backend and the extension may be different versions.")
        progress.clear(context, m, "ERROR")
        return "ERROR", m
    progress.clear(context, msg)
    return "INFO", msg


def blender_hint(err) -> str:
    """The error's sentence, with what a Blender user can do instead of command-line
    flags where the backend's advice names them."""
    if isinstance(err, errors.GuidanceUnavailable):
        first = err.message.split(". ")[0].rstrip(".")
        return (f"{first}. Pick another guidance model from the Guidance menu (it lists what the "
                "backend offers after Connect), or ask whoever runs the backend to give it the "
                "weights for this model.")
    return err.message
