"""The security headers of every HTML response, set in one place: a middleware that looks at what
goes out, so a page served by a route, a copy under ``/static`` or the API's documentation
cannot be forgotten.

The pages run only their own files: no inline script or style, nothing from another origin (the
network may be closed anyway), so injected markup can neither run nor send anything out; no
other site may frame them (clickjacking a send button), the browser never guesses a type, and a
link followed from a page tells the other site nothing. The API's interactive documentation
(``/docs``, ``/redoc``: FastAPI's pages, for developers) is the one exception to the policy's
sources: it loads its viewer from a CDN and starts it with an inline script; it gets the same
frame, type and referrer protection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _policy(*directives: str) -> str:
    return "; ".join(directives)


_ALWAYS: Final = (
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
# blob: is for recordings and spoken previews played back in the page.
CONTENT_SECURITY_POLICY: Final = _policy(
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "worker-src 'self'",
    "manifest-src 'self'",
    "font-src 'self'",
    *_ALWAYS,
)
_CDN: Final = "https://cdn.jsdelivr.net"
DOCS_CONTENT_SECURITY_POLICY: Final = _policy(
    "default-src 'self'",
    f"script-src 'self' {_CDN} 'unsafe-inline'",
    f"style-src 'self' {_CDN} https://fonts.googleapis.com 'unsafe-inline'",
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
    "font-src 'self' https://fonts.gstatic.com",
    "worker-src 'self' blob:",
    "connect-src 'self'",
    *_ALWAYS,
)
DOCS_PATHS: Final = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

HTML_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def html_headers(path: str) -> Mapping[str, str]:
    """The headers an HTML response at ``path`` carries."""
    if path in DOCS_PATHS:
        return {**HTML_HEADERS, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY}
    return HTML_HEADERS


class SecurityHeaders:
    """Adds `html_headers` to every HTML response, and ``nosniff`` to every other one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").lower().startswith("text/html"):
                    for name, value in html_headers(scope["path"]).items():
                        headers[name] = value
                else:
                    headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, sending)
