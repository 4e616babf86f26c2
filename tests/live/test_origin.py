"""The live WebSocket opens only for pages of the allowed origins, and for clients that are not
browsers (no Origin header); another site's page is refused before the handshake completes."""

from __future__ import annotations

from typing import Any

from tests.flow.conftest import Stack, stack  # noqa: F401 - the fixture


async def _handshake(stack: Stack, origin: str | None) -> list[dict[str, Any]]:  # noqa: F811
    """What the gateway answers a WebSocket opening with a worthless ticket."""
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/api/v1/live/ws",
        "raw_path": b"/api/v1/live/ws",
        "query_string": b"ticket=not-a-ticket",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
    }
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await stack.app(scope, receive, send)
    return sent


async def test_another_origin_is_refused_before_the_handshake(stack: Stack) -> None:  # noqa: F811
    for origin in (
        "https://evil.example",
        "http://127.0.0.1:8001",
        "https://127.0.0.1:8000",
        "null",
        "http://127.0.0.1.evil.example:8000",
    ):
        sent = await _handshake(stack, origin)
        assert len(sent) == 1, (origin, sent)
        assert sent[0]["type"] == "websocket.close", (origin, sent)
        assert (sent[0]["code"], sent[0]["reason"]) == (1008, "origin_not_allowed")


async def test_the_public_urls_own_pages_and_non_browsers_get_through(
    stack: Stack,  # noqa: F811
) -> None:
    for origin in (None, "http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        sent = await _handshake(stack, origin)
        # Accepted, then told the ticket is worthless: the origin was not what stopped it.
        assert sent[0]["type"] == "websocket.accept", (origin, sent)
        assert "invalid_ticket" in str(sent[1])


async def test_configured_origins_replace_the_public_urls(stack: Stack) -> None:  # noqa: F811
    stack.app.state.settings = stack.settings.model_copy(
        update={"allowed_origins": "https://maeul.city.go.kr"}
    )
    assert (await _handshake(stack, "https://maeul.city.go.kr"))[0]["type"] == "websocket.accept"
    refused = await _handshake(stack, "http://127.0.0.1:8000")
    assert refused[0]["type"] == "websocket.close"


async def test_with_no_host_configured_a_page_may_reach_only_its_own_host(
    stack: Stack,  # noqa: F811
) -> None:
    """``maeul run --host 0.0.0.0``: the public URL names no host a browser could be on."""
    stack.app.state.settings = stack.settings.model_copy(
        update={"public_url": "http://0.0.0.0:8000"}
    )
    assert (await _handshake(stack, "http://127.0.0.1:8000"))[0]["type"] == "websocket.accept"
    assert (await _handshake(stack, "https://evil.example"))[0]["type"] == "websocket.close"
