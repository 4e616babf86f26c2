"""How a gateway process is served: uvicorn's options from the settings, and a stop that tells
open event streams to end before uvicorn waits for them.

uvicorn stops in this order: stop accepting, wait for the open connections (at most
``timeout_graceful_shutdown``, then cancel them), and only then run the lifespan's shutdown, where
the replica leaves the shared subscriptions and records the acks it holds. An event stream stays
open as long as its broadcast runs, so the app is told first: ``GatewayServer`` sets the app's
``stopping`` event as the shutdown begins, and each stream ends within a poll.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from gateway.settings import Settings


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options that follow the gateway's settings."""
    proxies = ",".join(str(network) for network in settings.trusted_networks)
    return {
        "timeout_graceful_shutdown": settings.graceful_shutdown_s,
        # uvicorn's own reading of X-Forwarded-For/-Proto (its default trusts 127.0.0.1, so a
        # local client could name any address): the same proxies as the app's, or none.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or "",
    }


class GatewayServer(uvicorn.Server):
    """uvicorn that sets `stopping` (the app's `app.state.stopping`) when it begins to stop,
    whether a signal or its owner (``should_exit``) asked."""

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event) -> None:
        super().__init__(config)
        self.stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stopping.set()
        await super().shutdown(sockets)
