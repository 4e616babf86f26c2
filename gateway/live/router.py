"""Live-broadcast routes: a ticket over HTTP, the talking WebSocket, and the talk page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.responses import FileResponse

from gateway.auth import Sender
from gateway.db import SessionDep
from gateway.errors import NotFound
from gateway.live.hub import LiveHub
from gateway.live.schemas import TicketCreate, TicketRead
from gateway.places.service import CityDep
from gateway.web.router import PAGE_HEADERS

STATIC: Final = Path(__file__).resolve().parent / "static"
_FILES: Final = {
    "talk.js": "text/javascript",
    "talk.css": "text/css",
    "pcm-worklet.js": "text/javascript",
}

router = APIRouter(tags=["live"])
pages = APIRouter(include_in_schema=False)


def _hub(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.live
    return hub


HubDep = Annotated[LiveHub, Depends(_hub)]


@router.post(
    "/live/tickets",
    status_code=201,
    operation_id="create_live_ticket",
    responses={
        403: {"description": "Not allowed for this category or area, or it needs approval"},
        409: {
            "description": "live_busy: a live session of the same priority is on air there; "
            "quiet_hours: a live talk other than a disaster alert cannot wait for their end"
        },
        429: {"description": "The sender or a village has had its share of broadcasts"},
    },
)
async def create_ticket(
    body: TicketCreate, session: SessionDep, city: CityDep, principal: Sender, hub: HubDep
) -> TicketRead:
    """A single-use ticket, valid for seconds, to open the live WebSocket
    (``/api/v1/live/ws?ticket=...``). The rights, area and conflicts are checked now."""
    return await hub.issue_ticket(session, city, principal, body)


@router.websocket("/live/ws")
async def live_socket(websocket: WebSocket, ticket: str = "") -> None:
    hub: LiveHub = websocket.app.state.live
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
