"""HTTP routes of the pages: the HTML shells, the PWA files and the spoken preview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from gateway.auth import Sender
from gateway.deps import RuntimeDep, state_of
from gateway.error_catalog import documented
from gateway.web import service
from gateway.web.schemas import SpeechPreview

STATIC: Final = Path(__file__).parent / "static"
# The shells change with each release; browsers must ask again (ETag keeps it cheap).
_NO_STALE: Final = {"Cache-Control": "no-cache"}
# The security headers of every page (and every other HTML response) are set in one place:
# gateway/web/headers.py.
PAGE_HEADERS: Final = _NO_STALE


def _preview_gate(request: Request) -> service.PreviewGate:
    return state_of(request).preview_gate


PreviewGateDep = Annotated[service.PreviewGate, Depends(_preview_gate)]

pages = APIRouter(include_in_schema=False)
router = APIRouter(tags=["web"])


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@pages.get("/")
async def home() -> FileResponse:
    return _page("index.html")


@pages.get("/console")
async def console() -> FileResponse:
    return _page("console.html")


@pages.get("/phone")
async def phone() -> FileResponse:
    return _page("phone.html")


@pages.get("/notices")
async def notices_directory() -> FileResponse:
    return _page("notices.html")


@pages.get("/notices/signup")
async def resident_signup() -> FileResponse:
    return _page("signup.html")


@pages.get("/notices/{village_id}")
async def notices(village_id: int) -> FileResponse:
    return _page("notices.html")


@pages.get("/favicon.ico")
async def favicon() -> RedirectResponse:
    return RedirectResponse("/static/icons/icon-192.png", status_code=308)


@pages.get("/manifest.webmanifest")
async def manifest() -> FileResponse:
    return FileResponse(
        STATIC / "manifest.webmanifest", media_type="application/manifest+json", headers=_NO_STALE
    )


def _notices_manifest(start_url: str) -> JSONResponse:
    """The residents' page as an app: it opens on the village it was installed from."""
    return JSONResponse(
        {
            "name": "우리 마을 방송 알림",
            "short_name": "마을 알림",
            "description": "마을 스피커로 나간 안내를 읽고 다시 듣고, 알림으로 받습니다.",
            "lang": "ko",
            "id": "/notices",
            "start_url": start_url,
            "scope": "/notices",
            "display": "standalone",
            "background_color": "#ffffff",
            "theme_color": "#0f5132",
            "icons": [
                {"src": "/static/icons/icon-192.png", "sizes": "192x192", "type": "image/png"},
                {"src": "/static/icons/icon-512.png", "sizes": "512x512", "type": "image/png"},
                {"src": "/static/icons/icon.svg", "sizes": "any", "type": "image/svg+xml"},
            ],
        },
        media_type="application/manifest+json",
        headers=_NO_STALE,
    )


@pages.get("/notices.webmanifest")
async def notices_manifest() -> JSONResponse:
    return _notices_manifest("/notices")


@pages.get("/notices/{village_id}/manifest.webmanifest")
async def village_notices_manifest(village_id: int) -> JSONResponse:
    return _notices_manifest(f"/notices/{village_id}")


@pages.get("/sw.js")
async def service_worker() -> FileResponse:
    # Served from the root so that it may control /phone; never cached stale.
    return FileResponse(
        STATIC / "sw.js",
        media_type="text/javascript",
        headers={**_NO_STALE, "X-Content-Type-Options": "nosniff", "Service-Worker-Allowed": "/"},
    )


@router.post(
    "/speech/preview",
    operation_id="preview_speech",
    response_class=Response,
    responses={
        200: {"content": {"audio/wav": {}}},
        **documented(
            "empty_text",
            "text_too_long",
            "unspeakable_text",
            "preview_busy",
            "preview_rate_limited",
            "speech_engine_unavailable",
            "speech_engine_failed",
        ),
    },
)
async def preview_speech(
    body: SpeechPreview, user: Sender, runtime: RuntimeDep, gate: PreviewGateDep
) -> Response:
    """Typed text read by the gateway's speech engine, as the speakers would say it.

    Previews wait behind every broadcast's audio; a person may have only a few running or
    waiting at once, and start only so many a minute."""
    audio = await service.speak_preview(runtime, gate, user, body.text, repeat=body.repeat)
    return Response(audio, media_type="audio/wav", headers={"Cache-Control": "no-store"})
