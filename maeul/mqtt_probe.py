"""The local broker's readiness probe: a raw MQTT 5 CONNECT and the CONNACK it answers with.

The packet code does no I/O; `probe` and `probe_async` only move its bytes. Any CONNACK counts
as an answer, a refusal included: it proves the broker is parsing MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from typing import Final

from maeul.broker_config import BrokerError

DISCONNECT: Final = b"\xe0\x00"  # MQTT 5 DISCONNECT, reason "normal"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _mqtt_bytes(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def build_connect(
    client_id: str, *, username: str | None = None, password: str | None = None
) -> bytes:
    """An MQTT 5 CONNECT: clean start, 10 s keep-alive, no properties, no will."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _mqtt_bytes(b"MQTT") + bytes([5, flags]) + (10).to_bytes(2, "big") + b"\x00"
    body += _mqtt_bytes(client_id.encode())
    if username is not None:
        body += _mqtt_bytes(username.encode())
    if password is not None:
        body += _mqtt_bytes(password.encode())
    return b"\x10" + _varint(len(body)) + body


def connack_reason(data: bytes) -> int | None:
    """The reason code of the CONNACK at the start of data; None while more bytes are needed."""
    if not data:
        return None
    if data[0] != 0x20:
        raise BrokerError(f"expected a CONNACK, got packet type 0x{data[0]:02x}")
    length, index = 0, 1
    for shift in range(0, 28, 7):
        if index >= len(data):
            return None
        byte = data[index]
        length |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            break
    if length < 2:
        raise BrokerError("CONNACK too short")
    if len(data) < index + 2:
        return None
    return data[index + 1]


class _Handshake:
    """One probe's bytes: the CONNECT to send, the CONNACK gathered from what comes back."""

    def __init__(self, client_id: str | None, username: str | None, password: str | None) -> None:
        client_id = client_id or f"maeul-probe-{secrets.token_hex(4)}"
        self.connect = build_connect(client_id, username=username, password=password)
        self._data = b""

    def received(self, chunk: bytes) -> int | None:
        """The CONNACK's reason code once it is complete; None while more bytes are needed."""
        if not chunk:
            raise ConnectionError("the broker closed the connection before its CONNACK")
        self._data += chunk
        return connack_reason(self._data)


def probe(
    host: str,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    timeout: float = 1.0,
) -> int:
    """Connect over MQTT 5 and return the CONNACK reason code (0 accepted, 0x86/0x87 refused)."""
    handshake = _Handshake(client_id, username, password)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(handshake.connect)
        while (code := handshake.received(sock.recv(256))) is None:
            pass
        if code == 0:
            with contextlib.suppress(OSError):
                sock.sendall(DISCONNECT)
        return code


async def probe_async(
    host: str,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
) -> int:
    """`probe` for asyncio code; bound it with `asyncio.timeout`."""
    handshake = _Handshake(client_id, username, password)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(handshake.connect)
        while (code := handshake.received(await reader.read(256))) is None:
            pass
        if code == 0:
            writer.write(DISCONNECT)
            with contextlib.suppress(OSError):
                await writer.drain()
        return code
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
