"""HTTP routes for CAP 1.2 out: each broadcast's alert and delivery report (for those who may
read the broadcast), and the public Atom feed of live alerts with their documents."""

from __future__ import annotations

from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from gateway.auth import Anyone
from gateway.broadcasts import reading
from gateway.cap import feed, publish, report
from gateway.deps import CityDep, NowDep, SessionDep, state_of
from gateway.error_catalog import documented

router = APIRouter(tags=["cap"])

_CAP: Final = {"content": {feed.CAP_MEDIA_TYPE: {}}, "description": "A CAP 1.2 document"}
_PUBLIC_CACHE: Final = "public, max-age=60"


def _cap(body: bytes, *, public: bool = False) -> Response:
    cache = _PUBLIC_CACHE if public else "private, no-cache"
    return Response(body, media_type=feed.CAP_MEDIA_TYPE, headers={"Cache-Control": cache})


@router.get(
    "/broadcasts/{broadcast_id}/cap",
    operation_id="get_broadcast_cap",
    response_class=Response,
    responses={200: _CAP, **documented("broadcast_not_found", "outside_scope")},
)
async def get_broadcast_cap(
    broadcast_id: str, request: Request, session: SessionDep, user: Anyone, city: CityDep
) -> Response:
    """The broadcast as a CAP 1.2 alert (valid against the OASIS schema), for whoever may read
    the broadcast: status from its mode, an all clear as an Update with `responseType`
    AllClear, its area and villages as polygons, circles and geocodes."""
    broadcast = await reading.get_broadcast(session, city.id, broadcast_id)
    await reading.authorize_read(session, user, broadcast)
    settings = state_of(request).settings
    document = await publish.alert_document(session, settings, city, broadcast)
    return _cap(publish.serialize(document))


@router.get(
    "/broadcasts/{broadcast_id}/cap/report",
    operation_id="get_broadcast_cap_report",
    response_model=report.DeliveryReport,
    responses={
        200: {
            "content": {feed.CAP_MEDIA_TYPE: {}},
            "description": "format=xml: a CAP Ack referencing the alert, one line per village "
            "in its note; format=json: the same as JSON",
        },
        **documented("broadcast_not_found", "outside_scope"),
    },
)
async def get_broadcast_cap_report(
    broadcast_id: str,
    request: Request,
    session: SessionDep,
    user: Anyone,
    city: CityDep,
    now: NowDep,
    format: Annotated[Literal["xml", "json"], Query()] = "xml",
) -> Response | report.DeliveryReport:
    """The delivery outcome per village, linked to the broadcast's CAP alert: a CAP Ack whose
    `references` name the alert and whose `note` has a line per village (`code outcome
    played/speakers name`), or JSON. For whoever may read the broadcast."""
    broadcast = await reading.get_broadcast(session, city.id, broadcast_id)
    await reading.authorize_read(session, user, broadcast)
    settings = state_of(request).settings
    found = await report.delivery_report(session, settings, city, broadcast, now)
    if format == "json":
        return found
    return _cap(publish.serialize(report.report_document(settings, city, broadcast, found)))


@router.get(
    "/cap/feed",
    operation_id="get_cap_feed",
    response_class=Response,
    responses={
        200: {"content": {feed.ATOM_MEDIA_TYPE: {}}, "description": "An Atom feed (RFC 4287)"},
        304: {"description": "Not modified since the ETag or date given"},
    },
)
async def get_cap_feed(
    request: Request,
    session: SessionDep,
    city: CityDep,
    now: NowDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    if_none_match: Annotated[str | None, Header()] = None,
    if_modified_since: Annotated[str | None, Header()] = None,
) -> Response:
    """The city's real alerts as Atom, for other alerting systems (no login): live broadcasts
    of the last 30 days, newest first (at most `limit`), a cancelled one followed by its Cancel
    message; each entry links to its CAP document. No sender, account or speaker is named.
    Answers 304 to a matching `If-None-Match` (or an `If-Modified-Since` not older)."""
    settings = state_of(request).settings
    built = await feed.build_feed(session, settings, city, now, limit)
    headers = {
        "ETag": built.etag,
        "Last-Modified": format_datetime(built.updated.replace(microsecond=0), usegmt=True),
        "Cache-Control": _PUBLIC_CACHE,
    }
    if if_none_match is not None:
        if built.etag in (t.strip() for t in if_none_match.split(",")) or if_none_match == "*":
            return Response(status_code=304, headers=headers)
    elif if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            since = None
        if (
            since is not None
            and since.tzinfo is not None
            and built.updated.replace(microsecond=0) <= since
        ):
            return Response(status_code=304, headers=headers)
    return Response(built.body, media_type=feed.ATOM_MEDIA_TYPE, headers=headers)


@router.get(
    "/cap/alerts/{identifier}.xml",
    operation_id="get_public_cap_alert",
    response_class=Response,
    responses={200: _CAP, **documented("cap_alert_not_found")},
)
async def get_public_cap_alert(
    identifier: str, request: Request, session: SessionDep, city: CityDep
) -> Response:
    """A live broadcast's CAP document by its identifier (no login), as the feed links it; a
    test or exercise broadcast is not published here."""
    settings = state_of(request).settings
    document = await feed.public_document(session, settings, city, identifier)
    return _cap(publish.serialize(document), public=True)
