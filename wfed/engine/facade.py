"""The Python API: create, run and control workflows from scripts and tests.

    async with Engine("mysql+asyncmy://wfed@db/wfed", step_modules=["myorg.runbooks"]) as e:
        await e.create_workflow("maint-42", {"target_servers": ["intweb1"]},
                                ["stop_app", "run_cmd", "start_app"])
        await e.run("maint-42")

Every operation is one transaction that checks the workflow's state in SQL and records an
event with the actor (`user@host` unless given).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import pwd
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.clock import Clock, utc_now
from wfed.config import (
    DEFAULT_OUTPUT_MAX_BYTES,
    LEASE_MAX,
    Config,
    LocksConfig,
    WindowsConfig,
    load_config,
)
from wfed.engine import control, reading, views
from wfed.engine import health as fleet_health
from wfed.engine.locks_api import ConcurrencyKeys
from wfed.engine.notify_api import Notifications
from wfed.engine.output_api import OutputReads
from wfed.engine.retention import PURGEABLE, purge_finished
from wfed.engine.runbook_api import RunbookFiles
from wfed.engine.schedule_api import ScheduleApi
from wfed.engine.views import EventView, Workflow, WorkflowSummary
from wfed.errors import ConfigError, WorkflowNotFound
from wfed.logging import get_logger
from wfed.states import Operation, WorkflowState
from wfed.store import events as event_store
from wfed.store import migrate
from wfed.store import workflows as workflow_store
from wfed.store.database import DATABASE_ERRORS, Database, explained_errors, redacted, url_password
from wfed.store.lock_keys import parse_lock_keys
from wfed.store.rows import WorkflowRow

if TYPE_CHECKING:
    from wfed.engine import bulk
    from wfed.steps.definition import StepPlan
    from wfed.steps.registry import StepRegistry

log = get_logger("wfed.engine")


def default_actor() -> str:
    """`user@host`, how operator actions are attributed in the events.

    The user is the account the process runs as, looked up by its uid: `USER` and
    `LOGNAME` are whatever the caller's environment says, and an audit trail must not
    take a name anyone can set. Under sudo (uid 0 with `SUDO_USER` set, which only root
    can have arranged), the person who ran sudo is named, with the account it became."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (a container's arbitrary uid)
        user = f"uid{uid}"
    invoker = os.environ.get("SUDO_USER", "") if uid == 0 else ""
    if invoker and invoker != user:
        user = f"{invoker}(sudo:{user})"
    return f"{user}@{socket.gethostname()}"


class Engine(RunbookFiles, OutputReads, ScheduleApi, ConcurrencyKeys, Notifications):
    """A connection to a wfed database plus the registry of runnable steps."""

    def __init__(
        self,
        url: str,
        *,
        step_modules: Sequence[str] = (),
        step_paths: Sequence[str] = (),
        registry: StepRegistry | None = None,
        actor: str | None = None,
        password: str | None = None,
        lease: float = 30.0,
        control_interval: float = 1.0,
        clock: Clock = utc_now,
        output_max_bytes: int = DEFAULT_OUTPUT_MAX_BYTES,
        locks: LocksConfig | None = None,
        windows: WindowsConfig | None = None,
    ) -> None:
        if not 0 < lease <= LEASE_MAX:
            raise ConfigError(f"lease must be above 0 and at most {LEASE_MAX:g} s, not {lease!r}")
        self.db = Database(url, password)
        self.queue_windows = (windows or WindowsConfig()).by_queue()
        """The queues' maintenance windows ([windows] queues), for what `get` tells."""
        self.lock_limits = locks or LocksConfig()
        """The slots of each concurrency key ([locks] limits), for `run` and the views."""
        self.output_max_bytes = output_max_bytes
        """Live output recorded per step attempt by `run` ([output] max_bytes; 0: none)."""
        self._registry = registry
        self._step_modules = list(step_modules)
        self._step_paths = list(step_paths)
        self.actor = actor or default_actor()
        self.lease = lease
        self.control_interval = control_interval
        self.clock = clock

    @property
    def registry(self) -> StepRegistry:
        """The steps this engine can run: the built-ins and the configured modules,
        imported the first time a step is validated or run. Reading and controlling
        workflows never imports them, so a host without the runbook code can do both."""
        if self._registry is None:
            from wfed.steps.registry import StepRegistry  # noqa: PLC0415

            self._registry = StepRegistry.from_modules(self._step_modules, paths=self._step_paths)
        return self._registry

    @classmethod
    def from_config(
        cls, path: str | None = None, *, config: Config | None = None, **options: Any
    ) -> Engine:
        """An engine for the database and step modules of a config file (or WFED_CONFIG)."""
        config = config or load_config(path)
        options.setdefault("output_max_bytes", config.output.max_bytes)
        options.setdefault("locks", config.locks)
        options.setdefault("windows", config.windows)
        engine = cls(
            config.database.url,
            step_modules=config.steps.modules,
            step_paths=config.steps.paths,
            password=config.database_password(),
            lease=config.daemon.lease,
            control_interval=config.daemon.control_interval,
            **options,
        )
        engine.schedule_catchup = config.schedules.catchup
        return engine

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.db.dispose()

    # -- schema -----------------------------------------------------------------------

    async def upgrade_schema(self) -> tuple[str | None, str]:
        """Create or migrate the schema (idempotent); returns (before, after) revisions."""
        return await migrate.upgrade(self.db)

    # -- creating ---------------------------------------------------------------------

    def plan(self, steps: Any, context: Any = None, name: str | None = None) -> list[StepPlan]:
        """Validate a definition, context and name without writing anything (`--dry-run`)."""
        # Validating steps (and creating workflows) loads their models here: reading and
        # controlling workflows never does.
        from wfed.engine import creation  # noqa: PLC0415
        from wfed.steps.definition import parse_context, parse_definition  # noqa: PLC0415

        if name is not None:
            creation.check_name(name)
        parse_context(context)
        return parse_definition(steps, self.registry)

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
        """Create a pending workflow. InvalidDefinition before anything is written if the
        steps, context, concurrency keys (`locks`) or maintenance windows (`windows`, e.g.
        ["sat 02:00-05:00 Europe/Paris"]: docs/windows.md) are wrong; WorkflowExists on a
        duplicate name. `provenance` (where the definition came from) is recorded in the
        `created` event."""
        from wfed.engine import creation  # noqa: PLC0415

        await creation.create(
            control.Operator(self.db, self.actor, self.clock),
            self.registry,
            name,
            context,
            steps,
            queue=queue,
            priority=priority,
            run_after=run_after,
            provenance=provenance,
            locks=locks,
            windows=windows,
        )
        return await self.get(name)

    # -- reading ----------------------------------------------------------------------

    async def get(self, name: str) -> Workflow:
        """A workflow with its steps and, if halted, why (WorkflowNotFound if none)."""
        async with self.db.transaction() as conn:
            workflow = await reading.read_workflow(conn, name, self.lock_limits.limit_of)
        from wfed.engine.window_reads import status  # noqa: PLC0415

        return replace(workflow, window=status(self.queue_windows, workflow.row, self.clock()))

    async def list(
        self,
        *,
        state: WorkflowState | str | Iterable[WorkflowState | str] | None = None,
        queue: str | None = None,
        limit: int = 100,
    ) -> list[WorkflowSummary]:
        """Workflows, newest first."""
        chosen = [] if state is None else [state] if isinstance(state, str) else state
        states = [WorkflowState(s) for s in chosen]
        async with self.db.transaction() as conn:
            rows = await workflow_store.workflow_list(conn, states=states, queue=queue, limit=limit)
        return [WorkflowSummary.of(row) for row in rows]

    async def history(self, name: str) -> builtins.list[EventView]:
        """The events of a workflow, oldest first; also for a deleted one (by name)."""
        async with self.db.transaction() as conn:
            row = await workflow_store.workflow_get(conn, name)
            events = await event_store.events_for_workflow(
                conn, workflow_id=None if row is None else row.id, workflow_name=name
            )
        if row is None and not events:
            raise WorkflowNotFound(f"no workflow named {name!r}")
        return [EventView.of(event) for event in events]

    async def export(self, name: str) -> dict[str, Any]:
        """The workflow, its steps and its events as one JSON-ready document."""
        workflow = await self.get(name)
        return views.export_json(workflow, await self.history(name), self.clock(), self.actor)

    async def _require(self, conn: AsyncConnection, name: str) -> WorkflowRow:
        return await control.require(conn, name)

    # -- for operators: the fleet, the steps, the database ----------------------------

    async def fleet(self) -> views.Fleet:
        """The registered daemons and how many running workflows await recovery."""
        return await fleet_health.fleet(self.db, self.clock())

    async def health(self, queues: Sequence[str] = (), *, schema: bool = True) -> views.Health:
        """Whether each queue with runnable workflows (of `queues`, else all) is served."""
        return await fleet_health.check(self.db, self.clock(), queues, schema=schema)

    def registered_steps(self) -> builtins.list[views.StepInfo]:
        """The steps workflows can use: the built-ins and those of the step modules."""
        return [views.StepInfo.of(name, cls) for name, cls in self.registry.items()]

    def dry_run(self, steps: Any, context: Any = None) -> builtins.list[views.PlannedStep]:
        """The steps a definition would get, validated as `plan` does; nothing is written."""
        return [views.PlannedStep.of(plan) for plan in self.plan(steps, context)]

    check_lock_keys = staticmethod(parse_lock_keys)
    """The concurrency keys a `locks` value names, sorted; InvalidDefinition if it is no
    list of key names (`create --dry-run`)."""

    @staticmethod
    def check_name(name: str) -> None:
        """Refuse a name no workflow may have (InvalidDefinition)."""
        from wfed.engine import creation  # noqa: PLC0415

        creation.check_name(name)

    async def name_taken(self, name: str) -> bool:
        """Whether a workflow named `name` exists."""
        async with self.db.transaction() as conn:
            return await workflow_store.workflow_name_taken(conn, name)

    @staticmethod
    def check_placement(queue: str, priority: int) -> None:
        """Refuse a queue name or a priority no backend can store (InvalidDefinition)."""
        from wfed.engine import creation  # noqa: PLC0415

        creation.check_placement(queue, priority)

    display_url = staticmethod(redacted)
    url_password = staticmethod(url_password)

    # -- for wfectl: who holds a workflow, the accounts --------------------------------

    async def owner(self, workflow: Workflow) -> views.DaemonStatus | None:
        """The registered daemon holding a running workflow, alive or not (its last
        heartbeat); None if unclaimed or not held by a registered daemon."""
        return await reading.owner(self.db, workflow, self.clock())

    @staticmethod
    def grant_statements(url: str, database: str, **accounts: str) -> str:
        """The SQL that creates wfed's accounts (`wfed.store.grants.script`)."""
        from wfed.store import grants  # noqa: PLC0415 - only `wfectl db grants` needs it

        return grants.script(url, database, **accounts)

    @contextlib.asynccontextmanager
    async def session(self, *, check: bool = True, schema: bool = True) -> AsyncIterator[Engine]:
        """Use the engine, then close it (each wfectl command does); `check` first connects
        and checks the schema revision (unless `schema` is False) to tell a failure plainly.
        A database error comes out as the WfedError saying what it means; closing, dropped."""
        try:
            with explained_errors(self.db.display_url):
                if check:
                    await fleet_health.check_reachable(self.db, schema=schema)
                yield self
        finally:
            with contextlib.suppress(*DATABASE_ERRORS):
                await self.close()

    # -- operator control -------------------------------------------------------------

    @property
    def _operator(self) -> control.Operator:
        return control.Operator(self.db, self.actor, self.clock)

    # `expected` (bulk commands): apply only if the workflow is still as its filter
    # selected it (`Selection.expected`), else ChangedMeanwhile.

    async def pause(
        self, name: str, reason: str | None = None, *, expected: control.Expected | None = None
    ) -> Workflow:
        """Pause: at once if pending, after the current step if running."""
        await control.pause(self._operator, name, reason, expected)
        return await self.get(name)

    async def stop(
        self, name: str, reason: str | None = None, *, expected: control.Expected | None = None
    ) -> Workflow:
        """Stop for good: at once if not running, else the owner cancels the step."""
        await control.stop(self._operator, name, reason, expected)
        return await self.get(name)

    async def resume(
        self, name: str, reason: str | None = None, *, expected: control.Expected | None = None
    ) -> Workflow:
        """Make a paused workflow runnable again, from the step it halted before."""
        await control.resume(self._operator, name, reason, expected)
        return await self.get(name)

    async def retry(
        self, name: str, reason: str | None = None, *, expected: control.Expected | None = None
    ) -> Workflow:
        """Run a workflow in error again from the step that failed (its attempts go on)."""
        await control.retry(self._operator, name, reason, expected)
        return await self.get(name)

    async def skip(
        self,
        name: str,
        *,
        set_context: dict[str, Any] | None = None,
        reason: str | None = None,
        expected: control.Expected | None = None,
    ) -> Workflow:
        """Skip the step a workflow halted at (error or paused), optionally patching the
        context; the workflow continues with the next step."""
        await control.skip(self._operator, name, set_context, reason, expected)
        return await self.get(name)

    async def restart(self, name: str, from_step: int = 0, reason: str | None = None) -> Workflow:
        """Run a non-running workflow again from step `from_step` (0-based)."""
        await control.restart(self._operator, name, from_step, reason)
        return await self.get(name)

    async def delete(
        self, name: str, reason: str | None = None, *, expected: control.Expected | None = None
    ) -> None:
        """Delete a workflow that is not running; its events are kept."""
        await control.delete(self._operator, name, reason, expected)

    async def select(
        self, operation: Operation | str, filter_: bulk.Filter
    ) -> builtins.list[bulk.Selection]:
        """The workflows `filter_` matches among those `operation` (pause, resume, stop,
        retry, skip, delete) applies to, oldest first: what a bulk command acts on, one
        at a time, each with its `expected`. InvalidTransition for a state in the filter
        that the operation never applies to."""
        from wfed.engine import bulk  # noqa: PLC0415 - only the bulk commands select

        return await bulk.select(self.db, Operation(operation), filter_, self.clock())

    async def set_context(
        self,
        name: str,
        updates: dict[str, Any] | None = None,
        unset: Sequence[str] = (),
        reason: str | None = None,
    ) -> Workflow:
        """Change keys of the context of a workflow that is not running."""
        await control.set_context(self._operator, name, updates, unset, reason)
        return await self.get(name)

    async def set_windows(
        self, name: str, windows: Sequence[str] = (), reason: str | None = None
    ) -> Workflow:
        """Replace the maintenance windows of a workflow that is not running; none (the
        default) lets it run at any time (docs/windows.md). InvalidDefinition names a
        spec that cannot be read."""
        from wfed.engine.window_reads import checked  # noqa: PLC0415

        await control.set_windows(self._operator, name, checked(list(windows)), reason)
        return await self.get(name)

    # -- retention --------------------------------------------------------------------

    async def purge(
        self,
        older_than: timedelta,
        *,
        states: Iterable[WorkflowState | str] = PURGEABLE,
        events: bool = False,
        dry_run: bool = False,
        batch_size: int = 1000,
    ) -> int:
        """Delete finished workflows that finished more than `older_than` ago, in batches
        of short transactions (no long locks). Their events are kept (plus a `purged`
        event each) unless `events`. Returns how many were (or, dry, would be) deleted."""
        return await purge_finished(
            self.db,
            older_than,
            states=states,
            events=events,
            dry_run=dry_run,
            batch_size=batch_size,
            actor=self.actor,
            clock=self.clock,
        )

    # -- running inline ---------------------------------------------------------------

    async def run(self, name: str) -> Workflow:
        """Claim and run a workflow in this process until it completes or halts.

        Raises StepError (a step failed; the workflow is now `error`), InvalidDefinition,
        WorkflowHalted (paused or stopped), WorkflowLocked (another owner holds it) or
        ErrorState (it was in `error` already). A completed workflow is returned as is;
        a pending one whose `run_after` is still ahead is waited for.
        """
        # The runner, its steps' machinery and the metrics load here: reading and
        # controlling workflows (all wfectl does) never needs them.
        from wfed.engine import output  # noqa: PLC0415
        from wfed.engine.inline import InlineRun  # noqa: PLC0415

        inline = InlineRun(
            self.db,
            self.registry,
            actor=self.actor,
            lease=self.lease,
            control_interval=self.control_interval,
            clock=self.clock,
            get=self.get,
            limit_of=self.lock_limits.limit_of,
        )
        with output.recording(self.db, name, self.output_max_bytes):
            await inline.run(name)
        return await self.get(name)
