"""The Engine's concurrency keys: every held key with its holders and waiters, and an
operator's release of a key (part of `wfed.Engine`; see `wfed.engine.locks`)."""

from __future__ import annotations

from wfed.clock import Clock
from wfed.config import LocksConfig
from wfed.engine import control
from wfed.engine import locks as key_views
from wfed.engine.views import KeyHolder, KeyStatus
from wfed.store.database import Database


class ConcurrencyKeys:
    """`Engine.locks` and `Engine.release_lock`."""

    db: Database
    actor: str
    clock: Clock
    lock_limits: LocksConfig

    async def locks(self) -> list[KeyStatus]:
        """Every concurrency key some workflow holds, by name: its limit (this engine's
        `[locks] limits`), its holders with their states, and the pending workflows that
        wait for it."""
        async with self.db.transaction() as conn:
            return await key_views.key_statuses(conn, self.lock_limits.limit_of)

    async def release_lock(
        self, key: str, *, workflow: str | None = None, reason: str | None = None
    ) -> list[KeyHolder]:
        """Free the slots of `key` (only those `workflow` holds, if given), recording a
        `lock_released` event with the actor and reason on each holder; returns the slots
        freed. InvalidTransition if nothing (or not `workflow`) holds the key;
        WorkflowNotFound for an unknown `workflow`. A running holder is not stopped."""
        operator = control.Operator(self.db, self.actor, self.clock)
        return await key_views.release(operator, key, workflow, reason)
