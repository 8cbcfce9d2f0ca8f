"""Real `wfed` processes for the workloads: a config file each, a JSON log each, own session.

Every daemon is started with `start_new_session=True` (so Ctrl-C in the terminal reaches
only the benchmark) and is killed as a process group by `DaemonPool.kill_all`, which the
benchmark runs on every way out, including Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WFED = str(Path(sys.executable).parent / "wfed")
STEP_MODULES = ["bench.steps"]
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class DaemonSettings:
    """The config keys a workload sets; everything else is wfed's default."""

    queue: str
    max_workflows: int = 64
    poll_interval: float = 1.0
    control_interval: float = 1.0
    log_level: str = "info"


@dataclass
class DaemonProcess:
    """One running `wfed`."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_events(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == name:
                    found.append(record)
        return found

    async def wait_ready(self) -> None:
        """Wait for the `daemon_started` log line (the daemon is claiming)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if '"daemon_started"' in self.log_text():
                return
            if not self.alive():
                raise RuntimeError(f"wfed exited early:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.02)
        raise RuntimeError(f"wfed not ready after {READY_TIMEOUT:g} s:\n{self.log_text()[-3000:]}")

    def rss_bytes(self) -> int:
        """Resident memory (VmRSS of /proc/<pid>/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """Kill the daemon's whole process group and reap it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


class DaemonPool:
    """Starts daemons with a config file each and kills every one it started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[DaemonProcess] = []

    def start(
        self, url: str, settings: DaemonSettings, command: list[str] | None = None
    ) -> DaemonProcess:
        """Start `wfed` on `url` with `settings`; `command` prefixes its command line
        (e.g. a profiler)."""
        number = len(self.started)
        queue = settings.queue
        config = self.workdir / f"wfed-{number}-{queue}.toml"
        config.write_text(
            "\n".join(
                [
                    "[database]",
                    f"url = {json.dumps(url)}",
                    "[daemon]",
                    f"queues = [{json.dumps(queue)}]",
                    f"max_workflows = {settings.max_workflows}",
                    f"poll_interval = {settings.poll_interval}",
                    f"control_interval = {settings.control_interval}",
                    "[steps]",
                    f"modules = {json.dumps(STEP_MODULES)}",
                    "[log]",
                    'format = "json"',
                    f"level = {json.dumps(settings.log_level)}",
                    "",
                ]
            )
        )
        log_path = self.workdir / f"wfed-{number}-{queue}.log"
        env = {k: v for k, v in os.environ.items() if k not in {"WFED_CONFIG", "WFED_DATABASE_URL"}}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*(command or []), WFED, "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        daemon = DaemonProcess(proc, log_path, config)
        self.started.append(daemon)
        return daemon

    async def start_ready(self, url: str, settings: DaemonSettings) -> DaemonProcess:
        """Start a daemon and wait until it is claiming."""
        daemon = self.start(url, settings)
        await daemon.wait_ready()
        return daemon

    async def start_many(
        self, url: str, settings: DaemonSettings, count: int
    ) -> list[DaemonProcess]:
        """Start `count` daemons at once and wait until all of them are claiming."""
        daemons = [self.start(url, settings) for _ in range(count)]
        await asyncio.gather(*(daemon.wait_ready() for daemon in daemons))
        return daemons

    def kill_all(self) -> None:
        while self.started:
            self.started.pop().kill()
