"""The configuration of wfed and wfectl: `config.toml`, `WFED_CONFIG` and `WFED_DATABASE_URL`.

Every key has a default, so no file at all is a valid configuration (SQLite `wfed.db` in
the working directory). An unknown key or a value of the wrong type is a `ConfigError`
naming the section and key, never a traceback.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from wfed.durations import parse_duration
from wfed.errors import ConfigError
from wfed.windows import QueueWindows, WindowSpecError, parse_windows

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///wfed.db"
CONFIG_ENV = "WFED_CONFIG"
DATABASE_URL_ENV = "WFED_DATABASE_URL"
LEASE_MAX = 86400.0
"""The longest lease, in seconds (a day). A lease is renewed every control_interval: a
longer one would only delay the recovery of a dead daemon's work, and its bound lets a
lease that ends far beyond it be told apart as not wfed's doing."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _empty() -> list[Any]:
    """The default factory of an empty list.

    Not `list` itself: pydantic reads the signature of each default factory, and the
    builtin's is parsed from its text with the tokenizer's regular expressions, which
    are compiled for it (3 ms of every wfectl command).
    """
    return []


class DatabaseConfig(_Section):
    url: str = DEFAULT_DATABASE_URL
    password_file: str = ""


class DaemonConfig(_Section):
    id: str = ""
    queues: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    max_workflows: int = Field(default=32, ge=1, le=10_000)
    poll_interval: float = Field(default=1.0, gt=0)
    control_interval: float = Field(default=1.0, gt=0)
    lease: float = Field(default=30.0, gt=0, le=LEASE_MAX)
    shutdown_grace: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> DaemonConfig:
        # The heartbeat renews leases every control_interval; a lease shorter than two
        # heartbeats would expire between renewals of a healthy daemon.
        if self.lease < 2 * self.control_interval:
            raise ValueError(
                f"lease ({self.lease:g} s) must be at least twice control_interval "
                f"({self.control_interval:g} s)"
            )
        return self

    @field_validator("poll_interval", "control_interval", "lease", "shutdown_grace", mode="before")
    @classmethod
    def _int_is_a_float(cls, value: Any) -> Any:
        # TOML distinguishes 1 from 1.0; an operator writing `lease = 30` means 30 seconds.
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


class StepsConfig(_Section):
    modules: list[str] = Field(default_factory=lambda: ["wfed.examples"])
    paths: list[str] = Field(default_factory=_empty)
    """Directories put first on the import path before `modules` are imported; relative
    ones are taken from the config file's directory."""


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console", "auto"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _level_any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class MetricsConfig(_Section):
    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        if value:
            listen_port(value)
        return value


def listen_port(listen: str) -> int:
    """The port of a `HOST:PORT` listen address (0: any free port); ValueError if it has
    none from 0 to 65535."""
    _, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT with a port from 0 to 65535")
    return int(port)


PurgeableState = Literal["completed", "stopped"]
_PURGEABLE_DEFAULT: tuple[PurgeableState, ...] = ("completed", "stopped")


class RetentionConfig(_Section):
    purge_after: str = ""
    """Delete completed/stopped workflows that finished longer ago (e.g. "30d"); "" = off."""
    states: list[PurgeableState] = Field(
        default_factory=lambda: list(_PURGEABLE_DEFAULT), min_length=1
    )
    purge_events: bool = False
    interval: float = Field(default=3600.0, gt=0)

    @field_validator("purge_after")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        if value:
            parse_duration(value)
        return value

    @field_validator("interval", mode="before")
    @classmethod
    def _int_is_a_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def purge_age(self) -> timedelta | None:
        return parse_duration(self.purge_after) if self.purge_after else None


DEFAULT_OUTPUT_MAX_BYTES = 1024 * 1024


class OutputConfig(_Section):
    max_bytes: int = Field(default=DEFAULT_OUTPUT_MAX_BYTES, ge=0, le=1024**3)
    """Live output (stdout and stderr, line by line) kept per step attempt, in bytes; the
    output is cut there with a marker line. 0 records none."""


# --- Fleet coordination: each feature owns its section class below -----------------------


class LocksConfig(_Section):
    """[locks]: concurrency keys."""

    limits: dict[str, int] = Field(default_factory=dict)
    """Slots per key, by exact key or key prefix (e.g. "pool:web" = 2); default 1."""
    lookahead: int = Field(default=256, ge=0, le=10_000)
    """Pending workflows waiting for a full key that one claim looks past to find
    runnable work behind them (in priority order)."""

    @field_validator("limits")
    @classmethod
    def _limits_in_range(cls, value: dict[str, int]) -> dict[str, int]:
        for key, limit in value.items():
            if not 1 <= limit <= LOCK_LIMIT_MAX:
                raise ValueError(f"{key!r}: a limit must be 1 to {LOCK_LIMIT_MAX}, not {limit}")
        return value

    def limit_of(self, key: str) -> int:
        """The slots of `key`: its exact entry, else its longest matching prefix, else 1
        (keys are case-insensitive: compared in lower case)."""
        key = key.lower()
        matching = [prefix for prefix in self.limits if key.startswith(prefix.lower())]
        exact = [prefix for prefix in matching if prefix.lower() == key]
        if exact:
            return self.limits[exact[0]]
        return self.limits[max(matching, key=len)] if matching else 1


LOCK_LIMIT_MAX = 1000


class SchedulesConfig(_Section):
    """[schedules]: cron schedules fired by the daemons."""

    catchup: Literal["once", "skip"] = "once"
    """A tick missed while no daemon ran: fired once at start-up, or skipped."""
    grace: float = Field(default=60.0, gt=0, le=86_400)
    """Seconds after its time a tick still fires as on time; an older one was missed
    (and `catchup` decides)."""

    @field_validator("grace", mode="before")
    @classmethod
    def _int_is_a_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class WindowsConfig(_Section):
    """[windows]: maintenance windows per queue."""

    queues: dict[str, list[str]] = Field(default_factory=dict)
    """Queue name -> windows such as "sat 02:00-05:00 Europe/Paris"."""

    @field_validator("queues")
    @classmethod
    def _readable_windows(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for queue, specs in value.items():
            try:
                parse_windows(specs)
            except WindowSpecError as exc:
                # Raised as is rather than as a ValueError, whose message pydantic's
                # report would lower-case (a zone is Europe/Paris, not europe/paris).
                raise ConfigError(f"[windows] queues.{queue}: {exc}") from None
        return value

    def by_queue(self) -> QueueWindows:
        """The windows of each queue, parsed (they were checked when loaded)."""
        return QueueWindows.parse(self.queues)


NotifyEventName = Literal["error", "paused", "gate", "stopped", "completed", "interrupted"]
"""What a webhook may ask for (docs/notifications.md maps each to the event kinds)."""
_HALTS: tuple[NotifyEventName, ...] = ("error", "paused", "stopped", "interrupted")


class WebhookConfig(_Section):
    """One `[[notify.webhooks]]` entry: where to POST, and for which events."""

    name: str = Field(min_length=1, max_length=255)
    """Names the webhook in deliveries, logs, metrics and `wfectl notify test NAME`."""
    url: str
    events: list[NotifyEventName] = Field(default_factory=lambda: list(_HALTS), min_length=1)
    queues: list[str] = Field(default_factory=_empty)
    """Only workflows of these queues; empty: every queue."""
    format: Literal["json", "slack"] = "json"
    """"json": the whole event as a JSON object; "slack": {"text": "<one line>"}."""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds one POST may take, all told."""
    retries: int = Field(default=3, ge=0, le=100)
    """POSTs tried again after the first failed, before the delivery is `failed`."""
    backoff: float = Field(default=5.0, ge=0)
    """Seconds before the first retry, doubled for each next one, up to `backoff_max`."""
    backoff_max: float = Field(default=300.0, ge=0)

    @field_validator("timeout", "backoff", "backoff_max", mode="before")
    @classmethod
    def _int_is_a_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme.lower() not in {"http", "https"} or not rest.split("/", 1)[0]:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class NotifyConfig(_Section):
    """[notify]: webhooks for chosen events."""

    webhooks: list[WebhookConfig] = Field(default_factory=_empty)
    poll_interval: float = Field(default=2.0, gt=0)
    """How often a daemon looks for events it was not told of (other daemons' and
    wfectl's transitions) and for deliveries due again."""
    max_age: str = "1h"
    """Events older than this are never notified (a notifier back after a long absence
    does not flood the channel); e.g. "30m", "1d"."""

    @field_validator("poll_interval", mode="before")
    @classmethod
    def _int_is_a_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("max_age")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("webhooks")
    @classmethod
    def _names_unique(cls, value: list[WebhookConfig]) -> list[WebhookConfig]:
        names = [hook.name for hook in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"webhook names must be unique: {', '.join(twice)} given twice")
        return value

    keep: str = "7d"
    """Deliveries sent or failed are deleted this long after they were recorded."""

    @field_validator("keep")
    @classmethod
    def _kept_a_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    def webhook(self, name: str) -> WebhookConfig | None:
        """The webhook called `name`, if configured."""
        return next((hook for hook in self.webhooks if hook.name == name), None)

    def oldest(self) -> timedelta:
        return parse_duration(self.max_age)

    def kept(self) -> timedelta:
        return parse_duration(self.keep)


class Config(_Section):
    """The whole configuration; sections and keys as in config.toml."""

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    steps: StepsConfig = Field(default_factory=StepsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    locks: LocksConfig = Field(default_factory=LocksConfig)
    schedules: SchedulesConfig = Field(default_factory=SchedulesConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    def database_password(self) -> str | None:
        """The password from `password_file` (trailing newline stripped), if one is set."""
        if not self.database.password_file:
            return None
        path = Path(self.database.password_file)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"[database] password_file: cannot read {path}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"[database] password_file: {path} is not UTF-8 text") from None


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    if len(location) >= 2:
        where = f"[{location[0]}] {'.'.join(location[1:])}"
    else:
        where = f"[{location[0]}]" if location else "(top level)"
    if first["type"] == "extra_forbidden":
        what = "unknown key"
    elif first["type"] in {"model_type", "model_attributes_type"}:
        what = "must be a table (section)"
    else:
        what = first["msg"].lower()
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{source}: {where}: {what}{more}"


def parse_config(data: dict[str, Any], source: str = "configuration") -> Config:
    """Validate a configuration mapping; raise ConfigError naming the first bad key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration from `path`, else `$WFED_CONFIG`, else the built-in defaults.

    `$WFED_DATABASE_URL`, when set, overrides `[database] url`.
    """
    chosen = path if path is not None else os.environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    source = "defaults"
    if chosen is not None:
        source = str(chosen)
        try:
            with open(chosen, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {source} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:  # tomllib decodes before parsing
            raise ConfigError(
                f"{source}: not valid TOML: not UTF-8 text (byte {exc.start})"
            ) from None
    config = parse_config(data, source)
    if chosen is not None and config.steps.paths:
        base = os.path.dirname(os.path.abspath(chosen))
        paths = [os.path.join(base, os.path.expanduser(p)) for p in config.steps.paths]
        config = config.model_copy(
            update={"steps": config.steps.model_copy(update={"paths": paths})}
        )
    override = os.environ.get(DATABASE_URL_ENV)
    if override:
        config = config.model_copy(
            update={"database": config.database.model_copy(update={"url": override})}
        )
    return config
