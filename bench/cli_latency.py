"""How long `wfectl` takes, as the whole process an operator waits for: `wfectl --help`,
`wfectl show NAME` and `wfectl pause NAME`, each run 20 times (after 2 warm-ups) against
this run's database, one at a time; medians of the wall time, and of the CPU time the
process used (user + system, less disturbed by a loaded machine than the wall time).

`show` reads a workflow that ran (3 steps, their rows and events); each `pause` pauses a
pending workflow of its own. The processes get a bytecode cache of their own
(PYTHONPYCACHEPREFIX, written by the warm-ups) whatever PYTHONDONTWRITEBYTECODE says, as
an installed wfectl has one: compiling wfed's sources at every start is not what an
operator pays.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.context import Bench
from wfed import Engine

WFECTL = str(Path(sys.executable).parent / "wfectl")
TARGETS_S = {"help": 0.150, "show": 0.350, "pause": 0.350}
"""The targets, SQLite (issue 13): the median of 20 runs of each command."""


def _environment(bench: Bench) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"WFED_CONFIG", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"}
        and not key.startswith("WFECTL_")
    }
    env["WFED_DATABASE_URL"] = bench.url
    env["PYTHONPYCACHEPREFIX"] = str(bench.workdir / "wfectl-pycache")
    return env


def _timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run `wfectl ARGS` once: (wall seconds, CPU seconds of the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [WFECTL, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wfectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _series(commands: list[list[str]], env: dict[str, str], cwd: Path, warmups: int) -> Any:
    walls, cpus = [], []
    for index, args in enumerate(commands):
        wall, cpu = _timed(args, env, cwd)
        if index >= warmups:
            walls.append(wall)
            cpus.append(cpu)
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_median_s": statistics.median(cpus),
        "walls_s": walls,
    }


async def cli_latency(bench: Bench) -> dict[str, Any]:
    """The medians of `wfectl --help`, `show NAME` and `pause NAME` (see the module)."""
    sizes = bench.sizes
    count = sizes.cli_warmups + sizes.cli_runs
    queue = bench.queue("cli")
    shown = f"{queue}-shown"
    async with Engine(bench.url, actor="bench@cli") as engine:
        steps = [{"step": "sleep", "args": {"seconds": 0}, "label": f"s{n}"} for n in range(3)]
        await engine.create_workflow(shown, {"servers": ["web1", "web2"]}, steps, queue=queue)
        await engine.run(shown)
    await bench.enqueue(queue, count, ["noop"])  # pending: `<queue>-1` … `<queue>-count`
    env = _environment(bench)
    cwd = bench.workdir
    load_start = os.getloadavg()

    def measure() -> dict[str, Any]:
        return {
            "help": _series([["--help"]] * count, env, cwd, sizes.cli_warmups),
            "show": _series([["show", shown]] * count, env, cwd, sizes.cli_warmups),
            "pause": _series(
                [["pause", f"{queue}-{n}"] for n in range(1, count + 1)],
                env,
                cwd,
                sizes.cli_warmups,
            ),
        }

    commands = await asyncio.to_thread(measure)
    return {
        "runs": sizes.cli_runs,
        "warmups": sizes.cli_warmups,
        "commands": commands,
        "targets_s": TARGETS_S,
        "load_start": load_start[0],
        "load_end": os.getloadavg()[0],
    }
