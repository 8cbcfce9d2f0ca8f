"""POSTing a message to a webhook: one try, bounded in time, any failure one line.

httpx is imported with this module, which only the daemon's notifier and
`wfectl notify test` load.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from wfed import __version__
from wfed.config import WebhookConfig

REPLY_QUOTED = 200
"""Characters of a receiver's refusal quoted in the error."""


class WebhookFailed(Exception):
    """A POST did not get a 2xx answer in time; the message says what happened."""


def client() -> httpx.AsyncClient:
    """The HTTP client a notifier keeps (connections reused between messages)."""
    return httpx.AsyncClient(
        headers={"User-Agent": f"wfed/{__version__}"}, follow_redirects=False, trust_env=True
    )


async def post(http: httpx.AsyncClient, hook: WebhookConfig, body: dict[str, Any]) -> int:
    """POST `body` as JSON to `hook`; its status when 2xx, else WebhookFailed. The whole
    exchange is bounded by the hook's timeout, not only each read (a receiver trickling
    its reply byte by byte would outlast the per-read limit)."""
    try:
        async with asyncio.timeout(hook.timeout):
            reply = await http.post(hook.url, json=body, headers=hook.headers, timeout=hook.timeout)
    except TimeoutError:
        raise WebhookFailed(f"no answer within {hook.timeout:g} s") from None
    except httpx.TimeoutException:
        raise WebhookFailed(f"no answer within {hook.timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise WebhookFailed(
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        ) from None
    if not 200 <= reply.status_code < 300:
        said = " ".join(reply.text.split())[:REPLY_QUOTED]
        raise WebhookFailed(f"HTTP {reply.status_code}" + (f": {said}" if said else ""))
    return reply.status_code
