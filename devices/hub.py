"""What every MQTT link of one process shares: the `Hub`.

It bounds concurrent handshakes, ticks every online link's keep-alive and heartbeat from one
task, caches resolved broker addresses and opens each connection's socket: the TCP connect and
the TLS handshake without blocking the loop, handed to paho afterwards (see `devices.link`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from devices.link_settings import LinkSettings

if TYPE_CHECKING:
    from devices.link import Link

log = logging.getLogger(__name__)

_DNS_TTL_S: Final = 60.0


async def _fd_ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _handshake(loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket) -> None:
    fd = sock.fileno()
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            await _fd_ready(loop, fd, write=False)
        except ssl.SSLWantWriteError:
            await _fd_ready(loop, fd, write=True)


_Address = tuple[int, int, int, Any]


class Hub:
    """What every link of one process shares: a bound on concurrent handshakes, one ticker for
    keep-alives and heartbeats, resolved broker addresses and a default TLS context."""

    def __init__(self, *, connect_concurrency: int = 64, tick_s: float = 1.0) -> None:
        self.slots = asyncio.Semaphore(connect_concurrency)
        self._tick_s = tick_s
        self._online: dict[Link, None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._addresses: dict[tuple[str, int], tuple[float, list[_Address]]] = {}
        self._default_tls: ssl.SSLContext | None = None

    @property
    def online(self) -> int:
        return len(self._online)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        pending = [t for t in (*self._tasks, self._ticker) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._ticker = None

    def add_online(self, link: Link) -> None:
        self._online[link] = None
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="link-ticker")

    def remove_online(self, link: Link) -> None:
        self._online.pop(link, None)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            now = time.monotonic()
            for link in list(self._online):
                try:
                    link.hub_tick(now)
                except Exception:
                    log.exception("keep-alive of %s failed", link.identity.speaker)

    async def open_socket(self, settings: LinkSettings) -> socket.socket:
        """A connected, non-blocking TCP socket to the broker, TLS already negotiated if asked."""
        loop = asyncio.get_running_loop()
        broker = settings.broker
        error: OSError | None = None
        for family, kind, proto, address in await self._resolve(broker.host, broker.port):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            if not broker.tls:
                return sock
            context = settings.tls or self._tls()
            secure = context.wrap_socket(
                sock, server_hostname=broker.host, do_handshake_on_connect=False
            )
            try:
                await _handshake(loop, secure)
            except BaseException:
                secure.close()
                raise
            return secure
        raise error or OSError(f"no address found for {broker.host}")

    def _tls(self) -> ssl.SSLContext:
        if self._default_tls is None:
            self._default_tls = ssl.create_default_context()
        return self._default_tls

    async def _resolve(self, host: str, port: int) -> list[_Address]:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port))]
        cached = self._addresses.get((host, port))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        found: list[_Address] = [(f, k, p, a) for f, k, p, _, a in infos]
        self._addresses[(host, port)] = (time.monotonic() + _DNS_TTL_S, found)
        return found
