"""What every workload gets: the backend, the sizes of this run, daemons, a connection pool."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.daemons import DaemonPool
from bench.databases import Backend
from bench.queries import enqueue_series

# Every workload's key, in the order a run takes them (`--workloads` picks some).
WORKLOADS = (
    "enqueue",
    "idle",
    "floor",
    "throughput",
    "floor_after",
    "control",
    "statements",
    "output",
    "keys",
    "profile",
    "memory",
    "growth",
    "cli_latency",
    "fleet",
    "ten_thousand",
)
# Run only when asked for by name: each takes minutes and loads the machine well past
# what the ten-minute default run can afford.
OPT_IN_WORKLOADS = frozenset({"fleet", "ten_thousand"})
DEFAULT_WORKLOADS = tuple(name for name in WORKLOADS if name not in OPT_IN_WORKLOADS)


@dataclass(frozen=True)
class Sizes:
    """How big each workload is. The defaults are the full run (`make bench`, about ten
    minutes on two cores); `quick()` is a smoke run of about a minute.

    MariaDB runs every workload at full size. PostgreSQL runs the same throughput batch
    (its ratio targets are MariaDB's), SQLite a smaller one, and both take fewer 1 s-poll
    samples so that the whole run fits in ten minutes; the tables say so wherever a size
    differs. `fleet` and `ten_thousand` run only when named (`--workloads`).
    """

    floor_seconds: float = 2.0
    floor_connections: int = 64
    workflows: dict[str, int] = field(
        default_factory=lambda: {"mariadb": 1000, "postgresql": 1000, "sqlite": 200}
    )
    steps_per_workflow: int = 10
    max_workflows: int = 64
    run_timeout: float = 240.0
    enqueue_samples: dict[str, dict[float, int]] = field(
        default_factory=lambda: {
            "mariadb": {1.0: 200, 0.1: 200},
            "postgresql": {1.0: 150, 0.1: 200},
            "sqlite": {1.0: 150, 0.1: 200},
        }
    )
    control_samples: int = 20
    fast_control_interval: float = 0.25
    pause_step_seconds: float = 0.5
    history_rows: int = 1_000_000
    growth_backends: tuple[str, ...] = ("mariadb",)
    growth_workflows: int = 150
    growth_rounds: int = 2
    claim_repeats: int = 30
    idle_seconds: float = 30.0
    memory_workflows: int = 1000
    memory_backends: tuple[str, ...] = ("mariadb",)
    anatomy_workflows: int = 30
    profile_workflows: int = 600
    profile_backends: tuple[str, ...] = ("mariadb",)
    output_workflows: int = 60
    output_concurrency: int = 8
    output_rounds: int = 3
    cli_runs: int = 20
    cli_warmups: int = 2
    cli_backends: tuple[str, ...] = ("sqlite",)
    fleet_daemons: int = 20
    fleet_seconds: float = 30.0
    fleet_backends: tuple[str, ...] = ("mariadb",)
    ten_thousand_workflows: int = 10_000
    ten_thousand_stops: int = 20
    ten_thousand_wire_seconds: float = 20.0
    ten_thousand_backends: tuple[str, ...] = ("mariadb",)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            floor_seconds=0.5,
            floor_connections=16,
            workflows={"mariadb": 40, "postgresql": 40, "sqlite": 40},
            run_timeout=120.0,
            enqueue_samples={
                "mariadb": {1.0: 4, 0.1: 10},
                "postgresql": {1.0: 4, 0.1: 10},
                "sqlite": {1.0: 4, 0.1: 10},
            },
            control_samples=4,
            history_rows=10_000,
            growth_workflows=20,
            growth_rounds=1,
            claim_repeats=5,
            idle_seconds=2.0,
            memory_workflows=50,
            anatomy_workflows=10,
            profile_workflows=30,
            output_workflows=8,
            output_rounds=1,
            cli_runs=5,
            fleet_daemons=3,
            fleet_seconds=5.0,
            ten_thousand_workflows=300,
            ten_thousand_stops=5,
            ten_thousand_wire_seconds=8.0,
        )


@dataclass
class Bench:
    """One backend's run: its database, daemons and the benchmark's own engine."""

    backend: Backend
    sizes: Sizes
    daemons: DaemonPool
    engine: AsyncEngine
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.backend.url_string

    @property
    def workflows(self) -> int:
        """The throughput batch size on this backend."""
        return self.sizes.workflows[self.backend.name]

    def queue(self, purpose: str) -> str:
        """A queue of this workload's own: daemons of one never see another's rows."""
        return f"{purpose}-{self.run_id}-{next(self._counter)}"

    async def enqueue(self, queue: str, count: int, steps: list[Any]) -> None:
        """`count` pending workflows `<queue>-1…` of `steps` in `queue`, in one INSERT."""
        async with self.engine.begin() as conn:
            await enqueue_series(
                conn, self.backend.name, prefix=f"{queue}-", count=count, steps=steps, queue=queue
            )
