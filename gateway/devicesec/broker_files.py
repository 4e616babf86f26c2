"""The broker's files rendered from the database: the password file (hashes only), the ACL, the
dynamic security plugin's file, and the broker state a speaker's client id stands for."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.devicesec import dynsec, mosquitto
from gateway.devicesec.models import BrokerAccount, SpeakerCredential
from gateway.devicesec.service import in_chunks
from gateway.places.models import City, District, Village
from gateway.speakers import service as speakers
from gateway.speakers.models import Speaker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnUser:
    """The broker user the gateway itself connects with (from its MQTT URL)."""

    username: str
    password: str


async def _credentialed_places(
    session: AsyncSession, city: City, taken: Collection[str]
) -> list[tuple[mosquitto.SpeakerPlace, str]]:
    """Every speaker that has a password, with its groups and its hash, ordered by code."""
    items = (await speakers.fleet(session, city, limit=None, offset=0)).items
    ids = await speakers.speaker_ids_by_code(session, city.id, [s.code for s in items])
    hashes: dict[int, str] = {}
    for chunk in in_chunks(sorted(ids.values())):
        rows = await session.execute(
            select(SpeakerCredential.speaker_id, SpeakerCredential.password_hash).where(
                SpeakerCredential.speaker_id.in_(chunk)
            )
        )
        hashes.update(rows.tuples().all())
    found = []
    for item in sorted(items, key=lambda s: s.code):
        hashed = hashes.get(ids.get(item.code, -1))
        if hashed is None:
            continue
        if item.code in taken:
            log.warning(
                "스피커 %s 의 이름이 다른 브로커 계정과 같아 제외합니다 / speaker %s left out: "
                "its code is another broker account's user name",
                item.code,
                item.code,
            )
            continue
        found.append(
            (mosquitto.SpeakerPlace(item.code, item.district_code, item.village_code), hashed)
        )
    return found


async def _accounts(session: AsyncSession, city_id: int) -> list[BrokerAccount]:
    return list(
        await session.scalars(
            select(BrokerAccount)
            .where(BrokerAccount.city_id == city_id)
            .order_by(BrokerAccount.username)
        )
    )


async def render_passwd_file(session: AsyncSession, city: City, *, own: OwnUser | None) -> str:
    """Mosquitto's password_file: the gateway, stored accounts, every speaker with a password."""
    hashes: dict[str, str] = {}
    for account in await _accounts(session, city.id):
        hashes[account.username] = account.password_hash
    if own is not None and own.username not in hashes:
        hashes[own.username] = mosquitto.hash_password(own.password)
    for place, hashed in await _credentialed_places(session, city, set(hashes)):
        hashes[place.code] = hashed
    return mosquitto.render_passwd(hashes)


async def render_acl_file(session: AsyncSession, city: City, *, own: str | None) -> str:
    """Mosquitto's acl_file for the same users as `render_passwd_file`."""
    accounts = await _accounts(session, city.id)
    gateways = [a.username for a in accounts if a.role == "gateway"]
    monitors = [a.username for a in accounts if a.role == "monitor"]
    if own is not None and own not in {a.username for a in accounts}:
        gateways.insert(0, own)
    taken = set(gateways) | set(monitors)
    places = [place for place, _ in await _credentialed_places(session, city, taken)]
    return mosquitto.render_acl(city.code, gateways=gateways, monitors=monitors, speakers=places)


async def broker_state(
    session: AsyncSession, city: City, *, own: OwnUser | None, admin: OwnUser | None = None
) -> dynsec.BrokerState:
    """The broker's users and roles for its dynamic security plugin: the admin account the
    gateway manages the broker with, the gateway, stored accounts, every speaker with a
    password (bound to its own client id)."""
    accounts = await _accounts(session, city.id)
    admins = {admin.username: mosquitto.hash_password(admin.password)} if admin else {}
    gateways: dict[str, str | None] = {}
    monitors: dict[str, str | None] = {}
    if own is not None and own.username not in {a.username for a in accounts}:
        gateways[own.username] = mosquitto.hash_password(own.password)
    for account in accounts:
        (gateways if account.role == "gateway" else monitors)[account.username] = (
            account.password_hash
        )
    taken = set(admins) | set(gateways) | set(monitors)
    places = await _credentialed_places(session, city, taken)
    return dynsec.build_state(
        city.code, admins=dict(admins), gateways=gateways, monitors=monitors, speakers=places
    )


async def render_dynsec_file(
    session: AsyncSession, city: City, *, own: OwnUser | None, admin: OwnUser | None
) -> str:
    """The dynamic security plugin's file (hashes only) for `broker_state`."""
    return dynsec.render_config(await broker_state(session, city, own=own, admin=admin))


async def speaker_broker_client(
    session: AsyncSession, city: City, speaker_id: int
) -> tuple[dynsec.BrokerClient, dict[str, frozenset[dynsec.Acl]]]:
    """One speaker's broker user (bound to its client id) and its role's ACLs."""
    row = (
        await session.execute(
            select(Speaker.code, District.code, Village.code)
            .join(Village, Village.id == Speaker.village_id)
            .join(District, District.id == Village.district_id)
            .where(Speaker.id == speaker_id, Speaker.city_id == city.id)
        )
    ).one()
    place = mosquitto.SpeakerPlace(*row)
    state = dynsec.build_state(city.code, gateways={}, monitors={}, speakers=[(place, None)])
    role = dynsec.speaker_role(place.code)
    return state.clients[place.code], {role: state.roles[role]}
