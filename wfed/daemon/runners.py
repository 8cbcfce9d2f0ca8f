"""The workflows a daemon runs: each one's runner and task, in `capacity` slots."""

from __future__ import annotations

import asyncio

from wfed.engine.runner import WorkflowRunner
from wfed.metrics import Metrics


class Runners:
    """The daemon's runners by workflow id, and the slot accounting the claimer reads."""

    def __init__(self, capacity: int, metrics: Metrics) -> None:
        self.capacity = capacity
        self.metrics = metrics
        self.by_id: dict[int, WorkflowRunner] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.freed = asyncio.Event()
        self._update()

    def free(self) -> int:
        return self.capacity - len(self.tasks)

    def held(self) -> list[int]:
        return list(self.by_id)

    def add(self, runner: WorkflowRunner, task: asyncio.Task[None]) -> None:
        self.by_id[runner.workflow.id] = runner
        self.tasks[runner.workflow.id] = task
        self._update()

    def remove(self, workflow_id: int) -> None:
        self.by_id.pop(workflow_id, None)
        self.tasks.pop(workflow_id, None)
        self._update()
        self.freed.set()

    def _update(self) -> None:
        self.metrics.running.set(len(self.tasks))
        self.metrics.free_slots.set(max(self.free(), 0))
