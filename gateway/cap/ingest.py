"""Taking a CAP 1.2 alert in: from the document to a broadcast, through the one send use case.

    document ─ parse (xsd: no DTD, no entities, the schema) ─ read ─ the sender allowed?
      ─ seen before? (identifier, sender, sent: the earlier answer, 200)
      ─ status → mode (Actual live, Exercise, Test; System and Draft are not broadcast)
      ─ Update / Cancel: the referenced alerts must be known
      ─ the spoken <info> (Korean, else the first): expired? its areas → villages
      ─ mapping → category ─ ``sending.now.send_now`` (rights, limits, two-person, quiet hours)
      ─ Update / Cancel: what has not played of the referenced broadcasts is cancelled

Every refusal is a typed error with a stable code (``CapRefused`` carries the schema path);
the route records it in the audit log with the document's hash and size, never the document.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from lxml import etree
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from audio.speech.languages import known_texts
from audio.speech.normalize import MAX_TEXT_CHARS
from gateway.approvals import service as approvals
from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.service import BroadcastRequest, Started
from gateway.cap import senders, xsd
from gateway.cap.mapping import MappingRule, map_info
from gateway.cap.models import CapAlert
from gateway.cap.reading import Alert, CapRefused, Info, read_alert
from gateway.deps import Runtime
from gateway.errors import Conflict, UnsupportedMediaType
from gateway.places import geography
from gateway.places.models import City
from gateway.schedules import service as schedules
from gateway.schedules.models import Schedule, ScheduleOccurrence
from gateway.sending import now as sending_now
from gateway.sending.service import AwaitingApproval

MODES: Final = {"Actual": "live", "Exercise": "exercise", "Test": "test"}
_MAX_EXPIRY_S: Final = 7 * 86400


@dataclass(frozen=True)
class Ingested:
    alert: CapAlert
    mode: str
    category: str | None
    village_ids: tuple[int, ...] = ()
    replayed: bool = False
    cancelled: tuple[str, ...] = field(default_factory=tuple)


def fingerprint(document: bytes) -> tuple[str, int]:
    """What the audit log keeps of a document: its SHA-256 and size."""
    return hashlib.sha256(document).hexdigest(), len(document)


def _refusal(problem: xsd.CapProblem) -> CapRefused:
    detail = problem.detail[:300]
    if problem.reason == "too_large":
        return CapRefused(
            "cap_too_large",
            ko=f"CAP 문서가 너무 큽니다 (최대 {xsd.MAX_DOCUMENT_BYTES} 바이트).",
            en=f"The CAP document is over {xsd.MAX_DOCUMENT_BYTES} bytes.",
        )
    if problem.reason == "not_xml":
        return CapRefused(
            "cap_not_xml",
            ko=f"XML 문서가 아닙니다: {detail}",
            en=f"The body is not an XML document: {detail}",
        )
    if problem.reason == "dtd_forbidden":
        return CapRefused(
            "cap_dtd_forbidden",
            ko="DOCTYPE, 엔티티 선언(외부 엔티티 포함)은 받지 않습니다.",
            en="A DOCTYPE or entity declaration (external entities included) is not allowed.",
        )
    if problem.reason == "wrong_namespace":
        return CapRefused(
            "cap_wrong_namespace",
            ko=f"CAP 1.2 문서가 아닙니다 (네임스페이스 {xsd.NAMESPACE} 필요): {detail}",
            en=f"Not a CAP 1.2 document (namespace {xsd.NAMESPACE} required): {detail}",
        )
    return CapRefused(
        "cap_schema_invalid",
        ko=f"CAP 1.2 스키마에 맞지 않습니다 ({problem.path}): {detail}",
        en=f"The document does not follow the CAP 1.2 schema at {problem.path}: {detail}",
        path=problem.path,
    )


def parse_document(document: bytes) -> etree._Element:
    try:
        return xsd.parse(document)
    except xsd.CapProblem as problem:
        if problem.path is not None:
            problem = replace(problem, path=_named_path(document, problem.path))
        raise _refusal(problem) from None


def _named_path(document: bytes, path: str) -> str:
    """The schema's path (``/*/*[6]``) with the elements' names (``/cap:alert/cap:scope``), as
    a sender reads their document; the document passed the parser's checks already."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        found = etree.fromstring(document, parser).getroottree().xpath(path)
    except etree.Error:
        return path
    if not isinstance(found, list) or not found or not isinstance(found[0], etree._Element):
        return path
    steps: list[str] = []
    element: etree._Element | None = found[0]
    while element is not None:
        name = etree.QName(element)
        step = f"cap:{name.localname}" if name.namespace == xsd.NAMESPACE else name.localname
        parent = element.getparent()
        if parent is not None:
            same = [e for e in parent if e.tag == element.tag]
            if len(same) > 1:
                step += f"[{same.index(element) + 1}]"
        steps.append(step)
        element = parent
    return "/" + "/".join(reversed(steps))


def mode_of(status: str) -> str:
    mode = MODES.get(status)
    if mode is None:
        raise CapRefused(
            "cap_status_not_broadcast",
            ko=f"상태가 '{status}'인 경보는 방송하지 않습니다 (Actual, Exercise, Test만 방송).",
            en=f"An alert whose status is {status!r} is not broadcast (only Actual, Exercise, "
            "Test are).",
            path="/cap:alert/cap:status",
        )
    return mode


async def ingest(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    principal: Principal,
    document: bytes,
    *,
    rules: Sequence[MappingRule] | None = None,
    sender: str | None = None,
) -> Ingested:
    """``sender``: the one `<sender>` the document may name (a polled feed's)."""
    root = await asyncio.to_thread(parse_document, document)
    alert = read_alert(root)
    if sender is not None and alert.sender != sender:
        raise senders.sender_not_allowed(alert.sender)
    await senders.allowed_sender(session, city, principal, alert.sender)
    earlier = await _earlier(session, city, alert.sender, alert.identifier, alert.sent_key)
    if earlier is not None:
        return Ingested(
            earlier,
            earlier.mode or "",
            earlier.category,
            tuple(earlier.village_ids or ()),
            replayed=True,
            cancelled=tuple(earlier.cancelled_ids or ()),
        )
    mode = mode_of(alert.status)
    if alert.msg_type not in ("Alert", "Update", "Cancel"):
        raise CapRefused(
            "cap_msg_type_not_broadcast",
            ko=f"'{alert.msg_type}' 메시지는 방송하지 않습니다 (Alert, Update, Cancel만).",
            en=f"A {alert.msg_type!r} message is not broadcast (only Alert, Update, Cancel).",
            path="/cap:alert/cap:msgType",
        )
    referenced = await _referenced(session, city, alert) if alert.msg_type != "Alert" else []
    sha256, _size = fingerprint(document)
    row = _row(city, alert, principal, sha256, runtime.clock.now())
    row.mode = mode
    if alert.msg_type == "Cancel":
        row.cancelled_ids = list(await _stop(session, runtime, city, principal, referenced))
        return Ingested(await _record(session, row), mode, None, cancelled=tuple(row.cancelled_ids))
    info = alert.spoken_info()
    if info is None:
        raise CapRefused(
            "cap_no_info",
            ko="방송할 내용(<info>)이 없습니다.",
            en="The alert has no <info> to broadcast.",
            path="/cap:alert/cap:info",
        )
    now = runtime.clock.now()
    if info.expires is not None and info.expires <= now:
        raise CapRefused(
            "cap_expired",
            ko=f"이미 만료된 경보입니다 (expires {info.expires.isoformat()}).",
            en=f"The alert has expired (expires {info.expires.isoformat()}).",
            path="/cap:alert/cap:info/cap:expires",
        )
    village_ids = await _villages(session, city, info)
    mapped = map_info(info, rules)
    row.language = info.language
    row.category = mapped.category.value
    row.village_ids = list(village_ids)
    row.texts = {i.language: i.text for i in alert.infos}
    request = BroadcastRequest(
        category=mapped.category,
        title=(info.headline or info.event)[:200],
        text=info.text[:MAX_TEXT_CHARS],
        all_villages=False,
        district_ids=(),
        village_ids=village_ids,
        expires_in_s=_expires_in(info.expires, now),
        idempotency_key=f"cap:{_alert_key(alert)}",
        created_by=principal.actor,
        repeat=mapped.repeat,
        mode=mode,
        principal=principal,
        extra_target={"cap": _cap_target(alert, info)},
        texts=known_texts(row.texts),
    )
    answer = await sending_now.send_now(session, runtime, city, request, None)
    if isinstance(answer, Started):
        row.broadcast_id = answer.broadcast.id
        # The update replaces what has not played of what it updates, once it is sent itself.
        row.cancelled_ids = list(await _stop(session, runtime, city, principal, referenced))
    elif isinstance(answer, AwaitingApproval):
        row.approval_id = answer.approval.id
    else:
        assert isinstance(answer, schedules.Created)
        row.schedule_id = answer.schedule.id
    return Ingested(
        await _record(session, row),
        mode,
        mapped.category.value,
        village_ids,
        cancelled=tuple(row.cancelled_ids),
    )


def _alert_key(alert: Alert) -> str:
    key = "\n".join((alert.sender, alert.identifier, alert.sent_key))
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _cap_target(alert: Alert, info: Info) -> dict[str, object]:
    return {
        "identifier": alert.identifier[:200],
        "sender": alert.sender[:200],
        "sent": alert.sent_key,
        "msg_type": alert.msg_type,
        "language": info.language,
        "event": info.event[:200],
    }


def _expires_in(expires: datetime | None, now: datetime) -> int | None:
    if expires is None:
        return None
    return max(30, min(_MAX_EXPIRY_S, int((expires - now).total_seconds())))


def _row(city: City, alert: Alert, principal: Principal, sha256: str, now: datetime) -> CapAlert:
    return CapAlert(
        city_id=city.id,
        sender=alert.sender,
        identifier=alert.identifier,
        sent=alert.sent_key,
        msg_type=alert.msg_type,
        status=alert.status,
        references=[f"{r.sender},{r.identifier},{r.sent}" for r in alert.references],
        cancelled_ids=[],
        village_ids=[],
        texts={},
        sha256=sha256,
        created_by=principal.actor,
        created_at=now,
    )


async def _record(session: AsyncSession, row: CapAlert) -> CapAlert:
    """Write the alert; the same alert posted twice at once is one (the first row wins)."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        earlier = await _earlier(session, row.city_id, row.sender, row.identifier, row.sent)
        assert earlier is not None
        return earlier
    return row


async def _earlier(
    session: AsyncSession, city: City | int, sender: str, identifier: str, sent: str
) -> CapAlert | None:
    city_id = city if isinstance(city, int) else city.id
    found: CapAlert | None = await session.scalar(
        select(CapAlert).where(
            CapAlert.city_id == city_id,
            CapAlert.sender == sender,
            CapAlert.identifier == identifier,
            CapAlert.sent == sent,
        )
    )
    return found


async def _referenced(session: AsyncSession, city: City, alert: Alert) -> list[CapAlert]:
    """The alerts an Update or Cancel refers to that Maeul took in; refused when it names none
    Maeul knows (an update of an alert never received cannot say what it replaces)."""
    found = [
        row
        for ref in alert.references
        if (row := await _earlier(session, city, ref.sender, ref.identifier, ref.sent)) is not None
    ]
    if not found:
        named = " ".join(f"{r.sender},{r.identifier},{r.sent}" for r in alert.references)
        raise CapRefused(
            "cap_reference_unknown",
            ko=f"{alert.msg_type}가 가리키는 경보를 받은 적이 없습니다: {named[:300] or '(없음)'}",
            en=f"The {alert.msg_type} references no alert this gateway took in: "
            f"{named[:300] or '(none)'}",
            path="/cap:alert/cap:references",
        )
    return found


async def _stop(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    principal: Principal,
    referenced: Sequence[CapAlert],
) -> tuple[str, ...]:
    """Cancel what has not played of the referenced alerts' broadcasts (speakers playing one
    stop), withdraw a request still waiting for approval, and cancel a send still held by quiet
    hours (or the broadcast it became); the broadcasts stopped."""
    stopped: list[str] = []
    for row in referenced:
        broadcast_id = row.broadcast_id
        if row.schedule_id is not None:
            broadcast_id = await _stop_held(session, runtime, city, principal, row.schedule_id)
        if row.approval_id is not None:
            approval = await session.get(ApprovalRequest, row.approval_id)
            if approval is not None and approval.state == "pending":
                await approvals.reject(
                    session, runtime, city, approval.id, principal, "CAP Update/Cancel"
                )
            elif approval is not None:
                broadcast_id = approval.broadcast_id
        if broadcast_id is None:
            continue
        try:
            await broadcasts.cancel_broadcast(session, runtime, city, broadcast_id, principal)
        except Conflict as exc:
            if exc.code != "broadcast_finished":
                raise
            continue  # everything played already: the update follows it
        stopped.append(broadcast_id)
    return tuple(stopped)


async def _stop_held(
    session: AsyncSession, runtime: Runtime, city: City, principal: Principal, schedule_id: str
) -> str | None:
    """An alert held by quiet hours became a schedule: cancelled while it waits; once it fired,
    the broadcast it made is the one to stop."""
    schedule = await session.get(Schedule, schedule_id)
    if schedule is not None and schedule.state in ("active", "paused"):
        await schedules.cancel_schedule(session, runtime, city, schedule_id, principal=principal)
        return None
    fired: str | None = await session.scalar(
        select(ScheduleOccurrence.broadcast_id)
        .where(
            ScheduleOccurrence.schedule_id == schedule_id,
            ScheduleOccurrence.broadcast_id.is_not(None),
        )
        .order_by(ScheduleOccurrence.occurrence_at.desc())
        .limit(1)
    )
    return fired


async def _villages(session: AsyncSession, city: City, info: Info) -> tuple[int, ...]:
    if not info.areas:
        raise CapRefused(
            "cap_area_missing",
            ko="경보에 지역(<area>)이 없습니다. 방송할 마을을 정할 수 없습니다.",
            en="The alert has no <area>: there is no telling which villages it is for.",
            path="/cap:alert/cap:info/cap:area",
        )
    covered = await geography.villages_in(session, city.id, info.areas, allow_empty=True)
    if not covered:
        raise CapRefused(
            "cap_area_empty",
            ko="경보 지역 안에 이 도시의 마을이 없습니다.",
            en="The alert's areas cover no village of this city.",
            path="/cap:alert/cap:info/cap:area",
        )
    return tuple(p.id for p in covered)


def invalid_media_type() -> UnsupportedMediaType:
    return UnsupportedMediaType(
        "cap_invalid_media_type",
        ko="CAP 문서는 Content-Type application/cap+xml 또는 application/xml로 보내 주세요.",
        en="Send the CAP document as application/cap+xml or application/xml.",
    )
