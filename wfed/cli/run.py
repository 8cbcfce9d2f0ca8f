"""Running one command's engine calls, and turning every failure into one line.

Each command runs its engine calls in one `asyncio.run` and always closes the engine.
Before the first query a pre-flight check connects (bounded by `CONNECT_TIMEOUT`) and
checks the schema revision, so an unreachable database or a missing schema is reported
plainly instead of as whatever the first query happens to hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from wfed.config import Config, load_config
from wfed.engine import Engine
from wfed.errors import DatabaseUnavailable, SchemaOutdated, WfedError
from wfed.store import migrate
from wfed.store.database import is_connection_error, mysql_error_code

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
"""Seconds the pre-flight check waits for the database before giving up."""

# Passwords seen in the configuration: never printed, whatever a driver puts in a message.
_SECRETS: set[str] = set()
_MIN_SECRET = 4
_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^/:@\s]*:)[^@\s/]+@")

_UPGRADE_HINT = "run `wfectl db upgrade`"
# MySQL: 1044 no access to the database, 1045 wrong user or password, 1049 unknown database.
_MYSQL_LOGIN_REFUSED = {1044, 1045, 1049}
# MySQL: 1142 table, 1143 column, 1227 operation (e.g. SUPER) privilege denied.
_MYSQL_PRIVILEGE_DENIED = {1142, 1143, 1227}


@dataclass
class Settings:
    """What the global options set up for the commands (kept in the click context)."""

    config_path: str | None = None
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        """The configuration (`--config`, else WFED_CONFIG, else defaults), loaded once."""
        if self._config is None:
            self._config = load_config(self.config_path)
            _remember_secrets(self._config)
        return self._config


def _remember_secrets(config: Config) -> None:
    with contextlib.suppress(ArgumentError):
        password = make_url(config.database.url).password
        if password:
            _SECRETS.add(str(password))
    password = config.database_password()
    if password:
        _SECRETS.add(password)


def scrub(message: str) -> str:
    """A message as it may be printed: one line, with no password in it."""
    message = _URL_PASSWORD.sub(r"\1***@", message)
    for secret in _SECRETS:
        if len(secret) >= _MIN_SECRET:  # replacing "b" everywhere would garble the text
            message = message.replace(secret, "***")
    return " ".join(message.split())


def fail(message: str) -> NoReturn:
    """Print `wfectl: <message>` on stderr and exit with code 1."""
    sys.stdout.flush()
    sys.stderr.write(f"wfectl: {scrub(message)}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def run_engine(
    settings: Settings,
    work: Callable[[Engine], Awaitable[T]],
    *,
    connect: bool = True,
    schema: bool = True,
) -> T:
    """Build the engine from the configuration, run `work` with it, close it.

    `connect=False` skips the pre-flight check (commands that only need the step
    registry); `schema=False` checks the connection but not the schema (`db upgrade`).
    """
    engine = Engine.from_config(config=settings.config())

    async def main() -> T:
        try:
            if connect:
                await _preflight(engine, schema=schema)
            return await work(engine)
        finally:
            # A broken connection may fail to close; the command's own error matters more.
            with contextlib.suppress(DBAPIError, OSError):
                await engine.close()

    display = engine.db.display_url
    try:
        with asyncio.Runner() as runner:
            try:
                return runner.run(main())
            finally:
                runner.run(_settle_sqlite_threads())
    except DatabaseUnavailable as exc:
        # The store's own wrapping of a failed connection: say it the same way as ours.
        if isinstance(exc.__cause__, DBAPIError):
            raise database_error(exc.__cause__, display) from None
        raise
    except (DBAPIError, OSError, TimeoutError) as exc:
        raise database_error(exc, display) from None


_AIOSQLITE_THREAD = "(_connection_worker_thread)"
_SETTLE_SECONDS = 1.0


async def _settle_sqlite_threads() -> None:
    """Let aiosqlite's worker threads end while the event loop still runs.

    When opening a SQLite file fails, aiosqlite stops its worker thread without waiting
    for it, and the thread then reports back to the event loop; if `asyncio.run` has
    closed the loop by then, the thread prints a traceback (omnilib/aiosqlite#241).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SETTLE_SECONDS
    for thread in threading.enumerate():
        if thread.name.endswith(_AIOSQLITE_THREAD) and thread.is_alive():
            await asyncio.to_thread(thread.join, max(deadline - loop.time(), 0))


async def _preflight(engine: Engine, *, schema: bool) -> None:
    # A network database that does not answer (a firewall dropping packets) would keep
    # the drivers waiting for a minute. SQLite has no network, but a write transaction
    # may wait for its lock (busy timeout): that is not "unreachable".
    limit = None if engine.db.backend == "sqlite" else CONNECT_TIMEOUT
    try:
        async with asyncio.timeout(limit):
            if schema:
                await migrate.require_current(engine.db)
            else:
                async with engine.db.engine.connect():
                    pass
    except TimeoutError:
        raise DatabaseUnavailable(
            f"database {engine.db.display_url} unreachable: no answer within {CONNECT_TIMEOUT:g} s"
        ) from None


def database_error(exc: BaseException, display_url: str) -> WfedError:
    """A database failure the engine did not translate, as a WfedError for one line."""
    if is_missing_table(exc):
        return _schema_missing(display_url, exc)
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailable(f"database {display_url} unreachable: timed out")
    if is_login_refused(exc):
        return DatabaseUnavailable(f"database {display_url} refused the login: {_reason(exc)}")
    if is_permission_denied(exc):
        return DatabaseUnavailable(
            f"database {display_url} refused the operation: {_reason(exc)} "
            "(the account lacks a privilege: see docs/grants-mariadb.sql)"
        )
    if is_connection_error(exc):
        return DatabaseUnavailable(f"database {display_url} unreachable: {_reason(exc)}")
    return DatabaseUnavailable(f"database {display_url} failed: {_reason(exc)}")


def _schema_missing(display_url: str, exc: BaseException) -> SchemaOutdated:
    return SchemaOutdated(
        f"the wfed schema in {display_url} is missing or incomplete ({_reason(exc)}): "
        f"{_UPGRADE_HINT}"
    )


def is_missing_table(exc: BaseException) -> bool:
    """Whether a database error says a table does not exist (schema not created)."""
    if not isinstance(exc, DBAPIError):
        return False
    if mysql_error_code(exc) == 1146:  # ER_NO_SUCH_TABLE
        return True
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "42P01" or getattr(orig, "pgcode", None) == "42P01":
        return True
    text = str(orig)
    return "no such table" in text or "UndefinedTableError" in text


def is_login_refused(exc: BaseException) -> bool:
    """Whether the server refused the user, password or database name of the URL."""
    if not isinstance(exc, DBAPIError):
        return False
    if mysql_error_code(exc) in _MYSQL_LOGIN_REFUSED:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and (sqlstate.startswith("28") or sqlstate == "3D000")


def is_permission_denied(exc: BaseException) -> bool:
    """Whether the server refused a statement for want of a privilege (the login worked)."""
    if not isinstance(exc, DBAPIError):
        return False
    if mysql_error_code(exc) in _MYSQL_PRIVILEGE_DENIED:
        return True
    orig = exc.orig
    return "42501" in {getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None)}


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
