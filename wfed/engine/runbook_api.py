"""The Engine's runbook files: plan one, enqueue one, lint a directory of them (part of
`wfed.Engine`; the format is `wfed.engine.runbooks`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wfed.clock import Clock

if TYPE_CHECKING:
    from wfed.engine import runbooks
    from wfed.engine.views import Workflow
    from wfed.steps.definition import StepPlan


class RunbookFiles:
    """`Engine.plan_runbook`, `run_runbook` and `lint_runbooks`."""

    clock: Clock

    def plan(self, steps: Any, context: Any = None, name: str | None = None) -> list[StepPlan]:
        raise NotImplementedError  # the Engine's

    async def create_workflow(
        self,
        name: str,
        context: dict[str, Any] | None,
        steps: Sequence[Any],
        *,
        queue: str = "default",
        priority: int = 0,
        run_after: datetime | None = None,
        provenance: dict[str, Any] | None = None,
        locks: Sequence[str] | None = None,
        windows: Sequence[str] | None = None,
    ) -> Workflow:
        raise NotImplementedError  # the Engine's

    def plan_runbook(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> tuple[runbooks.Enqueue, list[StepPlan]]:
        """What `run_runbook` would enqueue, validated, writing nothing (`--dry-run`)."""
        from wfed.engine import runbooks  # noqa: PLC0415

        row = runbooks.enqueue(
            runbooks.load_runbook(path), params or {}, now=self.clock(), name=name, queue=queue
        )
        return row, runbooks.checked(path, lambda: self.plan(row.steps, row.context, row.name))

    async def run_runbook(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        run_after: datetime | None = None,
    ) -> Workflow:
        """Enqueue a runbook file with its parameters given as text; its path, sha256 and
        the parameters go into the workflow's first event."""
        row, _ = self.plan_runbook(path, params, name=name, queue=queue)
        return await self.create_workflow(
            row.name,
            row.context,
            row.steps,
            queue=row.queue,
            priority=row.priority,
            run_after=run_after,
            provenance=row.provenance,
            locks=row.locks,
            windows=row.windows or None,
        )

    def lint_runbooks(self, directory: str) -> list[str]:
        """Every problem of the runbook files under `directory`, one line each."""
        from wfed.engine import runbooks  # noqa: PLC0415

        return runbooks.lint(directory, self.plan)
