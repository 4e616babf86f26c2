"""A push service on this machine, as a browser's would be (RFC 8030): it hands out
subscriptions bound to an application server key, checks every request's VAPID token (RFC
8292: ES256, signed by that key, aud its own origin, exp within a day) and decrypts the
aes128gcm payload (RFC 8291) with the subscriber's private key, as the browser would.

A test scripts its answers per subscription (201 by default; 429 with Retry-After, 5xx), or
forgets one (404 or 410 from then on); only what it answered 201 counts as received.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.net import free_port


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    token: str
    payload: dict[str, Any]
    ttl: int
    urgency: str | None
    topic: str | None


@dataclass
class _Subscriber:
    """What the browser keeps (its private key, its auth secret) and what the service keeps
    (the application server key the subscription is bound to)."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    server_key: str
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    requests: int = 0
    gone: int | None = None  # 404 or 410 to every push, once the browser is gone


class PushService:
    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self.refused: list[str] = []  # why each refused request was refused
        self._subscribers: dict[str, _Subscriber] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PushService:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def subscribe(self, application_server_key: str) -> dict[str, Any]:
        """A new subscription, as pushManager.subscribe() gives it (its toJSON())."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        public = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        auth = secrets.token_bytes(16)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._subscribers[token] = _Subscriber(private_key, auth, application_server_key)
        return {
            "endpoint": f"{self.origin}/push/{token}",
            "expirationTime": None,
            "keys": {"p256dh": _b64url(public), "auth": _b64url(auth)},
        }

    def forget(self, endpoint: str, status: int = 410) -> None:
        """The browser unsubscribed or went away: every push to it is answered `status` now."""
        with self._lock:
            self._subscribers[self._token(endpoint)].gone = status

    def answer(self, endpoint: str, *statuses: int, retry_after: str | None = None) -> None:
        """The next answers to this subscription's pushes, in order; then 201 again."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._subscribers[self._token(endpoint)].answers.extend((s, headers) for s in statuses)

    def requests_to(self, endpoint: str) -> int:
        with self._lock:
            return self._subscribers[self._token(endpoint)].requests

    def received_by(self, endpoint: str) -> list[Received]:
        token = self._token(endpoint)
        with self._lock:
            return [r for r in self.received if r.token == token]

    @staticmethod
    def _token(endpoint: str) -> str:
        return endpoint.rsplit("/", 1)[1]

    def _check_vapid(self, header: str, server_key: str) -> None:
        scheme, _, params = header.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError(f"authorization scheme {scheme!r}, not vapid")
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        if parts.get("k") != server_key:
            raise ValueError("signed with another key than the subscription's")
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64url(parts["k"]))
        claims = jwt.decode(
            parts["t"],
            key,
            algorithms=["ES256"],
            audience=self.origin,
            options={"require": ["aud", "exp", "sub"]},
        )
        if claims["exp"] > time.time() + 24 * 3600:
            raise ValueError("exp more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https://")):
            raise ValueError("sub is not a mailto: or https: URI")

    def _handle(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        token = path.rsplit("/", 1)[-1]
        with self._lock:
            subscriber = self._subscribers.get(token)
            if subscriber is None or not path.startswith("/push/"):
                return 404, {}
            subscriber.requests += 1
            if subscriber.gone is not None:
                return subscriber.gone, {}
        try:
            self._check_vapid(headers.get("Authorization", ""), subscriber.server_key)
        except (ValueError, KeyError, jwt.PyJWTError) as exc:
            self.refused.append(f"vapid: {exc}")
            return 403, {}
        if headers.get("Content-Encoding") != "aes128gcm" or headers.get("TTL") is None:
            self.refused.append("not aes128gcm, or no TTL")
            return 400, {}
        with self._lock:
            status, extra = subscriber.answers.popleft() if subscriber.answers else (201, {})
        if status != 201:
            return status, extra
        try:
            plain = http_ece.decrypt(
                body,
                private_key=subscriber.private_key,
                auth_secret=subscriber.auth,
                version="aes128gcm",
            )
        except Exception as exc:  # the payload is refused, whatever broke it
            self.refused.append(f"decrypt: {type(exc).__name__}")
            return 400, {}
        with self._lock:
            self.received.append(
                Received(
                    token,
                    json.loads(plain),
                    int(headers["TTL"]),
                    headers.get("Urgency"),
                    headers.get("Topic"),
                )
            )
        return 201, {"Location": f"{self.origin}/message/{secrets.token_hex(8)}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, extra = service._handle(self.path, self.headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the endpoints are secrets: nothing about them in the test's output

        return Handler
