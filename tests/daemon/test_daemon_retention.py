"""A daemon with `[retention] purge_after` purges old finished workflows by itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from daemon_harness import DaemonFactory, wait_until
from sqlalchemy import func, insert, select

from wfed import Engine
from wfed.clock import utc_now
from wfed.store.schema import workflows


async def test_daemon_purges_old_finished_workflows(
    start_daemon: DaemonFactory, make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    """With purge_after = "1d", the daemon deletes a completed workflow that finished two
    days ago and keeps one that finished now."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}"
    engine = make_engine(url)
    now = utc_now()
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            insert(workflows),
            [
                {
                    "name": name,
                    "steps": ["sleep"],
                    "state": "completed",
                    "finished_at": finished,
                    "created_at": finished,
                    "updated_at": finished,
                }
                for name, finished in [("old", now - timedelta(days=2)), ("new", now)]
            ],
        )
    start_daemon(
        url,
        queue="retention",
        extra_config='[retention]\npurge_after = "1d"\ninterval = 0.2\n',
    )

    async def names() -> set[str]:
        async with engine.db.engine.connect() as conn:
            return set((await conn.scalars(select(workflows.c.name))).all())

    async def purged() -> bool:
        return await names() == {"new"}

    await wait_until(purged, what="the old workflow purged")
    async with engine.db.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(workflows)) == 1
    assert [e.kind for e in await engine.history("old")][-1] == "purged"
