"""Taking a CAP 1.2 alert in: from the document to a broadcast, through the one send use case.

    document ─ parse (xsd: no DTD, no entities, the schema) ─ read ─ the sender allowed?
      ─ seen before? (identifier, sender, sent: the earlier answer, 200)
      ─ status → mode (Actual live, Exercise, Test; System and Draft are not broadcast)
      ─ Public only, <sent> not a day ahead
      ─ Update / Cancel: the referenced alerts known, of the same mode, of senders the account
        may post for (``references``)
      ─ the spoken <info> (Korean; none: refused): expired? too long? the infos' areas the
        same? its areas → villages; an AllClear Update of a live alert: that alert's all clear
      ─ mapping → category ─ ``sending.now.send_now`` (rights, limits, two-person, quiet hours),
        or a schedule for a future <effective>
      ─ Update / Cancel: what has not played of the referenced alerts is stopped (only what
        waits, while the update waits itself)

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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from audio.speech.languages import known_texts
from gateway.auth import Principal
from gateway.broadcasts import all_clear
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import get_broadcast, reached_villages
from gateway.broadcasts.service import BroadcastRequest, Started
from gateway.cap import references, senders, xsd
from gateway.cap.mapping import MappingRule, map_info
from gateway.cap.models import CapAlert
from gateway.cap.reading import Alert, CapRefused, Info, read_alert
from gateway.cap.references import Stopped, find_alert
from gateway.deps import Runtime
from gateway.errors import Conflict, InvalidRequest, UnsupportedMediaType
from gateway.places import areas, geography
from gateway.places.models import City
from gateway.schedules import service as schedules
from gateway.schedules.recurrence import Timing
from gateway.sending import now as sending_now
from gateway.sending.service import AwaitingApproval

MODES: Final = {"Actual": "live", "Exercise": "exercise", "Test": "test"}
_MAX_EXPIRY_S: Final = 7 * 86400
# The most an alert's spoken text (headline, description, instruction) may have: about two
# minutes of speech, said twice for an immediate threat; the audio of a longer one would be
# over the upload limit, and nobody outdoors follows it.
MAX_SPOKEN_CHARS: Final = 500
# A <sent> this far ahead of the gateway's clock is a wrong clock or a wrong document.
MAX_SENT_AHEAD_S: Final = 86400
# An <effective> less than this ahead is now (clocks differ by seconds).
_START_SLACK_S: Final = 60


@dataclass(frozen=True)
class Ingested:
    alert: CapAlert
    mode: str
    category: str | None
    village_ids: tuple[int, ...] = ()
    replayed: bool = False
    stopped: Stopped = field(default_factory=Stopped)


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
    earlier = await find_alert(session, city.id, alert.sender, alert.identifier, alert.sent_key)
    if earlier is not None:
        _check_same(earlier, alert, document)
        return replayed(earlier)
    mode = mode_of(alert.status)
    now = runtime.clock.now()
    _check_alert(alert, now)
    referenced = (
        await references.referenced(session, city, principal, alert, mode)
        if alert.msg_type != "Alert"
        else []
    )
    sha256, _size = fingerprint(document)
    row = _row(city, alert, principal, sha256, now)
    row.mode = mode
    if alert.msg_type == "Cancel":
        stopped = await references.stop(session, runtime, city, principal, referenced)
        return await _record(session, _stopped(row, stopped), None)
    info = _spoken(alert, now)
    row.language = info.language
    row.texts = alert.texts()
    original = await _cleared(session, city, alert, info, referenced)
    expires_in, key = _expires_in(info.expires, now), f"cap:{_alert_key(alert)}"
    extra, texts = {"cap": _cap_target(alert, info)}, known_texts(row.texts)
    if original is None and referenced:
        # What the update replaces, should it go out later (approved, or held by quiet hours
        # or its <effective>): stopped then, by the rights its sender has now.
        extra["cap"]["replaces"] = await _replaces(session, runtime, principal, referenced)
    if original is not None:
        # An all clear of a live alert: its category and villages, linked to it, not a cancel.
        request = all_clear.request_for(
            original,
            text=info.text,
            title=info.headline,
            expires_in_s=expires_in,
            idempotency_key=key,
            principal=principal,
            extra_target=extra,
            texts=texts,
        )
        village_ids = tuple(reached_villages(original))
    else:
        village_ids = await _villages(session, city, info)
        mapped = map_info(info, rules)
        request = BroadcastRequest(
            category=mapped.category,
            title=(info.headline or info.event)[:200],
            text=info.text,
            all_villages=False,
            district_ids=(),
            village_ids=village_ids,
            expires_in_s=expires_in,
            idempotency_key=key,
            created_by=principal.actor,
            repeat=mapped.repeat,
            mode=mode,
            principal=principal,
            extra_target=extra,
            texts=texts,
        )
    row.category = request.category.value
    row.village_ids = list(village_ids)
    try:
        answer = await _send(session, runtime, city, request, info, now)
    except InvalidRequest as exc:
        # The same alert posted at the same moment went first (its expiry, counted from its
        # own moment, makes the request differ by a second): answer as it did.
        if exc.code != "idempotency_key_reused":
            raise
        if (winner := await _winner(session, city, alert)) is None:
            raise
        return replayed(winner)
    if answer.replayed and (winner := await _winner(session, city, alert)) is not None:
        return replayed(winner)
    if isinstance(answer, Started):
        row.broadcast_id = answer.broadcast.id
    elif isinstance(answer, AwaitingApproval):
        row.approval_id = answer.approval.id
    else:
        row.schedule_id = answer.schedule.id
    if original is not None:
        return await _record(session, row, village_ids)
    # The update replaces what has not played of what it updates once it is sent itself; while
    # it waits (quiet hours, a second person, its <effective>), what it updates must not go out
    # either.
    stopped = await references.stop(
        session,
        runtime,
        city,
        principal,
        referenced,
        waiting_only=not isinstance(answer, Started),
    )
    return await _record(session, _stopped(row, stopped), village_ids)


async def _replaces(
    session: AsyncSession, runtime: Runtime, principal: Principal, rows: Sequence[CapAlert]
) -> list[str]:
    found: list[str] = []
    for row in rows:
        broadcast_id = await references.broadcast_of(session, row)
        broadcast = await session.get(Broadcast, broadcast_id) if broadcast_id else None
        if broadcast is not None and broadcast.cancelled_at is None:
            await broadcasts.may_cancel(session, runtime, broadcast, principal)
            found.append(broadcast.id)
    return found


async def _winner(session: AsyncSession, city: City, alert: Alert) -> CapAlert | None:
    return await find_alert(session, city.id, alert.sender, alert.identifier, alert.sent_key)


async def _send(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: BroadcastRequest,
    info: Info,
    now: datetime,
) -> sending_now.Answer:
    """Send now, or from the alert's <effective> (else <onset>) time when that is ahead: held
    as quiet hours hold a send, by a schedule."""
    starts = info.effective or info.onset
    if starts is None or (starts - now).total_seconds() <= _START_SLACK_S:
        return await sending_now.send_now(session, runtime, city, request, None)
    return await schedules.create_schedule(
        session, runtime, city, request, None, Timing(send_at=starts), origin="cap_effective"
    )


def _check_same(earlier: CapAlert, alert: Alert, document: bytes) -> None:
    """The same alert posted again is answered as it was; the same sender, identifier and
    sent saying something else (another status, type, references or text) is a mistake to
    flag, not to answer as if it had been taken in."""
    if fingerprint(document)[0] == earlier.sha256:
        return
    said = (alert.status, alert.msg_type, _row_references(alert))
    if said == (earlier.status, earlier.msg_type, list(earlier.references or ())) and (
        alert.msg_type == "Cancel" or alert.texts() == dict(earlier.texts or {})
    ):
        return
    raise Conflict(
        "cap_alert_changed",
        ko=f"같은 보낸곳·식별자·보낸시각({alert.identifier[:100]})의 경보를 이미 받았는데 "
        "내용이 다릅니다. 바꾸려면 새 식별자의 Update를 보내 주세요.",
        en=f"An alert with this sender, identifier and sent ({alert.identifier[:100]!r}) was "
        "taken in already with other content; to change it, send an Update with a new "
        "identifier.",
    )


def _row_references(alert: Alert) -> list[str]:
    return [f"{r.sender},{r.identifier},{r.sent}" for r in alert.references]


def _check_alert(alert: Alert, now: datetime) -> None:
    """What makes an alert one Maeul does not broadcast, whatever it says."""
    if alert.msg_type not in ("Alert", "Update", "Cancel"):
        raise CapRefused(
            "cap_msg_type_not_broadcast",
            ko=f"'{alert.msg_type}' 메시지는 방송하지 않습니다 (Alert, Update, Cancel만).",
            en=f"A {alert.msg_type!r} message is not broadcast (only Alert, Update, Cancel).",
            path="/cap:alert/cap:msgType",
        )
    if alert.scope != "Public":
        raise CapRefused(
            "cap_scope_not_public",
            ko=f"범위가 '{alert.scope}'인 경보는 방송하지 않습니다. 옥외 스피커는 누구나 "
            "들으므로 공개(Public) 경보만 방송합니다.",
            en=f"An alert whose scope is {alert.scope!r} is not broadcast: the speakers are "
            "public, anyone nearby hears them, so only Public alerts are.",
            path="/cap:alert/cap:scope",
        )
    if (alert.sent - now).total_seconds() > MAX_SENT_AHEAD_S:
        raise CapRefused(
            "cap_sent_in_future",
            ko=f"보낸 시각 {alert.sent.isoformat()}이 하루 넘게 앞서 있습니다. 보낸 곳의 "
            "시계를 확인하세요.",
            en=f"The alert's <sent> {alert.sent.isoformat()} is more than a day ahead: check "
            "the sender's clock.",
            path="/cap:alert/cap:sent",
        )


def _spoken(alert: Alert, now: datetime) -> Info:
    info = alert.spoken_info()
    if info is None:
        raise CapRefused(
            "cap_no_info",
            ko="방송할 내용(<info>)이 없습니다.",
            en="The alert has no <info> to broadcast.",
            path="/cap:alert/cap:info",
        )
    if info.language.lower().split("-")[0] != "ko":
        # Villages hear Korean first: a voice reading another language's text to them would be
        # noise. Refused, so the sender knows, rather than played or mislabelled.
        raise CapRefused(
            "cap_no_korean_info",
            ko="한국어 <info>가 없습니다. 마을 스피커는 한국어로 먼저 방송하니 language가 ko-KR인 "
            "<info>를 넣어 보내 주세요 (다른 언어는 그 뒤에 방송합니다).",
            en="The alert has no Korean <info>: village speakers speak Korean first, so send one "
            "with language ko-KR (the other languages follow it).",
            path="/cap:alert/cap:info/cap:language",
        )
    if info.expires is not None and info.expires <= now:
        raise CapRefused(
            "cap_expired",
            ko=f"이미 만료된 경보입니다 (expires {info.expires.isoformat()}).",
            en=f"The alert has expired (expires {info.expires.isoformat()}).",
            path="/cap:alert/cap:info/cap:expires",
        )
    if len(info.text) > MAX_SPOKEN_CHARS:
        raise CapRefused(
            "cap_text_too_long",
            ko=f"방송할 문장(headline, description, instruction)이 {len(info.text)}자입니다. "
            f"최대 {MAX_SPOKEN_CHARS}자까지 방송합니다.",
            en=f"The spoken text (headline, description, instruction) has {len(info.text)} "
            f"characters; at most {MAX_SPOKEN_CHARS} are broadcast.",
            path="/cap:alert/cap:info",
        )
    named = [i.areas for i in alert.infos if i.areas]
    if any(shapes != named[0] for shapes in named):
        raise CapRefused(
            "cap_info_areas_differ",
            ko="<info>마다 지역이 다릅니다. 한 방송은 한 지역에 한 내용을 내보내므로, 지역이 "
            "다른 경보는 따로 보내 주세요.",
            en="The <info> blocks name different areas: one broadcast says one thing to one "
            "area, so send alerts for different areas separately.",
            path="/cap:alert/cap:info/cap:area",
        )
    return info


async def _cleared(
    session: AsyncSession,
    city: City,
    alert: Alert,
    info: Info,
    referenced: Sequence[CapAlert],
) -> Broadcast | None:
    """The live alert an Update whose responseType is AllClear ends, when it went out."""
    if alert.msg_type != "Update" or "AllClear" not in info.response_types:
        return None
    for row in referenced:
        broadcast_id = await references.broadcast_of(session, row)
        if broadcast_id is not None:
            original = await get_broadcast(session, city.id, broadcast_id)
            if all_clear.clearable(original):
                return original
    return None


def replayed(row: CapAlert) -> Ingested:
    """The first answer to an alert taken in before."""
    return Ingested(
        row,
        row.mode or "",
        row.category,
        tuple(row.village_ids or ()),
        replayed=True,
        stopped=Stopped(
            tuple(row.cancelled_ids or ()),
            tuple(row.cancelled_schedule_ids or ()),
            tuple(row.withdrawn_approval_ids or ()),
        ),
    )


def _stopped(row: CapAlert, stopped: Stopped) -> CapAlert:
    row.cancelled_ids = list(stopped.broadcast_ids)
    row.cancelled_schedule_ids = list(stopped.schedule_ids)
    row.withdrawn_approval_ids = list(stopped.approval_ids)
    return row


def _alert_key(alert: Alert) -> str:
    key = "\n".join((alert.sender, alert.identifier, alert.sent_key))
    return hashlib.sha256(key.encode()).hexdigest()[:40]


MAX_KEPT_SHAPES: Final = 50


def _cap_target(alert: Alert, info: Info) -> dict[str, object]:
    return {
        "identifier": alert.identifier[:200],
        "sender": alert.sender[:200],
        "sent": alert.sent_key,
        "msg_type": alert.msg_type,
        "language": info.language,
        "event": info.event[:200],
        # The shapes as the sender drew them, for the CAP document Maeul publishes of it.
        "areas": [areas.area_to_json(shape) for shape in info.areas[:MAX_KEPT_SHAPES]],
        # The alert ends here whenever it goes out (held by quiet hours, or approved later).
        **({"expires": info.expires.isoformat()} if info.expires is not None else {}),
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
        references=_row_references(alert),
        cancelled_ids=[],
        village_ids=[],
        texts={},
        sha256=sha256,
        created_by=principal.actor,
        created_at=now,
    )


async def _record(
    session: AsyncSession, row: CapAlert, village_ids: tuple[int, ...] | None
) -> Ingested:
    """Write the alert; the same alert posted twice at once is one (the first row wins, the
    other answers as a replay)."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        earlier = await find_alert(session, row.city_id, row.sender, row.identifier, row.sent)
        assert earlier is not None
        return replayed(earlier)
    stopped = Stopped(
        tuple(row.cancelled_ids),
        tuple(row.cancelled_schedule_ids),
        tuple(row.withdrawn_approval_ids),
    )
    return Ingested(row, row.mode or "", row.category, village_ids or (), stopped=stopped)


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
