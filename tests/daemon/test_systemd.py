"""The systemd integration: the unit files verify, and the daemon speaks sd_notify."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "wfed.service"
DROP_IN = REPO / "systemd" / "wfed.service.d" / "hardening.conf"


def test_unit_and_hardening_drop_in_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts wfed.service with its hardening drop-in."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    wfed = Path(sys.executable).parent / "wfed"
    unit = UNIT.read_text().replace("/opt/wfed/.venv/bin/wfed", str(wfed))
    assert str(wfed) in unit
    # verify reads drop-ins only from unit directories; merged, it checks both at once.
    merged = tmp_path / "wfed.service"
    merged.write_text(unit + "\n" + DROP_IN.read_text())
    result = subprocess.run(
        [analyze, "verify", str(merged)], capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # The build machine has no `wfed` user; the unit rightly names one.
        if line.strip() and "wfed" in line and "User" not in line
    ]
    assert result.returncode == 0, result.stderr
    assert problems == []
    for key in ("Type=notify", "WatchdogSec=", "StateDirectory=wfed", "User=wfed"):
        assert key in unit
    stop_timeout = int(unit.split("TimeoutStopSec=")[1].split()[0])
    assert stop_timeout > 30, "TimeoutStopSec must exceed the default shutdown_grace"


def test_daemon_sends_ready_watchdog_and_stopping(
    start_daemon: DaemonFactory, sqlite_url: str, schema_sqlite: str, tmp_path: Path
) -> None:
    """Under Type=notify the daemon sends READY=1 once claiming, WATCHDOG=1 while healthy
    and STOPPING=1 on SIGTERM."""
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        daemon = start_daemon(
            sqlite_url,
            queue="notify",
            env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"},
        )
        seen: list[str] = []
        while not any("WATCHDOG=1" in m for m in seen):
            seen.append(sock.recv(4096).decode())
        assert "READY=1" in seen[0]
        daemon.signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in seen):
            seen.append(sock.recv(4096).decode())
        assert daemon.wait(timeout=30) == 0
