"""What a database error means, told exactly, for each backend.

Every loop and write of wfed decides what to do with a failed statement by its `Fault`:

- OUTAGE: the server cannot be reached or is not taking work (down, restarting, read-only
  after a failover, out of connections). Retry later; nothing was done.
- LOST_REPLY: the connection broke while a statement or COMMIT was on its way. It may or
  may not have been applied: re-read before deciding anything.
- LOCK_WAIT and DEADLOCK: the transaction lost a race for a lock and was rolled back (a
  statement, or all of it). Run it again from the start.
- DATA: the server refused what was written (a CHECK, a type, a length, a duplicate). The
  same write will be refused again: it fails the one workflow it belongs to.
- SCHEMA: a table or column is missing (`wfectl db upgrade`), or a privilege.

An error not recognised as one of the first four is never retried for ever: a loop that
does not know what it faces must not spin on it.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from wfed.errors import DatabaseUnavailable


class Fault(StrEnum):
    OUTAGE = "outage"
    LOST_REPLY = "lost_reply"
    LOCK_WAIT = "lock_wait"
    DEADLOCK = "deadlock"
    DATA = "data"
    SCHEMA = "schema"
    OTHER = "other"


TRANSIENT = frozenset({Fault.OUTAGE, Fault.LOST_REPLY, Fault.LOCK_WAIT, Fault.DEADLOCK})
"""Faults that pass: the same work is tried again."""

# MySQL / MariaDB error numbers. Client errors (2000-2999) are the connection's own.
_MYSQL: dict[int, Fault] = {
    1040: Fault.OUTAGE,  # too many connections
    1044: Fault.OUTAGE,  # access denied to the database (grants being changed)
    1045: Fault.OUTAGE,  # access denied (a password rotation in progress)
    1049: Fault.SCHEMA,  # unknown database
    1053: Fault.OUTAGE,  # server shutdown in progress
    1152: Fault.LOST_REPLY,  # aborted connection
    1205: Fault.LOCK_WAIT,
    1213: Fault.DEADLOCK,
    1290: Fault.OUTAGE,  # --read-only (a replica, or a failover under way)
    1317: Fault.LOST_REPLY,  # query execution was interrupted (KILL QUERY)
    1836: Fault.OUTAGE,  # running in read-only mode
    1927: Fault.LOST_REPLY,  # connection was killed
    1969: Fault.LOCK_WAIT,  # max_statement_time exceeded
    3024: Fault.LOCK_WAIT,  # max_execution_time exceeded
    3572: Fault.LOCK_WAIT,  # NOWAIT lock not granted
    4031: Fault.LOST_REPLY,  # disconnected by the server for inactivity
    1048: Fault.DATA,  # column cannot be null
    1062: Fault.DATA,  # duplicate entry
    1264: Fault.DATA,  # out of range
    1265: Fault.DATA,  # data truncated
    1292: Fault.DATA,  # incorrect value
    1366: Fault.DATA,  # incorrect value for a column
    1406: Fault.DATA,  # data too long
    1452: Fault.DATA,  # foreign key
    3140: Fault.DATA,  # invalid JSON
    3819: Fault.DATA,  # CHECK constraint (MySQL)
    4025: Fault.DATA,  # CONSTRAINT failed (MariaDB's JSON CHECK)
    1054: Fault.SCHEMA,  # unknown column
    1142: Fault.SCHEMA,  # command denied (a privilege)
    1146: Fault.SCHEMA,  # no such table
}
_MYSQL_LOST = {2013, 2055}  # lost connection during query / at reading
_MYSQL_OUTAGE = {2002, 2003, 2005, 2006}  # cannot connect, unknown host, server gone away

# PostgreSQL SQLSTATEs (classes by their first two characters).
_POSTGRES: dict[str, Fault] = {
    "40P01": Fault.DEADLOCK,
    "40001": Fault.DEADLOCK,  # serialization failure: run again
    "55P03": Fault.LOCK_WAIT,  # lock not available
    "57014": Fault.LOCK_WAIT,  # statement timeout
    "57P01": Fault.OUTAGE,  # admin shutdown
    "57P02": Fault.OUTAGE,  # crash shutdown
    "57P03": Fault.OUTAGE,  # cannot connect now (starting up)
    "53300": Fault.OUTAGE,  # too many connections
    "25006": Fault.OUTAGE,  # read-only transaction (a standby, or a failover)
    "25P03": Fault.LOST_REPLY,  # idle-in-transaction timeout ended the session
    "3D000": Fault.SCHEMA,  # unknown database
    "42P01": Fault.SCHEMA,  # undefined table
    "42703": Fault.SCHEMA,  # undefined column
    "42501": Fault.SCHEMA,  # insufficient privilege
}
_POSTGRES_CLASSES: dict[str, Fault] = {
    "08": Fault.LOST_REPLY,  # connection exception
    "28": Fault.OUTAGE,  # invalid authorization
    "22": Fault.DATA,  # data exception
    "23": Fault.DATA,  # integrity constraint violation
}


def mysql_error_code(exc: BaseException) -> int | None:
    """The MySQL error number inside a wrapped DBAPI error, if there is one."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE inside a wrapped DBAPI error (PostgreSQL's, or MySQL's), if any."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state) if state else None


def classify(exc: BaseException) -> Fault:
    """What `exc` means for the work that raised it."""
    if isinstance(exc, DatabaseUnavailable | PoolTimeout):
        return Fault.OUTAGE
    if not isinstance(exc, DBAPIError):
        return Fault.LOST_REPLY if isinstance(exc, OSError | ConnectionError) else Fault.OTHER
    code = mysql_error_code(exc)
    if code is not None:
        return _mysql(code)
    state = sqlstate(exc)
    if state is not None:
        return _POSTGRES.get(state) or _POSTGRES_CLASSES.get(state[:2], Fault.OTHER)
    return _without_code(exc)


def _mysql(code: int) -> Fault:
    if code in _MYSQL_LOST:
        return Fault.LOST_REPLY
    if code in _MYSQL_OUTAGE:
        return Fault.OUTAGE
    if code in _MYSQL:
        return _MYSQL[code]
    # Other client errors are the connection's; unknown server errors are not waited out.
    return Fault.LOST_REPLY if 2000 <= code < 3000 else Fault.OTHER


# Error text of drivers without numbers (SQLite's, mostly), and what it means.
_TEXTS: tuple[tuple[str, Fault], ...] = (
    ("constraint failed", Fault.DATA),
    ("database is locked", Fault.LOCK_WAIT),
    ("database table is locked", Fault.LOCK_WAIT),
    ("no such table", Fault.SCHEMA),
    ("no such column", Fault.SCHEMA),
    ("already exists", Fault.SCHEMA),
)


def _without_code(exc: DBAPIError) -> Fault:
    """SQLite, and driver errors that carry no number: told by their type and text."""
    if exc.connection_invalidated:
        return Fault.LOST_REPLY
    if isinstance(exc, IntegrityError):
        return Fault.DATA
    text = str(exc.orig if exc.orig is not None else exc).lower()
    for words, fault in _TEXTS:
        if words in text:
            return fault
    # A driver's own connection failure (asyncpg's ConnectionDoesNotExistError, a socket
    # error), or SQLite's disk and file errors: the database is away.
    return Fault.LOST_REPLY if isinstance(exc, OperationalError | InterfaceError) else Fault.OTHER
