"""A shell step's processes do not outlive a daemon killed with -9.

The "daemon" here is a real Python process running the shell step's command runner; it
is killed with SIGKILL while the command (and a grandchild in its process group) runs.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

POLL = 0.05
_DAEMON = """
import asyncio, sys
from wfed.steps.shell import run_command
asyncio.run(run_command(["/bin/sh", "-c", sys.argv[1]], kill_grace=float(sys.argv[2])))
"""


async def _killed_daemon_leaves_nothing(procs, tmp_path: Path, command: str, grace: float) -> None:
    pidfile = tmp_path / "pids"
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DAEMON, command, str(grace)
    )
    try:
        pids = await procs.pids(pidfile)
        assert all(procs.alive(pid) for pid in pids)
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
        # Polled: the group gets SIGTERM at once and SIGKILL after the grace.
        for _ in range(int((grace + 30) / POLL)):
            if not any(procs.alive(pid) for pid in pids):
                break
            await asyncio.sleep(POLL)
        procs.assert_gone(*pids)
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()


async def test_a_command_and_its_group_die_with_a_killed_daemon(procs, tmp_path: Path) -> None:
    """kill -9 of the daemon ends the running command and the grandchild in its group."""
    await _killed_daemon_leaves_nothing(procs, tmp_path, procs.family(tmp_path / "pids"), 1.0)


async def test_a_command_ignoring_sigterm_is_killed_after_the_grace(procs, tmp_path: Path) -> None:
    """A group that ignores the SIGTERM sent when its daemon died gets SIGKILL after the
    step's kill_grace."""
    pidfile = tmp_path / "pids"
    command = (
        "trap '' TERM; sleep 300 & "
        f'echo "$$ $!" > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"; wait'
    )
    await _killed_daemon_leaves_nothing(procs, tmp_path, command, 0.5)
