"""systemd's notify protocol (READY, STOPPING, WATCHDOG), without a dependency.

Does nothing when `NOTIFY_SOCKET` is unset, i.e. when not run by systemd with
`Type=notify`.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("wfed.daemon")


def notify(message: str) -> bool:
    """Send one notification (e.g. "READY=1"); returns whether it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify_failed", error=str(exc))
        return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd set for this process, in seconds (None: off)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
