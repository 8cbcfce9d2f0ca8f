"""The Prometheus endpoint of a running daemon, scraped over HTTP."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from daemon_harness import DaemonFactory, wait_for_journal, wait_until
from private_mariadb import spare_port
from prometheus_client.parser import text_string_to_metric_families

from wfed import Engine, WorkflowState


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def test_metrics_move_while_a_workflow_runs(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """Scraped while a workflow runs and after it completes, the step counters, the
    running gauge and the claim histogram reflect what the daemon did."""
    port = spare_port()
    name = f"{queue}-metrics"
    steps = [
        {"step": "slow", "args": {"tag": "a", "seconds": 1.0}},
        {"step": "mark", "args": {"tag": "b"}},
    ]
    await engine.create_workflow(name, {"journal": str(journal)}, steps, queue=queue)
    start_daemon(schema, queue=queue, extra_config=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    await wait_for_journal(journal, "start a")
    during = scrape(port)
    assert during[("wfed_running_workflows", ())] == 1
    assert during[("wfed_steps_total", (("outcome", "started"), ("step", "slow")))] == 1
    assert during[("wfed_claim_batch_size_count", ())] >= 1

    async def completed() -> bool:
        return (await engine.get(name)).state is WorkflowState.COMPLETED

    await wait_until(completed, what="completed")

    async def settled() -> bool:
        return scrape(port)[("wfed_running_workflows", ())] == 0

    await wait_until(settled, what="running gauge back to 0")
    after = scrape(port)
    assert after[("wfed_steps_total", (("outcome", "completed"), ("step", "slow")))] == 1
    assert after[("wfed_steps_total", (("outcome", "completed"), ("step", "mark")))] == 1
    assert after[("wfed_step_duration_seconds_count", (("step", "slow"),))] == 1
    assert after[("wfed_step_duration_seconds_sum", (("step", "slow"),))] >= 1.0
    assert after[("wfed_lease_renewals_total", ())] >= 1
    assert after[("wfed_free_slots", ())] == 16
