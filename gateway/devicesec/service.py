"""Device security: broker credentials, stored as hashes only.

A speaker's broker password is generated here, handed out once and stored only as Mosquitto's
own hash, so the password file is rendered from the database without any secret in it
(``gateway.devicesec.broker_files``). The gateway's own broker user (from its MQTT URL) is added
at render time unless an account of that name is stored. Security events are recorded by
``gateway.devicesec.security_events``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Final, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.devicesec import grants, mosquitto
from gateway.devicesec.models import BrokerAccount, SpeakerCredential
from gateway.devicesec.schemas import (
    BrokerAccountCreate,
    BrokerAccountIssued,
    BrokerAccountRead,
    SpeakerCredentials,
)
from gateway.errors import Conflict, NotFound
from gateway.places.models import City
from gateway.speakers import service as speakers
from wire import contract

log = logging.getLogger(__name__)
IN_CHUNK: Final = 900
_T = TypeVar("_T")


def in_chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def username_taken(name: str) -> Conflict:
    return Conflict(
        "username_taken",
        ko=f"MQTT 사용자 이름 '{name}'은(는) 이미 다른 계정이 쓰고 있습니다.",
        en=f"The MQTT user name '{name}' already belongs to another account.",
    )


async def _account_names(session: AsyncSession, city_id: int) -> set[str]:
    return set(
        await session.scalars(
            select(BrokerAccount.username).where(BrokerAccount.city_id == city_id)
        )
    )


async def issue_speaker_credentials(
    session: AsyncSession,
    city: City,
    speaker_id: int,
    *,
    now: datetime,
    reserved: Collection[str] = (),
) -> SpeakerCredentials:
    """A new broker password for one speaker (the caller hands it to the broker, or renders the
    broker's files again). `reserved`: user names taken outside the database."""
    speaker = await speakers.get_speaker(session, city, speaker_id)
    if speaker.code in reserved or speaker.code in await _account_names(session, city.id):
        raise username_taken(speaker.code)
    secret = mosquitto.new_secret()
    hashed = mosquitto.hash_password(secret)
    row = await session.get(SpeakerCredential, speaker_id)
    if row is None:
        session.add(SpeakerCredential(speaker_id=speaker_id, password_hash=hashed, issued_at=now))
    else:
        row.password_hash, row.issued_at = hashed, now
    await session.flush()
    log.info(
        "스피커 %s 의 브로커 비밀번호 발급 / broker password issued for %s",
        speaker.code,
        speaker.code,
    )
    return SpeakerCredentials(
        speaker_id=speaker_id,
        username=speaker.code,
        client_id=contract.speaker_client_id(speaker.code),
        password=secret,
        issued_at=now,
    )


async def issue_fleet_credentials(
    session: AsyncSession, city: City, *, now: datetime, codes: Collection[str] | None = None
) -> dict[str, str]:
    """New broker passwords for many speakers at once (None: every speaker of the city).

    Returns speaker code -> password, for whoever installs them (the demo's simulated fleet);
    codes that collide with an account name are left out.
    """
    wanted = (
        [s.code for s in (await speakers.fleet(session, city, limit=None, offset=0)).items]
        if codes is None
        else sorted(set(codes))
    )
    ids = await speakers.speaker_ids_by_code(session, city.id, wanted)
    taken = await _account_names(session, city.id)
    chosen = sorted(code for code in ids if code not in taken)
    issued = {code: mosquitto.new_secret() for code in chosen}
    # PBKDF2 for thousands of speakers is CPU work: off the event loop.
    hashes = await asyncio.to_thread(
        lambda: {code: mosquitto.hash_password(secret) for code, secret in issued.items()}
    )
    speaker_ids = [ids[code] for code in chosen]
    for chunk in in_chunks(speaker_ids):
        await session.execute(
            delete(SpeakerCredential).where(SpeakerCredential.speaker_id.in_(chunk))
        )
    if chosen:
        await session.execute(
            insert(SpeakerCredential),
            [
                {"speaker_id": ids[code], "password_hash": hashes[code], "issued_at": now}
                for code in chosen
            ],
        )
    await session.flush()
    log.info(
        "스피커 %d대의 브로커 비밀번호 발급 / broker passwords issued for %d speakers",
        len(chosen),
        len(chosen),
    )
    return issued


async def set_account_password(
    session: AsyncSession,
    city: City,
    username: str,
    role: str,
    password: str,
    *,
    now: datetime,
    reserved: Collection[str] = (),
) -> None:
    """Create or update a gateway or monitor account with a password chosen by the caller.
    `reserved`: user names taken outside the database."""
    mosquitto.check_username(username)
    ids = await speakers.speaker_ids_by_code(session, city.id, [username])
    # A monitor's client id is its user name: never one of the speakers' client ids.
    speakerish = role == "monitor" and username.startswith(contract.SPEAKER_CLIENT_PREFIX)
    if ids or speakerish or username in reserved:
        raise username_taken(username)
    hashed = mosquitto.hash_password(password)
    account = await session.scalar(
        select(BrokerAccount).where(
            BrokerAccount.city_id == city.id, BrokerAccount.username == username
        )
    )
    if account is None:
        session.add(
            BrokerAccount(
                city_id=city.id,
                username=username,
                role=role,
                password_hash=hashed,
                issued_at=now,
            )
        )
    else:
        account.role, account.password_hash, account.issued_at = role, hashed, now
    await session.flush()


async def create_account(
    session: AsyncSession,
    city: City,
    body: BrokerAccountCreate,
    *,
    now: datetime,
    reserved: Collection[str] = (),
) -> tuple[BrokerAccountIssued, str]:
    """The account as shown to the caller, and its password (for the broker)."""
    generated = body.password is None
    password = mosquitto.new_secret() if body.password is None else body.password.get_secret_value()
    await set_account_password(
        session, city, body.username, body.role, password, now=now, reserved=reserved
    )
    issued = BrokerAccountIssued(
        username=body.username,
        role=body.role,
        client_id=account_client_id(body.username, body.role),
        password=password if generated else None,
        issued_at=now,
    )
    return issued, password


async def list_accounts(session: AsyncSession, city: City) -> list[BrokerAccountRead]:
    accounts = await session.scalars(
        select(BrokerAccount)
        .where(BrokerAccount.city_id == city.id)
        .order_by(BrokerAccount.username)
    )
    return [
        BrokerAccountRead(
            username=a.username,
            role=a.role,
            client_id=account_client_id(a.username, a.role),
            issued_at=a.issued_at,
        )
        for a in accounts
    ]


def account_client_id(username: str, role: str) -> str | None:
    """The client id a gateway or monitor account is bound to on the broker (None: any)."""
    return grants.monitor_client_id(username) if role == "monitor" else None


async def delete_account(session: AsyncSession, city: City, username: str) -> None:
    result = await session.execute(
        delete(BrokerAccount).where(
            BrokerAccount.city_id == city.id, BrokerAccount.username == username
        )
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound(
            "account_not_found",
            ko=f"브로커 계정 '{username}'을(를) 찾을 수 없습니다.",
            en=f"There is no broker account '{username}'.",
        )
