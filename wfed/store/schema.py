"""The tables (README, "Enqueue with SQL"), as SQLAlchemy Core metadata.

Alembic migrations in `migrations/versions/` create exactly this; a test checks that the
migrated schema and this metadata agree.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from wfed.states import Request, StepState, WorkflowState
from wfed.unreadable_json import UnreadableTimestamp, read_json

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


# The form SQLAlchemy writes a timestamp in on SQLite (then a fraction of a second).
_SQLITE_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")


# Microseconds matter for leases and ordering; MySQL's DATETIME drops them unless asked.
# All timestamps are naive UTC.
class _SQLiteTimestamp(TypeDecorator[datetime]):
    """SQLite's DATETIME, but a value that is no timestamp reads as UnreadableTimestamp
    instead of raising: SQLite stores anything an INSERT gives, and one such row must
    end in `error`, not fail the claim of every row beside it."""

    impl = sqlite.DATETIME
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        parse = self.impl_instance.result_processor(dialect, coltype)

        def process(value: Any) -> Any:
            if value is None or parse is None:
                return value
            # Only the form SQLAlchemy writes is a timestamp here, as for the claim's
            # conditions (`wfed.store.guards`): a date alone or an ISO 'T' would compare
            # wrongly as text, and an offset would make an aware time.
            if not isinstance(value, str) or not _SQLITE_TIMESTAMP.match(value):
                return UnreadableTimestamp.of(value)
            try:
                stamp = parse(value)
            except (TypeError, ValueError):
                return UnreadableTimestamp.of(value)
            if not isinstance(stamp, datetime) or stamp.tzinfo is not None:
                return UnreadableTimestamp.of(value)
            return stamp

        return process


class _SQLiteReadable:
    """Text columns whose value, on SQLite, may be a BLOB an INSERT put there: read as
    text (its bytes decoded, bad ones replaced) instead of breaking every reader of the
    table (`wfectl list` sorting and printing names). No cost elsewhere."""

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return None

        def process(value: Any) -> Any:
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            return value

        return process


class Str(_SQLiteReadable, TypeDecorator[str]):
    """VARCHAR(n) (see `_SQLiteReadable`)."""

    impl = String
    cache_ok = True


class ExactStr(Str):
    """VARCHAR(n) compared byte for byte on every backend: a workflow's name, its queue,
    the states and requests every claim and heartbeat select by. MariaDB's and MySQL's
    default collations ignore case and accents, so there `M3` was taken by `m3` in the
    unique index while `show M3` found nothing, a daemon of queue `default` claimed the
    work of `Default`, and (with the CHECK constraints switched off for a session) of
    state `PENDING`, which no reader could parse. Migration 0007 gives these columns the
    binary collation; PostgreSQL and SQLite always compared bytes."""

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if _is_mysql(dialect):
            length = cast(String, self.impl_instance).length
            return dialect.type_descriptor(String(length, collation=exact_collation(dialect)))
        return super().load_dialect_impl(dialect)


def exact_collation(dialect: Dialect) -> str:
    """The binary NO PAD collation (`utf8mb4_bin` ignores trailing spaces)."""
    return "utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin"


class LongText(_SQLiteReadable, TypeDecorator[str]):
    """TEXT (see `_SQLiteReadable`)."""

    impl = Text
    cache_ok = True


def _is_mysql(dialect: Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


# The types below pick their MySQL/MariaDB or PostgreSQL form when a database of that kind
# is used, and import its dialect only then: importing the dialects up front would cost
# every wfectl call on SQLite about 25 ms.


class _MySQLTimestamp(TypeDecorator[datetime]):
    """MySQL's DATETIME(6), but a zero date ('0000-00-00 00:00:00', which an INSERT may
    write unless the sql_mode has NO_ZERO_DATE) reads as UnreadableTimestamp: the driver
    hands it over as text, which every reader of a time would trip on."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        from sqlalchemy.dialects.mysql import DATETIME  # noqa: PLC0415 - see above

        return dialect.type_descriptor(DATETIME(fsp=6))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return UnreadableTimestamp.of(value) if isinstance(value, str) else value


class _Timestamp(TypeDecorator[datetime]):
    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if _is_mysql(dialect):
            return dialect.type_descriptor(_MySQLTimestamp())
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteTimestamp())
        return dialect.type_descriptor(DateTime())


Timestamp = _Timestamp()


class _SQLiteJson(TypeDecorator[Any]):
    """SQLite's JSON, but text that is not JSON reads as UnreadableJson instead of
    raising: a row inserted by hand must end in `error`, not break every reader."""

    impl = sqlite.JSON
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        def process(value: Any) -> Any:
            if not isinstance(value, str | bytes):
                # NUMERIC affinity: SQLite stored the JSON number `42` as an integer.
                return value
            return read_json(value)

        return process


class _Json(TypeDecorator[Any]):
    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB  # noqa: PLC0415 - see _Timestamp

            return dialect.type_descriptor(JSONB())
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteJson())
        return dialect.type_descriptor(JSON())


Json = _Json()


class utc_now(FunctionElement[datetime]):  # noqa: N801 - reads as the SQL function it is
    """The database's current UTC time, as a column default (naive, microseconds kept)."""

    type = DateTime()
    inherit_cache = True


@compiles(utc_now)
def _utc_now_default(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"  # SQLite: UTC already


@compiles(utc_now, "postgresql")
def _utc_now_postgresql(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "(now() AT TIME ZONE 'utc')"


@compiles(utc_now, "mysql")
@compiles(utc_now, "mariadb")
def _utc_now_mysql(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "(UTC_TIMESTAMP(6))"


NOW = utc_now()


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


WORKFLOW_STATES = [s.value for s in WorkflowState]
STEP_STATES = [s.value for s in StepState]

workflows = Table(
    "workflows",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", ExactStr(255), nullable=False),
    Column("state", ExactStr(16), nullable=False, server_default=WorkflowState.PENDING.value),
    Column("steps", Json, nullable=False),
    # NULL is read as {}: a plain-SQL INSERT may leave it out.
    Column("context", Json, nullable=True),
    Column("current_step", Integer, nullable=False, server_default="0"),
    Column("queue", ExactStr(64), nullable=False, server_default="default"),
    Column("priority", Integer, nullable=False, server_default="0"),
    # The claim orders by priority descending then id ascending; MariaDB before 10.8
    # ignores DESC in an index, so the index carries the negated priority instead.
    Column("claim_rank", Integer, Computed("-priority", persisted=True)),
    Column("run_after", Timestamp, nullable=True),
    Column("requested", ExactStr(8), nullable=True),
    Column("claimed_by", Str(255), nullable=True),
    Column("lease_expires_at", Timestamp, nullable=True),
    # Fencing token: bumped by every claim; every write of an owner checks it.
    Column("fence", BigInteger, nullable=False, server_default="0"),
    Column("last_error", LongText, nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("updated_at", Timestamp, nullable=False, server_default=NOW),
    Column("finished_at", Timestamp, nullable=True),
    # Fleet coordination (migration 0003): concurrency keys and maintenance windows.
    Column("locks", Json, nullable=True),
    Column("windows", Json, nullable=True),
    Column("window_paused", Str(255), nullable=True),
    UniqueConstraint("name"),
    # On MariaDB/MySQL, migration 0006 compares state and requested byte for byte
    # (CAST … AS BINARY): their collation would let 'PENDING' or 'stop ' through.
    CheckConstraint(_in("state", WORKFLOW_STATES), name="state"),
    CheckConstraint(
        f"requested IS NULL OR {_in('requested', [r.value for r in Request])}",
        name="requested",
    ),
    CheckConstraint("current_step >= 0", name="current_step"),
    # Claim: pending rows of a queue in priority order, then age.
    Index("ix_workflows_claim", "state", "queue", "claim_rank", "id"),
    # Rescue: running rows whose lease expired; listing by state.
    Index("ix_workflows_lease", "state", "lease_expires_at"),
    # A daemon's own leases (heartbeat renewal), and those of them with a request waiting.
    Index("ix_workflows_owner_requested", "claimed_by", "requested"),
    # Retention: finished workflows by age.
    Index("ix_workflows_finished", "state", "finished_at"),
    # The workflows a window's closing paused, for the chore that resumes them.
    Index("ix_workflows_window_paused", "window_paused"),
    # Ids are never reused (SQLite reuses the highest freed one unless told not to):
    # events outlive a deleted workflow and are found by its id.
    sqlite_autoincrement=True,
)

workflow_steps = Table(
    "workflow_steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "workflow_id",
        Id,
        ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("step", Str(255), nullable=False),
    Column("label", Str(255), nullable=True),
    Column("args", Json, nullable=False),
    Column("state", ExactStr(16), nullable=False, server_default=StepState.PENDING.value),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("started_at", Timestamp, nullable=True),
    Column("finished_at", Timestamp, nullable=True),
    Column("error", LongText, nullable=True),
    UniqueConstraint("workflow_id", "position"),
    CheckConstraint(_in("state", STEP_STATES), name="state"),
    CheckConstraint("attempts >= 0", name="attempts"),
    sqlite_autoincrement=True,
)

workflow_events = Table(
    "workflow_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # No foreign key: events are the audit trail and outlive a deleted workflow.
    Column("workflow_id", Id, nullable=False),
    Column("workflow_name", ExactStr(255), nullable=False),
    Column("position", Integer, nullable=True),
    Column("kind", Str(32), nullable=False),
    Column("actor", Str(255), nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("reason", LongText, nullable=True),
    Column("detail", Json, nullable=True),
    Index("ix_workflow_events_workflow", "workflow_id", "id"),
    Index("ix_workflow_events_name", "workflow_name", "id"),
    sqlite_autoincrement=True,
)

daemons = Table(
    "daemons",
    metadata,
    Column("id", Str(255), primary_key=True),
    Column("host", Str(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", Str(64), nullable=False),
    Column("queues", Json, nullable=False),
    Column("max_workflows", Integer, nullable=False),
    Column("lease_seconds", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("heartbeat_at", Timestamp, nullable=False),
)

OUTPUT_STREAMS = ["stdout", "stderr"]


# A chunk of output holds up to 256 Ki characters: MySQL's TEXT (64 KiB) would hold only a
# sixteenth of that; MEDIUMTEXT holds 16 MiB.
class _OutputText(TypeDecorator[str]):
    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if _is_mysql(dialect):
            from sqlalchemy.dialects.mysql import MEDIUMTEXT  # noqa: PLC0415 - see _Timestamp

            return dialect.type_descriptor(MEDIUMTEXT())
        return dialect.type_descriptor(Text())


OutputText = _OutputText()

# A step attempt's live output (the `shell` step's stdout and stderr, line by line), in
# chunks of lines written while the step runs. Purged with its workflow.
workflow_step_output = Table(
    "workflow_step_output",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "workflow_id",
        Id,
        ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("stream", String(8), nullable=False),
    # The chunk's order within its attempt, from 1; readers follow it as a cursor.
    Column("seq", Integer, nullable=False),
    # One or more lines joined by "\n" (without a final one).
    Column("text", OutputText, nullable=False),
    # When the chunk's first line was read.
    Column("at", Timestamp, nullable=False),
    # Reading one attempt in order (and the foreign key's index).
    UniqueConstraint("workflow_id", "position", "attempt", "seq"),
    CheckConstraint(_in("stream", OUTPUT_STREAMS), name="stream"),
)


# --- Fleet coordination (migration 0003) --------------------------------------------------
# Each feature owns one block below and the matching block of migration 0003.

# Concurrency keys. `workflows.locks` (a JSON list of key names, e.g. ["cluster:db1"]) says
# which keys a workflow needs; a row here is one held slot of one key. The primary key
# makes the database, not a check in Python, refuse a second holder of the same slot, so
# daemons claiming at once can never exceed a key's limit (slots 0 … limit-1).
workflow_locks = Table(
    "workflow_locks",
    metadata,
    Column("lock_key", String(255), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column(
        "workflow_id",
        Id,
        ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("acquired_at", Timestamp, nullable=False, server_default=NOW),
    # One slot per key per workflow (and the foreign key's index).
    UniqueConstraint("workflow_id", "lock_key"),
)

# Schedules: a cron expression in a time zone, and what to enqueue at each tick.
schedules = Table(
    "schedules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("cron", String(255), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    # What each tick enqueues: steps, context, queue, priority, locks, windows, and where
    # it came from (a runbook file's path and sha256 and its parameters).
    Column("template", Json, nullable=False),
    Column("state", String(16), nullable=False, server_default="active"),
    # NULL: the [schedules] catchup setting decides.
    Column("catchup", String(8), nullable=True),
    # The next tick to fire (naive UTC); NULL until a daemon has computed it.
    Column("next_fire_at", Timestamp, nullable=True),
    Column("last_fired_at", Timestamp, nullable=True),
    Column("created_by", String(255), nullable=False),
    # Who last paused or resumed it (user@host); NULL until then.
    Column("updated_by", String(255), nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("updated_at", Timestamp, nullable=False, server_default=NOW),
    UniqueConstraint("name"),
    CheckConstraint(_in("state", ["active", "paused"]), name="state"),
    Index("ix_schedules_due", "state", "next_fire_at"),
    sqlite_autoincrement=True,
)

# One row per fired tick: the primary key makes each (schedule, tick) enqueue exactly once
# across every daemon of the fleet.
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column(
        "schedule_id",
        Id,
        ForeignKey("schedules.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("tick_at", Timestamp, primary_key=True),
    Column("workflow_name", String(255), nullable=False),
    Column("fired_by", String(255), nullable=False),
    Column("fired_at", Timestamp, nullable=False, server_default=NOW),
)

# Maintenance windows: `workflows.windows` (a JSON list such as ["sat 02:00-05:00
# Europe/Paris"]) and `workflows.window_paused` (the window whose closing paused the
# workflow; NULL when an operator paused it or it is not paused), declared on `workflows`.

# Notifications: one row per (event, webhook) to deliver; the unique key makes one delivery
# per event however many daemons see it.
notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False),
    Column("target", String(255), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp, nullable=True),
    Column("claimed_by", String(255), nullable=True),
    Column("claimed_until", Timestamp, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("sent_at", Timestamp, nullable=True),
    UniqueConstraint("event_id", "target"),
    CheckConstraint(_in("state", ["pending", "sent", "failed"]), name="state"),
    Index("ix_notification_deliveries_due", "state", "next_attempt_at"),
    sqlite_autoincrement=True,
)

# How far each webhook has read `workflow_events`: every event at or below `event_id` has
# had its deliveries recorded (or was given up as never committed). A webhook's row is
# made at the newest event the first time a daemon serves it, so a new webhook is not
# sent the whole history.
notification_cursors = Table(
    "notification_cursors",
    metadata,
    Column("target", String(255), primary_key=True),
    Column("event_id", Id, nullable=False),
    Column("updated_at", Timestamp, nullable=False, server_default=NOW),
)
