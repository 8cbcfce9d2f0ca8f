"""The results: summary lines, the targets, and `bench/RESULTS.md`.

RESULTS.md is generated in full by each run except its Analysis section (between the
`analysis:start` and `analysis:end` markers), which is written by hand and carried over
from the previous file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import DEFAULT_WORKLOADS
from bench.databases import LABELS

ANALYSIS_START = "<!-- analysis:start -->"
ANALYSIS_END = "<!-- analysis:end -->"
_DEFAULT_ANALYSIS = "_Not written yet: read the figures above and explain them here._"

Figures = dict[str, Any]


# -- figures -------------------------------------------------------------------------------


def _get(figures: Figures, *path: str) -> Any:
    """figures[a][b]… or None where a part is missing or a workload failed."""
    value: Any = figures
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _ms(seconds: Any) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    return f"{seconds * 1000:,.0f} ms"


def floor_per_s(figures: Figures, stack: str = "raw") -> float | None:
    """The 1-connection floor of `stack` (raw: the bare driver; sqlalchemy: through
    SQLAlchemy's async engine): the mean of the figures measured right before and right
    after the throughput runs (either alone if the other is missing)."""
    measured = [
        value
        for value in (
            _get(figures, "floor", f"{stack}_one"),
            _get(figures, "floor_after", f"{stack}_one"),
        )
        if value
    ]
    return sum(measured) / len(measured) if measured else None


def _loss(loss: float) -> str:
    """A throughput change as a loss, or as a gain when it is negative."""
    return f"{loss:.1%} loss" if loss >= 0 else f"no loss ({-loss:.1%} faster)"


def ratio(figures: Figures, stack: str = "raw", daemons: str = "one") -> float | None:
    """steps/s of one (or two) daemons ÷ the 1-connection floor of `stack`. The raw
    driver's floor is what the database and driver can do: the cost SQLAlchemy adds is
    part of wfed's cost, so that is the ratio the targets are set against."""
    steps = _get(figures, "throughput", daemons, "steps_per_s")
    floor = floor_per_s(figures, stack)
    return steps / floor if steps and floor else None


def _fixed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_line(backend: str, figures: Figures) -> str:
    """`db=mariadb steps_per_s=… floor_per_s=… ratio=… ratio_sqlalchemy=…` (one daemon;
    `floor_per_s` and `ratio` against the raw driver's floor)."""
    steps = _get(figures, "throughput", "one", "steps_per_s")
    return (
        f"db={backend} steps_per_s={_num(steps).replace(',', '')} "
        f"floor_per_s={_num(floor_per_s(figures)).replace(',', '')} "
        f"ratio={_fixed(ratio(figures))} "
        f"ratio_sqlalchemy={_fixed(ratio(figures, 'sqlalchemy'))}"
    )


# -- targets -------------------------------------------------------------------------------


SERVERS = ("mariadb", "postgresql")
EVERY_BACKEND = ("mariadb", "postgresql", "sqlite")


@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[Figures], tuple[str, bool | None]]
    backends: tuple[str, ...] = ("mariadb",)
    """The backends the target is set for; the others' figures are shown without a verdict."""


def _ratio_target(daemons: str, minimum: float) -> Callable[[Figures], tuple[str, bool | None]]:
    def check(figures: Figures) -> tuple[str, bool | None]:
        value = ratio(figures, daemons=daemons)
        if value is None:
            return "-", None
        steps = _get(figures, "throughput", daemons, "steps_per_s")
        return (
            f"{value:.2f} ({_num(steps)} steps/s ÷ {_num(floor_per_s(figures))} tx/s)",
            value >= minimum,
        )

    return check


def _enqueue_target(figures: Figures) -> tuple[str, bool | None]:
    series = _get(figures, "enqueue") or {}
    parts, met = [], []
    for result in series.values():
        if not isinstance(result, dict) or "p50" not in result:
            continue
        limit = result["poll_interval"] / 2 + 0.020
        parts.append(f"poll {result['poll_interval']:g} s: {_ms(result['p50'])} (≤ {_ms(limit)})")
        met.append(result["p50"] <= limit)
    return ("; ".join(parts) or "-"), (all(met) if met else None)


def _stop_target(figures: Figures) -> tuple[str, bool | None]:
    p99 = _get(figures, "control", "stop", "latency", "p99")
    interval = _get(figures, "control", "control_interval")
    if p99 is None or interval is None:
        return "-", None
    failed = _get(figures, "control", "stop", "not_stopped")
    met = p99 <= interval + 0.2 and not failed
    return f"p99 {_ms(p99)} (≤ {_ms(interval + 0.2)})", met


def _fast_stop_target(figures: Figures) -> tuple[str, bool | None]:
    fast = _get(figures, "control", "fast_stop")
    if not fast:
        return "-", None
    p99, interval = fast["latency"]["p99"], fast["control_interval"]
    met = p99 <= interval + 0.2 and not fast["not_stopped"]
    return f"p99 {_ms(p99)} at control_interval {interval:g} s (≤ {_ms(interval + 0.2)})", met


def _pushed_stop_target(figures: Figures) -> tuple[str, bool | None]:
    p99 = _get(figures, "control", "stop", "latency", "p99")
    interval = _get(figures, "control", "control_interval")
    if p99 is None or interval is None:
        return "-", None
    failed = _get(figures, "control", "stop", "not_stopped")
    return f"p99 {_ms(p99)} at control_interval {interval:g} s (≤ 100 ms)", (
        p99 <= 0.100 and not failed
    )


def _pushed_enqueue_target(figures: Figures) -> tuple[str, bool | None]:
    series = _get(figures, "enqueue", "poll_1")
    if not isinstance(series, dict) or "p50" not in series:
        return "-", None
    return (
        f"p50 {_ms(series['p50'])} (≤ 10 ms), p99 {_ms(series['p99'])} (≤ 50 ms) "
        "at poll_interval 1 s",
        series["p50"] <= 0.010 and series["p99"] <= 0.050,
    )


def _pause_target(figures: Figures) -> tuple[str, bool | None]:
    pause = _get(figures, "control", "pause")
    if not pause:
        return "-", None
    text = (
        f"{pause['steps_started_after_request']} steps started after a committed request, "
        f"{pause['not_paused']} not paused, of {pause['latency']['n'] + pause['not_paused']}"
    )
    return text, bool(pause["exact"])


def _growth_target(figures: Figures) -> tuple[str, bool | None]:
    loss = _get(figures, "growth", "loss")
    if loss is None:
        return "not measured on this backend", None
    loaded = _get(figures, "growth", "throughput", "steps_per_s")
    base = _get(figures, "growth", "baseline", "steps_per_s")
    rows = _get(figures, "growth", "history_rows")
    return (
        f"{_loss(loss)}: {_num(loaded)} vs {_num(base)} steps/s with {_num(rows)} rows",
        loss <= 0.10,
    )


def _index_target(figures: Figures) -> tuple[str, bool | None]:
    plan = _get(figures, "growth", "after", "explain", "claim") or _get(figures, "explain", "claim")
    if not plan:
        return "-", None
    sort = "sorts" if plan["sorts"] else "no filesort"
    return f"{plan['index'] or 'no index'}, {sort}", bool(plan["index"]) and not plan["sorts"]


def _idle_target(figures: Figures) -> tuple[str, bool | None]:
    idle = _get(figures, "idle")
    if not idle or "statements_per_poll" not in idle:
        cpu = _get(figures, "idle", "cpu_percent")
        return (f"embedded: no wire; CPU {_num(cpu, 2)} %" if cpu is not None else "-"), None
    return (
        f"{idle['statements_per_poll']:.1f} statements "
        f"({idle['round_trips_per_poll']:.1f} round trips) per {idle['poll_interval']:g} s poll",
        idle["statements_per_poll"] <= 2,
    )


MIB = 1024 * 1024
# O(1): one batched UPDATE per heartbeat, with room for a beat that is retried. Renewing
# each lease on its own would be one statement per workflow held.
MAX_RENEWALS_PER_BEAT = 2.0
# The sizes the fleet and 10,000-workflow targets are set at.
FLEET_DAEMONS = 20
MANY_WORKFLOWS = 10_000


def _memory_target(figures: Figures) -> tuple[str, bool | None]:
    memory = _get(figures, "memory")
    if not memory or "rss_mib" not in memory:
        return "-", None
    return (
        f"{memory['rss_mib']:.0f} MiB for {memory['workflows']:,} workflows",
        memory["rss_mib"] * 1024 * 1024 <= 200e6,
    )


def _at_size(text: str, met: bool, size: int, target_size: int) -> tuple[str, bool | None]:
    """No verdict on a run smaller than the target's (a quick run)."""
    if size < target_size:
        return f"{text} (smaller than the target's {target_size:,}: no verdict)", None
    return text, met


def _fleet_target(figures: Figures) -> tuple[str, bool | None]:
    fleet = _get(figures, "fleet")
    if not fleet:
        return "-", None
    text = (
        f"{fleet['statements_per_s']:.1f} statements/s from {fleet['daemons']} daemons "
        f"({fleet['statements_per_daemon_per_s']:.2f} each)"
    )
    return _at_size(text, fleet["statements_per_s"] <= 30, fleet["daemons"], FLEET_DAEMONS)


def _many_started_target(figures: Figures) -> tuple[str, bool | None]:
    many = _get(figures, "ten_thousand")
    if not many:
        return "-", None
    seconds = many["claim_to_started_s"]
    text = f"{seconds:.1f} s for {many['workflows']:,} workflows"
    return _at_size(text, seconds <= 30, many["workflows"], MANY_WORKFLOWS)


def _many_memory_target(figures: Figures) -> tuple[str, bool | None]:
    many = _get(figures, "ten_thousand")
    if not many:
        return "-", None
    text = (
        f"{many['rss_mib']:.0f} MiB ({many['rss_mib'] * MIB / 1e6:.0f} MB) for "
        f"{many['workflows']:,} workflows"
    )
    return _at_size(text, many["rss_mib"] * MIB <= 300e6, many["workflows"], MANY_WORKFLOWS)


def _many_leases_target(figures: Figures) -> tuple[str, bool | None]:
    many = _get(figures, "ten_thousand")
    if not many:
        return "-", None
    holding = many["holding"]
    if "lease_renewals_per_heartbeat" not in holding:
        return "-", None
    per_beat = holding["lease_renewals_per_heartbeat"]
    if per_beat is None:
        return "no heartbeat seen", False
    text = (
        f"{per_beat:.1f} lease renewals per heartbeat ({holding['lease_renewals_per_interval']:.1f}"
        f" per control interval, a heartbeat every {holding['seconds_per_heartbeat']:.1f} s) "
        f"for {many['workflows']:,} workflows"
    )
    return _at_size(text, per_beat <= MAX_RENEWALS_PER_BEAT, many["workflows"], MANY_WORKFLOWS)


def _many_stop_target(figures: Figures) -> tuple[str, bool | None]:
    many = _get(figures, "ten_thousand")
    if not many:
        return "-", None
    p99, limit = many["stop"]["latency"]["p99"], many["control_interval"] + 0.2
    text = f"p99 {_ms(p99)} (≤ {_ms(limit)}), {many['stop']['latency']['n']} stops"
    met = p99 <= limit and not many["stop"]["not_stopped"]
    return _at_size(text, met, many["workflows"], MANY_WORKFLOWS)


def _output_target(figures: Figures) -> tuple[str, bool | None]:
    cost = _get(figures, "output", "cost")
    if cost is None:
        return "-", None
    return f"{cost * 100:.1f} % of a 10,000-line shell step's steps/s", cost <= 0.10


def _keys_target(figures: Figures) -> tuple[str, bool | None]:
    cost = _get(figures, "keys", "cost")
    if cost is None:
        return "-", None
    return f"{_loss(cost)} of one daemon's steps/s", cost <= 0.15


def _cli_target(figures: Figures) -> tuple[str, bool | None]:
    commands = _get(figures, "cli_latency", "commands")
    if not commands:
        return "-", None
    targets = figures["cli_latency"]["targets_s"]
    text = ", ".join(f"{name} {_ms(commands[name]['median_s'])}" for name in targets)
    met = all(commands[name]["median_s"] <= limit for name, limit in targets.items())
    return text, met


TARGETS = [
    Target(
        "throughput ratio ≥ 1.5 (1 daemon ÷ raw-driver 1-connection floor)",
        _ratio_target("one", 1.5),
        SERVERS,
    ),
    Target(
        "throughput ratio ≥ 2.5 (2 daemons ÷ raw-driver 1-connection floor)",
        _ratio_target("two", 2.5),
        SERVERS,
    ),
    Target("enqueue p50 ≤ poll_interval/2 + 20 ms", _enqueue_target, EVERY_BACKEND),
    Target(
        "wake-up: enqueue → first step p50 ≤ 10 ms, p99 ≤ 50 ms (poll_interval 1 s)",
        _pushed_enqueue_target,
        ("postgresql",),
    ),
    Target("stop p99 ≤ control_interval + 200 ms", _stop_target, EVERY_BACKEND),
    Target(
        "wake-up: stop → stopped p99 ≤ 100 ms (control_interval 1 s)",
        _pushed_stop_target,
        ("postgresql",),
    ),
    Target(
        "stop p99 at control_interval 0.25 s ≤ control_interval + 200 ms",
        _fast_stop_target,
        EVERY_BACKEND,
    ),
    Target("pause never lets another step start", _pause_target, EVERY_BACKEND),
    Target("≤ 10 % throughput loss with 1,000,000 historical rows", _growth_target),
    Target("claim uses an index (no filesort)", _index_target),
    Target("idle cost ≤ 2 queries per poll interval", _idle_target, SERVERS),
    Target("≤ 200 MB RSS for 1,000 running workflows", _memory_target),
    Target("fleet: 20 idle daemons cost the server ≤ 30 statements/s in total", _fleet_target),
    Target("10,000 running: claim → all started ≤ 30 s", _many_started_target),
    Target("10,000 running: RSS ≤ 300 MB", _many_memory_target),
    Target(
        "10,000 running: lease renewal O(1) statements per heartbeat "
        f"(≤ {MAX_RENEWALS_PER_BEAT:g})",
        _many_leases_target,
    ),
    Target("10,000 running: stop p99 ≤ control_interval + 200 ms", _many_stop_target),
    Target(
        "live output costs ≤ 10 % (a step printing 10,000 lines)", _output_target, EVERY_BACKEND
    ),
    Target(
        "a concurrency key on every workflow costs ≤ 15 % of one daemon's steps/s",
        _keys_target,
        EVERY_BACKEND,
    ),
    Target(
        "wfectl --help ≤ 150 ms, show ≤ 350 ms, pause ≤ 350 ms (SQLite, median of 20)",
        _cli_target,
        ("sqlite",),
    ),
]


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "n/a"}[met]


def _checked(target: Target, backend: str, figures: Figures) -> tuple[str, bool | None]:
    """The target's figure, with a verdict only on the backends it is set for."""
    text, met = target.check(figures)
    return text, met if backend in target.backends else None


def target_lines(backend: str, figures: Figures) -> list[str]:
    return [
        f"target {_verdict(met).strip('*')}: {target.name}: {text}"
        for target in TARGETS
        for text, met in [_checked(target, backend, figures)]
    ]


# -- the markdown --------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return [*lines, ""]


Rows = list[list[str]]


def _floor_rows(figures: Figures) -> Rows:
    floor = figures.get("floor") or {}
    if not floor:
        return []
    connections = floor.get("connections", 64)
    rows = []
    for stack, label in (("sqlalchemy", "SQLAlchemy"), ("raw", "raw driver")):
        after = _get(figures, "floor_after", f"{stack}_one")
        rows.append(
            [
                "1 floor",
                f"UPDATE+COMMIT tx/s, {label}, 1 connection: before / after the throughput runs",
                f"{_num(floor[f'{stack}_one'])} / {_num(after)}",
            ]
        )
        rows.append(
            [
                "1 floor",
                f"UPDATE+COMMIT tx/s, {label}, {connections} connections",
                _num(floor[f"{stack}_many"]),
            ]
        )
    return rows


def _throughput_rows(figures: Figures) -> Rows:
    rows = []
    for key, label in (("one", "1 daemon"), ("two", "2 daemons")):
        run = _get(figures, "throughput", key)
        if run:
            rows.append(
                [
                    "2 throughput",
                    f"{label}: {run['workflows']:,} workflows x "
                    f"{run['steps'] // run['workflows']} no-op steps",
                    f"{_num(run['steps_per_s'])} steps/s ({run['seconds']:.1f} s)",
                ]
            )
    for stack, label in (("raw", "raw-driver"), ("sqlalchemy", "SQLAlchemy")):
        values = [ratio(figures, stack, daemons) for daemons in ("one", "two")]
        if values[0] is not None:
            rows.append(
                [
                    "2 throughput",
                    f"ratio: 1 daemon / 2 daemons ÷ {label} 1-connection floor (mean of before "
                    "and after)",
                    " / ".join(_fixed(value) for value in values),
                ]
            )
    return rows


def _enqueue_rows(figures: Figures) -> Rows:
    rows = []
    for result in (_get(figures, "enqueue") or {}).values():
        if not isinstance(result, dict) or "p50" not in result:
            continue
        wait, start = result["to_claim"], result["claim_to_start"]
        rows.append(
            [
                "3 enqueue latency",
                f"INSERT -> step 0 started, poll_interval {result['poll_interval']:g} s, "
                f"{result['n']} samples",
                f"p50 {_ms(result['p50'])}, p99 {_ms(result['p99'])}, max {_ms(result['max'])}"
                f" (INSERT -> claimed p50 {_ms(wait['p50'])}; claimed -> started "
                f"p50 {_ms(start['p50'])}, p99 {_ms(start['p99'])})",
            ]
        )
    return rows


def _control_rows(figures: Figures) -> Rows:
    rows = []
    pause = _get(figures, "control", "pause")
    if pause:
        latency, after = pause["latency"], pause["after_step_end"]
        rows += [
            [
                "4 control",
                f"pause -> paused, steps of {pause['step_seconds']:g} s, {latency['n']} samples",
                f"p50 {_ms(latency['p50'])}, p99 {_ms(latency['p99'])}",
            ],
            [
                "4 control",
                "pause: paused minus the end of the step that was running",
                f"p50 {_ms(after['p50'])}, p99 {_ms(after['p99'])}",
            ],
            [
                "4 control",
                "pause: steps started after the request was committed",
                f"{pause['steps_started_after_request']} (not paused: {pause['not_paused']})",
            ],
        ]
    stop = _get(figures, "control", "stop")
    if stop:
        latency = stop["latency"]
        rows.append(
            [
                "4 control",
                f"stop -> stopped during a 60 s step, {latency['n']} samples, "
                f"control_interval {_get(figures, 'control', 'control_interval'):g} s",
                f"p50 {_ms(latency['p50'])}, p99 {_ms(latency['p99'])}"
                + (f", {stop['not_stopped']} not stopped" if stop["not_stopped"] else ""),
            ]
        )
    fast = _get(figures, "control", "fast_stop")
    if fast:
        latency = fast["latency"]
        rows.append(
            [
                "4 control",
                f"stop -> stopped during a 60 s step, {latency['n']} samples, "
                f"control_interval {fast['control_interval']:g} s",
                f"p50 {_ms(latency['p50'])}, p99 {_ms(latency['p99'])}"
                + (f", {fast['not_stopped']} not stopped" if fast["not_stopped"] else ""),
            ]
        )
    return rows


def _growth_rows(figures: Figures, sizes: Figures) -> Rows:
    growth = figures.get("growth")
    if not growth:
        return []
    before, after = growth["before"], growth["after"]
    rows = [
        [
            "5 growth",
            f"claim of {sizes['max_workflows']} rows, p50 (p90): near-empty table "
            f"({_num(before['rows'])} rows) vs with history ({_num(after['rows'])} rows)",
            f"{before['claim']['p50_ms']:.2f} ms ({before['claim']['p90_ms']:.2f}) vs "
            f"{after['claim']['p50_ms']:.2f} ms ({after['claim']['p90_ms']:.2f})",
        ],
        [
            "5 growth",
            f"throughput, 1 daemon, {growth['baseline']['workflows']:,} workflows x "
            f"{growth['baseline']['steps'] // growth['baseline']['workflows']} steps, "
            "runs alternating: near-empty table vs "
            f"+{_num(growth['history_rows'])} completed workflows",
            f"{_num(growth['baseline']['steps_per_s'])} ("
            + ", ".join(_num(rate) for rate in growth["baseline"]["runs"])
            + f") vs {_num(growth['throughput']['steps_per_s'])} ("
            + ", ".join(_num(rate) for rate in growth["throughput"]["runs"])
            + f") steps/s: {_loss(growth['loss'])}",
        ],
        [
            "5 growth",
            "history INSERT ... SELECT (one statement); the table's size",
            f"{growth['insert_s']:.1f} s; {_num(growth.get('table_mib'), 0)} MiB"
            + (
                f" (InnoDB buffer pool: {growth['buffer_pool_mib']:.0f} MiB)"
                if "buffer_pool_mib" in growth
                else ""
            ),
        ],
    ]
    for name, plan in after["explain"].items():
        rows.append(
            [
                "5 growth",
                f"EXPLAIN {name} query (with the history)",
                f"index {plan['index'] or '**none**'}, "
                f"{'**sorts**' if plan['sorts'] else 'no filesort'}: "
                + "; ".join(f"`{line.strip()}`" for line in plan["plan"]),
            ]
        )
    return rows


def _idle_rows(figures: Figures) -> Rows:
    idle = figures.get("idle")
    if not idle:
        return []
    rows = []
    if "statements_per_poll" in idle:
        kinds = ", ".join(
            f"{kind} {n:.1f}" for kind, n in idle["by_kind_per_poll"].items() if n >= 0.05
        )
        rows.append(
            [
                "5 idle cost",
                f"per {idle['poll_interval']:g} s poll (control_interval "
                f"{idle['control_interval']:g} s), over {idle['seconds']:g} s, on the wire",
                f"{idle['statements_per_poll']:.1f} statements, "
                f"{idle['round_trips_per_poll']:.1f} round trips ({kinds})",
            ]
        )
    rows.append(["5 idle cost", "daemon CPU while idle", f"{idle['cpu_percent']:.2f} %"])
    return rows


def _memory_rows(figures: Figures) -> Rows:
    memory = figures.get("memory")
    if not memory:
        return []
    return [
        [
            "5 memory",
            f"RSS with {memory['workflows']:,} workflows in a 60 s step",
            f"{memory['rss_mib']:.0f} MiB (idle {memory['idle_rss_mib']:.0f} MiB; "
            f"{memory['per_workflow_kib']:.0f} KiB per workflow; all started in "
            f"{memory['start_all_s']:.1f} s)",
        ]
    ]


def _fleet_rows(figures: Figures) -> Rows:
    fleet = figures.get("fleet")
    if not fleet:
        return []
    kinds = ", ".join(f"{kind} {n:.1f}" for kind, n in fleet["by_kind_per_s"].items() if n >= 0.05)
    return [
        [
            "8 fleet",
            f"{fleet['daemons']} idle daemons (poll {fleet['poll_interval']:g} s, control "
            f"{fleet['control_interval']:g} s) on a private MariaDB, over "
            f"{fleet['seconds']:.0f} s: statements/s the server counted (`Questions`), by "
            "`Com_` counter",
            f"{fleet['statements_per_s']:.1f} in all, "
            f"{fleet['statements_per_daemon_per_s']:.2f} per daemon ({kinds}); "
            f"{fleet['connections']} connections held; the daemons' CPU "
            f"{fleet['cpu_percent']:.1f} % of one core in all",
        ]
    ]


def _ten_thousand_rows(figures: Figures) -> Rows:
    many = figures.get("ten_thousand")
    if not many:
        return []
    holding, stop = many["holding"], many["stop"]
    kinds = ", ".join(
        f"{kind} {n:.1f}" for kind, n in holding["by_kind_per_interval"].items() if n >= 0.05
    )
    label = f"9 {many['workflows']:,} running"
    return [
        [
            label,
            f"{many['workflows']:,} workflows of one {many['step_seconds']} s sleep step, one "
            "daemon connected straight to the server: first claim -> last step started "
            "(INSERT committed -> last started)",
            f"{many['claim_to_started_s']:.1f} s ({many['enqueue_to_started_s']:.1f} s); "
            f"claim batches logged: {many['claim_batches']}",
        ],
        [
            label,
            "RSS once all run",
            f"{many['rss_mib']:.0f} MiB (idle {many['idle_rss_mib']:.0f} MiB; "
            f"{many['per_workflow_kib']:.1f} KiB per workflow)",
        ],
        [
            label,
            f"per control interval ({many['control_interval']:g} s) while holding them, over "
            f"{holding['seconds']:.0f} s, on the wire (a second daemon, through the counting "
            "proxy)",
            (
                f"a heartbeat every {holding['seconds_per_heartbeat']:.1f} s, "
                f"{holding['lease_renewals_per_heartbeat']:.1f} lease renewals and "
                f"{holding['statements_per_heartbeat']:.1f} statements in all per heartbeat; "
                if holding.get("seconds_per_heartbeat")
                else "no heartbeat seen; "
            )
            + f"per interval {holding['lease_renewals_per_interval']:.1f} lease renewals, "
            f"{holding['statements_per_interval']:.1f} statements, "
            f"{holding['round_trips_per_interval']:.1f} round trips ({kinds}); daemon CPU "
            f"{holding['cpu_percent']:.1f} %",
        ],
        [
            label,
            f"stop -> step stopped, one workflow at a time, {stop['latency']['n']} samples",
            f"p50 {_ms(stop['latency']['p50'])}, p99 {_ms(stop['latency']['p99'])}"
            + (f", {stop['not_stopped']} not stopped" if stop["not_stopped"] else ""),
        ],
    ]


def _wire_rows(figures: Figures) -> Rows:
    wire = figures.get("statements")
    if not wire:
        return []
    kinds = ", ".join(f"{kind} {n:.2f}" for kind, n in wire["by_kind"].items() if n >= 0.01)
    return [
        [
            "anatomy",
            f"per step on the wire ({wire['workflows']} x "
            f"{wire['steps'] // wire['workflows']} no-op steps)",
            f"{wire['round_trips']:.2f} round trips: {kinds}",
        ]
    ]


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def _output_rows(figures: Figures) -> Rows:
    out = figures.get("output")
    if not out:
        return []
    runs = ", ".join(
        f"{_num(off)} / {_num(on)}"
        for off, on in zip(out["discarded"]["runs"], out["recorded"]["runs"], strict=True)
    )
    return [
        [
            "6 live output",
            f"shell step printing {out['lines']:,} lines, Engine.run, {out['workflows']} "
            f"workflows {out['concurrency']} at a time: steps/s with the output discarded / "
            "recorded",
            f"{_num(out['discarded']['steps_per_s'])} / {_num(out['recorded']['steps_per_s'])}"
            f" ({runs}): cost {out['cost'] * 100:.1f} %; bench process CPU per step "
            f"{_num(_mean(out['discarded'].get('cpu_ms')))} / "
            f"{_num(_mean(out['recorded'].get('cpu_ms')))} ms",
        ]
    ]


def _keys_rows(figures: Figures) -> Rows:
    found = figures.get("keys")
    if not found:
        return []
    runs = ", ".join(
        f"{_num(plain)} / {_num(keyed)}"
        for plain, keyed in zip(found["plain"]["runs"], found["keyed"]["runs"], strict=True)
    )
    return [
        [
            "8 concurrency keys",
            f"{found['workflows']} workflows x {found['steps_per_workflow']} no-op steps, one "
            "daemon: steps/s without keys / with a key of its own on every workflow",
            f"{_num(found['plain']['steps_per_s'])} / {_num(found['keyed']['steps_per_s'])}"
            f" ({runs}): {_loss(found['cost'])}",
        ]
    ]


def _cli_rows(figures: Figures) -> Rows:
    cli = figures.get("cli_latency")
    if not cli:
        return []
    return [
        [
            "7 wfectl",
            f"`wfectl {' '.join(args)}` as a whole process, {cli['runs']} runs after "
            f"{cli['warmups']} warm-ups: median wall time (min-max); median CPU time",
            f"{_ms(found['median_s'])} ({_ms(found['min_s'])}-{_ms(found['max_s'])}); "
            f"CPU {_ms(found['cpu_median_s'])}",
        ]
        for name, args in (
            ("help", ["--help"]),
            ("show", ["show", "NAME"]),
            ("pause", ["pause", "NAME"]),
        )
        for found in [cli["commands"][name]]
    ] + [
        [
            "7 wfectl",
            "load average (1 min) before / after the wfectl runs",
            f"{cli['load_start']:.2f} / {cli['load_end']:.2f}",
        ]
    ]


def _backend_rows(figures: Figures, sizes: Figures) -> Rows:
    errors = [[name, "**failed**", error] for name, error in (figures.get("errors") or {}).items()]
    return [
        *_floor_rows(figures),
        *_throughput_rows(figures),
        *_enqueue_rows(figures),
        *_control_rows(figures),
        *_growth_rows(figures, sizes),
        *_idle_rows(figures),
        *_memory_rows(figures),
        *_fleet_rows(figures),
        *_ten_thousand_rows(figures),
        *_output_rows(figures),
        *_keys_rows(figures),
        *_cli_rows(figures),
        *_wire_rows(figures),
        *errors,
    ]


def _profile_section(backend: str, profile: Figures) -> list[str]:
    lines = [
        f"### Where a step's time goes ({LABELS[backend]}, py-spy)",
        "",
        f"py-spy sampled the daemon's main thread at 100 Hz while it ran Python, during "
        f"{profile['workflows']} workflows x {profile['steps'] // profile['workflows']} no-op "
        f"steps: {profile['steps_per_s']:,.0f} steps/s. {_busy(profile)} "
        f"{profile['samples']:,} samples. Flame graph `profile.svg` and raw stacks "
        "`profile.raw.txt` beside this file (not committed).",
        "",
    ]
    rows = [
        [name, f"{bucket['share']:.1%}", f"{bucket['ms_per_step']:.3f}"]
        for name, bucket in profile["buckets"].items()
    ]
    return lines + _table(["where (CPU time)", "share", "CPU ms per step"], rows)


def _busy(profile: Figures) -> str:
    if "busy_share" not in profile:  # results of a run before CPU time was recorded
        return f"{profile['ms_per_step']:.2f} ms of wall time per step (idle included)."
    return (
        f"The daemon used {profile['ms_per_step']:.3f} ms of CPU per step, of "
        f"{profile['wall_ms_per_step']:.3f} ms of wall time: busy {profile['busy_share']:.0%} "
        f"of the time, waiting for the database the rest."
    )


def _analysis(previous: Path) -> str:
    if previous.exists():
        text = previous.read_text(encoding="utf-8")
        match = re.search(
            re.escape(ANALYSIS_START) + r"\n(.*?)" + re.escape(ANALYSIS_END), text, re.DOTALL
        )
        if match:
            return match.group(1).rstrip("\n")
    return _DEFAULT_ANALYSIS


def _run_kind(run: Figures) -> str:
    kind = "quick" if run["quick"] else "full"
    chosen = run.get("workloads")
    if not chosen:
        return kind
    if not set(DEFAULT_WORKLOADS) <= set(chosen):
        return f"{kind}, only {', '.join(chosen)}"
    extra = [name for name in chosen if name not in DEFAULT_WORKLOADS]
    return f"{kind}, with {', '.join(extra)}" if extra else kind


def render(run: Figures, results: dict[str, Figures], previous: Path) -> str:
    """The whole RESULTS.md."""
    machine = run["machine"]
    lines = [
        "# wfed benchmark results",
        "",
        "Generated by `make bench` (`python -m bench`); see `bench/README.md` for what each "
        "workload does. Everything but the Analysis section is rewritten by every run.",
        "",
        f"- Date: {run['date']} (wall time {run['wall_s'] / 60:.1f} min, {_run_kind(run)} run)",
        f"- Machine: {machine['cpus']} CPUs, {machine['cpu_model']}, "
        f"{machine['memory_gib']:.1f} GiB RAM, Linux {machine['kernel']}",
        f"- Load average (1 min) at start / end: {machine['load_start']:.2f} / "
        f"{machine['load_end']:.2f} (the machine is shared: other processes were running)",
        f"- Software: {run['software']}",
        f"- Servers: {run['servers']}",
        "",
        "## Summary",
        "",
        "```",
        *(summary_line(backend, figures) for backend, figures in results.items()),
        "```",
        "",
        "`steps_per_s`: one daemon (max_workflows 64), first step start to last completion "
        "as recorded in the database. `floor_per_s`: single-row UPDATE+COMMIT transactions/s "
        "on one connection through the bare driver (asyncmy, asyncpg, aiosqlite), same "
        "database, same run; `ratio` = steps_per_s ÷ floor_per_s. `ratio_sqlalchemy` "
        "divides by the same floor measured through SQLAlchemy's async engine instead.",
        "",
        "## Targets",
        "",
        "A verdict is given on the backends a target is set for (most are MariaDB's; the "
        "throughput ratios are MariaDB's and PostgreSQL's; the wake-ups PostgreSQL's); "
        "other figures are shown for comparison.",
        "",
    ]
    header = ["target", *(LABELS[backend] for backend in results)]
    rows = []
    for target in TARGETS:
        row = [target.name]
        for backend, figures in results.items():
            text, met = _checked(target, backend, figures)
            row.append(f"{_verdict(met)}: {text}" if met is not None else text)
        rows.append(row)
    lines += _table(header, rows)
    for backend, figures in results.items():
        lines += [f"## {LABELS[backend]} {run['versions'].get(backend, '')}".rstrip(), ""]
        notes = run["notes"].get(backend)
        if notes:
            lines += [f"_{notes}_", ""]
        lines += _table(["workload", "figure", "value"], _backend_rows(figures, run["sizes"]))
        if figures.get("profile"):
            lines += _profile_section(backend, figures["profile"])
    lines += ["## Analysis", "", ANALYSIS_START, _analysis(previous), ANALYSIS_END, ""]
    return "\n".join(lines)
