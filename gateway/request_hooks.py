"""What happens after every HTTP request, as plain ASGI middleware.

Starlette's ``BaseHTTPMiddleware`` runs each request through a task group and memory streams,
a cost every status poll paid during a fan-out. This wraps ``send`` instead: when the response
starts, and before the client sees it, the request is written to the audit log (a client never
learns of an action whose audit row has not been attempted). The publisher is not woken here:
a commit that wrote publications wakes it, whatever committed them (`gateway.db.AfterCommit`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit.recorder import record_request
from gateway.deps import state_of


class AfterRequest:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                await _after(Request(scope), int(message["status"]))
            await send(message)

        await self.app(scope, receive, sending)


async def _after(request: Request, status: int) -> None:
    if hasattr(state_of(request), "sessions"):
        await record_request(request, status)
