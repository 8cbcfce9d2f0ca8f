"""The benchmark run: every backend's database, the workloads in order, the results.

Two phases keep the whole run within ten minutes on two cores without the workloads
disturbing each other's timings:

1. latency (all backends side by side): the enqueue latency series and the idle cost.
   Their daemons are idle but for one sample at a time, so they barely use the CPU;
   the 200 samples at a 1 s poll interval dominate the run.
2. load (one backend after another): floor, throughput, control, statements per step,
   profile, memory, growth — each of which saturates the machine — and, when named,
   the fleet of idle daemons and the ten thousand running workflows.

Each workload's failure is recorded and the run goes on; daemons are killed and the
databases dropped on every way out (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import (
    anatomy,
    cli_latency,
    control,
    enqueue,
    fleet,
    floor,
    growth,
    idle,
    keys,
    memory,
    output,
    report,
    ten_thousand,
    throughput,
)
from bench.context import DEFAULT_WORKLOADS, OPT_IN_WORKLOADS, WORKLOADS, Bench, Sizes
from bench.daemons import REPO, DaemonPool
from bench.databases import LABELS, bench_database, server_version

HERE = Path(__file__).resolve().parent
# A quick (smoke) run must not overwrite the figures of a full one.
FULL_OUTPUT = HERE
QUICK_OUTPUT = HERE / "out"
TIME_BUDGET_S = 600.0
_PACKAGES = ("sqlalchemy", "asyncmy", "asyncpg", "aiosqlite", "structlog", "wfed")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _step(
    figures: dict[str, Any], key: str, label: str, work: Callable[[], Awaitable[Any]]
) -> Any:
    """Run one workload, store its figures under `key` and its wall time under
    `durations_s`; on failure store the error."""
    log(f"{label} …")
    started = time.perf_counter()
    try:
        result = await work()
    except Exception as exc:  # one workload failing must not lose the others' figures
        message = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
        figures.setdefault("errors", {})[key] = message
        log(f"{label}: FAILED after {time.perf_counter() - started:.1f} s: {message}")
        return None
    finally:
        figures.setdefault("durations_s", {})[key] = time.perf_counter() - started
    if result is not None:
        figures[key] = result
    log(f"{label}: done in {time.perf_counter() - started:.1f} s")
    return result


async def latency_phase(
    bench: Bench, figures: dict[str, Any], chosen: frozenset[str] = frozenset(DEFAULT_WORKLOADS)
) -> None:
    name = bench.backend.label
    steps = [
        ("enqueue", "enqueue latency", lambda: enqueue.enqueue_latency(bench)),
        ("idle", "idle cost", lambda: idle.idle_cost(bench)),
    ]
    await asyncio.gather(
        *(
            _step(figures, key, f"{name}: {label}", work)
            for key, label, work in steps
            if key in chosen
        )
    )


async def load_phase(
    bench: Bench,
    figures: dict[str, Any],
    out_dir: Path,
    chosen: frozenset[str] = frozenset(DEFAULT_WORKLOADS),
) -> None:
    name = bench.backend.label
    backend = bench.backend.name
    sizes = bench.sizes
    steps: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
        ("floor", "floor", lambda: floor.floor(bench)),
        ("throughput", "throughput (1 daemon, then 2)", lambda: throughput.throughput(bench)),
        ("floor_after", "floor again", lambda: floor.floor_recheck(bench)),
        ("control", "pause/stop latency", lambda: control.control_latency(bench)),
        ("statements", "statements per step", lambda: anatomy.statements_per_step(bench)),
        ("output", "live output cost", lambda: output.output_cost(bench)),
        ("keys", "concurrency keys cost", lambda: keys.keys_cost(bench)),
    ]
    if backend in sizes.profile_backends:
        steps.append(("profile", "profile", lambda: anatomy.profile(bench, out_dir)))
    if backend in sizes.memory_backends:
        steps.append(("memory", "memory", lambda: memory.memory(bench)))
    if backend in sizes.growth_backends:
        steps.append(("growth", "growth", lambda: growth.growth(bench)))
    if backend in sizes.cli_backends:
        steps.append(("cli_latency", "wfectl latency", lambda: cli_latency.cli_latency(bench)))
    if backend in sizes.fleet_backends:
        steps.append(("fleet", "fleet of idle daemons", lambda: fleet.fleet(bench)))
    if backend in sizes.ten_thousand_backends:
        steps.append(
            ("ten_thousand", "ten thousand running workflows", lambda: ten_thousand.run(bench))
        )
    for key, label, work in steps:
        if key in chosen:
            await _step(figures, key, f"{name}: {label}", work)


def _machine() -> dict[str, Any]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": memory_kib / 1024 / 1024,
        "kernel": platform.release(),
        "load_start": os.getloadavg()[0],
    }


def _git() -> str:
    """The checked-out commit, and whether tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def _software(git_start: str) -> str:
    parts = [f"Python {platform.python_version()}"]
    for package in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{package} {metadata.version(package)}")
    git_end = _git()
    if git_end == git_start:
        parts.append(f"git {git_start}")
    else:  # someone changed the tree during the run: daemons may have run either
        parts.append(f"git {git_start} at the start, {git_end} at the end")
    return ", ".join(parts)


async def run(
    backends: list[str],
    sizes: Sizes,
    quick: bool,
    chosen: frozenset[str] = frozenset(DEFAULT_WORKLOADS),
) -> int:
    """Run the benchmark on `backends`; write the results; 0 if MariaDB (when asked) ran.
    A quick run, or one of fewer than the default workloads, writes to bench/out/, never
    over the figures of a full run (a full run with opt-in workloads added is full)."""
    partial = quick or not frozenset(DEFAULT_WORKLOADS) <= chosen
    started = time.perf_counter()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = _machine()
    git_start = _git()
    output = QUICK_OUTPUT if partial else FULL_OUTPUT
    output.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="wfed-bench-"))
    daemons = DaemonPool(workdir)
    results: dict[str, dict[str, Any]] = {backend: {} for backend in backends}
    versions: dict[str, str] = {}
    log(f"run in {workdir}; backends: {', '.join(backends)}; {'quick' if quick else 'full'}")
    async with contextlib.AsyncExitStack() as stack:
        benches: list[Bench] = []
        for backend in backends:
            try:
                database = await stack.enter_async_context(bench_database(backend, workdir))
                versions[backend] = await server_version(database)
            except Exception as exc:  # an unreachable server: the others still run
                results[backend]["errors"] = {"setup": f"{type(exc).__name__}: {exc}"}
                log(f"{LABELS[backend]}: cannot set up its database: {exc}")
                continue
            engine = database.engine(pool_size=10, max_overflow=20)
            stack.push_async_callback(engine.dispose)
            benches.append(Bench(database, sizes, daemons, engine, workdir))
        # Registered last, so it runs first: daemons die before their databases go.
        stack.callback(daemons.kill_all)
        await asyncio.gather(*(latency_phase(b, results[b.backend.name], chosen) for b in benches))
        for bench in benches:
            await load_phase(bench, results[bench.backend.name], output, chosen)
    wall = time.perf_counter() - started
    machine["load_end"] = os.getloadavg()[0]
    run_info = {
        "date": date,
        "quick": quick,
        "workloads": sorted(chosen, key=WORKLOADS.index),
        "wall_s": wall,
        "machine": machine,
        "software": _software(git_start),
        "servers": ", ".join(f"{LABELS[b]} {v}" for b, v in versions.items()),
        "versions": versions,
        "sizes": asdict(sizes),
        "notes": _notes(sizes, backends),
    }
    results_md = output / "RESULTS.md"
    results_md.write_text(
        report.render(run_info, results, FULL_OUTPUT / "RESULTS.md"), encoding="utf-8"
    )
    (output / "results.json").write_text(
        json.dumps({"run": run_info, "results": results}, indent=2, default=str), encoding="utf-8"
    )
    log(f"wrote {results_md.relative_to(REPO)} in {wall / 60:.1f} min")
    # The budget is the default workloads': the opt-in ones are known to take minutes.
    opt_in = sum(
        seconds
        for figures in results.values()
        for key, seconds in (figures.get("durations_s") or {}).items()
        if key in OPT_IN_WORKLOADS
    )
    if wall - opt_in > TIME_BUDGET_S and not partial:
        log(
            f"WARNING: the default workloads took {wall - opt_in:.0f} s, over their "
            f"{TIME_BUDGET_S:.0f} s budget"
        )
    for backend, figures in results.items():
        print(report.summary_line(backend, figures), flush=True)
    missing = (
        "mariadb" in backends and "throughput" in chosen and "throughput" not in results["mariadb"]
    )
    return 1 if missing else 0


def _notes(sizes: Sizes, backends: list[str]) -> dict[str, str]:
    """What differs from the full MariaDB sizes, per backend."""
    notes = {}
    full = sizes.workflows.get("mariadb", 0)
    samples = sizes.enqueue_samples.get("mariadb", {})
    for backend in backends:
        different = []
        if sizes.workflows[backend] != full:
            different.append(f"throughput batches of {sizes.workflows[backend]:,} workflows")
        mine = sizes.enqueue_samples[backend]
        for interval, count in mine.items():
            if count != samples.get(interval):
                different.append(f"{count} enqueue samples at a {interval:g} s poll interval")
        if backend not in sizes.growth_backends:
            different.append("no growth workload")
        if backend not in sizes.memory_backends:
            different.append("no memory workload")
        if different:
            notes[backend] = (
                "Smaller than MariaDB's to fit the run in ten minutes: "
                + "; ".join(different)
                + "."
            )
    return notes


def rerender() -> int:
    """Rewrite RESULTS.md from results.json (after a change to the report's layout)."""
    saved = json.loads((FULL_OUTPUT / "results.json").read_text(encoding="utf-8"))
    results_md = FULL_OUTPUT / "RESULTS.md"
    results_md.write_text(
        report.render(saved["run"], saved["results"], results_md), encoding="utf-8"
    )
    log(f"rewrote {results_md.relative_to(REPO)} from results.json")
    return 0


def main(
    backends: list[str],
    sizes: Sizes,
    quick: bool,
    chosen: frozenset[str] = frozenset(DEFAULT_WORKLOADS),
) -> int:
    """Run with SIGTERM treated like Ctrl-C: cancel, clean up, exit."""

    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(backends, sizes, quick, chosen)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted: daemons killed, databases dropped")
        return 130
