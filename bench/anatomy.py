"""Where a step's time goes: the statements a step sends, and a sampling profile.

* `statements_per_step`: a small batch of no-op workflows through the counting proxy
  (`bench.wire`): statements and round trips per step, by kind.
* `profile`: py-spy (in the lock's dev extra) samples the daemon's main thread while it
  runs Python during a batch of no-op workflows, and writes `profile.svg` (a flame
  graph) and `profile.raw.txt` (the raw stacks) beside RESULTS.md. Each sample is put
  in one bucket by the innermost frame that names a known owner (SQLAlchemy's compiler,
  the driver, logging, wfed…); the daemon's CPU time (from /proc) divided by the steps
  turns the shares into CPU milliseconds per step, and CPU time over wall time says how
  busy the daemon was.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

from bench.context import Bench
from bench.daemons import DaemonSettings
from bench.idle import proxied
from bench.queries import run_window, wait_queue_done
from bench.wire import ROUND_TRIPS, WireCounter

SAMPLE_RATE: Final = 100
PY_SPY_TIMEOUT: Final = 60.0
_PROTOCOLS: Final = {"mariadb": ("mysql", 3306), "postgresql": ("postgresql", 5432)}

WAITING: Final = "waiting for the database (event loop idle)"
SOCKET: Final = "socket send/recv syscalls (loopback TCP)"
DRIVER: Final = "driver (asyncmy/asyncpg: compiled code under SQLAlchemy's adapter)"
CORE: Final = "SQLAlchemy Core"
# SQLAlchemy Core time, split by the innermost Core module of the sample.
_CORE_PARTS: Final = [
    ("sql/compiler.py", "SQLAlchemy compile: params, IN-list post-compile"),
    ("sql/cache_key.py", "SQLAlchemy cache key of each statement"),
    ("sql/traversals.py", "SQLAlchemy cache key of each statement"),
]
CORE_BUILD: Final = "SQLAlchemy statement construction (update/where/values/case)"
# The innermost frame alone decides these: the event loop's epoll wait; a socket write or
# read; and SQLAlchemy's adapter awaiting the driver, whose compiled (Cython) code has no
# Python frames of its own, so its time shows on the adapter's line.
_LEAF_BUCKETS: Final = [
    (WAITING, re.compile(r"^(select \(selectors\.py|EpollSelector\.select)")),
    (SOCKET, re.compile(r"^_SelectorSocketTransport\.(write|_read_ready)")),
    (
        DRIVER,
        re.compile(
            r"\(sqlalchemy/(connectors/asyncio|dialects/mysql/asyncmy|"
            r"dialects/postgresql/asyncpg|dialects/sqlite/aiosqlite)\.py"
        ),
    ),
]
# Otherwise the innermost frame that names a known owner decides; frames that match
# none (stdlib helpers: typing, inspect, contextlib…) are skipped, so their time goes to
# the code that called them.
_OWNER_BUCKETS: Final = [
    (DRIVER, re.compile(r"\((asyncmy|asyncpg|aiosqlite)/")),
    ("SQLAlchemy pool (checkout, pre-ping, reset)", re.compile(r"\(sqlalchemy/pool/")),
    (CORE, re.compile(r"\((sqlalchemy/sql/|<sqlalchemy generated)")),
    ("SQLAlchemy execute + result rows", re.compile(r"\(sqlalchemy/engine/")),
    (
        "SQLAlchemy async bridge (greenlet switches)",
        re.compile(r"\(sqlalchemy/(util/concurrency|util/_concurrency|ext/asyncio|connectors)"),
    ),
    ("SQLAlchemy other", re.compile(r"\(sqlalchemy/")),
    # wfed's own processors and line output (wfed/logging/) count as logging too.
    ("logging (structlog JSON lines)", re.compile(r"\((structlog|logging|wfed/logging)/")),
    (
        "wfed: step argument check (validating rendered arguments)",
        re.compile(r"\(wfed/steps/(definition|base)\.py"),
    ),
    ("wfed: context deepcopy", re.compile(r"^(deepcopy|_deepcopy\w*) \(copy\.py")),
    ("wfed: runner, supervisor, store code", re.compile(r"\(wfed/")),
    ("asyncio scheduling (tasks, futures, timers)", re.compile(r"\(asyncio/")),
]


def bucket(frames: list[str]) -> str:
    """The bucket of one sample (frames outermost first)."""
    leaf = frames[-1] if frames else ""
    for name, pattern in _LEAF_BUCKETS:
        if pattern.search(leaf):
            return name
    for frame in reversed(frames):
        for name, pattern in _OWNER_BUCKETS:
            if pattern.search(frame):
                return _core_part(frames) if name == CORE else name
    return "other (interpreter, stdlib)"


def _core_part(frames: list[str]) -> str:
    for frame in reversed(frames):
        if "sqlalchemy" not in frame:
            break
        for module, name in _CORE_PARTS:
            if f"(sqlalchemy/{module}:" in frame:
                return name
    return CORE_BUILD


def parse_raw(path: Path) -> Counter[str]:
    """py-spy `--format raw` output (`frame;frame;… count`) of the main thread, bucketed."""
    buckets: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not frames[0].endswith("MainThread"):
            continue
        buckets[bucket(frames[1:])] += int(count)
    return buckets


def py_spy() -> str | None:
    """The py-spy executable: next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def _batch(bench: Bench, queue: str, workflows: int) -> None:
    await bench.enqueue(queue, workflows, ["noop"] * bench.sizes.steps_per_workflow)
    await wait_queue_done(bench.engine, queue, bench.sizes.run_timeout)


async def statements_per_step(bench: Bench) -> dict[str, Any] | None:
    """Statements and round trips one step costs, counted on the wire (server backends)."""
    if bench.backend.name not in _PROTOCOLS:
        return None
    protocol, default_port = _PROTOCOLS[bench.backend.name]
    url = bench.backend.url
    queue = bench.queue("wire")
    workflows = bench.sizes.anatomy_workflows
    async with WireCounter(protocol, url.host or "127.0.0.1", url.port or default_port) as wire:
        target = proxied(url, wire.port).render_as_string(hide_password=False)
        settings = DaemonSettings(queue=queue, max_workflows=bench.sizes.max_workflows)
        daemon = await bench.daemons.start_ready(target, settings)
        try:
            before = wire.snapshot()
            await _batch(bench, queue, workflows)
            delta = wire.snapshot() - before
        finally:
            daemon.kill()
    steps = workflows * bench.sizes.steps_per_workflow
    return {
        "workflows": workflows,
        "steps": steps,
        "round_trips": delta[ROUND_TRIPS] / steps,
        "by_kind": {
            kind: n / steps
            for kind, n in sorted(delta.items())
            if kind not in {ROUND_TRIPS, "QUIT"}
        },
        "examples": {kind: sorted(texts) for kind, texts in sorted(wire.examples.items())},
    }


async def _record(executable: str, pid: int, *options: str) -> asyncio.subprocess.Process:
    """Attach `py-spy record` to `pid` (without pausing it: --nonblocking)."""
    return await asyncio.create_subprocess_exec(
        executable,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(SAMPLE_RATE),
        "--nonblocking",
        *options,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _finish(spies: list[asyncio.subprocess.Process]) -> None:
    """Ctrl-C makes py-spy write its output; wait for that (kill it if it hangs)."""
    for spy in spies:
        if spy.returncode is None:
            spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            async with asyncio.timeout(PY_SPY_TIMEOUT):
                await spy.wait()
        except TimeoutError:
            spy.kill()
            await spy.wait()


async def profile(bench: Bench, out_dir: Path) -> dict[str, Any] | None:
    """Sample one daemon with py-spy during a batch; None when py-spy is not installed."""
    executable = py_spy()
    if executable is None:
        return None
    queue = bench.queue("prof")
    workflows = bench.sizes.profile_workflows
    settings = DaemonSettings(queue=queue, max_workflows=bench.sizes.max_workflows)
    daemon = await bench.daemons.start_ready(bench.url, settings)
    raw = out_dir / "profile.raw.txt"
    svg = out_dir / "profile.svg"
    spies: list[asyncio.subprocess.Process] = []
    try:
        spies.append(
            await _record(executable, daemon.pid, "--threads", "--format", "raw", "-o", str(raw))
        )
        spies.append(
            await _record(executable, daemon.pid, "--format", "flamegraph", "-o", str(svg))
        )
        await asyncio.sleep(1.0)  # py-spy attached
        cpu_before = daemon.cpu_seconds()
        await _batch(bench, queue, workflows)
        cpu_seconds = daemon.cpu_seconds() - cpu_before
        await _finish(spies)
        async with bench.engine.connect() as conn:
            window = await run_window(conn, queue)
    finally:
        for spy in spies:
            if spy.returncode is None:
                spy.kill()
                await spy.wait()
        daemon.kill()
    buckets = parse_raw(raw) if raw.exists() else Counter()
    total = sum(buckets.values())
    if not total:
        return None
    # Samples are taken only while the daemon runs Python (no --idle): the shares are of
    # its CPU time, which /proc gives per step; the rest of the wall time it waited.
    ms_per_step = 1000 * cpu_seconds / window.steps_completed
    return {
        "workflows": workflows,
        "steps": window.steps_completed,
        "steps_per_s": window.steps_per_s,
        "wall_ms_per_step": 1000 * window.seconds / window.steps_completed,
        "ms_per_step": ms_per_step,
        "busy_share": min(cpu_seconds / window.seconds, 1.0),
        "samples": total,
        "svg": str(svg) if svg.exists() else None,
        "buckets": {
            name: {"share": n / total, "ms_per_step": ms_per_step * n / total}
            for name, n in buckets.most_common()
        },
    }
