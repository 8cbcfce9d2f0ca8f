"""The `http` step: one HTTP request, and the status it must answer with.

A status outside `expect` fails the step with the status and the start of the body. With
`save_as`, the status, a few headers and the body (parsed when it is JSON) go into the
context. Only the first `MAX_BODY` bytes of a body are read.

Re-running after an interruption: a GET (or HEAD, OPTIONS) is idempotent, any other method
is not, unless the definition element says `"idempotent": true`.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from wfed.steps.base import Context, Step

MAX_BODY = 64 * 1024
"""Bytes of a response body that are read (and kept with `save_as`)."""
SNIPPET_CHARS = 300
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAVED_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "retry-after",
)
"""The response headers kept with `save_as` (never cookies or other credentials)."""


class UnexpectedStatus(Exception):
    """The response's status is not one of `expect`."""


class RequestFailed(Exception):
    """No response: unreachable, refused, TLS, timeout…"""


def shown_url(url: str) -> str:
    """The URL for messages: without credentials or query (either may hold a secret)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return repr(url[:80])
    port = f":{parsed.port}" if parsed.port else ""
    query = "?…" if parsed.query else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}{query}"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether there was more."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False


def _body(raw: bytes, truncated: bool, response: httpx.Response) -> Any:
    text = raw.decode(response.charset_encoding or "utf-8", errors="replace")
    if not truncated and _is_json(response.headers.get("content-type", "")):
        try:
            return jsonlib.loads(text)
        except ValueError:
            pass  # mislabelled: keep it as text
    if truncated:
        text += f"\n[… body truncated: only its first {len(raw)} bytes were read …]"
    return text


def _snippet(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"


class Http(Step):
    """Send an HTTP request; fail unless the status is one of `expect`."""

    name: ClassVar[str] = "http"
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = "HTTP request with an expected status (GET is idempotent)"

    @classmethod
    def is_idempotent(cls, args: dict[str, Any]) -> bool:
        # A method that is a context reference is not known yet: not idempotent.
        method = args.get("method", "GET")
        return isinstance(method, str) and method.upper() in SAFE_METHODS

    @classmethod
    def check_arguments(cls, args: dict[str, Any]) -> None:
        if args.get("json") is not None and args.get("body") is not None:
            raise ValueError('give "json" or "body", not both')
        url = args.get("url")
        if (
            isinstance(url, str)
            and not url.startswith("{")  # a context reference: checked once rendered
            and not url.lower().startswith(("http://", "https://"))
        ):
            raise ValueError(f"url {url[:80]!r} must start with http:// or https://")
        timeout = args.get("timeout")
        if isinstance(timeout, int | float) and timeout <= 0:
            raise ValueError(f"argument 'timeout' must be more than 0, got {timeout}")
        if args.get("expect") == []:
            raise ValueError("argument 'expect' is empty: list the statuses that mean OK")

    async def run(  # type: ignore[override]
        self,
        ctx: Context,
        url: str,
        method: str = "GET",
        json: Any = None,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - the step's documented argument
        expect: Sequence[int] = (200, 201, 202, 204),
        save_as: str | None = None,
        verify: bool = True,
    ) -> None:
        self.check_arguments({"url": url, "json": json, "body": body, "timeout": timeout})
        method = method.upper()
        where = f"{method} {shown_url(url)}"
        try:
            # httpx's timeout bounds each phase (connect, each read…); this bounds the whole.
            async with (
                asyncio.timeout(timeout),
                httpx.AsyncClient(verify=verify, timeout=timeout) as client,
                client.stream(method, url, json=json, content=body, headers=headers) as response,
            ):
                raw, truncated = await _read_capped(response, MAX_BODY)
        except (TimeoutError, httpx.TimeoutException):
            raise RequestFailed(f"{where}: no complete response within {timeout:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise RequestFailed(f"{where}: {type(exc).__name__}: {exc}") from None
        if response.status_code not in expect:
            snippet = _snippet(raw)
            expected = ", ".join(map(str, expect))
            raise UnexpectedStatus(
                f"HTTP {response.status_code} from {where} (expected {expected})"
                + (f": {snippet}" if snippet else "")
            )
        if save_as:
            ctx[save_as] = {
                "status": response.status_code,
                "headers": {
                    name: response.headers[name]
                    for name in SAVED_HEADERS
                    if name in response.headers
                },
                "body": _body(raw, truncated, response),
            }
