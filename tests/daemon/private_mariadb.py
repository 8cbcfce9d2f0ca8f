"""A private MariaDB server for tests that stop and start their database.

It has its own datadir and a spare port, so stopping it never touches the shared server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
CLIENT = shutil.which("mariadb") or shutil.which("mysql")


def available() -> str | None:
    """None if a private server can be run here, else why not."""
    for name, path in [("mariadbd", MARIADBD), ("mariadb-install-db", INSTALL_DB)]:
        if not path or not os.path.exists(path):
            return f"{name} is not installed"
    if CLIENT is None:
        return "the mariadb client is not installed"
    return None


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PrivateMariaDB:
    """`mariadbd` on its own datadir and port, started and stopped by the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.datadir = root / "data"
        self.port = spare_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/wfed"

    def install(self) -> None:
        assert INSTALL_DB is not None
        subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        # A tmpdir of its own: a starting server deletes the `#sql*` files it finds in
        # its tmpdir, which in a shared /tmp are the live temporary tables of another.
        tmpdir = self.root / "tmp"
        tmpdir.mkdir(exist_ok=True)
        with open(self.root / "mariadbd.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    MARIADBD,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.root / 'mariadbd.sock'}",
                    f"--pid-file={self.root / 'mariadbd.pid'}",
                    f"--tmpdir={tmpdir}",
                    "--user=root",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=32M",
                    f"--log-error={self.root / 'mariadbd.err'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self, limit: float = 60.0) -> None:
        assert CLIENT is not None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            probe = subprocess.run(
                [CLIENT, "-h127.0.0.1", f"-P{self.port}", "-uroot", "-e", "SELECT 1"],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        error_log = self.root / "mariadbd.err"
        details = error_log.read_text() if error_log.exists() else "(no error log)"
        raise RuntimeError(f"the private MariaDB did not start:\n{details[-2000:]}")

    def sql(self, statement: str) -> None:
        assert CLIENT is not None
        subprocess.run(
            [CLIENT, "-h127.0.0.1", f"-P{self.port}", "-uroot", "-e", statement],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waiting until the server has exited."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
