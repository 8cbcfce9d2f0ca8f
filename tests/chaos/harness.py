"""What the chaos tests share: the scale, workflows of journaling steps, a fleet of
daemons to kill and freeze, and the audit that counts what a fault broke.

The steps are those of `tests/stepmods/journal.py`: each appends `start TAG PID` /
`end TAG PID` (`slow`, `slow_idempotent`) or `ran TAG PID` (`mark`) to a journal file
outside the database, and leaves `TAG_by = PID` in the context when it completes. The
journal says which process ran what, in which order; the database says what was
committed. The audit compares the two:

- lost: a workflow that never reached `completed` or `error`;
- committed step run again: a step started after the run whose result the database
  kept (the run of the process named by `TAG_by`) had already ended;
- non-idempotent step re-run: a `slow` or `mark` step that started twice;
- unrecorded run: a step started more often than its `attempts` say;
- bad error: a workflow in `error` for anything but an interrupted non-idempotent step.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon_harness import DaemonFactory, DaemonProcess
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

CHAOS_DIR = Path(__file__).resolve().parent

SCALE = os.environ.get("WFED_CHAOS_SCALE", "reduced")
if SCALE not in {"reduced", "full"}:
    raise RuntimeError(f"WFED_CHAOS_SCALE must be 'reduced' or 'full', not {SCALE!r}")
FULL = SCALE == "full"

FIGURES: list[dict[str, Any]] = []
"""What each test measured, in the order they ran (printed in the run's summary)."""

PROCESS_MARGIN = 5.0
"""What a process-level bound adds to the contract's: process start-up, the test's own
polling, a loaded 2-core machine. Generous, so that only a broken contract fails a test."""

IDEMPOTENT_KINDS = frozenset({"slow_idempotent"})
TERMINAL = ("completed", "error")


def scaled(reduced: Any, full: Any) -> Any:
    """The reduced-scale value, or the full-scale one under `WFED_CHAOS_SCALE=full`."""
    return full if FULL else reduced


def time_limit(reduced: float, full: float) -> float:
    """A pytest-timeout limit for a test of either scale."""
    return float(scaled(reduced, full))


# -- workflows of journaling steps ------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    tag: str
    kind: str  # slow | slow_idempotent | mark
    seconds: float = 0.0

    @property
    def idempotent(self) -> bool:
        return self.kind in IDEMPOTENT_KINDS

    def element(self) -> dict[str, Any]:
        if self.kind == "mark":
            return {"step": "mark", "args": {"tag": self.tag}}
        return {"step": self.kind, "args": {"tag": self.tag, "seconds": self.seconds}}


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    steps: tuple[StepSpec, ...]


def make_workflows(
    prefix: str,
    count: int,
    kinds: Sequence[str],
    seconds: tuple[float, float],
    rng: random.Random,
) -> list[WorkflowSpec]:
    """`count` workflows named `{prefix}-{i}`, with one step per kind in `kinds`; `slow`
    steps last a random time in `seconds`."""
    return [
        WorkflowSpec(
            f"{prefix}-{i}",
            tuple(
                StepSpec(f"{prefix}{i}s{p}", kind, round(rng.uniform(*seconds), 3))
                for p, kind in enumerate(kinds)
            ),
        )
        for i in range(count)
    ]


async def enqueue(
    engine: AsyncEngine, specs: Iterable[WorkflowSpec], queue: str, journal: Path
) -> None:
    """Enqueue with plain SQL (name, steps, context, queue), as an operator would."""
    rows = [
        {
            "name": spec.name,
            "steps": json.dumps([s.element() for s in spec.steps]),
            "context": json.dumps({"journal": str(journal)}),
            "queue": queue,
        }
        for spec in specs
    ]
    statement = text(
        "INSERT INTO workflows (name, steps, context, queue) "
        "VALUES (:name, :steps, :context, :queue)"
    )
    for start in range(0, len(rows), 500):
        async with engine.begin() as conn:
            await conn.execute(statement, rows[start : start + 500])


async def state_counts(engine: AsyncEngine, queue: str) -> Counter[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT state, COUNT(*) FROM workflows WHERE queue = :q GROUP BY state"),
            {"q": queue},
        )
        return Counter({state: count for state, count in rows.all()})


async def all_terminal(engine: AsyncEngine, queue: str, total: int) -> bool:
    counts = await state_counts(engine, queue)
    return sum(counts[state] for state in TERMINAL) >= total


def tolerant(condition: Any) -> Any:
    """`condition`, answering False instead of raising while the database is away."""

    async def check() -> bool:
        try:
            return bool(await condition())
        except (DBAPIError, OSError):
            return False

    return check


async def wait_until(condition: Any, limit: float, what: str, interval: float = 0.05) -> float:
    """Poll the async `condition` until it holds; returns the seconds it took. Fails
    after `limit` (the daemon tests' `wait_until`, with a coarser poll for big tables)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await condition():
            return time.monotonic() - start
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")


# -- a fleet of daemons -----------------------------------------------------------------


class Fleet:
    """`count` daemons on one database and queue, each in a slot that can be killed and
    restarted, frozen and thawed."""

    def __init__(
        self, start_daemon: DaemonFactory, url: str, queue: str, count: int, **options: Any
    ) -> None:
        self.start_daemon = start_daemon
        self.url = url
        self.queue = queue
        self.options = options
        self.killed: set[int] = set()  # pids this fleet killed on purpose
        self.every: list[DaemonProcess] = []
        self.slots: list[DaemonProcess] = [self._start() for _ in range(count)]
        self.kills = 0
        self.restarts = 0

    def _start(self, **overrides: Any) -> DaemonProcess:
        daemon = self.start_daemon(
            self.url, queue=self.queue, wait_ready=False, **{**self.options, **overrides}
        )
        self.every.append(daemon)
        return daemon

    def add(self, **overrides: Any) -> DaemonProcess:
        """One more daemon, in a slot of its own."""
        daemon = self._start(**overrides)
        self.slots.append(daemon)
        return daemon

    async def ready(self, daemons: Iterable[DaemonProcess] | None = None) -> None:
        for daemon in list(daemons if daemons is not None else self.slots):
            await wait_ready(daemon)

    def kill(self, slot: int) -> DaemonProcess:
        """SIGKILL the daemon in `slot` (thawing it first if it is frozen)."""
        victim = self.slots[slot]
        self.killed.add(victim.pid)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.send_signal(signal.SIGCONT)
        victim.wait(timeout=30)
        self.kills += 1
        return victim

    def restart(self, slot: int) -> DaemonProcess:
        self.slots[slot] = self._start()
        self.restarts += 1
        return self.slots[slot]

    def by_id(self, daemon_id: str | None) -> DaemonProcess | None:
        """The daemon whose id (host:pid) is `daemon_id`."""
        if not daemon_id:
            return None
        pid = daemon_id.rsplit(":", 1)[-1]
        return next((d for d in self.every if str(d.pid) == pid), None)

    def exited_unbidden(self) -> list[DaemonProcess]:
        """Daemons that exited although nobody killed them."""
        return [d for d in self.every if d.proc.poll() is not None and d.pid not in self.killed]

    def log_events(self, *names: str) -> Counter[str]:
        """How often each log event of `names` appears across every daemon's log."""
        counts: Counter[str] = Counter()
        for daemon in self.every:
            for line in daemon.log_lines():
                if line.get("event") in names:
                    counts[line["event"]] += 1
        return counts

    def log_text_count(self, pattern: str) -> int:
        """Log lines (of every daemon) matching the regular expression `pattern`."""
        compiled = re.compile(pattern)
        total = 0
        for daemon in self.every:
            text_ = daemon.log_path.read_text(encoding="utf-8", errors="replace")
            total += sum(1 for line in text_.splitlines() if compiled.search(line))
        return total

    def rss_peaks_kib(self) -> list[int]:
        return [peak for d in self.every if (peak := vm_hwm_kib(d.pid)) is not None]


def daemon_id(daemon: DaemonProcess) -> str:
    """The id a daemon started without `[daemon] id` goes by: host:pid."""
    return f"{socket.gethostname()}:{daemon.pid}"


async def wait_ready(daemon: DaemonProcess, limit: float = 60.0) -> None:
    """Wait (without blocking the event loop) until the daemon logged `daemon_started`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if daemon.events("daemon_started"):
            return
        if daemon.proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"daemon {daemon.pid} did not start:\n{daemon.log_path.read_text()}")


INTERNAL_ERRORS = ("side_loop_crashed", "runner_crashed", "runner_failed", "daemon_failed")
"""Log events that mean wfed itself went wrong (not a step, not the database)."""


# -- /proc --------------------------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def vm_rss_kib(pid: int) -> int | None:
    """The resident set size of a live process (VmRSS), in KiB."""
    return _status_kib(pid, "VmRSS")


def vm_hwm_kib(pid: int) -> int | None:
    """The peak resident set size of a live process (VmHWM), in KiB."""
    return _status_kib(pid, "VmHWM")


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of the sockets process `pid` holds (its database connections)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# -- the journal and the audit ------------------------------------------------------------


@dataclass(frozen=True)
class JournalLine:
    index: int
    kind: str  # start | end | ran
    tag: str
    pid: int


def read_journal(path: Path) -> dict[str, list[JournalLine]]:
    """The journal's lines by step tag, in the order they were written."""
    by_tag: dict[str, list[JournalLine]] = defaultdict(list)
    for index, raw in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = raw.split()
        if len(parts) != 3:
            continue
        kind, tag, pid = parts
        by_tag[tag].append(JournalLine(index, kind, tag, int(pid)))
    return by_tag


@dataclass
class StepRecord:
    position: int
    state: str
    attempts: int


@dataclass
class WorkflowRecord:
    name: str
    state: str
    last_error: str | None
    context: dict[str, Any]
    steps: list[StepRecord]


async def fetch_records(engine: AsyncEngine, names: Sequence[str]) -> dict[str, WorkflowRecord]:
    """The workflows `names` with their steps, as the database has them."""
    records: dict[str, WorkflowRecord] = {}
    async with engine.connect() as conn:
        for start in range(0, len(names), 500):
            chunk = list(names[start : start + 500])
            rows = await conn.execute(
                text(
                    "SELECT id, name, state, last_error, context FROM workflows "
                    "WHERE name IN :names"
                ).bindparams(bindparam("names", expanding=True)),
                {"names": chunk},
            )
            by_id = {}
            for row in rows.all():
                context = row.context
                if isinstance(context, str | bytes):
                    context = json.loads(context)
                by_id[row.id] = WorkflowRecord(
                    row.name, row.state, row.last_error, context or {}, []
                )
            if not by_id:
                continue
            steps = await conn.execute(
                text(
                    "SELECT workflow_id, position, state, attempts FROM workflow_steps "
                    "WHERE workflow_id IN :ids ORDER BY workflow_id, position"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": list(by_id)},
            )
            for row in steps.all():
                by_id[row.workflow_id].steps.append(
                    StepRecord(row.position, row.state, row.attempts)
                )
            records.update({record.name: record for record in by_id.values()})
    return records


@dataclass
class Audit:
    """What the faults broke, counted (every list holds readable descriptions)."""

    workflows: int = 0
    steps: int = 0
    completed: int = 0
    interrupted: int = 0
    """Workflows in `error` because a non-idempotent step was interrupted (allowed)."""
    steps_started: int = 0
    reruns: int = 0
    """Idempotent steps started again after an interruption (allowed)."""
    lost: list[str] = field(default_factory=list)
    committed_rerun: list[str] = field(default_factory=list)
    non_idempotent_rerun: list[str] = field(default_factory=list)
    unrecorded_runs: list[str] = field(default_factory=list)
    bad_errors: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {
            "workflows": self.workflows,
            "steps": self.steps,
            "completed": self.completed,
            "error_interrupted": self.interrupted,
            "step_runs": self.steps_started,
            "idempotent_reruns": self.reruns,
            "lost": len(self.lost),
            "committed_rerun": len(self.committed_rerun),
            "non_idempotent_rerun": len(self.non_idempotent_rerun),
            "unrecorded_runs": len(self.unrecorded_runs),
            "bad_errors": len(self.bad_errors),
            "inconsistent": len(self.inconsistent),
        }

    def problems(self) -> dict[str, list[str]]:
        found = {
            "lost": self.lost,
            "committed step run again": self.committed_rerun,
            "non-idempotent step re-run": self.non_idempotent_rerun,
            "run without an attempt": self.unrecorded_runs,
            "error not from an interrupted non-idempotent step": self.bad_errors,
            "database and journal disagree": self.inconsistent,
        }
        return {what: items[:10] for what, items in found.items() if items}


def _starts(lines: list[JournalLine]) -> list[JournalLine]:
    return [line for line in lines if line.kind in {"start", "ran"}]


def audit(
    specs: Sequence[WorkflowSpec],
    records: dict[str, WorkflowRecord],
    journal: dict[str, list[JournalLine]],
    *,
    errors_allowed: bool,
) -> Audit:
    """Compare what the database committed with what the journal says ran."""
    result = Audit(workflows=len(specs))
    for spec in specs:
        record = records.get(spec.name)
        result.steps += len(spec.steps)
        if record is None or record.state not in TERMINAL:
            result.lost.append(f"{spec.name}: {record.state if record else 'missing'}")
            continue
        if record.state == "completed":
            result.completed += 1
            if any(step.state != "completed" for step in record.steps):
                result.inconsistent.append(f"{spec.name}: completed with unfinished steps")
        elif not errors_allowed:
            result.bad_errors.append(f"{spec.name}: {record.last_error}")
        by_position = {step.position: step for step in record.steps}
        error_at = None
        for position, step in enumerate(spec.steps):
            row = by_position.get(position)
            where = f"{spec.name} step {position} ({step.kind})"
            if row is None:
                result.inconsistent.append(f"{where}: no step row")
                continue
            lines = journal.get(step.tag, [])
            _audit_step(result, where, step, row, record, lines, after_error=error_at is not None)
            if row.state == "error":
                error_at = position
        if record.state == "error":
            if error_at is None:
                result.bad_errors.append(f"{spec.name}: error without a step in error")
            elif errors_allowed:
                result.interrupted += 1
    return result


def _audit_step(
    result: Audit,
    where: str,
    step: StepSpec,
    row: StepRecord,
    record: WorkflowRecord,
    lines: list[JournalLine],
    *,
    after_error: bool,
) -> None:
    starts = _starts(lines)
    result.steps_started += len(starts)
    if len(starts) > row.attempts:
        result.unrecorded_runs.append(f"{where}: {len(starts)} runs, attempts {row.attempts}")
    if len(starts) > 1:
        if step.idempotent:
            result.reruns += len(starts) - 1
        else:
            result.non_idempotent_rerun.append(f"{where}: started {len(starts)} times")
    if row.state == "completed":
        _check_committed(result, where, step, record, lines)
    elif row.state == "error":
        _check_error(result, where, step, record)
    elif after_error and starts:
        result.inconsistent.append(f"{where}: ran after the step in error")


def _check_committed(
    result: Audit, where: str, step: StepSpec, record: WorkflowRecord, lines: list[JournalLine]
) -> None:
    committer = record.context.get(f"{step.tag}_by")
    finishes = [line for line in lines if line.kind in {"end", "ran"} and line.pid == committer]
    if not finishes:
        result.inconsistent.append(
            f"{where}: completed, but the journal has no run of pid {committer} ending"
        )
        return
    kept = finishes[-1]
    later = [line for line in _starts(lines) if line.index > kept.index]
    if later:
        pids = ", ".join(str(line.pid) for line in later)
        result.committed_rerun.append(
            f"{where}: kept the run of pid {committer}, started again after it by {pids}"
        )


def _check_error(result: Audit, where: str, step: StepSpec, record: WorkflowRecord) -> None:
    message = record.last_error or ""
    if step.idempotent or "interrupted" not in message:
        result.bad_errors.append(f"{where}: {message[:300]}")


async def audit_run(
    engine: AsyncEngine,
    specs: Sequence[WorkflowSpec],
    journal_path: Path,
    *,
    errors_allowed: bool,
) -> Audit:
    records = await fetch_records(engine, [spec.name for spec in specs])
    return audit(specs, records, read_journal(journal_path), errors_allowed=errors_allowed)


def assert_clean(result: Audit) -> None:
    problems = result.problems()
    assert not problems, f"the faults broke a guarantee: {json.dumps(problems, indent=1)}"


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
