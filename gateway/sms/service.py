"""Putting SMS in the outbox, claiming them for sending, and every change of their state.

Every change is one compare-and-set on the row's ``version`` (`_move`), so two gateway replicas
(or a worker and a delivery report arriving at the same moment) never both move a message: the
loser reads the row again and applies its event to what it finds, through the transition table
in `gateway.sms.states`. Services flush, never commit.

Each city has a daily budget of message parts (``sms_daily_budget``, the city's local day); a
message is charged once, when first claimed, with a conditional update, so replicas never
overspend it between them. A message over the budget ends as ``over_budget`` and is not sent.

The recipient is sealed with the residents' `PhoneCipher` (``GATEWAY_PHONE_KEY``), the
message's id as associated data. Once Kannel has a message (sent) or it can no longer go
(delivered, failed, over budget), its sealed number is erased, and so is its text when it was
enqueued with ``forget_text`` (a verification code): nothing is left to read after the fact.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import dialect_insert
from gateway.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gateway.residents.crypto import PhoneCipher, normalise_phone
from gateway.sms.links import ReportLinks
from gateway.sms.models import SmsBudgetDay, SmsMessage
from gateway.sms.segments import count_parts
from gateway.sms.states import (
    DLR_EVENTS,
    FINAL,
    TRANSITIONS,
    InvalidTransition,
    SmsEvent,
    SmsStatus,
    next_status,
)

log = logging.getLogger(__name__)

# Korea keeps one offset all year; the budget's day is the city's day, not UTC's.
KST: Final = timezone(timedelta(hours=9))
_CANDIDATES: Final = 20
_MOVE_ATTEMPTS: Final = 10
# Past these the number (and a forgettable text) is no longer needed.
_DONE_WITH: Final = frozenset({SmsStatus.SENT, *FINAL})
# What a message keeps once done with: nothing to open, and a verification code's text gone.
_ERASED: Final[dict[str, Any]] = {
    "to_sealed": b"",
    "text": case((SmsMessage.forget_text, ""), else_=SmsMessage.text),
}


def recipient_context(message_id: str) -> str:
    return f"sms:{message_id}"


def seal_recipient(cipher: PhoneCipher, message_id: str, number: str) -> bytes:
    """``<key id>:<nonce, ciphertext and tag>``: the key id names the key for rotation."""
    sealed = cipher.seal(number, context=recipient_context(message_id))
    return sealed.key_id.encode("ascii") + b":" + sealed.ciphertext


def open_recipient(cipher: PhoneCipher, message_id: str, to_sealed: bytes) -> str:
    """The number a message goes to. Raises PhoneKeyUnavailable (its key is not configured, or
    the row was tampered with or already done with)."""
    key_id, _, ciphertext = to_sealed.partition(b":")
    return cipher.open(
        key_id.decode("ascii", "replace"), ciphertext, context=recipient_context(message_id)
    )


class SmsTextError(InvalidRequest):
    pass


class SmsNotFound(NotFound):
    code = "sms_not_found"

    def __init__(self) -> None:
        super().__init__(ko="없는 문자입니다.", en="No such SMS.")


class ReportForged(Forbidden):
    code = "sms_report_forged"

    def __init__(self) -> None:
        super().__init__(
            ko="서명이 맞지 않는 수신 결과 알림입니다.",
            en="The delivery report's signature does not match: not sent by this gateway's Kannel.",
        )


class ReportStatusUnknown(InvalidRequest):
    code = "sms_report_status_unknown"

    def __init__(self, status: int) -> None:
        super().__init__(
            ko=f"알 수 없는 수신 결과 코드입니다: {status}",
            en=f"Unknown delivery report code {status} (expected 1, 2, 4, 8 or 16).",
        )


class ReportNotApplicable(Conflict):
    code = "sms_report_not_applicable"

    def __init__(self, error: InvalidTransition) -> None:
        super().__init__(
            ko=f"이미 '{error.current}' 상태인 문자에는 이 수신 결과를 적용할 수 없습니다.",
            en=f"This report cannot apply to an SMS already {error.current}.",
        )


def local_day(now: datetime) -> str:
    return now.astimezone(KST).date().isoformat()


async def enqueue_sms(
    session: AsyncSession,
    *,
    cipher: PhoneCipher,
    city_id: int,
    to_number: str,
    text: str,
    reference_kind: str,
    reference_id: str,
    now: datetime,
    max_parts: int = 10,
    forget_text: bool = False,
    flush: bool = True,
) -> SmsMessage:
    """Put one SMS in the outbox, queued; the SMS worker sends it.

    `to_number` is any spelling of a Korean mobile number; only its sealed form is stored.
    `forget_text`: the text is erased once the message is sent or final (verification codes).
    `flush=False` leaves the insert to the caller's next flush (many messages in one).
    Raises `InvalidPhoneNumber` (invalid_phone_number) or `SmsTextError` (sms_text_empty,
    sms_text_too_long).
    """
    number = normalise_phone(to_number)
    if not text.strip():
        raise SmsTextError(
            "sms_text_empty", ko="보낼 문자 내용이 없습니다.", en="The SMS text is empty."
        )
    parts = count_parts(text)
    if parts > max_parts:
        raise SmsTextError(
            "sms_text_too_long",
            ko=f"문자가 너무 깁니다: {parts}통이 필요하지만 "
            f"최대 {max_parts}통까지 보낼 수 있습니다.",
            en=f"The SMS would take {parts} parts; at most {max_parts} are allowed.",
        )
    if not (0 < len(reference_kind) <= 32 and 0 < len(reference_id) <= 64):
        raise ValueError("reference_kind (1-32 characters) and reference_id (1-64) are required")
    message_id = secrets.token_hex(16)
    message = SmsMessage(
        id=message_id,
        city_id=city_id,
        reference_kind=reference_kind,
        reference_id=reference_id,
        to_sealed=seal_recipient(cipher, message_id, number),
        text=text,
        forget_text=forget_text,
        parts=parts,
        status=SmsStatus.QUEUED,
        attempts=0,
        version=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(message)
    if flush:
        await session.flush()
    return message


@dataclass(frozen=True)
class Claim:
    """A message claimed for sending (or found over the budget), as it was when claimed."""

    id: str
    status: SmsStatus
    to_sealed: bytes
    text: str
    attempts: int


async def claim_due(
    session: AsyncSession,
    *,
    city_id: int,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    daily_budget: int,
    limit: int,
    passed: set[str] | None = None,
) -> list[Claim]:
    """Claim up to `limit` due messages of the city for this worker, oldest first.

    Due: queued with its next attempt now or past, or sending under a lease that ran out (its
    worker died before recording Kannel's answer). A message charged to no day yet is charged
    now; one that does not fit the day's budget ends as over_budget (returned, not sent).
    """
    query = (
        select(
            SmsMessage.id,
            SmsMessage.version,
            SmsMessage.status,
            SmsMessage.parts,
            SmsMessage.budget_day,
        )
        .where(
            SmsMessage.city_id == city_id,
            or_(
                and_(SmsMessage.status == SmsStatus.QUEUED, SmsMessage.next_attempt_at <= now),
                and_(SmsMessage.status == SmsStatus.SENDING, SmsMessage.lease_until < now),
            ),
        )
        .order_by(SmsMessage.next_attempt_at, SmsMessage.id)
        # Spare candidates for those another worker takes first.
        .limit(limit + _CANDIDATES)
    )
    if passed:
        query = query.where(SmsMessage.id.not_in(list(passed)))
    won: list[tuple[str, SmsStatus, int, str | None]] = []
    for message_id, version, status, parts, budget_day in (await session.execute(query)).all():
        if len(won) == limit:
            break
        claimed = next_status(SmsStatus(status), SmsEvent.CLAIMED)
        moved = await session.execute(
            update(SmsMessage)
            .where(SmsMessage.id == message_id, SmsMessage.version == version)
            .values(
                status=claimed,
                version=SmsMessage.version + 1,
                attempts=SmsMessage.attempts + 1,
                claimed_by=worker_id,
                lease_until=now + lease,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) == 1:  # else another worker took it first
            won.append((message_id, claimed, parts, budget_day))
    if not won:
        return []
    statuses = {message_id: claimed for message_id, claimed, _, _ in won}
    fresh = [(message_id, parts) for message_id, _, parts, budget_day in won if budget_day is None]
    day = local_day(now)
    # Usually the whole batch fits: one charge. Otherwise one by one, in order, as if claimed
    # one at a time.
    if fresh and await _charge(session, city_id, day, sum(p for _, p in fresh), daily_budget):
        charged = [message_id for message_id, _ in fresh]
    else:
        charged = []
        for message_id, parts in fresh:
            if await _charge(session, city_id, day, parts, daily_budget):
                charged.append(message_id)
                continue
            statuses[message_id] = next_status(statuses[message_id], SmsEvent.OVER_BUDGET)
            await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == message_id)
                .values(
                    **_ERASED,
                    version=SmsMessage.version + 1,
                    status=statuses[message_id],
                    reason="over_budget",
                    finished_at=now,
                    claimed_by=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
    if charged:
        await session.execute(
            update(SmsMessage)
            .where(SmsMessage.id.in_(charged))
            .values(version=SmsMessage.version + 1, budget_day=day)
            .execution_options(synchronize_session=False)
        )
    rows = {
        row.id: row
        for row in await session.execute(
            select(SmsMessage.id, SmsMessage.to_sealed, SmsMessage.text, SmsMessage.attempts).where(
                SmsMessage.id.in_(list(statuses))
            )
        )
    }
    return [
        Claim(
            message_id,
            statuses[message_id],
            rows[message_id].to_sealed,
            rows[message_id].text,
            rows[message_id].attempts,
        )
        for message_id, _, _, _ in won
    ]


async def _charge(session: AsyncSession, city_id: int, day: str, parts: int, budget: int) -> bool:
    """Add `parts` to the city's count for `day` if it stays within `budget`."""
    insert = dialect_insert(session)
    await session.execute(
        insert(SmsBudgetDay)
        .values(city_id=city_id, day=day, used=0)
        .on_conflict_do_nothing(index_elements=["city_id", "day"])
    )
    charged = await session.execute(
        update(SmsBudgetDay)
        .where(
            SmsBudgetDay.city_id == city_id,
            SmsBudgetDay.day == day,
            SmsBudgetDay.used + parts <= budget,
        )
        .values(used=SmsBudgetDay.used + parts)
        .execution_options(synchronize_session=False)
    )
    return getattr(charged, "rowcount", 0) == 1


async def budget_used(session: AsyncSession, city_id: int, now: datetime) -> int:
    used = await session.scalar(
        select(SmsBudgetDay.used).where(
            SmsBudgetDay.city_id == city_id, SmsBudgetDay.day == local_day(now)
        )
    )
    return used or 0


def _leaving(event: SmsEvent) -> tuple[SmsStatus, frozenset[SmsStatus]] | None:
    """The one state `event` moves messages to, and every state it moves them out of (its
    self-loops left out); None when it moves them to more than one."""
    moves = {
        status: moved[event]
        for status, moved in TRANSITIONS.items()
        if moved.get(event, status) != status
    }
    targets = set(moves.values())
    return (targets.pop(), frozenset(moves)) if len(targets) == 1 else None


_LEAVING: Final = {event: leaving for event in SmsEvent if (leaving := _leaving(event)) is not None}


def _moved(values: dict[str, Any], new: SmsStatus) -> dict[str, Any]:
    """What a move to `new` writes: `values`, the state, and the erasures once done with."""
    return {**values, "status": new, **(_ERASED if new in _DONE_WITH else {})}


async def _move(
    session: AsyncSession, message_id: str, event: SmsEvent, values: dict[str, Any]
) -> SmsStatus:
    """Apply `event` to the message as it is now; `values` are written only when it changes
    state. Raises InvalidTransition (nothing changed) or SmsNotFound."""
    # The usual case in one statement: the message is in a state the event moves it out of.
    if (leaving := _LEAVING.get(event)) is not None:
        new, sources = leaving
        moved = await session.execute(
            update(SmsMessage)
            .where(SmsMessage.id == message_id, SmsMessage.status.in_(sources))
            .values(version=SmsMessage.version + 1, **_moved(values, new))
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) == 1:
            return new
    for _ in range(_MOVE_ATTEMPTS):
        row = (
            await session.execute(
                select(SmsMessage.status, SmsMessage.version).where(SmsMessage.id == message_id)
            )
        ).first()
        if row is None:
            raise SmsNotFound()
        current = SmsStatus(row.status)
        new = next_status(current, event)
        # A repeated or late report is noted on a message still under way; a final state keeps
        # the report that made it final.
        changes: dict[str, Any] = {}
        if "last_report" in values and current not in FINAL:
            changes["last_report"] = values["last_report"]
        if new != current:
            changes = _moved(values, new)
        if not changes:
            return new
        moved = await session.execute(
            update(SmsMessage)
            .where(SmsMessage.id == message_id, SmsMessage.version == row.version)
            .values(version=SmsMessage.version + 1, **changes)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) == 1:
            return new
    raise RuntimeError(f"SMS {message_id}: still contended after {_MOVE_ATTEMPTS} attempts")


_RELEASED: Final = {"claimed_by": None, "lease_until": None}


async def record_accepted(session: AsyncSession, message_id: str, now: datetime) -> SmsStatus:
    return await _move(session, message_id, SmsEvent.ACCEPTED, {**_RELEASED, "sent_at": now})


async def record_accepted_many(
    session: AsyncSession, message_ids: list[str], now: datetime
) -> None:
    """Kannel accepted these messages: `record_accepted` for each, in a statement per 500. A
    message a report or another worker moved meanwhile is left as it is."""
    new, sources = _LEAVING[SmsEvent.ACCEPTED]
    for start in range(0, len(message_ids), 500):
        await session.execute(
            update(SmsMessage)
            .where(
                SmsMessage.id.in_(message_ids[start : start + 500]),
                SmsMessage.status.in_(sources),
            )
            .values(
                version=SmsMessage.version + 1,
                **_moved({**_RELEASED, "sent_at": now}, new),
            )
            .execution_options(synchronize_session=False)
        )


async def record_retry(
    session: AsyncSession, message_id: str, *, reason: str, at: datetime
) -> SmsStatus:
    values = {**_RELEASED, "reason": reason, "next_attempt_at": at}
    return await _move(session, message_id, SmsEvent.RETRY, values)


async def record_failed(
    session: AsyncSession, message_id: str, *, reason: str, now: datetime
) -> SmsStatus:
    values = {**_RELEASED, "reason": reason[:200], "finished_at": now}
    return await _move(session, message_id, SmsEvent.GIVE_UP, values)


async def record_report(
    session: AsyncSession,
    links: ReportLinks | None,
    *,
    message_id: str,
    signature: str,
    status: int,
    now: datetime,
) -> SmsStatus:
    """A delivery report from Kannel: checked against the link's signature, then applied."""
    if links is None or not links.verify(message_id, signature):
        raise ReportForged()
    event = DLR_EVENTS.get(status)
    if event is None:
        raise ReportStatusUnknown(status)
    values: dict[str, Any] = {**_RELEASED, "last_report": status}
    if event is SmsEvent.REPORT_FAILED:
        values |= {"reason": f"dlr_{status}", "finished_at": now}
    elif event is SmsEvent.REPORT_DELIVERED:
        values |= {"finished_at": now}
    else:
        values |= {"sent_at": now}
    try:
        return await _move(session, message_id, event, values)
    except InvalidTransition as exc:
        raise ReportNotApplicable(exc) from None


async def get_message(session: AsyncSession, message_id: str) -> SmsMessage:
    message = await session.get(SmsMessage, message_id, populate_existing=True)
    if message is None:
        raise SmsNotFound()
    return message


def is_final(status: str) -> bool:
    return SmsStatus(status) in FINAL
