"""Live-broadcast routes: a ticket over HTTP, the talking WebSocket, and the talk page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.responses import FileResponse

from gateway.auth import Sender
from gateway.deps import CityDep, SessionDep, state_of
from gateway.error_catalog import documented
from gateway.errors import NotFound
from gateway.live.hub import LiveHub
from gateway.live.messages import POLICY_VIOLATION
from gateway.live.schemas import TicketCreate, TicketRead
from gateway.settings import Settings
from gateway.web.router import PAGE_HEADERS

STATIC: Final = Path(__file__).resolve().parent / "static"
_FILES: Final = {
    "talk.js": "text/javascript",
    "talk.css": "text/css",
    "pcm-worklet.js": "text/javascript",
}

ORIGIN_NOT_ALLOWED: Final = "origin_not_allowed"

router = APIRouter(tags=["live"])
pages = APIRouter(include_in_schema=False)


def _hub(request: Request) -> LiveHub:
    return state_of(request).live


HubDep = Annotated[LiveHub, Depends(_hub)]


@router.post(
    "/live/tickets",
    status_code=201,
    operation_id="create_live_ticket",
    responses=documented(
        "category_not_allowed",
        "outside_scope",
        "live_needs_approval",
        "live_not_found",
        "live_busy",
        "quiet_hours",
        "rate_limited_user",
        "rate_limited_village",
        "rate_limited_head_disaster",
        "too_many_tickets",
        notes={
            "live_not_found": "On a ticket to `resume`.",
            "quiet_hours": "A live talk other than a disaster alert cannot wait for their end.",
        },
    ),
)
async def create_ticket(
    body: TicketCreate, session: SessionDep, city: CityDep, principal: Sender, hub: HubDep
) -> TicketRead:
    """A single-use ticket, valid for seconds, to open the live WebSocket
    (``/api/v1/live/ws?ticket=...``). The rights, area and conflicts are checked now."""
    return await hub.issue_ticket(session, city, principal, body)


def origin_allowed(websocket: WebSocket) -> bool:
    """A page may open the socket only from an allowed origin (``GATEWAY_ALLOWED_ORIGINS``), so
    another site's script cannot talk through a visitor's browser. A client that sends no
    Origin is not a browser (the ``maeul live`` CLI, a console or bench client): let through,
    since a browser always sends one."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    settings: Settings = state_of(websocket).settings
    origin = origin.strip().rstrip("/").lower()
    allowed = settings.origins
    if allowed:
        return origin in allowed
    # No host configured anywhere (a public URL on 0.0.0.0): the page's own host only.
    host = websocket.headers.get("host", "").lower()
    return bool(host) and urlsplit(origin).netloc == host


@router.websocket("/live/ws")
async def live_socket(websocket: WebSocket, ticket: str = "") -> None:
    if not origin_allowed(websocket):
        # Before the handshake is accepted: the browser sees a 403 and the ticket is not spent.
        await websocket.close(POLICY_VIOLATION, ORIGIN_NOT_ALLOWED)
        return
    hub: LiveHub = state_of(websocket).live
    await hub.serve(websocket, ticket)


@pages.get("/talk")
async def talk_page() -> FileResponse:
    return FileResponse(
        STATIC / "talk.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
    )


@pages.get("/talk/{name}")
async def talk_asset(name: str) -> FileResponse:
    media_type = _FILES.get(name)
    if media_type is None:
        raise NotFound("not_found", ko="파일이 없습니다.", en="No such file.")
    return FileResponse(STATIC / name, media_type=f"{media_type}; charset=utf-8")
