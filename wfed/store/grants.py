"""The least-privilege accounts of wfed's three roles, as the SQL an administrator runs
(`wfectl db grants`): MariaDB/MySQL and PostgreSQL. docs/grants-mariadb.sql and
docs/grants-postgresql.sql are this script for the database `wfed` and the default names.

The order matters, and the script says it: the migrate account first; then
`wfectl db upgrade` under that account, which creates the tables; then the daemon and
operator accounts, whose grants name those tables and fail before they exist.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from wfed.errors import ConfigError, WfedError

MIGRATE = "wfed_migrate"
DAEMON = "wfed_daemon"
OPERATOR = "wfed_operator"

UPGRADE_MARK = "-- 2. "
"""The comment line between the migrate account and the others: `wfectl db upgrade`."""

# Names: what any of the servers takes without surprises once quoted (no quotes,
# backslashes, spaces or control characters), and no longer than they allow.
_NAME = re.compile(r"[A-Za-z0-9_$.-]{1,63}")
_MYSQL_BARE = re.compile(r"[A-Za-z0-9_$]*[A-Za-z_$][A-Za-z0-9_$]*")
_POSTGRESQL_BARE = re.compile(r"[a-z_][a-z0-9_]*")
# Words PostgreSQL does not take as a bare role or database name.
_POSTGRESQL_RESERVED = {
    "all",
    "current_role",
    "current_user",
    "default",
    "none",
    "public",
    "session_user",
    "user",
}
# The tables' sequences on PostgreSQL: an INSERT needs USAGE on its table's.
_SEQUENCES = ("workflows_id_seq", "workflow_steps_id_seq", "workflow_events_id_seq")
_OUTPUT_SEQUENCE = "workflow_step_output_id_seq"


@dataclass(frozen=True)
class Names:
    """The database and the three accounts the script is for."""

    database: str
    migrate: str = MIGRATE
    daemon: str = DAEMON
    operator: str = OPERATOR

    def check(self) -> None:
        """WfedError naming the first name the script cannot use."""
        for what, name in (
            ("database", self.database),
            ("migrate user", self.migrate),
            ("daemon user", self.daemon),
            ("operator user", self.operator),
        ):
            if not _NAME.fullmatch(name):
                raise WfedError(
                    f"{what} name {name!r}: use 1 to 63 letters, digits, '_', '$', '.' or '-'"
                )
        users = [self.migrate, self.daemon, self.operator]
        if len(set(users)) != len(users):
            raise WfedError(f"the three accounts need three names, got {', '.join(users)}")


def script(
    url: str,
    database: str,
    *,
    migrate_user: str = MIGRATE,
    daemon_user: str = DAEMON,
    operator_user: str = OPERATOR,
) -> str:
    """The grants script for the backend of `url` (MariaDB/MySQL or PostgreSQL), for
    `database` and the accounts named. WfedError for SQLite, which has no accounts, and
    for a name the script cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"[database] url: not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    names = Names(database, migrate_user, daemon_user, operator_user)
    if backend in {"mysql", "mariadb"}:
        names.check()
        return _mysql(names)
    if backend == "postgresql":
        names.check()
        return _postgresql(names)
    if backend == "sqlite":
        where = parsed.database or ":memory:"
        if where != ":memory:":
            where = os.path.abspath(where)
        raise WfedError(
            f"SQLite has no accounts to grant: who may use {where} is decided by the "
            "permissions of the file and of its directory (the daemon writes both)"
        )
    raise ConfigError(f"[database] url: no grants for backend {backend!r}")


# -- MariaDB / MySQL ----------------------------------------------------------------------


def _mysql(names: Names) -> str:
    db = _mysql_identifier(names.database)
    every = _mysql_database_pattern(names.database)
    migrate, daemon, operator = (
        _mysql_account(user) for user in (names.migrate, names.daemon, names.operator)
    )
    return f"""\
-- Least-privilege accounts for wfed on MariaDB / MySQL. Database: {names.database}.
-- (`wfectl db grants --database NAME` prints this for another database or other names.)
-- Replace the passwords (or use unix_socket / ed25519 authentication), and narrow '%' to
-- the hosts that connect. Run it as an administrator in three parts, in this order:
--   1. the migrate account (the database must exist: CREATE DATABASE {db});
--   2. `wfectl db upgrade` under the migrate account: it creates the tables;
--   3. the daemon and operator accounts. Their grants name the tables, so before step 2
--      they fail with ERROR 1146 (Table '{names.database}.workflows' doesn't exist).

-- 1. Schema migrations (`wfectl db upgrade`): DDL on wfed's database, nothing else.
CREATE USER IF NOT EXISTS {migrate} IDENTIFIED BY 'change-me-migrate';
GRANT ALL PRIVILEGES ON {every}.* TO {migrate};

{UPGRADE_MARK}Now run `wfectl db upgrade` as {names.migrate}, then the rest.

-- 3. The daemon: reads and writes rows of wfed's tables (retention deletes old workflows),
-- no DDL. It records its steps' output (and clears an earlier run's), and reads the
-- schema version to refuse running on an outdated schema.
CREATE USER IF NOT EXISTS {daemon} IDENTIFIED BY 'change-me-daemon';
GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.workflows TO {daemon};
GRANT SELECT, INSERT, UPDATE ON {db}.workflow_steps TO {daemon};
GRANT SELECT, INSERT ON {db}.workflow_events TO {daemon};
GRANT SELECT, INSERT, DELETE ON {db}.workflow_step_output TO {daemon};
GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.daemons TO {daemon};
GRANT SELECT ON {db}.wfed_schema_version TO {daemon};
-- Notifications: it records a delivery per event and webhook, sends them (deleting old
-- ones), and keeps how far each webhook has read the events.
GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.notification_deliveries TO {daemon};
GRANT SELECT, INSERT, UPDATE ON {db}.notification_cursors TO {daemon};
-- Schedules: it fires their ticks, recording each in schedule_fires.
GRANT SELECT, UPDATE ON {db}.schedules TO {daemon};
GRANT SELECT, INSERT ON {db}.schedule_fires TO {daemon};
-- Concurrency keys: a claim takes slots of keys (inserting their rows), an end gives
-- them up.
GRANT SELECT, INSERT, DELETE ON {db}.workflow_locks TO {daemon};

-- 3. The operator (wfectl): reads everything; creates and deletes workflows; changes only
-- the columns that control needs; appends events but can never rewrite or delete them.
CREATE USER IF NOT EXISTS {operator} IDENTIFIED BY 'change-me-operator';
GRANT SELECT ON {every}.* TO {operator};
GRANT INSERT, DELETE ON {db}.workflows TO {operator};
GRANT UPDATE (state, requested, context, current_step, last_error, run_after,
              finished_at, updated_at, window_paused) ON {db}.workflows TO {operator};
GRANT INSERT, UPDATE (state, attempts, started_at, finished_at, error)
    ON {db}.workflow_steps TO {operator};
GRANT INSERT ON {db}.workflow_events TO {operator};
-- Schedules: adds, pauses, resumes and removes them (with their fired ticks).
GRANT INSERT, DELETE, UPDATE (state, next_fire_at, updated_by, updated_at)
    ON {db}.schedules TO {operator};
GRANT DELETE ON {db}.schedule_fires TO {operator};
-- Concurrency keys: stopping a workflow and `wfectl locks release` free its slots.
GRANT DELETE ON {db}.workflow_locks TO {operator};
"""


def _mysql_identifier(name: str) -> str:
    if _MYSQL_BARE.fullmatch(name):
        return name
    return "`" + name.replace("`", "``") + "`"


def _mysql_database_pattern(name: str) -> str:
    """The database in a grant on all its tables (`db.*`), where MySQL reads `_` and `%`
    as wildcards unless escaped: `wfed_prod.*` would cover `wfedXprod` too."""
    if "_" not in name and "%" not in name:
        return _mysql_identifier(name)
    escaped = name.replace("`", "``").replace("_", "\\_").replace("%", "\\%")
    return f"`{escaped}`"


def _mysql_account(user: str) -> str:
    return "'" + user.replace("'", "''") + "'@'%'"


# -- PostgreSQL ---------------------------------------------------------------------------


def _postgresql(names: Names) -> str:
    db = _postgresql_identifier(names.database)
    migrate, daemon, operator = (
        _postgresql_identifier(user) for user in (names.migrate, names.daemon, names.operator)
    )
    sequences = ", ".join(_SEQUENCES)
    return f"""\
-- Least-privilege roles for wfed on PostgreSQL. Database: {names.database}, schema: public.
-- (`wfectl db grants --database NAME` prints this for another database or other names.)
-- Replace the passwords (or use peer / certificate authentication in pg_hba.conf). Run it
-- as an administrator connected to that database (psql -d {db}; it must exist: CREATE
-- DATABASE {db}), in three parts, in this order:
--   1. the migrate role;
--   2. `wfectl db upgrade` under the migrate role: it creates the tables, and owns them;
--   3. the daemon and operator roles. Their grants name the tables, so before step 2
--      they fail (relation "workflows" does not exist).

-- 1. Schema migrations (`wfectl db upgrade`): creates and alters wfed's tables in the
-- public schema, and owns them. Before PostgreSQL 15, every role may create tables in
-- the public schema: no more.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE ROLE {migrate} LOGIN PASSWORD 'change-me-migrate';
GRANT CONNECT ON DATABASE {db} TO {migrate};
GRANT USAGE, CREATE ON SCHEMA public TO {migrate};

{UPGRADE_MARK}Now run `wfectl db upgrade` as {names.migrate}, then the rest.

-- 3. The daemon: reads and writes rows of wfed's tables (retention deletes old workflows;
-- their steps go with them through the foreign key), no DDL. It records its steps'
-- output (and clears an earlier run's), and reads the schema version to refuse running
-- on an outdated schema. The sequences give new rows their ids.
CREATE ROLE {daemon} LOGIN PASSWORD 'change-me-daemon';
GRANT CONNECT ON DATABASE {db} TO {daemon};
GRANT USAGE ON SCHEMA public TO {daemon};
GRANT SELECT, INSERT, UPDATE, DELETE ON workflows TO {daemon};
GRANT SELECT, INSERT, UPDATE ON workflow_steps TO {daemon};
GRANT SELECT, INSERT ON workflow_events TO {daemon};
GRANT SELECT, INSERT, DELETE ON workflow_step_output TO {daemon};
GRANT SELECT, INSERT, UPDATE, DELETE ON daemons TO {daemon};
GRANT SELECT ON wfed_schema_version TO {daemon};
-- Notifications: it records a delivery per event and webhook, sends them (deleting old
-- ones), and keeps how far each webhook has read the events.
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_deliveries TO {daemon};
GRANT SELECT, INSERT, UPDATE ON notification_cursors TO {daemon};
GRANT USAGE ON SEQUENCE notification_deliveries_id_seq TO {daemon};
-- Schedules: it fires their ticks, recording each in schedule_fires.
GRANT SELECT, UPDATE ON schedules TO {daemon};
GRANT SELECT, INSERT ON schedule_fires TO {daemon};
-- Concurrency keys: a claim takes slots of keys (inserting their rows), an end gives
-- them up.
GRANT SELECT, INSERT, DELETE ON workflow_locks TO {daemon};
GRANT USAGE ON SEQUENCE {sequences},
    {_OUTPUT_SEQUENCE} TO {daemon};

-- 3. The operator (wfectl): reads everything; creates and deletes workflows; changes only
-- the columns that control needs; appends events but can never rewrite or delete them.
CREATE ROLE {operator} LOGIN PASSWORD 'change-me-operator';
GRANT CONNECT ON DATABASE {db} TO {operator};
GRANT USAGE ON SCHEMA public TO {operator};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {operator};
GRANT INSERT, DELETE ON workflows TO {operator};
GRANT UPDATE (state, requested, context, current_step, last_error, run_after,
              finished_at, updated_at, window_paused) ON workflows TO {operator};
GRANT INSERT, UPDATE (state, attempts, started_at, finished_at, error)
    ON workflow_steps TO {operator};
GRANT INSERT ON workflow_events TO {operator};
GRANT USAGE ON SEQUENCE {sequences}
    TO {operator};
-- Schedules: adds, pauses, resumes and removes them (with their fired ticks).
GRANT INSERT, DELETE, UPDATE (state, next_fire_at, updated_by, updated_at)
    ON schedules TO {operator};
GRANT DELETE ON schedule_fires TO {operator};
GRANT USAGE ON SEQUENCE schedules_id_seq TO {operator};
-- Concurrency keys: stopping a workflow and `wfectl locks release` free its slots.
GRANT DELETE ON workflow_locks TO {operator};
"""


def _postgresql_identifier(name: str) -> str:
    if _POSTGRESQL_BARE.fullmatch(name) and name not in _POSTGRESQL_RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'
