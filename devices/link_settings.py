"""Where a speaker's MQTT link connects and how: the broker URL, TLS, and the link's settings.

Read by `devices.link.Link` and `devices.hub.Hub`, and by the simulated fleet and the device
agent when they parse their configuration.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class BrokerAddress:
    """A parsed ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://`` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"an MQTT URL starts with mqtt:// or mqtts://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("the MQTT URL has no host")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def redacted(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"


def tls_context(
    *, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """Verify the broker against `ca_file` (else the system store); present a client cert."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


@dataclass(frozen=True, kw_only=True)
class LinkSettings:
    broker: BrokerAddress
    username: str | None = None  # None: the broker URL's
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None  # for mqtts://; None: the system's trust store
    keepalive_s: int = 30
    # How long the broker keeps the session (and queues commands) after the speaker vanishes.
    session_expiry_s: int = 300
    heartbeat_s: float = 30.0
    # Unacknowledged QoS 1 messages in flight, each way (paho's default is 20).
    max_inflight: int = 20
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    firmware: str | None = None
