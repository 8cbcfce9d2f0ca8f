"""Test steps: classes and @step functions, async and sync, with typed keyword arguments."""

from __future__ import annotations

import threading
from typing import Any

from wfed.steps.base import Context, Step, step


class Server:
    """A plain class: pydantic cannot validate it, so arguments typed with it go unchecked."""


class _Base(Step):
    """A shared base without a name: not a step itself."""

    retries = 1
    retry_delay = 0.25


class Deploy(_Base):
    """An async class step with every option set and keyword-only arguments."""

    name = "deploy"
    idempotent = True
    retries = 3
    retry_delay = 2.0
    backoff = 2.0
    timeout = 60.0
    description = "deploy an app"

    async def run(self, ctx: Context, *, app: str, servers: list[str], force: bool = False) -> None:
        ctx["deployed"] = {"app": app, "servers": servers, "force": force}
        ctx["thread"] = threading.get_ident()


class Inherit(_Base):
    """Takes its options from its unnamed base class."""

    name = "inherit"

    async def run(self, ctx: Context) -> None:
        ctx["inherit"] = True


class Report(Step):
    """A sync class step with all options left at their defaults."""

    name = "report"

    def run(self, ctx: Context, path: str = "report.txt") -> None:
        ctx["report"] = path
        ctx["thread"] = threading.get_ident()


class Anything(Step):
    """Accepts any argument (**args)."""

    name = "anything"

    async def run(self, ctx: Context, **args: Any) -> None:
        ctx["args"] = args


@step("notify")
async def notify(ctx: Context, message: str, count: int = 1) -> str:
    """Send a message (async function step)."""
    ctx["notified"] = [message] * count
    ctx["thread"] = threading.get_ident()
    return f"{message} x{count}"


@step("record", idempotent=True, retries=2, retry_delay=0.5, backoff=3.0, timeout=9.0)
def record(ctx: Context, key: str, value: Any = None) -> str:
    """Record a value in the context.

    Only the first line of this docstring is the step's description.
    """
    ctx[key] = value
    ctx["thread"] = threading.get_ident()
    return key


@step("no_args")
def no_args(ctx: Context) -> None:
    """Take no arguments."""
    ctx["no_args"] = True


@step("ping")
def ping(ctx: Context, server: Server) -> None:
    """Take an argument whose type pydantic cannot check."""
    ctx["pinged"] = str(server)
