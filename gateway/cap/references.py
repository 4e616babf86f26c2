"""What a CAP Update or Cancel may do to the alerts it references, and what it stops of them.

References are checked before anything is sent or stopped: each must be an alert this gateway
took in (``cap_reference_unknown``), of a sender the poster may use itself
(``cap_reference_sender_not_allowed``: one agency never cancels another's alert), and of the
same mode (``cap_reference_mode_mismatch``: a Test or Exercise never touches a live alert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals import service as approvals
from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.reading import get_broadcast
from gateway.cap import senders
from gateway.cap.models import CapAlert
from gateway.cap.reading import Alert, CapRefused
from gateway.deps import Runtime
from gateway.errors import Conflict, Forbidden
from gateway.places.models import City
from gateway.schedules import service as schedules
from gateway.schedules.models import Schedule, ScheduleOccurrence


@dataclass(frozen=True)
class Stopped:
    """What an Update or Cancel stopped: broadcasts cancelled, held sends (schedules made for
    the end of quiet hours or an <effective> time) cancelled, approval requests withdrawn."""

    broadcast_ids: tuple[str, ...] = ()
    schedule_ids: tuple[str, ...] = ()
    approval_ids: tuple[str, ...] = ()


async def find_alert(
    session: AsyncSession, city_id: int, sender: str, identifier: str, sent: str
) -> CapAlert | None:
    found: CapAlert | None = await session.scalar(
        select(CapAlert).where(
            CapAlert.city_id == city_id,
            CapAlert.sender == sender,
            CapAlert.identifier == identifier,
            CapAlert.sent == sent,
        )
    )
    return found


def _mode_mismatch(alert: Alert, mode: str, row: CapAlert) -> Conflict:
    return Conflict(
        "cap_reference_mode_mismatch",
        ko=f"{alert.msg_type} 메시지({mode})는 다른 모드({row.mode})의 경보 "
        f"{row.identifier[:100]}에 적용할 수 없습니다. 메시지는 같은 모드의 경보만 바꾸거나 "
        "취소합니다 (시험·훈련이 실제 경보를, 실제 메시지가 시험·훈련을 바꾸지 않습니다).",
        en=f"The {mode} {alert.msg_type} cannot act on the {row.mode} alert "
        f"{row.identifier[:100]!r}: a message acts only on alerts of its own mode (a test or "
        "exercise never changes a real alert, nor a real message a test or exercise).",
    )


def _sender_not_yours(row: CapAlert) -> Forbidden:
    return Forbidden(
        "cap_reference_sender_not_allowed",
        ko=f"다른 보낸곳('{row.sender[:100]}')의 경보는 바꾸거나 취소할 수 없습니다.",
        en=f"The referenced alert is from the CAP sender {row.sender[:100]!r}, which this "
        "account may not post for: it cannot be updated or cancelled from here.",
    )


async def referenced(
    session: AsyncSession, city: City, principal: Principal, alert: Alert, mode: str
) -> list[CapAlert]:
    """The alerts an Update or Cancel refers to that Maeul took in, each checked (the module's
    docstring); refused when it names none Maeul knows (an update of an alert never received
    cannot say what it replaces)."""
    found = [
        row
        for ref in alert.references
        if (row := await find_alert(session, city.id, ref.sender, ref.identifier, ref.sent))
        is not None
    ]
    if not found:
        named = " ".join(f"{r.sender},{r.identifier},{r.sent}" for r in alert.references)
        raise CapRefused(
            "cap_reference_unknown",
            ko=f"{alert.msg_type} 메시지가 가리키는 경보를 받은 적이 없습니다: "
            f"{named[:300] or '(없음)'}",
            en=f"The {alert.msg_type} references no alert this gateway took in: "
            f"{named[:300] or '(none)'}",
            path="/cap:alert/cap:references",
        )
    for row in found:
        if row.sender != alert.sender:
            try:
                await senders.allowed_sender(session, city, principal, row.sender)
            except Forbidden:
                raise _sender_not_yours(row) from None
        if row.mode != mode:
            raise _mode_mismatch(alert, mode, row)
    return found


async def stop(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    principal: Principal,
    rows: Sequence[CapAlert],
    *,
    waiting_only: bool = False,
) -> Stopped:
    """Cancel what has not played of the referenced alerts' broadcasts (speakers playing one
    stop), withdraw a request still waiting for approval, and cancel a send still held (or,
    once it went out, stop the broadcast it became). ``waiting_only``: only the held sends and
    the approval requests (an update that waits itself must not leave them to play too)."""
    stopped: list[str] = []
    held: list[str] = []
    withdrawn: list[str] = []
    for row in rows:
        broadcast_id = row.broadcast_id
        if row.schedule_id is not None:
            schedule = await session.get(Schedule, row.schedule_id)
            if schedule is not None and schedule.state in ("active", "paused"):
                await schedules.cancel_schedule(
                    session, runtime, city, schedule.id, principal=principal
                )
                held.append(schedule.id)
                broadcast_id = None
            else:
                broadcast_id = await _fired(session, row.schedule_id)
        if row.approval_id is not None:
            approval = await session.get(ApprovalRequest, row.approval_id)
            if approval is not None and approval.state == "pending":
                await approvals.reject(
                    session, runtime, city, approval.id, principal, "CAP Update/Cancel"
                )
                withdrawn.append(approval.id)
            elif approval is not None:
                broadcast_id = approval.broadcast_id
        if broadcast_id is None or waiting_only:
            continue
        if (await get_broadcast(session, city.id, broadcast_id)).cancelled_at is not None:
            continue  # stopped already (an earlier Cancel): not stopped by this one
        try:
            await broadcasts.cancel_broadcast(session, runtime, city, broadcast_id, principal)
        except Conflict as exc:
            if exc.code != "broadcast_finished":
                raise
            continue  # everything played already: the update follows it
        stopped.append(broadcast_id)
    return Stopped(tuple(stopped), tuple(held), tuple(withdrawn))


async def broadcast_of(session: AsyncSession, row: CapAlert) -> str | None:
    """The broadcast an alert went out as: at once, once held, or once approved."""
    if row.broadcast_id is not None:
        return row.broadcast_id
    if row.schedule_id is not None:
        return await _fired(session, row.schedule_id)
    if row.approval_id is not None:
        approval = await session.get(ApprovalRequest, row.approval_id)
        return approval.broadcast_id if approval is not None else None
    return None


async def _fired(session: AsyncSession, schedule_id: str) -> str | None:
    """The broadcast a held send became once it fired."""
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
