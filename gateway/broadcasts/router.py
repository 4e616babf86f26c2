"""HTTP routes for broadcasts: create from an upload, read, list, follow live, fetch audio."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from audio.errors import AudioTooLarge
from audio.speech.languages import parse_texts
from gateway import retention
from gateway.approvals.schemas import ApprovalRead
from gateway.auth import Anyone, Principal, Role, Sender, allow, presented_principal
from gateway.broadcasts import (
    all_clear,
    audio_access,
    audio_store,
    events,
    reading,
    resend,
    service,
)
from gateway.broadcasts.audio_links import AudioLinks, link_required
from gateway.broadcasts.ranges import ranged_response
from gateway.broadcasts.schemas import (
    AllClearRequest,
    BroadcastDetail,
    BroadcastMode,
    BroadcastPage,
    BroadcastSummary,
    EvidenceHold,
    ResendRequest,
)
from gateway.datafiles import private_dir
from gateway.deliveries.states import State
from gateway.deps import CityDep, RuntimeDep, SessionDep, state_of
from gateway.error_catalog import documented
from gateway.places import geography
from gateway.places.models import City
from gateway.schedules import service as schedules
from gateway.schedules.schemas import ScheduleRead
from gateway.sending import now
from gateway.sending import service as sending
from gateway.templates import service as templates
from wire.contract import Category

router = APIRouter(tags=["broadcasts"])
audio_router = APIRouter(tags=["audio"])


# What a broadcast's target and content (a template's values, a text, a recording) are refused
# for, wherever one is made: now, on a schedule, or from a template.
CONTENT_ERRORS: Final = (
    "empty_target",
    "unknown_placeholder",
    "missing_placeholder",
    "invalid_values",
    "text_and_template",
    "values_without_template",
    "missing_file",
    "empty_text",
    "text_too_long",
    "unspeakable_text",
    "unknown_language",
    "invalid_texts",
    "audio_too_large",
    "empty_audio",
    "unsupported_audio",
    "corrupt_audio",
    "audio_too_long",
    "silent_audio",
    "audio_timeout",
)
# What an ``area`` target is refused for (see gateway.places.areas).
AREA_ERRORS: Final = (
    "area_and_target",
    "invalid_area",
    "invalid_area_code",
    "invalid_coordinates",
    "invalid_radius",
    "invalid_polygon",
    "unknown_area_code",
    "empty_area",
)
AREA_FORM: Final = (
    'Instead of the targets above, an area as JSON: {"circle": {"lat": 35.18, "lon": 128.08, '
    '"radius_m": 3000}}, {"polygon": [[lat, lon], ...]} (closed by the gateway when the last '
    'point is not the first) or {"codes": ["4817025000", ...]} (10-digit 법정동/행정동 codes; '
    "a district's code covers its villages). Resolved to villages now; the broadcast records "
    "the area and the villages"
)


async def _upload_within_limit(request: Request, runtime: RuntimeDep) -> None:
    # Refuse an oversized upload from its declared length, before a byte of it is parsed.
    length = request.headers.get("content-length")
    limit = runtime.settings.max_upload_bytes
    if length is not None and length.isdigit() and int(length) > limit + 64 * 1024:
        raise AudioTooLarge(f"upload of {length} bytes exceeds the limit of {limit} bytes")


async def _spill(upload: UploadFile, directory: Path, limit: int) -> Path:
    """Copy the parsed upload to a file of our own, counting bytes as they go."""

    def copy() -> Path:
        private_dir(directory)
        written = 0
        with tempfile.NamedTemporaryFile(dir=directory, delete=False, suffix=".upload") as handle:
            upload.file.seek(0)
            while chunk := upload.file.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    Path(handle.name).unlink(missing_ok=True)
                    raise AudioTooLarge(f"upload exceeds the limit of {limit} bytes")
                handle.write(chunk)
        return Path(handle.name)

    return await asyncio.to_thread(copy)


@router.post(
    "/broadcasts",
    status_code=201,
    operation_id="create_broadcast",
    dependencies=[Depends(_upload_within_limit)],
    response_model=BroadcastSummary,
    responses={
        200: {"description": "A repeat of an earlier request with the same key"},
        202: {
            "model": ScheduleRead,
            "description": "Quiet hours: scheduled for their end (GATEWAY_QUIET_HOURS_POLICY "
            "defer); the body is the schedule. Or, for a disaster alert that with the same "
            "person's other disaster alerts within GATEWAY_TWO_PERSON_WINDOW_S reaches more "
            "than one district or the whole city, the approval request a second person must "
            "approve (see /approvals)",
        },
        **documented(
            "quiet_hours",
            "idempotency_key_reused",
            *CONTENT_ERRORS,
            *AREA_ERRORS,
            notes={"quiet_hours": "(GATEWAY_QUIET_HOURS_POLICY refuse)"},
        ),
    },
)
async def create_broadcast(
    session: SessionDep,
    user: Sender,
    city: CityDep,
    runtime: RuntimeDep,
    response: Response,
    category: Annotated[Category, Form()],
    file: Annotated[
        UploadFile | None,
        File(description="The recording (m4a, 3gp, webm, ogg, mp3, ...); omit to speak `text`"),
    ] = None,
    repeat: Annotated[bool, Form(description="Speak typed text twice")] = False,
    mode: Annotated[
        BroadcastMode,
        Form(
            description="live: a real broadcast. test, exercise: kept apart from real ones, "
            "introduced as a test on the speakers (or only logged there), never interrupting "
            "a real broadcast"
        ),
    ] = "live",
    title: Annotated[str | None, Form(max_length=200)] = None,
    text: Annotated[str | None, Form(max_length=5000)] = None,
    texts: Annotated[
        str | None,
        Form(
            max_length=50_000,
            description="The text in other languages, a JSON object by BCP 47 primary tag: "
            '{"vi": "...", "zh": "..."} (Korean stays in `text`)',
        ),
    ] = None,
    template_id: Annotated[
        int | None, Form(description="Fill this template instead of giving `text`")
    ] = None,
    values: Annotated[
        str | None, Form(description='The template\'s values, a JSON object: {"날짜": "5일"}')
    ] = None,
    all_villages: Annotated[bool, Form()] = False,
    district_ids: Annotated[list[int] | None, Form()] = None,
    village_ids: Annotated[list[int] | None, Form()] = None,
    area: Annotated[str | None, Form(max_length=200_000, description=AREA_FORM)] = None,
    expires_in_s: Annotated[int | None, Form(ge=30, le=7 * 86400)] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> BroadcastSummary | JSONResponse:
    """Send now. In quiet hours a broadcast other than a disaster alert is refused (409) or
    scheduled for their end (202 with the schedule), by `GATEWAY_QUIET_HOURS_POLICY`."""
    composed = await templates.compose(
        session, city, text=text, title=title, template_id=template_id, values=values
    )
    by_area = await geography.target_area(
        session,
        city.id,
        area,
        all_villages=all_villages,
        district_ids=district_ids or (),
        village_ids=village_ids or (),
    )
    request = service.BroadcastRequest(
        category=category,
        title=composed.title,
        text=composed.text,
        all_villages=all_villages,
        district_ids=tuple(district_ids or ()),
        village_ids=by_area.village_ids if by_area else tuple(village_ids or ()),
        expires_in_s=expires_in_s,
        idempotency_key=idempotency_key,
        created_by=user.actor,
        repeat=repeat,
        mode=mode,
        principal=user,
        extra_target=by_area.recorded if by_area else {},
        texts=composed.texts_with(parse_texts(texts)),
    )
    settings = runtime.settings
    path = (
        await _spill(file, settings.data_dir / "uploads", settings.max_upload_bytes)
        if file is not None
        else None
    )
    try:
        started = await now.send_now(session, runtime, city, request, path, composed=composed)
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
    return await _answer(session, started, response)


@router.post("/broadcasts/{broadcast_id}/cancel", operation_id="cancel_broadcast")
async def cancel_broadcast(
    broadcast_id: str,
    request: Request,
    session: SessionDep,
    user: Sender,
    city: CityDep,
    runtime: RuntimeDep,
) -> BroadcastSummary:
    """Cancel at once, one person, no approval: queued deliveries end cancelled and playing
    speakers stop. Cancelling twice is harmless."""
    broadcast = await service.cancel_broadcast(session, runtime, city, broadcast_id, user)
    state_of(request).status_cache.forget(city.id, broadcast.id)
    return await reading.summarize(session, broadcast, detail=False)


@router.post(
    "/broadcasts/{broadcast_id}/resend",
    status_code=201,
    operation_id="resend_broadcast",
    responses={
        200: {"description": "A repeat of an earlier request with the same key"},
        **documented(
            "nothing_to_resend",
            "broadcast_cancelled",
            "quiet_hours",
            "approval_required",
            "rate_limited_user",
            notes={
                "quiet_hours": "A resend cannot wait for their end.",
                "rate_limited_user": "A resend counts against the limits.",
            },
        ),
    },
)
async def resend_broadcast(
    broadcast_id: str,
    request: Request,
    session: SessionDep,
    user: Sender,
    city: CityDep,
    runtime: RuntimeDep,
    response: Response,
    body: ResendRequest | None = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> BroadcastSummary:
    """Send again, as a new broadcast of the same audio, to the speakers whose delivery failed
    or expired; the new broadcast's `target.resend_of` names this one."""
    body = body or ResendRequest()
    started = await resend.resend_missed(
        session,
        runtime,
        city,
        broadcast_id,
        states=[State(s) for s in body.states],
        village_ids=body.village_ids,
        speaker_ids=body.speaker_ids,
        expires_in_s=body.expires_in_s,
        idempotency_key=idempotency_key,
        principal=user,
    )
    if started.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    # Its missed deliveries now name the resend.
    state_of(request).status_cache.forget(city.id, broadcast_id)
    return await reading.summarize(session, started.broadcast, detail=False)


@router.post(
    "/broadcasts/{broadcast_id}/all-clear",
    status_code=201,
    operation_id="all_clear_broadcast",
    response_model=BroadcastSummary,
    responses={
        200: {"description": "A repeat of an earlier request with the same key"},
        202: {
            "description": "Waits, as any typed broadcast would: the approval request a "
            "second person must approve (the two-person rule), or the schedule for the end of "
            "quiet hours (not a disaster alert, GATEWAY_QUIET_HOURS_POLICY defer)"
        },
        **documented(
            "broadcast_not_found",
            "already_all_clear",
            "not_clearable",
            "quiet_hours",
            "rate_limited_user",
            "idempotency_key_reused",
            notes={"quiet_hours": "(GATEWAY_QUIET_HOURS_POLICY refuse)"},
        ),
    },
)
async def all_clear_broadcast(
    broadcast_id: str,
    request: Request,
    session: SessionDep,
    user: Sender,
    city: CityDep,
    runtime: RuntimeDep,
    response: Response,
    body: AllClearRequest | None = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> BroadcastSummary | JSONResponse:
    """End a live alert ("해제"): a new broadcast of spoken text (by default "○○ 경보를
    해제합니다.") to the villages the alert reached, in its category, through the same send rules
    as any other; `all_clear_of` names the alert, whose `all_cleared_at` and `all_cleared_in`
    then say when and by which broadcast. Its CAP document is an Update with `responseType`
    AllClear."""
    body = body or AllClearRequest()
    started = await all_clear.send_all_clear(
        session,
        runtime,
        city,
        broadcast_id,
        text=body.text,
        expires_in_s=body.expires_in_s,
        idempotency_key=idempotency_key,
        principal=user,
    )
    state_of(request).status_cache.forget(city.id, broadcast_id)
    return await _answer(session, started, response)


async def _answer(
    session: SessionDep, started: now.Answer, response: Response
) -> BroadcastSummary | JSONResponse:
    if isinstance(started, schedules.Created):
        headers = {"Idempotent-Replayed": "true"} if started.replayed else None
        body = started.schedule.model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers=headers)
    if isinstance(started, sending.AwaitingApproval):
        headers = {"Idempotent-Replayed": "true"} if started.replayed else None
        approval = ApprovalRead.model_validate(started.approval).model_dump(mode="json")
        return JSONResponse(approval, status_code=202, headers=headers)
    if started.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return await reading.summarize(session, started.broadcast, detail=False)


@router.post("/broadcasts/{broadcast_id}/hold", operation_id="hold_recording")
async def hold_recording(
    broadcast_id: str,
    body: EvidenceHold,
    request: Request,
    session: SessionDep,
    _user: Annotated[Principal, allow(Role.CITY_ADMIN, Role.AUDITOR)],
    city: CityDep,
) -> BroadcastSummary:
    """Keep the recording as evidence past its retention period (or release it again)."""
    broadcast = await reading.get_broadcast(session, city.id, broadcast_id)
    await retention.hold(session, broadcast, held=body.hold, reason=body.reason)
    state_of(request).status_cache.forget(city.id, broadcast.id)
    return await reading.summarize(session, broadcast, detail=False)


@router.get("/broadcasts", operation_id="list_broadcasts")
async def list_broadcasts(
    session: SessionDep,
    user: Anyone,
    city: CityDep,
    category: Category | None = None,
    mode: Annotated[
        BroadcastMode | None,
        Query(description="Only real broadcasts (live), or only tests or exercises"),
    ] = None,
    mine: Annotated[bool, Query(description="Only the broadcasts the caller sent")] = False,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BroadcastPage:
    rows, total = await reading.list_broadcasts(
        session,
        city,
        category=category,
        mode=mode,
        created_by=user.actor if mine else None,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
        principal=user,
    )
    items = [await reading.summarize(session, b, detail=False) for b in rows]
    return BroadcastPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/broadcasts/{broadcast_id}",
    operation_id="get_broadcast",
    response_model=BroadcastDetail | BroadcastSummary,
)
async def get_broadcast(
    broadcast_id: str,
    request: Request,
    user: Anyone,
    session: SessionDep,
    detail: bool = True,
) -> BroadcastDetail | BroadcastSummary:
    """The broadcast's progress, as this replica read it at most a moment ago (see
    `GATEWAY_STATUS_CACHE_S`): many readers of one broadcast cost one query."""
    state = state_of(request)
    await reading.check_readable(session, user, state.city_id, broadcast_id)
    return await reading.read_summary(
        state.status_cache, state.sessions, state.city_id, broadcast_id, detail=detail
    )


@router.get(
    "/broadcasts/{broadcast_id}/events",
    operation_id="follow_broadcast",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def follow_broadcast(
    broadcast_id: str,
    request: Request,
    session: SessionDep,
    user: Anyone,
    city: CityDep,
    detail: Annotated[
        bool,
        Query(description="Send the detail (every village's speakers), as `GET ?detail=true`"),
    ] = False,
) -> StreamingResponse:
    """Server-sent events: an `event: summary` with the summary (or the detail) at once, then
    each time it changes, until no delivery can change. Any replica serves it from the
    database: a change is sent within about `GATEWAY_STATUS_MAX_STALE_S` plus
    `GATEWAY_POLL_INTERVAL_S` of its being recorded, whichever replica recorded it."""
    await reading.authorize_read(
        session, user, await reading.get_broadcast(session, city.id, broadcast_id)
    )
    state = state_of(request)
    stream = events.follow(
        state.status_cache,
        state.sessions,
        city.id,
        broadcast_id,
        detail=detail,
        interval_s=state.settings.poll_interval_s,
        gone=request.is_disconnected,
        stopping=state.stopping,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        # A proxy must pass each event on as it comes, not gather the stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_AUDIO_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"audio/ogg": {}, "audio/mpeg": {}}, "description": "The whole body"},
    206: {
        "content": {"audio/ogg": {}, "audio/mpeg": {}},
        "description": "One byte range (`Range: bytes=START-END`), with `Content-Range`",
    },
    **documented(
        "audio_link_required",
        "audio_link_invalid",
        "audio_link_expired",
        "audio_not_found",
        "range_not_satisfiable",
        notes={"audio_not_found": "Also to a person who may not hear it."},
    ),
}

_AUDIO_DOC = """Encoded audio by its sha256, resumable with one byte range per request
(`Accept-Ranges: bytes`). Served through a signed link (`expires` and `sig`, as speakers'
commands and residents' notices carry them) until it expires, or to a person logged in who may
see a broadcast, approval request or schedule that uses it."""


@audio_router.get(
    "/audio/{sha256}",
    operation_id="get_audio",
    response_class=Response,
    responses=_AUDIO_RESPONSES,
    description=_AUDIO_DOC,
)
async def get_audio(
    sha256: str,
    request: Request,
    session: SessionDep,
    city: CityDep,
    expires: int | None = None,
    sig: Annotated[str | None, Query(max_length=100)] = None,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    return await _audio(
        request, session, city, sha256, expires, sig, range_header, if_range, head=False
    )


@audio_router.head(
    "/audio/{sha256}",
    operation_id="head_audio",
    response_class=Response,
    responses=_AUDIO_RESPONSES,
)
async def head_audio(
    sha256: str,
    request: Request,
    session: SessionDep,
    city: CityDep,
    expires: int | None = None,
    sig: Annotated[str | None, Query(max_length=100)] = None,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    """The headers `GET` would send (size, `ETag`, `Accept-Ranges`), without the body."""
    return await _audio(
        request, session, city, sha256, expires, sig, range_header, if_range, head=True
    )


async def _audio(
    request: Request,
    session: SessionDep,
    city: City,
    sha256: str,
    expires: int | None,
    sig: str | None,
    range_header: str | None,
    if_range: str | None,
    *,
    head: bool,
) -> Response:
    links: AudioLinks = state_of(request).audio_links
    if sig is not None:
        left = links.check(sha256, expires, sig, now=state_of(request).clock.now())
        cache = f"private, max-age={min(left, 86400)}"
    else:
        principal = await presented_principal(request)
        if principal is None:
            raise link_required()
        if not await audio_access.may_hear(session, city.id, principal, sha256):
            raise audio_store.audio_not_found()
        cache = "private, no-cache"
    asset = await audio_store.get_audio(session, sha256)
    return ranged_response(
        asset.data,
        media_type=asset.mime_type,
        etag=f'"{asset.sha256}"',
        range_header=range_header,
        if_range=if_range,
        head=head,
        headers={"Cache-Control": cache},
    )
