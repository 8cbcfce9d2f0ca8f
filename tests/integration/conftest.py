"""Fixtures for the integration tests: Engines on the session's test databases.

Each backend's database is shared by the whole session (see tests/conftest.py), so tests
never assume an empty table: every workflow gets a unique name, and workflows made through
`create` go to a queue of their own (`TEST_QUEUE`), which the daemon tests' daemons (queue
per test) never claim.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Final

import pytest

from wfed import Engine
from wfed.clock import Clock, utc_now
from wfed.engine.runner import WorkflowRunner
from wfed.states import Operation
from wfed.store import claims
from wfed.store import workflows as workflow_store
from wfed.store.rows import WorkflowRow

STEP_MODULES: Final = ["stepmods.basic"]
ACTOR: Final = "tester@host"
TEST_QUEUE: Final = "itest"
OTHER_OWNER: Final = "other-daemon:4242"


def unique_name(prefix: str = "wf") -> str:
    """A workflow (or queue) name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine(make_engine: EngineFactory) -> EngineFactory:
    """The suite's `make_engine`, with the integration tests' step modules by default."""

    def make(url: str, **options: Any) -> Engine:
        options.setdefault("step_modules", STEP_MODULES)
        options.setdefault("actor", ACTOR)
        return make_engine(url, **options)

    return make


class RecordingClock:
    """The real clock (`utc_now`), keeping every time it told: a test can check that what
    an Engine wrote or waited for was reckoned from its clock, without timing anything."""

    def __init__(self) -> None:
        self.told: list[datetime] = []

    def __call__(self) -> datetime:
        now = utc_now()
        self.told.append(now)
        return now


@pytest.fixture
def clock() -> RecordingClock:
    """The `engine` fixture's clock: the real time, every reading kept."""
    return RecordingClock()


@pytest.fixture
async def engine(database_url: str, make_engine: EngineFactory, clock: RecordingClock) -> Engine:
    """An Engine on this backend's test database, with the test steps, as `tester@host`,
    reading the time from `clock`."""
    return make_engine(database_url, clock=clock)


CreateFn = Callable[..., Awaitable[str]]


@pytest.fixture
def create(engine: Engine) -> CreateFn:
    """`await create(steps, context=None, **options)`: a new pending workflow in the test
    queue under a unique name; returns the name."""

    async def make(steps: list[Any], context: dict[str, Any] | None = None, **options: Any) -> str:
        name = unique_name(options.pop("prefix", "wf"))
        options.setdefault("queue", TEST_QUEUE)
        await engine.create_workflow(name, context, steps, **options)
        return name

    return make


class Probe:
    """Direct looks at (and one guarded write to) the rows behind an Engine, for asserting
    what the API did to the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def row(self, name: str) -> WorkflowRow:
        """The raw `workflows` row (every column, for before/after comparisons)."""
        async with self.engine.db.transaction() as conn:
            row = await workflow_store.workflow_get(conn, name)
        assert row is not None, f"no workflow {name!r}"
        return row

    async def claimed_runner(
        self, name: str, owner: str, lease: float, clock: Clock = utc_now
    ) -> WorkflowRunner:
        """Claim `name` for `owner` (a lease of `lease` seconds) and give the runner a
        daemon would start for it, on `clock`."""
        row = await self.row(name)
        async with self.engine.db.transaction() as conn:
            assert await claims.workflow_claim_by_id(
                conn, row.id, owner=owner, now=utc_now(), lease=lease
            )
        return WorkflowRunner(
            self.engine.db,
            self.engine.registry,
            await self.row(name),
            actor=owner,
            lease_seconds=lease,
            clock=clock,
        )

    async def exists(self, name: str) -> bool:
        async with self.engine.db.transaction() as conn:
            return await workflow_store.workflow_get(conn, name) is not None

    async def kinds(self, name: str) -> list[str]:
        """The kinds of the workflow's events, oldest first."""
        return [event.kind for event in await self.engine.history(name)]

    @contextlib.asynccontextmanager
    async def held_by_other(
        self, name: str, owner: str = OTHER_OWNER
    ) -> AsyncIterator[WorkflowRow]:
        """Make `name` `running`, held by another live owner (a guarded claim with a long
        lease), for the duration of the block; afterwards it is stopped, so that no later
        test or daemon ever finds it running."""
        row = await self.row(name)
        async with self.engine.db.transaction() as conn:
            claimed = await claims.workflow_claim_by_id(
                conn, row.id, owner=owner, now=utc_now(), lease=600
            )
        assert claimed, f"could not claim {name!r} from state {row.state}"
        try:
            yield await self.row(name)
        finally:
            async with self.engine.db.transaction() as conn:
                await workflow_store.workflow_update(
                    conn,
                    row.id,
                    Operation.HONOUR_STOP,
                    values={
                        "claimed_by": None,
                        "lease_expires_at": None,
                        "finished_at": utc_now(),
                    },
                )


@pytest.fixture
def probe(engine: Engine) -> Probe:
    """A Probe on the `engine` fixture's database."""
    return Probe(engine)


@pytest.fixture
def new_name() -> Callable[..., str]:
    """`new_name(prefix="wf")`: a workflow or queue name no other test uses."""
    return unique_name
