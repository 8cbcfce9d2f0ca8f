"""A stand-in "app control" tool for the example runbook: servers are local directories.

Each server is a directory under ROOT, and the app "runs" on it while the marker file
`app.running` exists there. Standard library only, so any python3 can run this file by
its path, without wfed installed:

    python3 appctl.py stop  ROOT SERVER…           remove the marker on each server
    python3 appctl.py start ROOT SERVER…           create it again
    python3 appctl.py status ROOT SERVER…          exit 3 unless the app runs everywhere
    python3 appctl.py exec ROOT SERVER… -- ARGV…   run ARGV in each server's directory

Each command prints one line per server; `exec` stops at the first server where ARGV
fails, with ARGV's exit code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MARKER = "app.running"
USAGE = "usage: appctl.py {stop|start|status} ROOT SERVER... | exec ROOT SERVER... -- ARGV..."
NOT_RUNNING = 3


def _server_dirs(root: str, servers: list[str]) -> list[Path]:
    dirs = []
    for server in servers:
        if not server or "/" in server or server in {".", ".."}:
            raise SystemExit(f"appctl: {server!r} is not a server name")
        dirs.append(Path(root) / server)
    return dirs


def stop(dirs: list[Path]) -> int:
    for server in dirs:
        server.mkdir(parents=True, exist_ok=True)
        (server / MARKER).unlink(missing_ok=True)
        print(f"{server.name}: stopped")
    return 0


def start(dirs: list[Path]) -> int:
    for server in dirs:
        server.mkdir(parents=True, exist_ok=True)
        (server / MARKER).write_text("running\n")
        print(f"{server.name}: started")
    return 0


def status(dirs: list[Path]) -> int:
    rc = 0
    for server in dirs:
        running = (server / MARKER).exists()
        print(f"{server.name}: {'running' if running else 'stopped'}")
        rc = rc if running else NOT_RUNNING
    return rc


def execute(dirs: list[Path], argv: list[str]) -> int:
    for server in dirs:
        if (server / MARKER).exists():
            print(f"appctl: {server.name}: the app is running; stop it first", file=sys.stderr)
            return NOT_RUNNING
        server.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        try:
            rc = subprocess.call(argv, cwd=server)  # noqa: S603 - the runbook's own command
        except OSError as exc:
            print(f"appctl: {server.name}: cannot run {argv[0]!r}: {exc}", file=sys.stderr)
            return 127
        if rc != 0:
            print(f"appctl: {server.name}: {argv[0]} exited with code {rc}", file=sys.stderr)
            return rc
        print(f"{server.name}: ran {argv[0]}")
    return 0


def main(args: list[str]) -> int:
    if len(args) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    verb, root, rest = args[0], args[1], args[2:]
    if verb == "exec":
        if "--" not in rest or rest.index("--") == len(rest) - 1:
            print(USAGE, file=sys.stderr)
            return 2
        split = rest.index("--")
        return execute(_server_dirs(root, rest[:split]), rest[split + 1 :])
    actions = {"stop": stop, "start": start, "status": status}
    if verb not in actions:
        print(USAGE, file=sys.stderr)
        return 2
    return actions[verb](_server_dirs(root, rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
