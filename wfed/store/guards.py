"""The conditions the store's statements share: an operation's source states, and what a
claim and a rescue select. Written once, so that the claims, the idle daemon's question,
the guarded updates and `wfectl health` can never disagree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import literal, or_

from wfed.states import Operation, sources
from wfed.store.schema import workflows

W = workflows.c


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
    return [
        state_in(Operation.CLAIM),
        or_(W.run_after.is_(None), W.run_after <= now),
    ]


def lease_expired(now: datetime) -> list[Any]:
    # No lease at all is an expired one: only an INSERT or UPDATE behind wfed's back
    # makes a running row without one, and it must be recovered like any other.
    return [
        state_in(Operation.RESCUE),
        or_(W.lease_expires_at.is_(None), W.lease_expires_at < now),
    ]
