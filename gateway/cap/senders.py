"""The allow-list of CAP senders: which `<sender>` values the city takes alerts from, and the
account each posts as.

A CAP sender is a Maeul account (any sending role; a safety officer for a disaster agency, a
police officer for missing-person alerts) with its own credential: an API key, stored hashed
(``POST /users/{id}/api-keys``). Its role decides the categories its alerts may be, its area
the villages they may reach, exactly as for a person; the allow-list ties a `<sender>` value
to that account, so an account posts only the alerts of the senders the city gave it, and a
disabled sender's alerts are refused.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import SENDERS, Principal, Role, with_city_rights
from gateway.cap.models import CapSender
from gateway.cap.schemas import CapSenderCreate, CapSenderPatch
from gateway.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gateway.places.models import City
from gateway.settings import Settings
from gateway.users.logins import principal_of
from gateway.users.models import User


def sender_not_allowed(sender: str) -> Forbidden:
    return Forbidden(
        "cap_sender_not_allowed",
        ko=f"이 계정은 CAP 보낸곳 '{sender[:100]}'의 경보를 보낼 수 없습니다 (허용 목록에 없거나 "
        "꺼져 있음).",
        en=f"This account may not post alerts of the CAP sender {sender[:100]!r} (not on the "
        "allow-list for it, or disabled).",
    )


async def allowed_sender(
    session: AsyncSession, city: City, principal: Principal, sender: str
) -> CapSender:
    """The enabled allow-list row for ``sender`` that names the caller's account; refused
    (403) otherwise."""
    row = await find_sender(session, city, sender)
    if row is None or not row.enabled or row.user_id != principal.user_id:
        raise sender_not_allowed(sender)
    return row


async def find_sender(session: AsyncSession, city: City, sender: str) -> CapSender | None:
    found: CapSender | None = await session.scalar(
        select(CapSender).where(CapSender.city_id == city.id, CapSender.sender == sender)
    )
    return found


async def principal_of_sender(
    session: AsyncSession, settings: Settings, row: CapSender
) -> Principal | None:
    """Who a polled feed's alerts are sent as: the sender's account as it is now (None when it
    is suspended)."""
    user = await session.get(User, row.user_id)
    if user is None or user.suspended_at is not None:
        return None
    return with_city_rights(principal_of(user), settings)


async def list_senders(session: AsyncSession, city: City) -> list[CapSender]:
    rows = await session.scalars(
        select(CapSender).where(CapSender.city_id == city.id).order_by(CapSender.id)
    )
    return list(rows)


async def _load(session: AsyncSession, city: City, sender_id: int) -> CapSender:
    row = await session.get(CapSender, sender_id)
    if row is None or row.city_id != city.id:
        raise NotFound(
            "cap_sender_not_found", ko="CAP 보낸곳을 찾을 수 없습니다.", en="No such CAP sender."
        )
    return row


async def _sending_account(session: AsyncSession, city: City, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None or user.city_id != city.id:
        raise NotFound("user_not_found", ko="사용자를 찾을 수 없습니다.", en="No such user.")
    if Role(user.role) not in SENDERS:
        raise InvalidRequest(
            "cap_sender_account_cannot_send",
            ko="방송을 보낼 수 없는 역할(감사자)의 계정은 CAP 보낸곳이 될 수 없습니다.",
            en="An account whose role sends nothing (an auditor) cannot be a CAP sender.",
        )
    return user


async def add_sender(
    session: AsyncSession, city: City, body: CapSenderCreate, now: datetime
) -> CapSender:
    await _sending_account(session, city, body.user_id)
    row = CapSender(
        city_id=city.id,
        sender=body.sender,
        user_id=body.user_id,
        enabled=body.enabled,
        note=body.note,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            "cap_sender_exists",
            ko=f"CAP 보낸곳 '{body.sender[:100]}'은 이미 있습니다. 바꾸려면 PATCH 하세요.",
            en=f"The CAP sender {body.sender[:100]!r} exists already; PATCH it to change it.",
        ) from None
    return row


async def update_sender(
    session: AsyncSession, city: City, sender_id: int, body: CapSenderPatch, now: datetime
) -> CapSender:
    row = await _load(session, city, sender_id)
    if body.user_id is not None:
        await _sending_account(session, city, body.user_id)
        row.user_id = body.user_id
    if body.enabled is not None:
        row.enabled = body.enabled
    if "note" in body.model_fields_set:
        row.note = body.note
    row.updated_at = now
    await session.flush()
    return row
