"""structlog, configured once: JSON lines by default, a console renderer on a TTY.

Every line carries the workflow, step and attempt it concerns (bound through contextvars
by the runner). Standard-library loggers (SQLAlchemy, asyncmy, Alembic) go through the
same renderer, so journald sees one format.

wfed's own loggers come from `get_logger`: used as a library (`wfed.Engine` in a script)
by a process that never configured structlog, wfed says only warnings and errors, on
stderr; once anyone configures structlog — `configure_logging` in `wfed` and `wfectl`, or
the library's user — its lines follow that configuration.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

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
        else structlog.processors.JSONRenderer()
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


_QUIET = structlog.wrap_logger(
    structlog.PrintLogger(sys.stderr),
    wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    processors=[
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
    ],
)


class _QuietUnlessConfigured(structlog._config.BoundLoggerLazyProxy):
    """A lazy logger that follows structlog's configuration once there is one, and is
    quiet (warnings and up, on stderr) before that."""

    def bind(self, **new_values: Any) -> Any:
        if structlog.is_configured():
            return super().bind(**new_values)
        return _QUIET.bind(**self._initial_values, **new_values)


def get_logger(name: str) -> Any:
    """The logger of a wfed module (see the module docstring)."""
    return _QuietUnlessConfigured(None, logger_factory_args=(name,))
