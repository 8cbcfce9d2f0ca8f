"""The `http` step (docs/steps.md) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from wfed import Engine, InvalidDefinition, StepError
from wfed.states import WorkflowState
from wfed.steps.definition import check_args, parse_definition
from wfed.steps.http import Http, RequestFailed, UnexpectedStatus
from wfed.steps.registry import StepRegistry
from wfed.steps.template import render

if TYPE_CHECKING:  # the fixtures' types (tests/steps/conftest.py)
    from conftest import CreateFn


async def http(ctx: dict[str, Any] | None = None, **args: Any) -> dict[str, Any]:
    """Run an http step the way the runner does: render, check, invoke; return the ctx."""
    ctx = {} if ctx is None else ctx
    checked = check_args(Http, render(args, ctx), "test", rendered=True)
    await Http().invoke(ctx, checked)
    return ctx


async def test_get_saves_status_headers_and_parsed_json(http_base: str) -> None:
    """A GET with the default expect saves status, a few headers and the parsed JSON body."""
    ctx = await http(url=f"{http_base}/json?x=1", save_as="resp")
    resp = ctx["resp"]
    assert resp["status"] == 200
    assert resp["body"] == {"name": "intweb1", "ports": [80, 443], "query": "/json?x=1"}
    assert resp["headers"]["content-type"] == "application/json"
    assert resp["headers"]["etag"] == '"v1"'
    assert "date" not in resp["headers"]


async def test_text_body_is_saved_as_text(http_base: str) -> None:
    """A non-JSON body is saved as text, decoded with its charset."""
    ctx = await http(url=f"{http_base}/text", save_as="resp")
    assert ctx["resp"]["body"] == "plain text ✓"


async def test_large_body_is_capped(http_base: str) -> None:
    """Only the first 64 KiB of a body are read; a cut JSON body is kept as marked text."""
    ctx = await http(url=f"{http_base}/big", save_as="resp")
    body = ctx["resp"]["body"]
    assert body.startswith("x" * 1000)
    assert body.endswith("[… body truncated: only its first 65536 bytes were read …]")


async def test_post_json_with_headers(http_base: str) -> None:
    """POST sends `json` as a JSON body, with the given headers; 201 is expected."""
    ctx = await http(
        url=f"{http_base}/echo",
        method="post",
        json={"servers": ["a", "b"]},
        headers={"X-Token": "s3cret"},
        save_as="resp",
    )
    assert ctx["resp"]["status"] == 201
    assert ctx["resp"]["headers"]["location"] == "/echo/1"
    echoed = ctx["resp"]["body"]
    assert echoed["method"] == "POST"
    assert echoed["content_type"] == "application/json"
    assert echoed["x_token"] == "s3cret"
    assert echoed["body"].replace(" ", "") == '{"servers":["a","b"]}'


async def test_put_raw_body(http_base: str) -> None:
    """`body` is sent as is."""
    ctx = await http(url=f"{http_base}/echo", method="PUT", body="raw text", save_as="resp")
    assert ctx["resp"]["body"]["body"] == "raw text"


async def test_unexpected_status_names_status_and_body(http_base: str) -> None:
    """A status outside `expect` fails with the status, the request and a body snippet."""
    with pytest.raises(UnexpectedStatus) as failed:
        await http(url=f"{http_base}/status/503?token=hidden")
    message = str(failed.value)
    assert message.startswith("HTTP 503 from GET http://127.0.0.1:")
    assert "/status/503?…" in message
    assert "expected 200, 201, 202, 204" in message
    assert "the backend is on fire" in message
    assert "hidden" not in message


async def test_expect_accepts_other_statuses(http_base: str) -> None:
    """`expect` lists the statuses that complete the step, e.g. a 404 that means "gone"."""
    ctx = await http(url=f"{http_base}/status/404", expect=[404], save_as="resp")
    assert ctx["resp"]["status"] == 404
    with pytest.raises(UnexpectedStatus, match=r"HTTP 200 .*expected 404"):
        await http(url=f"{http_base}/json", expect=[404])


async def test_timeout_is_an_error(http_base: str) -> None:
    """A response slower than `timeout` fails the step, instead of arriving late."""
    with pytest.raises(RequestFailed, match=r"GET .*/slow: no complete response within 0\.3 s"):
        await http(url=f"{http_base}/slow", timeout=0.3)


async def test_unreachable_server_is_an_error(http_base: str) -> None:
    """A refused connection fails the step naming the request."""
    with pytest.raises(RequestFailed, match=r"GET http://127\.0\.0\.1:1/x: ConnectError"):
        await http(url="http://127.0.0.1:1/x", timeout=5)


async def test_templated_url_and_json(http_base: str) -> None:
    """Context references work in url, headers and json ("{servers}" keeps its list)."""
    ctx: dict[str, Any] = {
        "api": {"base": http_base, "token": "t0k"},
        "servers": ["intweb1", "intweb2"],
    }
    await http(
        ctx,
        url="{api.base}/echo",
        method="POST",
        json={"hosts": "{servers}", "first": "{servers[0]}"},
        headers={"X-Token": "{api.token}"},
        save_as="resp",
    )
    echoed = ctx["resp"]["body"]
    assert echoed["x_token"] == "t0k"
    assert echoed["body"].replace(" ", "") == '{"hosts":["intweb1","intweb2"],"first":"intweb1"}'


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"url": "ftp://host/x"}, "must start with http:// or https://"),
        ({"url": "http://h/", "json": {}, "body": "x"}, 'give "json" or "body", not both'),
        ({"url": "http://h/", "timeout": 0}, "'timeout' must be more than 0"),
        ({"url": "http://h/", "expect": []}, "'expect' is empty"),
        ({"url": "http://h/", "expect": ["ok"]}, "argument 'expect'"),
        ({}, "missing argument 'url'"),
    ],
    ids=["scheme", "json-and-body", "timeout", "empty-expect", "bad-expect", "no-url"],
)
def test_bad_arguments_are_an_invalid_definition(args: dict[str, Any], problem: str) -> None:
    """Bad http arguments are refused when the workflow is created."""
    with pytest.raises(InvalidDefinition, match=problem):
        parse_definition([{"step": "http", "args": args}], StepRegistry.from_modules([]))


def test_get_is_idempotent_other_methods_are_not() -> None:
    """GET and HEAD are idempotent, POST and a templated method not; the element overrides."""
    plans = parse_definition(
        [
            {"step": "http", "args": {"url": "http://h/"}},
            {"step": "http", "args": {"url": "http://h/", "method": "head"}},
            {"step": "http", "args": {"url": "http://h/", "method": "POST"}},
            {"step": "http", "args": {"url": "http://h/", "method": "{verb}"}},
            {"step": "http", "args": {"url": "http://h/", "method": "PUT"}, "idempotent": True},
            {"step": "http", "args": {"url": "http://h/"}, "idempotent": False},
        ],
        StepRegistry.from_modules([]),
    )
    assert [plan.idempotent for plan in plans] == [True, True, False, False, True, False]


async def test_http_steps_in_a_workflow(
    engine: Engine, create: CreateFn, http_base: str, tmp_path: Any
) -> None:
    """Engine: a templated GET saves JSON, a shell step uses it, a 500 halts in error."""
    name = await create(
        [
            {"step": "http", "args": {"url": "{base}/json", "save_as": "info"}},
            {
                "step": "shell",
                "args": {"cmd": ["echo", "{info.body.name}", "{info.body.ports}"], "save_as": "o"},
            },
            {"step": "http", "args": {"url": "{base}/status/500", "method": "DELETE"}},
        ],
        {"base": http_base},
    )
    with pytest.raises(StepError, match="HTTP 500 from DELETE"):
        await engine.run(name)
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.ERROR
    assert workflow.current_step == 2
    assert workflow.context["o"]["stdout"] == "intweb1 80 443\n"
