"""One attempt of one step: render its arguments from the context, check them, run the
step under its timeout, and check that what it left in the context can be stored.

The attempt runs as a task of its own so that control can cancel it (a stop request, a
lost lease) without cancelling the runner that waits for it. Its live output goes to a
recorder of its own when the run records output (`wfed.engine.output`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wfed.engine import output
from wfed.errors import InvalidDefinition
from wfed.steps.base import PauseWorkflow, output_to
from wfed.steps.definition import StepPlan, check_args, check_json_bounds
from wfed.steps.template import render


class AttemptCancelled(Exception):
    """Control cancelled the attempt from outside (not the runner being cancelled)."""


class StepExited(Exception):
    """A step raised SystemExit, KeyboardInterrupt or another BaseException that is not an
    Exception: that fails the step like any exception. Let through, the first two would
    stop the event loop, and with it the daemon and every workflow it runs; the others
    would escape the runner, leaving the workflow to its lease."""

    def __init__(self, raised: BaseException) -> None:
        text = str(raised).strip()
        name = type(raised).__name__
        super().__init__(f"the step raised {name}: {text}" if text else f"the step raised {name}")


class StepAttempt:
    """One run of one step on a working copy of the context."""

    def __init__(self, plan: StepPlan, context: dict[str, Any]) -> None:
        self.plan = plan
        self.context = context
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    def cancel(self) -> None:
        """Cancel the attempt, or keep it from starting if it has not yet."""
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> str | None:
        """Run the step; returns a pause gate's prompt, or None.

        Raises what the step raised (a step failure), AttemptCancelled if `cancel()`
        cut it off, and CancelledError if the caller itself was cancelled."""
        recorder = output.attempt_recorder(self.plan.position)
        with output_to(recorder):  # the task copies the context as it starts
            self._task = asyncio.create_task(self._invoke())
        if self._cancelled:
            # Control arrived before the step started: it must not run at all.
            self._task.cancel()
        try:
            await self._task
        except PauseWorkflow as gate:
            return str(gate) or "paused by a pause step"
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._task.cancelled() or (current and current.cancelling()):
                raise
            raise AttemptCancelled from None
        finally:
            if not self._task.done():
                self._task.cancel()
            if recorder is not None:
                await recorder.close()
        try:
            # NaN and infinities are not JSON: PostgreSQL and MariaDB would refuse the
            # write, and with it every step commit it shares a transaction with.
            json.dumps(self.context, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the step left a context that is not JSON: {exc}") from None
        except RecursionError:
            raise TypeError("the step left a context nested too deeply to store") from None
        try:
            # What the next claim would refuse (an integer wider than 64 bits, a key that
            # is not a string) fails this step, not the workflow's next turn.
            check_json_bounds(self.context, "context")
        except InvalidDefinition as exc:
            raise TypeError(f"the step left a context that cannot be stored: {exc}") from None
        return None

    async def _invoke(self) -> None:
        plan = self.plan
        args = render(plan.args, self.context)
        args = check_args(plan.step_class, args, plan.title, rendered=True)
        step = plan.step_class()
        try:
            if plan.timeout is None:
                await step.invoke(self.context, args)
                return
            try:
                async with asyncio.timeout(plan.timeout):
                    await step.invoke(self.context, args)
            except TimeoutError:
                raise TimeoutError(f"timed out after {plan.timeout:g} s") from None
        except (Exception, asyncio.CancelledError):
            raise
        except BaseException as raised:  # see StepExited
            raise StepExited(raised) from raised
