"""The example runbook: server maintenance (stop an app, run a command, start the app).

It works on local stand-ins so it runs anywhere: each "server" is a directory under the
context's `workdir` (default for the Python steps: a `wfed-example` directory in the
working directory), and an app is "running" on a server while its `app.running` marker
file exists there.

The runbook comes in two spellings:

* the Python steps `stop_app`, `run_cmd` and `start_app` (context: `target_servers`,
  `cmd`, optional `workdir`): `["stop_app", "run_cmd", "start_app"]`;
* `example_definition()`: the same runbook as built-in `shell` steps driving the stand-in
  tool `appctl.py`, with a `sleep` to let connections drain (context: `target_servers`,
  `workdir`, `drain_seconds`, and `cmd` as an argument list). `enqueue.sql` inserts it
  with plain SQL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from wfed.steps.base import Context, Step, step
from wfed.steps.shell import describe, exit_text, run_command, tail_lines

APPCTL = Path(__file__).resolve().with_name("appctl.py")
"""The stand-in app control tool (standard library only; any python3 runs it)."""
ENQUEUE_SQL = Path(__file__).resolve().with_name("enqueue.sql")


def example_definition(*, python: str | None = None, appctl: str | None = None) -> list[Any]:
    """The runbook as `shell` steps (a `workflows.steps` value).

    `python` and `appctl` default to this interpreter and this package's `appctl.py`;
    `enqueue.sql` uses `python3` and `wfed/examples/appctl.py` (relative to the checkout,
    where `make run` runs the daemon).
    """
    tool = [python or sys.executable, appctl or str(APPCTL)]
    servers = ["{workdir}", "{target_servers}"]  # a list reference is spliced into argv
    return [
        {
            "step": "shell",
            "label": "stop the app",
            "args": {"cmd": [*tool, "stop", *servers], "save_as": "stop_output"},
            "idempotent": True,
        },
        {
            "step": "sleep",
            "label": "let connections drain",
            "args": {"seconds": "{drain_seconds}"},
        },
        {
            "step": "shell",
            "label": "run the maintenance command",
            "args": {
                "cmd": [*tool, "exec", *servers, "--", "{cmd}"],
                "timeout": 600,
                "save_as": "maintenance_output",
            },
        },
        {
            "step": "shell",
            "label": "start the app",
            "args": {"cmd": [*tool, "start", *servers], "save_as": "start_output"},
            "idempotent": True,
        },
    ]


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
    """Run the maintenance command (`ctx["cmd"]`) on each stopped server.

    `cmd` is an argument list, or a string run with `sh -c` (it is the operator's own
    command, from the context). Like `shell`, each run is in its own process group, which
    a stop or a timeout terminates as a whole.
    """

    name: ClassVar[str] = "run_cmd"
    idempotent: ClassVar[bool] = False
    retries: ClassVar[int] = 1
    retry_delay: ClassVar[float] = 1.0
    timeout: ClassVar[float | None] = 600.0
    description: ClassVar[str] = "run the maintenance command on each stopped server"

    async def run(self, ctx: Context, **args: Any) -> None:
        if "cmd" not in ctx:
            raise ValueError("the context has no 'cmd': set it with `wfectl ctx NAME set cmd=…`")
        cmd = ctx["cmd"]
        argv = [str(part) for part in cmd] if isinstance(cmd, list) else ["sh", "-c", str(cmd)]
        if not argv:
            raise ValueError("the context's 'cmd' is an empty list")
        done = {}
        for server in ctx.get("stopped_servers", []):
            workdir = Path(ctx.get("workdir", "wfed-example")) / server
            result = await run_command(argv, cwd=str(workdir))
            if result.rc != 0:
                raise RuntimeError(
                    f"command failed on {server}: {describe(argv)} {exit_text(result.rc)}"
                    f": {tail_lines(result.tail(), chars=300)}"
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
