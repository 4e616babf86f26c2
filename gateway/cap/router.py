"""HTTP routes for CAP 1.2 in: posting an alert, and the allow-list of senders."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Request, Response

from audio.errors import AudioError
from gateway.auth import Admin, Principal, Role, Sender, allow
from gateway.cap import ingest, senders
from gateway.cap.ingest import Ingested
from gateway.cap.mapping import MappingRule
from gateway.cap.schemas import (
    CapIngested,
    CapSenderCreate,
    CapSenderList,
    CapSenderPatch,
    CapSenderRead,
)
from gateway.cap.xsd import MAX_DOCUMENT_BYTES
from gateway.deps import CityDep, RuntimeDep, SessionDep, state_of
from gateway.error_catalog import documented
from gateway.errors import MaeulError

router = APIRouter(tags=["cap"])

MEDIA_TYPES: Final = ("application/cap+xml", "application/xml")
CAP_ERRORS: Final = (
    "cap_invalid_media_type",
    "cap_too_large",
    "cap_not_xml",
    "cap_dtd_forbidden",
    "cap_wrong_namespace",
    "cap_schema_invalid",
    "cap_field_too_long",
    "cap_sender_not_allowed",
    "cap_status_not_broadcast",
    "cap_msg_type_not_broadcast",
    "cap_scope_not_public",
    "cap_sent_in_future",
    "cap_reference_invalid",
    "cap_reference_unknown",
    "cap_reference_sender_not_allowed",
    "cap_reference_mode_mismatch",
    "cap_alert_changed",
    "cap_no_info",
    "cap_no_korean_info",
    "cap_time_invalid",
    "cap_expired",
    "cap_text_too_long",
    "cap_info_areas_differ",
    "cap_area_missing",
    "cap_area_unplaceable",
    "cap_area_empty",
    "invalid_polygon",
    "invalid_radius",
    "invalid_coordinates",
    "invalid_area",
    "invalid_area_code",
    "unknown_area_code",
    "outside_scope",
    "category_not_allowed",
)
_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "description": "A CAP 1.2 alert (an XML document, at most 512 KiB)",
        "content": {media: {"schema": {"type": "string"}} for media in MEDIA_TYPES},
    }
}


async def _document(request: Request) -> bytes:
    """The body, read no further than the size a CAP document may have."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise ingest.invalid_media_type()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            break
    return bytes(body)


def _answer(done: Ingested) -> CapIngested:
    row = done.alert
    return CapIngested(
        identifier=row.identifier,
        sender=row.sender,
        sent=row.sent,
        msg_type=row.msg_type,
        mode=done.mode,
        category=done.category,
        language=row.language,
        broadcast_ids=[row.broadcast_id] if row.broadcast_id else [],
        approval_id=row.approval_id,
        schedule_id=row.schedule_id,
        cancelled_broadcast_ids=list(done.stopped.broadcast_ids),
        cancelled_schedule_ids=list(done.stopped.schedule_ids),
        withdrawn_approval_ids=list(done.stopped.approval_ids),
        village_ids=list(done.village_ids),
    )


@router.post(
    "/cap",
    status_code=201,
    operation_id="ingest_cap",
    openapi_extra=_BODY,
    responses={
        200: {"description": "The same alert (identifier, sender, sent) again: the first answer"},
        **documented(
            "not_authenticated",
            "invalid_token",
            "account_suspended",
            *CAP_ERRORS,
            "quiet_hours",
            "rate_limited_user",
            "idempotency_key_reused",
            notes={
                "idempotency_key_reused": "Only when an earlier alert's broadcast was made "
                "with the same key by another route; the same alert posted again (even at the "
                "same moment) is answered 200 with the first answer.",
            },
        ),
    },
)
async def ingest_cap(
    request: Request,
    response: Response,
    session: SessionDep,
    user: Sender,
    city: CityDep,
    runtime: RuntimeDep,
) -> CapIngested:
    """Take a CAP 1.2 alert in (README, "CAP 1.2 in"): a broadcast to the villages its areas
    cover, spoken in its Korean `<info>` (none: 422), under the same rules as any send.
    An Update or Cancel stops what has not played of the alerts it references (of the same
    mode, and of senders this account may post for). The answer names the broadcast, or the
    approval request (two-person rule) or the schedule (quiet hours, a future `<effective>`)
    that holds it."""
    rules = [MappingRule.model_validate(r) for r in runtime.settings.cap_mapping]
    try:
        document = await _document(request)
        sha256, size = ingest.fingerprint(document)
        # The audit row keeps the document's hash and size, never the document.
        request.state.audit_target = {"cap_sha256": sha256, "cap_bytes": size}
        done = await ingest.ingest(session, runtime, city, user, document, rules=rules)
    except (MaeulError, AudioError) as exc:
        path = getattr(exc, "path", None)
        request.state.audit_reason = f"{exc.code} at {path}" if path else exc.code
        raise
    cache = state_of(request).status_cache
    for stopped in done.stopped.broadcast_ids:
        cache.forget(city.id, stopped)
    if done.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return _answer(done)


@router.get("/cap/senders", operation_id="list_cap_senders")
async def list_cap_senders(
    session: SessionDep,
    _reader: Annotated[Principal, allow(Role.CITY_ADMIN, Role.AUDITOR)],
    city: CityDep,
) -> CapSenderList:
    rows = await senders.list_senders(session, city)
    return CapSenderList(items=[CapSenderRead.model_validate(r) for r in rows])


@router.post(
    "/cap/senders",
    status_code=201,
    operation_id="add_cap_sender",
    responses=documented("cap_sender_exists", "user_not_found", "cap_sender_account_cannot_send"),
)
async def add_cap_sender(
    body: CapSenderCreate,
    request: Request,
    session: SessionDep,
    _admin: Admin,
    city: CityDep,
    runtime: RuntimeDep,
) -> CapSenderRead:
    """Allow a CAP `<sender>`: its alerts are taken from the account named (its API key is the
    credential; its role and area limit what the alerts may be and reach)."""
    request.state.audit_target = {"cap_sender": body.sender[:100], "user_id": body.user_id}
    row = await senders.add_sender(session, city, body, runtime.clock.now())
    return CapSenderRead.model_validate(row)


@router.patch(
    "/cap/senders/{sender_id}",
    operation_id="update_cap_sender",
    responses=documented(
        "cap_sender_not_found", "user_not_found", "cap_sender_account_cannot_send"
    ),
)
async def update_cap_sender(
    sender_id: int,
    body: CapSenderPatch,
    session: SessionDep,
    _admin: Admin,
    city: CityDep,
    runtime: RuntimeDep,
) -> CapSenderRead:
    """Disable (or enable) a sender, or give its alerts to another account."""
    row = await senders.update_sender(session, city, sender_id, body, runtime.clock.now())
    return CapSenderRead.model_validate(row)
