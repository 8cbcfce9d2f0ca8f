"""A MariaDB server of the benchmark's own: its own datadir under the run's directory and a
spare port, started by `mariadb-install-db` + `mariadbd`, stopped and removed afterwards.

Server-wide counters (`SHOW GLOBAL STATUS`) count every client of a server; on a private
one the only clients are the daemons under test and the benchmark itself, so the counters
are exact. The shared server's settings and counters are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import asyncmy
import asyncmy.errors
from sqlalchemy.engine import URL

MARIADBD: Final = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB: Final = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
READY_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 60.0


def missing() -> str | None:
    """None if a private server can be run here, else what is missing."""
    if INSTALL_DB is None:
        return "mariadb-install-db is not installed"
    if not Path(MARIADBD).exists():
        return f"{MARIADBD} is not installed"
    return None


def _spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed:\n{output.decode(errors='replace')[-2000:]}")


async def _wait_ready(process: asyncio.subprocess.Process, port: int, error_log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.returncode is None:
        try:
            conn = await asyncmy.connect(host="127.0.0.1", port=port, user="root")
        except (OSError, asyncmy.errors.Error):  # not listening, or not accepting, yet
            await asyncio.sleep(0.2)
            continue
        conn.close()
        return
    details = await asyncio.to_thread(_tail, error_log)
    raise RuntimeError(f"the private MariaDB did not start:\n{details[-2000:]}")


def _tail(error_log: Path) -> str:
    return error_log.read_text(errors="replace") if error_log.exists() else "(no error log)"


async def _stop(process: asyncio.subprocess.Process) -> None:
    """A clean shutdown (SIGTERM); SIGKILL if it takes too long."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def private_mariadb(root: Path) -> AsyncIterator[URL]:
    """A fresh MariaDB server in `root` (created, then removed); yields its admin URL
    (root, no password, no database)."""
    problem = missing()
    if problem is not None:
        raise RuntimeError(f"no private MariaDB server: {problem}")
    assert INSTALL_DB is not None
    await asyncio.to_thread(root.mkdir, parents=True)
    datadir = root / "data"
    # Its own tmpdir: a starting server deletes the `#sql*` files in its tmpdir, which in
    # a shared /tmp are the live temporary tables of another server.
    tmpdir = root / "tmp"
    await asyncio.to_thread(tmpdir.mkdir)
    error_log = root / "mariadbd.err"
    port = _spare_port()
    process: asyncio.subprocess.Process | None = None
    try:
        await _run(
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        )
        process = await asyncio.create_subprocess_exec(
            MARIADBD,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={root / 'mariadbd.sock'}",
            f"--pid-file={root / 'mariadbd.pid'}",
            f"--tmpdir={tmpdir}",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            f"--log-error={error_log}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Its own session: Ctrl-C in the terminal reaches only the benchmark, which
            # stops the server on its way out.
            start_new_session=True,
        )
        await _wait_ready(process, port, error_log)
        yield URL.create("mysql+asyncmy", username="root", host="127.0.0.1", port=port)
    finally:
        if process is not None:
            await _stop(process)
        await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)
