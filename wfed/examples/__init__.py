"""The example runbook: server maintenance (stop an app, run a command, start the app).

It works on local stand-ins so it runs anywhere: each "server" is a directory under the
context's `workdir` (default: a `wfed-example` directory in the working directory), and
an app is "running" on a server while its `app.running` marker file exists.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, ClassVar

from wfed.steps.base import Context, Step, step


def _servers(ctx: Context) -> list[Path]:
    root = Path(ctx.get("workdir", "wfed-example"))
    return [root / str(server) for server in ctx["target_servers"]]


@step("stop_app", idempotent=True)
def stop_app(ctx: Context) -> None:
    """Stop the app on every target server."""
    stopped = []
    for server in _servers(ctx):
        server.mkdir(parents=True, exist_ok=True)
        (server / "app.running").unlink(missing_ok=True)
        stopped.append(server.name)
    ctx["stopped_servers"] = stopped


class RunCmd(Step):
    """Run the maintenance command (`ctx["cmd"]`, an argument list) on each stopped server."""

    name: ClassVar[str] = "run_cmd"
    idempotent: ClassVar[bool] = False
    retries: ClassVar[int] = 1
    retry_delay: ClassVar[float] = 1.0
    timeout: ClassVar[float | None] = 600.0
    description: ClassVar[str] = "run the maintenance command on each stopped server"

    def run(self, ctx: Context, **args: Any) -> None:  # type: ignore[override]
        if "cmd" not in ctx:
            raise ValueError("the context has no 'cmd': set it with `wfectl ctx NAME set cmd=…`")
        cmd = ctx["cmd"]
        argv = cmd if isinstance(cmd, list) else ["sh", "-c", str(cmd)]
        done = {}
        for server in ctx.get("stopped_servers", []):
            workdir = Path(ctx.get("workdir", "wfed-example")) / server
            result = subprocess.run(  # noqa: S603 - argv from the operator's own context
                [str(part) for part in argv],
                cwd=workdir,
                capture_output=True,
                text=True,
                check=False,
                timeout=self.timeout,
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"command failed on {server} with exit code {result.returncode}: "
                    f"{result.stderr.strip()[-300:]}"
                )
            done[server] = result.stdout.strip()[-300:]
        ctx["maintenance_output"] = done


@step("start_app", idempotent=True)
def start_app(ctx: Context) -> None:
    """Start the app again on every target server."""
    for server in _servers(ctx):
        server.mkdir(parents=True, exist_ok=True)
        (server / "app.running").write_text("running\n")
    ctx["started_servers"] = [server.name for server in _servers(ctx)]
