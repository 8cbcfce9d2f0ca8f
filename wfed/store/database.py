"""The connection to the database: engine creation per backend, transactions, and what a
database error means to an operator (`database_error`).

Backend differences live here and nowhere else: MySQL/MariaDB sessions run READ COMMITTED
(SKIP LOCKED claims fail under REPEATABLE READ's gap locks), SQLite runs every transaction
as `BEGIN IMMEDIATE` with a busy timeout (one writer at a time, several processes fine),
and deadlocks or lock waits are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wfed.errors import ConfigError, DatabaseUnavailable, SchemaOutdated, WfedError
from wfed.logging import get_logger
from wfed.store.faults import TRANSIENT, Fault, classify, sqlstate
from wfed.store.faults import mysql_error_code as mysql_error_code  # noqa: PLC0414 - re-exported
from wfed.unreadable_json import read_json

log = get_logger("wfed.store")

SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT = 10
# What `database_error` reads in MySQL error numbers and PostgreSQL SQLSTATEs. A missing
# table: 1146, 42P01. A refused login: access denied (1044, 1045), unknown database (1049,
# 3D000), invalid authorization (class 28). A statement refused for want of a privilege on
# a table (1142), a column (1143) or an operation (1227, e.g. SUPER); 42501.
_MYSQL_LOGIN_REFUSED = {1044, 1045, 1049}
_MYSQL_PRIVILEGE_DENIED = {1142, 1143, 1227}


def redacted(url: str | URL) -> str:
    """The URL as it may appear in a log line or an error: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def url_password(url: str) -> str | None:
    """The password written in a database URL, if any (to keep it out of messages)."""
    try:
        password = make_url(url).password
    except ArgumentError:
        return None
    return None if password is None else str(password)


def _sqlite_immediate_transactions(engine: AsyncEngine) -> None:
    # The sqlite3 module opens transactions lazily and as DEFERRED, so two processes can both
    # read and then fail to upgrade to a write lock. Taking the write lock at BEGIN makes a
    # transaction wait (busy_timeout) instead, which is what a claim needs.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_file(url: URL) -> str | None:
    """The absolute path of the file an SQLite URL names; None for an in-memory database
    or a `file:` URI (whose `mode` says whether it may be created)."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if url.query.get("uri") or url.query.get("mode") == "memory":
        return None
    return os.path.abspath(database)


def _idle_timeout(backend: str, seconds: float) -> dict[str, Any]:
    """Driver connect arguments that make the server end a session idle in a
    transaction for `seconds`."""
    if backend == "postgresql":
        milliseconds = max(1000, int(seconds * 1000))
        return {"server_settings": {"idle_in_transaction_session_timeout": str(milliseconds)}}
    # MariaDB (10.3+) runs the executable comment; MySQL skips it, and sets only @wfed.
    whole = max(1, int(seconds))
    return {"init_command": f"SET @wfed = 1 /*M!100300 , idle_transaction_timeout = {whole} */"}


_DRIVERS = "mysql+asyncmy, mariadb+asyncmy, postgresql+asyncpg or sqlite+aiosqlite"


def _async_engine(parsed: URL, options: dict[str, Any]) -> AsyncEngine:
    """SQLAlchemy's async engine; a URL it cannot serve is a ConfigError saying why."""
    try:
        return create_async_engine(parsed, **options)
    except ArgumentError as exc:
        raise ConfigError(f"[database] url {redacted(parsed)}: {exc}") from None
    except ImportError as exc:  # e.g. postgresql:// names psycopg, which is not installed
        raise ConfigError(
            f"[database] url {redacted(parsed)}: driver {parsed.drivername!r} is not "
            f"installed ({exc}); use {_DRIVERS}"
        ) from None
    except InvalidRequestError:  # a driver without asyncio, e.g. sqlite:// (pysqlite)
        raise ConfigError(
            f"[database] url {redacted(parsed)}: driver {parsed.drivername!r} does not "
            f"work with asyncio; use {_DRIVERS}"
        ) from None


def create_engine(
    url: str,
    password: str | None = None,
    pool_size: int = 5,
    *,
    lean_pool: bool = False,
    autocommit: bool = False,
    idle_transaction_timeout: float | None = None,
) -> AsyncEngine:
    """An async engine for `url` configured for wfed's use of that backend.

    By default a pooled connection is tested before each use: one more round trip per
    transaction. The daemon asks for a `lean_pool` without that test, as every write it
    makes is retried on a broken connection anyway (and a disconnect invalidates the
    whole pool), and without the rollback on return. An `autocommit` engine (MySQL and
    PostgreSQL) runs each statement on its own: no BEGIN, COMMIT or ROLLBACK on the wire.

    With `idle_transaction_timeout`, the server ends a session that sits idle inside a
    transaction for that long (MariaDB and PostgreSQL): a daemon frozen while it holds
    row locks — stopped, swapped out, its host hung — cannot keep its workflows from
    being rescued once their leases end.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"[database] url: not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if password is not None:
        if backend == "sqlite":
            raise ConfigError(
                "[database] password_file: an SQLite database has no password; remove "
                "password_file, or give a MariaDB, MySQL or PostgreSQL url"
            )
        parsed = parsed.set(password=password)
    # A row's JSON that does not decode (nested too deeply, say) is handed over as a
    # value that sends its workflow to error, instead of failing the whole query.
    options: dict[str, Any] = {"pool_pre_ping": not lean_pool, "json_deserializer": read_json}
    if lean_pool:
        # Every use of a connection ends its own transaction (commit or rollback), so
        # the pool's rollback on return would be one more round trip for nothing.
        options["pool_reset_on_return"] = None
    # An autocommit pool serves the claimer and the heartbeat of an idle daemon and keeps its
    # connections: an overflow connection would be opened (and set up) anew each time.
    overflow = 0 if autocommit else 4
    if autocommit and backend != "sqlite":
        # The drivers would still send a ROLLBACK when a connection is put back.
        options.update(skip_autocommit_rollback=True, pool_reset_on_return=None)
    if backend in {"mysql", "mariadb"}:
        options.update(
            isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
            pool_size=pool_size,
            max_overflow=overflow,
        )
        options["pool_recycle"] = 3600
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    elif backend == "postgresql":
        options.update(pool_size=pool_size, max_overflow=overflow)
        # A connection idle for an hour may have been dropped by a firewall on the way.
        options["pool_recycle"] = 3600
        if autocommit:
            options["isolation_level"] = "AUTOCOMMIT"
        # asyncpg waits 60 s for a connection by default.
        options["connect_args"] = {"timeout": CONNECT_TIMEOUT}
    elif backend != "sqlite":
        raise ConfigError(f"[database] url: unsupported backend {backend!r} (use {_DRIVERS})")
    if idle_transaction_timeout is not None and backend != "sqlite":
        # SQLite has no server session: a frozen writer there holds the file lock, and
        # the others wait for it (busy_timeout); leases still fence its writes.
        options["connect_args"].update(_idle_timeout(backend, idle_transaction_timeout))
    engine = _async_engine(parsed, options)
    _set_up_new_connections(engine, backend)
    return engine


def _set_up_new_connections(engine: AsyncEngine, backend: str) -> None:
    if backend == "sqlite":
        _sqlite_immediate_transactions(engine)
    elif backend == "postgresql":
        event.listen(engine.sync_engine, "connect", _readable_timestamps)


def _readable_timestamps(dbapi_connection: Any, _record: Any) -> None:
    from wfed.store import pg_timestamps  # noqa: PLC0415 - PostgreSQL only

    pg_timestamps.install(dbapi_connection)


def is_retryable(exc: BaseException) -> bool:
    """Whether the transaction failed only because of a deadlock or a lock wait."""
    return classify(exc) in {Fault.LOCK_WAIT, Fault.DEADLOCK}


def is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` means the database could not be reached or the connection broke."""
    return classify(exc) in {Fault.OUTAGE, Fault.LOST_REPLY}


# What a database outage can look like from inside a transaction.
OUTAGE_ERRORS = (DatabaseUnavailable, DBAPIError, OSError, PoolTimeout)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` passes (the database away or busy, a lost race for a lock): the same
    work is tried again later. Refused data and unknown errors are not waited out."""
    return classify(exc) in TRANSIENT


# The errors a database call fails with (TimeoutError is an OSError), where the store did
# not make them DatabaseUnavailable already.
DATABASE_ERRORS = (DBAPIError, OSError)


def _login_refused(exc: BaseException) -> bool:
    state = sqlstate(exc) or ""
    return (
        mysql_error_code(exc) in _MYSQL_LOGIN_REFUSED or state.startswith("28") or state == "3D000"
    )


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or answer (down, restarting,
    the connection lost, no answer in time) — not that it refused the login, which the
    daemon rides out once running (a password rotation) but not at its start."""
    if _login_refused(exc):
        return False
    return isinstance(exc, TimeoutError) or is_connection_error(exc)


def database_error(exc: DBAPIError | OSError, display_url: str) -> WfedError:
    """What a failed database call means to an operator, as the WfedError to report in one
    line naming the database by `display_url` (without its password): SchemaOutdated for
    a missing table, else DatabaseUnavailable: the database refused the login, refused the
    operation (a privilege is missing), is unreachable, or failed, in the driver's words.
    (`classify` says what the daemon does about an error; this, what to tell a person.)"""
    reason = _reason(exc)
    orig = getattr(exc, "orig", None)
    code = mysql_error_code(exc)
    state = sqlstate(exc) or ""
    if code == 1146 or state == "42P01" or _says_no_such_table(orig):
        return SchemaOutdated(
            f"the wfed schema in {display_url} is missing or incomplete ({reason}): "
            "run `wfectl db upgrade`"
        )
    if code == 1050 or state == "42P07" or _says_table_exists(code, state, orig):
        return SchemaOutdated(
            f"{display_url} already holds a table of wfed's schema that wfed did not make "
            f"({reason}), and no record of a wfed schema version: use an empty database, "
            "or one that `wfectl db upgrade` made"
        )
    if isinstance(exc, TimeoutError):
        what = "unreachable: timed out"
    elif code == 1049 or state == "3D000":
        what = f"does not exist ({reason}): create it, or fix the database name in the URL"
    elif _login_refused(exc):
        what = f"refused the login: {reason}"
    elif code in _MYSQL_PRIVILEGE_DENIED or state == "42501":
        what = (
            f"refused the operation: {reason} "
            "(the account lacks a privilege: see docs/grants-mariadb.sql)"
        )
    elif is_connection_error(exc):
        what = f"unreachable: {reason}"
    else:
        what = f"failed: {reason}"
    return DatabaseUnavailable(f"database {display_url} {what}")


def _says_table_exists(code: int | None, state: str, orig: object) -> bool:
    # SQLite says it in words only (MySQL and PostgreSQL have 1050 and 42P07).
    return code is None and not state and "already exists" in str(orig or "")


def _says_no_such_table(orig: object) -> bool:
    # SQLite says it in words only; asyncpg's error class names it.
    text = "" if orig is None else str(orig)
    return "no such table" in text or "UndefinedTableError" in text


@contextlib.contextmanager
def explained_errors(display_url: str) -> Iterator[None]:
    """Database errors inside come out as the WfedError `database_error` makes of them."""
    try:
        yield
    except DATABASE_ERRORS as exc:
        raise database_error(exc, display_url) from None


class Database:
    """The engine plus wfed's transaction helper; the store functions take its connections."""

    def __init__(
        self,
        url: str,
        password: str | None = None,
        pool_size: int = 5,
        *,
        lean_pool: bool = False,
        idle_transaction_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.engine = create_engine(
            url,
            password,
            pool_size,
            lean_pool=lean_pool,
            idle_transaction_timeout=idle_transaction_timeout,
        )
        self.backend = self.engine.dialect.name
        self.display_url = redacted(self.engine.url)
        self._password = password
        self._autocommit_engine: AsyncEngine | None = None
        self._may_create = False
        self.sqlite_file = sqlite_file(self.engine.url) if self.backend == "sqlite" else None
        """The SQLite database's file (absolute); None for other backends."""
        if self.sqlite_file is not None:
            event.listen(self.engine.sync_engine, "do_connect", self._refuse_missing_file)

    def _refuse_missing_file(self, *_: Any) -> None:
        # SQLite creates a missing file on connect: a command run in the wrong directory
        # would make an empty `wfed.db` there. Only a schema upgrade may create it.
        path = self.sqlite_file
        if path is None or self._may_create or os.path.exists(path):
            return
        raise SchemaOutdated(
            f"no SQLite database at {path}: the wfed schema is missing there. Run "
            "`wfectl db upgrade` to create it, or point --config / WFED_CONFIG / "
            "WFED_DATABASE_URL at the database (a relative path is from the working directory)"
        )

    @contextlib.contextmanager
    def creating(self) -> Iterator[None]:
        """Within this block a missing SQLite file may be created (a schema upgrade);
        elsewhere connecting to one is refused (SchemaOutdated naming its path)."""
        self._may_create = True
        try:
            yield
        finally:
            self._may_create = False

    @property
    def supports_skip_locked(self) -> bool:
        return self.backend != "sqlite"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; committed on success, rolled back on error.

        A lost connection becomes DatabaseUnavailable (worded by `database_error`).
        Deadlocks are not retried here, as the body has run already: callers that can
        repeat their work wrap it in `run_retrying`.
        """
        with self._unavailable_on_disconnect():
            async with self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose every statement commits on its own, for the single-statement
        reads and writes an idle daemon repeats (is there work? heartbeat): one round
        trip each instead of three. Its pool (up to three connections, opened as needed) is
        separate from the transactions' pool. SQLite has no wire to save: there it is a transaction.
        """
        if self.backend == "sqlite":
            async with self.transaction() as conn:
                yield conn
            return
        if self._autocommit_engine is None:
            self._autocommit_engine = create_engine(
                self.url, self._password, pool_size=3, lean_pool=True, autocommit=True
            )
        with self._unavailable_on_disconnect():
            async with self._autocommit_engine.connect() as conn:
                yield conn

    def dedicated_engine(self) -> AsyncEngine:
        """An engine of its own for one long-held autocommit connection (a LISTEN), so
        that holding it takes nothing from the pools the transactions use."""
        return create_engine(self.url, self._password, pool_size=1, lean_pool=True, autocommit=True)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection without a transaction of wfed's (for Alembic, which runs its own)."""
        with self._unavailable_on_disconnect():
            async with self.engine.connect() as conn:
                try:
                    yield conn
                finally:
                    # Never return a connection inside a transaction (a lean pool does not
                    # reset it): an open read would hold metadata locks against DDL.
                    await conn.rollback()

    @contextlib.contextmanager
    def _unavailable_on_disconnect(self) -> Iterator[None]:
        try:
            yield
        except (DBAPIError, OSError) as exc:
            if not is_retryable(exc) and is_connection_error(exc):
                raise DatabaseUnavailable(str(database_error(exc, self.display_url))) from exc
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._autocommit_engine is not None:
            await self._autocommit_engine.dispose()


def _reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and links."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if (
        not isinstance(orig, OSError)
        and len(args) == 2
        and isinstance(args[0], int)
        and isinstance(args[1], str)
    ):
        return f"{args[1]} (error {args[0]})"  # MySQL: (code, message)
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


async def run_retrying(func: Any, attempts: int = 5, base_delay: float = 0.01) -> Any:
    """Run `await func()` again when it fails on a deadlock or a lock wait timeout."""
    for attempt in range(1, attempts + 1):
        try:
            return await func()
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise
            log.info("transaction_retried", attempt=attempt, error=_reason(exc))
            await asyncio.sleep(base_delay * attempt)
    raise AssertionError("unreachable")
