"""The systemd integration: the unit and both hardening drop-ins verify, they agree with
the documented install steps, and the daemon speaks sd_notify."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory

from wfed.config import DaemonConfig
from wfed.steps.shell import Shell

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "wfed.service"
HARDENING = REPO / "systemd" / "wfed.service.d" / "hardening.conf"
HARDENING_SUDO = REPO / "systemd" / "wfed.service.d-sudo" / "hardening.conf"
VARIANTS = {"no-privilege": HARDENING, "sudo": HARDENING_SUDO}
INSTALLED_DROP_IN = "/etc/systemd/system/wfed.service.d/hardening.conf"
README = REPO / "README.md"
OPERATIONS = REPO / "docs" / "operations.md"

# The settings after which systemd turns no_new_privs on by itself for a service whose
# User= is not root (systemd.exec(5), NoNewPrivileges=): with any of them, sudo and every
# other setuid program fail in the commands that steps run.
SETS_NO_NEW_PRIVS = (
    "NoNewPrivileges",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectClock",
    "ProtectHostname",
    "RestrictSUIDSGID",
    "RestrictRealtime",
    "RestrictNamespaces",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallLog",
    "RestrictAddressFamilies",
    "DynamicUser",
)


def _assignments(*texts: str) -> dict[str, list[str]]:
    """Every assignment of each key, in order, as systemd reads the unit and its drop-ins
    one after the other (comments and section headers skipped)."""
    found: dict[str, list[str]] = {}
    for text in texts:
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";", "[")):
                continue
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _in_effect(assignments: dict[str, list[str]], key: str) -> str:
    """The setting's last assignment ("" when none, or when it was reset by an empty one)."""
    values = assignments.get(key, [])
    return values[-1] if values else ""


def _systemd_analyze() -> str:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    return analyze


def _verify(analyze: str, directory: Path, drop_in: str) -> list[str]:
    """Lay the unit and `drop_in` out in `directory` as they are installed, run `verify`,
    and return the lines it printed about them."""
    wfed = Path(sys.executable).parent / "wfed"
    unit = UNIT.read_text().replace("/opt/wfed/.venv/bin/wfed", str(wfed))
    assert str(wfed) in unit
    (directory / "wfed.service").write_text(unit)
    (directory / "wfed.service.d").mkdir()
    (directory / "wfed.service.d" / "hardening.conf").write_text(drop_in)
    # verify also reads the drop-in directory beside a unit file given by its path.
    result = subprocess.run(
        [analyze, "verify", str(directory / "wfed.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # The build machine has no `wfed` user; the unit rightly names one.
        if line.strip() and "wfed" in line and "User" not in line
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_unit_with_each_hardening_drop_in_passes_systemd_analyze_verify(
    tmp_path: Path, variant: str
) -> None:
    """`systemd-analyze verify` accepts wfed.service with each hardening drop-in, laid
    out as installed: hardening.conf in wfed.service.d/ beside the unit."""
    analyze = _systemd_analyze()
    assert _verify(analyze, tmp_path, VARIANTS[variant].read_text()) == []


def test_verify_reports_a_bad_drop_in(tmp_path: Path) -> None:
    """The verify test above would see a broken drop-in: verify reads it from beside the
    unit and names its bad lines."""
    analyze = _systemd_analyze()
    broken = HARDENING.read_text() + "NoNewPrivileges=perhaps\nProtectEverything=yes\n"
    problems = _verify(analyze, tmp_path, broken)
    assert any("NoNewPrivileges" in line or "perhaps" in line for line in problems), problems
    assert any("ProtectEverything" in line for line in problems), problems


def test_unit_settings_the_daemon_relies_on() -> None:
    """Type=notify with a watchdog, the wfed user and state directory, an optional
    environment file, and a stop timeout above a graceful stop's longest wait."""
    unit = _assignments(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert _in_effect(unit, "WatchdogSec")
    assert unit["StateDirectory"] == ["wfed"]
    assert unit["User"] == ["wfed"]
    assert unit["KillMode"] == ["mixed"]
    # "-": a missing file is no error.
    assert unit["EnvironmentFile"] == ["-/etc/wfed/environment"]
    shutdown_grace = DaemonConfig().shutdown_grace
    kill_grace = inspect.signature(Shell.run).parameters["kill_grace"].default
    stop_timeout = int(_in_effect(unit, "TimeoutStopSec"))
    assert stop_timeout > shutdown_grace + kill_grace, (
        "TimeoutStopSec must exceed the default shutdown_grace plus a shell step's kill_grace"
    )


def test_the_default_drop_in_keeps_steps_from_gaining_privileges() -> None:
    """The default drop-in is for steps that need no privilege: no_new_privs, no
    capabilities, a system-call filter and W^X memory."""
    settings = _assignments(UNIT.read_text(), HARDENING.read_text())
    assert _in_effect(settings, "NoNewPrivileges") == "yes"
    assert settings["CapabilityBoundingSet"] == [""]
    assert _in_effect(settings, "MemoryDenyWriteExecute") == "yes"
    assert _in_effect(settings, "SystemCallFilter") == "@system-service"
    assert _in_effect(settings, "ProtectSystem") == "strict"
    assert _in_effect(settings, "ProtectHome") == "yes"


def test_the_sudo_drop_in_sets_nothing_that_turns_no_new_privs_on() -> None:
    """With the sudo drop-in, no setting that makes systemd set no_new_privs for a
    non-root User= is in effect, and the bounding set is whole: sudo can work."""
    unit = _assignments(UNIT.read_text())
    assert _in_effect(unit, "User") not in {"", "root", "0"}, "the rule only bites a non-root User="
    settings = _assignments(UNIT.read_text(), HARDENING_SUDO.read_text())
    in_effect = {key: _in_effect(settings, key) for key in SETS_NO_NEW_PRIVS}
    assert {key: value for key, value in in_effect.items() if value not in {"", "no"}} == {}
    assert _in_effect(settings, "NoNewPrivileges") == "no"
    assert _in_effect(settings, "CapabilityBoundingSet") == "~"


def test_the_sudo_drop_in_relaxes_only_what_sudo_needs() -> None:
    """Every other setting of the default drop-in stays as it is in the sudo variant
    (the file-system view above all), and the sudo variant adds nothing else."""
    default = _assignments(HARDENING.read_text())
    sudo = _assignments(HARDENING_SUDO.read_text())
    relaxed = {*SETS_NO_NEW_PRIVS, "CapabilityBoundingSet"}
    kept = {key: values for key, values in default.items() if key not in relaxed}
    assert {"ProtectSystem", "ProtectHome", "PrivateTmp"} <= kept.keys()
    assert {key: sudo.get(key) for key in kept} == kept
    assert set(sudo) - relaxed == set(kept)


def test_both_drop_ins_install_under_one_name_so_only_one_is_used() -> None:
    """Both variants are named hardening.conf and are installed to the same place: the
    README installs the default, and the sudo variant says to put it there instead."""
    assert HARDENING.name == HARDENING_SUDO.name == "hardening.conf"
    install = " ".join(_install_commands())
    assert f"systemd/wfed.service.d/hardening.conf {INSTALLED_DROP_IN}" in install
    sudo_comment = " ".join(
        line.lstrip("# ").rstrip(" \\") for line in HARDENING_SUDO.read_text().splitlines()
    )
    assert f"systemd/wfed.service.d-sudo/hardening.conf {INSTALLED_DROP_IN}" in sudo_comment
    assert "systemd/wfed.service.d-sudo/hardening.conf" in README.read_text()


def _install_commands() -> list[str]:
    """The shell lines of README.md's "Running under systemd" block, continuations
    joined."""
    section = README.read_text().split("## Running under systemd", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    commands = [" ".join(line.split("#", 1)[0].split()) for line in lines]
    return [command for command in commands if command]


def _installed_files() -> set[str]:
    """The files the README's `install -t DIR SOURCE…` lines create, each source checked
    to exist in the repository (they run in the checkout)."""
    created: set[str] = set()
    for line in _install_commands():
        words = line.split()
        if not words or words[0] != "install" or "-t" not in words:
            continue
        target = words[words.index("-t") + 1]
        options_with_value = {"-t", "-m", "-g", "-o"}
        sources: list[str] = []
        skip = False
        for word in words[1:]:
            if skip:
                skip = False
            elif word in options_with_value:
                skip = True
            elif not word.startswith("-"):
                sources.append(word)
        for pattern in sources:
            matched = sorted(REPO.glob(pattern))
            assert matched, f"{pattern!r} of {line!r} is not in the repository"
            created.update(f"{target}/{path.name}" for path in matched)
    return created


def test_documentation_points_at_files_the_install_steps_create() -> None:
    """Every file:// URL of the unit's Documentation= is a file that the README's install
    steps put in place."""
    urls = " ".join(_assignments(UNIT.read_text())["Documentation"]).split()
    assert urls, "the unit names its documentation"
    paths = [url.removeprefix("file://") for url in urls if url.startswith("file://")]
    assert paths == [url.removeprefix("file://") for url in urls], "only local files"
    assert set(paths) <= _installed_files()


SUDOERS_RULE = re.compile(r"^#?\s*(wfed ALL=.*)$", re.MULTILINE)


def test_sudoers_rule_is_the_same_in_the_drop_in_and_the_guide() -> None:
    """The sudoers example of the sudo drop-in is the guide's, limited to fixed commands
    with their arguments (no ALL, no wildcard)."""
    in_drop_in = SUDOERS_RULE.findall(HARDENING_SUDO.read_text())
    in_guide = SUDOERS_RULE.findall(OPERATIONS.read_text())
    assert len(in_drop_in) == 1
    assert in_guide == in_drop_in
    commands = in_drop_in[0].split("NOPASSWD:", 1)[1].split(",")
    for command in commands:
        words = command.split()
        assert words[0].startswith("/"), command
        assert len(words) > 1, command
        assert "ALL" not in words, command
        assert not any("*" in word for word in words), command


def test_sudoers_rule_parses(tmp_path: Path) -> None:
    """`visudo -c` accepts the sudoers example."""
    visudo = shutil.which("visudo")
    if visudo is None:
        pytest.skip("visudo is not installed (Debian package sudo)")
    rule = tmp_path / "wfed"
    rule.write_text(SUDOERS_RULE.findall(HARDENING_SUDO.read_text())[0] + "\n")
    result = subprocess.run([visudo, "-cf", str(rule)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


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
