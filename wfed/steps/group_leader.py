"""Leads a shell step's process group, and ends the group when the daemon dies.

The shell step starts `python -I -S group_leader.py DAEMON_PID GRACE -- ARGV…` in a new
session; this script asks the kernel to signal it when its parent — the daemon — dies
(PR_SET_PDEATHSIG), then runs ARGV as its child in the same process group and exits as
that child does (the same code, or the same signal). If the daemon dies first (kill -9,
outside systemd), the group gets SIGTERM and, after GRACE seconds, SIGKILL: a step's
command never outlives the daemon that would have recorded it, so a workflow found
interrupted cannot have its command still running beside a retry.

It runs as a plain script with the interpreter's isolated flags: it imports nothing of
wfed and only what the standard library starts quickly.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
CANNOT_RUN = "wfed-group-leader: cannot run "
"""The first words on stderr, with exit code 127, when ARGV cannot be started."""
CANNOT_RUN_CODE = 127


class _DaemonGone(Exception):
    pass


def _daemon_gone(_signum: int, _frame: FrameType | None) -> None:
    # The kernel may say so more than once (seen: twice for one daemon's death); a second
    # exception raised while the group is being ended would leave the group running.
    signal.signal(signal.SIGUSR1, _ignore)
    raise _DaemonGone


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    # A handler, not SIG_IGN: an ignored signal would stay ignored in the command.
    return


def _end_group(child: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the whole group, SIGKILL after `grace` (which ends this script too)."""
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.killpg(0, signal.SIGKILL)


def _exit_as(returncode: int) -> None:
    if returncode >= 0:
        sys.exit(returncode)
    if -returncode not in {signal.SIGKILL, signal.SIGSTOP}:  # these take no handler
        signal.signal(-returncode, signal.SIG_DFL)
    os.kill(os.getpid(), -returncode)
    sys.exit(128 - returncode)


def main(args: list[str]) -> None:
    daemon_pid, grace, argv = int(args[0]), float(args[1]), args[3:]
    # The group's SIGTERM from the daemon is meant for the command: this script waits
    # for the command and exits as it does.
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGUSR1, _daemon_gone)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    if os.getppid() != daemon_pid:
        # The daemon died before the request above was made.
        os.killpg(0, signal.SIGKILL)
    try:
        child = subprocess.Popen(argv)  # noqa: S603 - the step's own argv, as before
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename is not None else ""
        sys.stderr.write(f"{CANNOT_RUN}{argv[0]!r}: {exc.strerror or exc}{where}\n")
        sys.exit(CANNOT_RUN_CODE)
    try:
        returncode = child.wait()
    except _DaemonGone:
        _end_group(child, grace)
        return
    _exit_as(returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
