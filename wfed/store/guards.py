"""The conditions the store's statements share: an operation's source states, and what a
claim and a rescue select. Written once, so that the claims, the idle daemon's question,
the guarded updates and `wfectl health` can never disagree."""

from __future__ import annotations

import operator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from wfed.config import LEASE_MAX
from wfed.states import Operation, sources
from wfed.store.schema import workflows

W = workflows.c

LEASE_HORIZON = timedelta(seconds=LEASE_MAX) + timedelta(days=6)
"""How far ahead a lease wfed gave can end: the longest lease, plus six days for the
clocks of the hosts that write leases to disagree."""


def state_in(*operations: Operation) -> Any:
    """The source states of `operations` as a condition on `state`. The states are bound
    as plain values, not an `in_()` list of values, which SQLAlchemy expands anew on every
    execution: these conditions sit in statements built once and run per step."""
    allowed = sorted(set().union(*(sources(operation) for operation in operations)))
    values = [literal(state.value) for state in allowed]
    return W.state == values[0] if len(values) == 1 else W.state.in_(values)


# What a claim takes (pending and due) and what a rescue takes (running, lease expired):
# the claims, the idle daemon's question and `wfectl health` all select by these.
def pending_due(now: datetime) -> list[Any]:
    return [state_in(Operation.CLAIM), _NoneOrAtMost(W.run_after, literal(now, W.run_after.type))]


def lease_expired(now: datetime) -> list[Any]:
    # No lease at all is an expired one: only an INSERT or UPDATE behind wfed's back
    # makes a running row without one, and it must be recovered like any other. Nor did
    # wfed give a lease that ends beyond LEASE_HORIZON: such a row (`'9999-12-31'`) would
    # otherwise stay running for ever, held by nobody.
    expires = W.lease_expires_at
    return [
        state_in(Operation.RESCUE),
        _NoneOrOutside(
            expires,
            literal(now, expires.type),
            literal(now + LEASE_HORIZON, expires.type),
        ),
    ]


def lease_holds(expires: datetime | None, now: datetime) -> bool:
    """Whether a running row's lease keeps others off it: `lease_expired`'s condition
    on the lease, negated, for a row already read."""
    return expires is not None and now <= expires <= now + LEASE_HORIZON


# A timestamp column compared with now, NULL counting as passed. On SQLite, a column
# holding what is not a timestamp counts as passed too: SQLite stores whatever an INSERT
# gives and compares it as text, so 'tomorrow' would never come and its row would wait
# for ever, unnoticed. Taken, the row shows what it holds (`UnreadableTimestamp`) and ends
# in error. A timestamp is what SQLAlchemy writes: 'YYYY-MM-DD HH:MM:SS', then a fraction.
_TIMESTAMP_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*"


class _NoneOrAtMost(FunctionElement[bool]):
    """`column IS NULL OR column <= now` (see above)."""

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a condition as it is, not `... = 1`
    comparison = staticmethod(operator.le)


class _NoneOrOutside(_NoneOrAtMost):
    """`column IS NULL OR column < now OR column > horizon` (see above)."""

    inherit_cache = True
    comparison = staticmethod(operator.lt)


def _passed(element: _NoneOrAtMost) -> Any:
    column, now, *horizon = element.clauses
    beyond = [column > horizon[0]] if horizon else []
    return or_(column.is_(None), element.comparison(column, now), *beyond)


@compiles(_NoneOrAtMost)
def _compile_passed(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(_passed(element), **kw)})"


@compiles(_NoneOrAtMost, "sqlite")
def _compile_passed_sqlite(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses.clauses[0], **kw)
    passed = compiler.process(_passed(element), **kw)
    return f"({passed} OR typeof({column}) != 'text' OR {column} NOT GLOB '{_TIMESTAMP_GLOB}')"
