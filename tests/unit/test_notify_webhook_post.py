"""One POST to a webhook (`wfed.engine.webhook.post`), through httpx's mock transport: a
2xx is success, anything else one line saying what the receiver or the network did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from wfed.config import WebhookConfig
from wfed.engine.webhook import WebhookFailed, post

Handler = Callable[[httpx.Request], httpx.Response]


def hook(**options: object) -> WebhookConfig:
    return WebhookConfig.model_validate(
        {"name": "oncall", "url": "https://hooks.example/x", **options}
    )


async def send(handler: Handler, webhook: WebhookConfig | None = None) -> int:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await post(http, webhook or hook(), {"text": "hello"})


async def test_a_2xx_is_success_and_the_body_is_json_with_the_headers() -> None:
    """The body goes as JSON, with the configured headers; a 204 is success."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    status = await send(handler, hook(headers={"Authorization": "Bearer t"}))
    assert status == 204
    [request] = seen
    assert request.method == "POST"
    assert json.loads(request.content) == {"text": "hello"}
    assert request.headers["Authorization"] == "Bearer t"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(500, text="upstream\n  down"), "HTTP 500: upstream down"),
        (httpx.Response(404), "HTTP 404"),
        (httpx.Response(302, headers={"Location": "https://elsewhere/"}), "HTTP 302"),
        (httpx.Response(429, text="x" * 500), "HTTP 429: " + "x" * 200),
    ],
)
async def test_any_other_status_fails_quoting_the_reply(
    response: httpx.Response, message: str
) -> None:
    """A non-2xx answer fails, quoting at most 200 characters of the reply on one line;
    a redirect is not followed."""
    with pytest.raises(WebhookFailed) as failed:
        await send(lambda _: response)
    assert str(failed.value) == message


async def test_a_network_error_fails_naming_it() -> None:
    """A refused connection fails with the error's name and words."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(WebhookFailed, match=r"^ConnectError: connection refused$"):
        await send(handler)


async def test_a_read_timeout_fails_saying_so() -> None:
    """httpx's own timeout is reported as the webhook's timeout."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(WebhookFailed, match=r"^no answer within 2.5 s$"):
        await send(handler, hook(timeout=2.5))


async def test_the_whole_exchange_is_bounded_by_the_timeout() -> None:
    """A receiver that never finishes its answer is cut at the timeout, whatever httpx's
    per-read limit would allow."""
    release = asyncio.Event()

    class Stalling(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await release.wait()
            return httpx.Response(200)

    try:
        async with httpx.AsyncClient(transport=Stalling()) as http:
            with pytest.raises(WebhookFailed, match=r"^no answer within 0.05 s$"):
                await post(http, hook(timeout=0.05), {"text": "hello"})
    finally:
        release.set()
