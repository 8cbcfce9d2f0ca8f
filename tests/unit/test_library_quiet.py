"""wfed used as a library is quiet unless its user configures logging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import asyncio, sys
from wfed import Engine

async def main(url):
    async with Engine(url) as engine:
        await engine.upgrade_schema()
        await engine.create_workflow("quiet", {}, [{"step": "sleep", "args": {"seconds": 0}}])
        await engine.run("quiet")
        print("DONE")

asyncio.run(main(sys.argv[1]))
"""

_CONFIGURED = (
    """
import structlog
structlog.configure()
"""
    + _SCRIPT
)


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}"
    return subprocess.run(
        [sys.executable, "-c", script, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_an_unconfigured_process_hears_nothing_below_a_warning(tmp_path: Path) -> None:
    """Creating and running a workflow through the Engine, in a process that never
    configured logging, prints nothing of wfed's on stdout or stderr."""
    done = _run(_SCRIPT, tmp_path)
    assert done.stdout == "DONE\n"
    assert "workflow_created" not in done.stderr
    assert "step_completed" not in done.stderr


def test_a_configured_process_gets_wfeds_lines(tmp_path: Path) -> None:
    """Once the process configures structlog, wfed's lines follow that configuration."""
    done = _run(_CONFIGURED, tmp_path)
    assert "workflow_created" in done.stdout
    assert "step_completed" in done.stdout
