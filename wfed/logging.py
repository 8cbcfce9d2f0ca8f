"""structlog, configured once: JSON lines by default, a console renderer on a TTY.

Every line carries the workflow, step and attempt it concerns (bound through contextvars
by the runner). Standard-library loggers (SQLAlchemy, asyncmy, Alembic) go through the
same renderer, so journald sees one format.

wfed's own loggers come from `get_logger`: used as a library (`wfed.Engine` in a script)
by a process that never configured structlog, wfed says only warnings and errors, on
stderr; once anyone configures structlog — `configure_logging` in `wfed` and `wfectl`, or
the library's user — its lines follow that configuration.

structlog is imported by the first line worth writing, not with this module: until then
nobody can have configured it, so a debug or info line goes nowhere without it. A
`wfectl` command that logs nothing above info never imports it.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    import structlog

Format = Literal["json", "console", "auto"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    level: str = "info", fmt: Format = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's logging for this process."""
    import structlog  # noqa: PLC0415 - see the module docstring

    stream = stream or sys.stderr
    numeric = _LEVELS.get(level, logging.INFO)
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if console
        else structlog.processors.JSONRenderer(serializer=_json_line)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    # The MySQL driver logs every server warning (e.g. notes about DDL) at WARNING.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _json_default(value: Any) -> Any:
    """What a JSON line shows of a value JSON has no form for: its own `__structlog__`
    rendering where it has one, else its repr."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


# One encoder for every line: `json.dumps` with a `default` builds a new encoder per
# call, which a daemon writing a line per step pays thousands of times a second.
_ENCODER = json.JSONEncoder(default=_json_default)


def _json_line(event_dict: Any, **_: Any) -> str:
    return _ENCODER.encode(event_dict)


@functools.cache
def _quiet() -> Any:
    """wfed's logger before anyone configured structlog: warnings and up, on stderr."""
    import structlog  # noqa: PLC0415 - see the module docstring

    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
    )


# Below a warning: what an unconfigured process drops.
_QUIET_METHODS = frozenset({"debug", "info", "msg", "adebug", "ainfo", "amsg"})


def _dropped(*_: Any, **__: Any) -> None:
    return None


class _LazyLogger:
    """A logger that follows structlog's configuration once there is one, and is quiet
    (warnings and up, on stderr) before that; structlog is imported by its first line
    that is not dropped.

    The logger it resolves to is kept until structlog's configuration changes: a runner
    logs a line or two per step, and building a bound logger for each cost more than
    writing the line."""

    __slots__ = ("_name", "_resolved", "_resolved_for", "_values")

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self._name = name
        self._values = values
        self._resolved: Any = None
        self._resolved_for: tuple[Any, ...] = ()

    def bind(self, **new_values: Any) -> _LazyLogger:
        return _LazyLogger(self._name, {**self._values, **new_values})

    def new(self, **new_values: Any) -> _LazyLogger:
        return _LazyLogger(self._name, dict(new_values))

    def unbind(self, *keys: str) -> _LazyLogger:
        return _LazyLogger(self._name, {k: v for k, v in self._values.items() if k not in keys})

    def __getattr__(self, method: str) -> Any:
        if method in _QUIET_METHODS and "structlog" not in sys.modules:
            return _dropped  # nobody configured structlog: nobody imported it
        return getattr(self._logger(), method)

    def _logger(self) -> Any:
        import structlog  # noqa: PLC0415 - see the module docstring

        # What a bound logger is built from. `capture_logs` and the like change the
        # processors in place, which a kept logger sees (it holds the same list).
        configuration = (structlog.is_configured(), *structlog.get_config().values())
        if self._resolved is None or configuration != self._resolved_for:
            if configuration[0]:
                self._resolved = structlog.get_logger(self._name).bind(**self._values)
            else:
                self._resolved = _quiet().bind(**self._values)
            self._resolved_for = configuration
        return self._resolved


def get_logger(name: str) -> Any:
    """The logger of a wfed module (see the module docstring)."""
    return _LazyLogger(name, {})
