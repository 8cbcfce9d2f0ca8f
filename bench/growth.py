"""Workload 5a, growth: does a table full of history slow the daemon down?

This run's database, as the earlier workloads left it (a few thousand rows), against a
second database of the same run holding `history_rows` (1,000,000) completed workflows,
inserted with one `INSERT … SELECT`:

* one claim's time: wfed's own `workflow_claim_pending` (limit `max_workflows`) on a queue
  of `max_workflows` pending rows, in a transaction that is rolled back; the median of
  `claim_repeats`;
* EXPLAIN of the claim query, and of the rescue, heartbeat and stop-request queries: the
  index used and no filesort;
* throughput of one daemon on batches of `growth_workflows` x 10 no-op steps, on one
  database then the other, `growth_rounds` times (A B A B: the machine's drift during
  the workload falls on both alike instead of passing for an effect of the history).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.context import Bench
from bench.databases import bench_database
from bench.queries import W, insert_history
from bench.stats import percentile, utc_now
from bench.throughput import run_queue
from wfed.states import WorkflowState
from wfed.store import claims, leases
from wfed.store.guards import lease_expired
from wfed.store.schema import workflows

HISTORY_AT = datetime(2026, 1, 1)


def _explained_queries(queue: str, limit: int, now: datetime) -> dict[str, Any]:
    """The daemon's hot queries (built by wfed's store) with representative values."""
    return {
        "claim": claims.claim_pending_query([queue], limit, now),
        "rescue": select(workflows)
        .where(*lease_expired(now), W.queue.in_([queue]))
        .order_by(W.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True),
        "heartbeat": select(W.id, W.fence, W.requested).where(
            W.claimed_by == "bench", W.state == WorkflowState.RUNNING, W.id.in_([1, 2, 3])
        ),
        "requests": leases.requests_owned_query("bench"),
    }


async def explain(conn: AsyncConnection, backend: str, query: Any) -> dict[str, Any]:
    """EXPLAIN a query: its plan as text lines, the index it uses, and whether it sorts."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if backend == "mariadb":
        plan = (await conn.execute(text(f"EXPLAIN {sql}"))).mappings().all()
        lines = [
            " ".join(f"{key}={row[key]}" for key in ("table", "type", "key", "rows", "Extra"))
            for row in plan
        ]
        keys = [row["key"] for row in plan if row["key"]]
        sorts = any("filesort" in (row["Extra"] or "") for row in plan)
    elif backend == "postgresql":
        lines = [row[0] for row in (await conn.execute(text(f"EXPLAIN {sql}"))).all()]
        keys = [line.split(" using ")[1].split()[0] for line in lines if " using " in line]
        sorts = any(line.strip().startswith(("Sort", "->  Sort")) for line in lines)
    else:
        rows = (await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
        lines = [str(row[-1]) for row in rows]
        keys = [line.split(" INDEX ")[1].split()[0] for line in lines if " INDEX " in line]
        sorts = any("TEMP B-TREE" in line for line in lines)
    return {"plan": lines, "index": keys[0] if keys else None, "sorts": sorts}


async def _claim_times(bench: Bench, queue: str) -> dict[str, float]:
    """Claim `max_workflows` rows of `queue` `claim_repeats` times, rolling back each."""
    limit = bench.sizes.max_workflows
    seconds = []
    async with bench.engine.connect() as conn:
        for _ in range(bench.sizes.claim_repeats):
            started = time.perf_counter()
            claimed = await claims.workflow_claim_pending(
                conn, owner="bench", queues=[queue], limit=limit, now=utc_now(), lease=30.0
            )
            seconds.append(time.perf_counter() - started)
            await conn.rollback()
            if len(claimed) != limit:
                raise RuntimeError(f"claim took {len(claimed)} rows of {limit}")
    return {"p50_ms": percentile(seconds, 0.5) * 1000, "p90_ms": percentile(seconds, 0.9) * 1000}


async def _probe(bench: Bench, queue: str) -> dict[str, Any]:
    async with bench.engine.connect() as conn:
        rows = await conn.scalar(select(text("COUNT(*)")).select_from(workflows))
        plans = {
            name: await explain(conn, bench.backend.name, query)
            for name, query in _explained_queries(
                queue, bench.sizes.max_workflows, utc_now()
            ).items()
        }
    return {"rows": rows, "claim": await _claim_times(bench, queue), "explain": plans}


async def _settle(bench: Bench) -> None:
    """Fresh statistics, and the bulk insert's dirty pages written out, so that the run
    after it measures a table with history, not a server still digesting a bulk load."""
    backend = bench.backend.name
    async with bench.engine.connect() as conn:
        if backend == "mariadb":
            await conn.execute(text("ANALYZE TABLE workflows"))
            await conn.execute(text("FLUSH TABLES workflows FOR EXPORT"))
            await conn.execute(text("UNLOCK TABLES"))
        elif backend == "postgresql":
            await conn.execute(text("ANALYZE workflows"))
            await conn.commit()
            with contextlib.suppress(DBAPIError):  # CHECKPOINT needs a superuser
                await conn.execute(text("CHECKPOINT"))
        else:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        await conn.commit()


async def _sizes(bench: Bench) -> dict[str, float]:
    """The workflows table's size on disk (MiB), and MariaDB's buffer pool size."""
    async with bench.engine.connect() as conn:
        if bench.backend.name == "mariadb":
            table = await conn.scalar(
                text(
                    "SELECT data_length + index_length FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = 'workflows'"
                )
            )
            pool = await conn.scalar(text("SELECT @@innodb_buffer_pool_size"))
            return {"table_mib": int(table or 0) / 2**20, "buffer_pool_mib": int(pool) / 2**20}
        if bench.backend.name == "postgresql":
            table = await conn.scalar(text("SELECT pg_total_relation_size('workflows')"))
            return {"table_mib": int(table or 0) / 2**20}
    return {}


async def _claim_queue(bench: Bench) -> str:
    """A queue of `max_workflows` pending rows for the claim probe (never claimed: each
    probe rolls back)."""
    queue = bench.queue("claim")
    await bench.enqueue(queue, bench.sizes.max_workflows, ["noop"])
    return queue


def _runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [result["steps_per_s"] for result in results]
    return {
        "workflows": results[0]["workflows"],
        "steps": results[0]["steps"],
        "runs": rates,
        "steps_per_s": sum(rates) / len(rates),
    }


async def growth(bench: Bench) -> dict[str, Any]:
    """Claim time, EXPLAIN and throughput: this run's database (a few thousand rows) versus
    a second, fresh database holding the history, measured alternately (A B A B) so that
    the machine's drift falls on both alike."""
    sizes = bench.sizes
    async with bench_database(bench.backend.name, bench.workdir) as database:
        engine = database.engine(pool_size=5, max_overflow=10)
        loaded = Bench(database, sizes, bench.daemons, engine, bench.workdir, bench.run_id)
        try:
            started = time.perf_counter()
            async with engine.begin() as conn:
                await insert_history(
                    conn,
                    bench.backend.name,
                    count=sizes.history_rows,
                    queue="history",
                    at=HISTORY_AT,
                )
            insert_seconds = time.perf_counter() - started
            queues = {"empty": await _claim_queue(bench), "loaded": await _claim_queue(loaded)}
            await _settle(loaded)
            storage = await _sizes(loaded)
            before = await _probe(bench, queues["empty"])
            after = await _probe(loaded, queues["loaded"])
            runs: dict[str, list[dict[str, Any]]] = {"empty": [], "loaded": []}
            for _ in range(sizes.growth_rounds):
                for key, target in (("empty", bench), ("loaded", loaded)):
                    runs[key].append(
                        await run_queue(
                            target, daemons=1, purpose=f"tp{key}", workflows=sizes.growth_workflows
                        )
                    )
        finally:
            await engine.dispose()
    baseline, with_history = _runs(runs["empty"]), _runs(runs["loaded"])
    return {
        "history_rows": sizes.history_rows,
        "insert_s": insert_seconds,
        **storage,
        "before": before,
        "after": after,
        "baseline": baseline,
        "throughput": with_history,
        "loss": 1 - with_history["steps_per_s"] / baseline["steps_per_s"],
    }
