"""Device security: broker credentials (hashes only), the broker's files, and security events.

A speaker's broker password is generated here, handed out once and stored only as Mosquitto's
own hash, so the password file is rendered from the database without any secret in it. The
gateway's own broker user (from its MQTT URL) is added at render time unless an account of that
name is stored. Security events are what speakers refuse for a security reason, and acks the
intake cannot trust (unknown speaker, malformed, speaking for another speaker).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.bus import Incoming
from gateway.devicesec import dynsec, grants, mosquitto
from gateway.devicesec.models import BrokerAccount, SecurityEvent, SpeakerCredential
from gateway.devicesec.schemas import (
    BrokerAccountCreate,
    BrokerAccountIssued,
    BrokerAccountRead,
    EventKind,
    SecurityEventPage,
    SecurityEventRead,
    SpeakerCredentials,
)
from gateway.errors import Conflict, NotFound
from gateway.places.models import City, District, Village
from gateway.speakers import service as speakers
from gateway.speakers.models import Speaker
from wire import contract
from wire.contract import AckStatus, RejectReason

log = logging.getLogger(__name__)

# Refusals that say someone tried to make a speaker act on a command it must not trust.
# unsupported_codec and simulated faults are not; unknown_key is what a speaker may report for
# a key id it has never seen.
SECURITY_REASONS: Final = frozenset(
    {
        RejectReason.MALFORMED.value,
        RejectReason.EXPIRED.value,
        RejectReason.NOT_YET_VALID.value,
        RejectReason.OUT_OF_SCOPE.value,
        RejectReason.BAD_SIGNATURE.value,
        RejectReason.UNSIGNED.value,
        RejectReason.REPLAYED.value,
        RejectReason.INTEGRITY.value,
        "unknown_key",
        RejectReason.REVOKED_KEY.value,
    }
)
_IN_CHUNK: Final = 900
# Reports of one speaker, kind and reason this close to the last are merged into its events.
COALESCE_WINDOW: Final = timedelta(minutes=5)
# Distinct commands one speaker's reports of one kind and reason keep apart within the window;
# past that, each further report is counted on the latest event.
DISTINCT_PER_WINDOW: Final = 8
# Fingerprints of recent reports a caller's memory keeps (one hash each).
REPORTED_MAX: Final = 10_000
_TEXT_MAX: Final = 200

_T = TypeVar("_T")


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


# --------------------------------------------------------------------------------------------
# Credentials


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
    for chunk in _chunks(speaker_ids):
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


# --------------------------------------------------------------------------------------------
# The broker's files


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
    for chunk in _chunks(sorted(ids.values())):
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


# --------------------------------------------------------------------------------------------
# Security events


@dataclass(frozen=True)
class _Finding:
    kind: EventKind
    code: str
    reason: str | None = None
    ack: contract.Ack | None = None
    details: Mapping[str, Any] | None = None


def _fingerprint(message: Incoming) -> str:
    digest = hashlib.sha256(message.topic.encode())
    digest.update(b"\0")
    digest.update(message.payload)
    return digest.hexdigest()


def _examine(code: str, message: Incoming) -> tuple[contract.Ack | None, _Finding | None]:
    """The ack in a message on `code`'s ack topic, and what is wrong with it, if anything."""
    try:
        ack = contract.decode_ack(message.payload)
    except contract.WireError as exc:
        finding = _Finding(
            "bad_ack",
            code,
            reason="malformed",
            details={"error": str(exc)[:_TEXT_MAX], "bytes": len(message.payload)},
        )
        return None, finding
    if ack.speaker != code:
        finding = _Finding(
            "bad_ack",
            code,
            reason="speaker_mismatch",
            ack=ack,
            details={"claimed_speaker": ack.speaker},
        )
        return ack, finding
    refused = ack.status is AckStatus.REJECTED and ack.reason in SECURITY_REASONS
    if refused or ack.reason == RejectReason.REPLAYED.value:
        return ack, _Finding("command_rejected", code, reason=ack.reason, ack=ack)
    return ack, None


def _event(finding: _Finding, fingerprint: str, city_id: int, now: datetime) -> SecurityEvent:
    ack = finding.ack
    details: dict[str, Any] = dict(finding.details or {})
    if ack is not None:
        details.setdefault("status", ack.status.value)
        details.setdefault("speaker_at_ms", ack.at_ms)
    return SecurityEvent(
        city_id=city_id,
        at=now,
        last_at=now,
        count=1,
        kind=finding.kind,
        speaker_code=finding.code,
        command_id=ack.command_id if ack is not None else None,
        broadcast_id=ack.broadcast_id if ack is not None else None,
        reason=(finding.reason or "")[:64] or None,
        details=details,
        fingerprint=fingerprint,
    )


def _reason(finding: _Finding) -> str | None:
    return (finding.reason or "")[:64] or None


async def _recent_events(
    session: AsyncSession, city_id: int, codes: Collection[str], now: datetime
) -> dict[tuple[str | None, str, str | None], list[SecurityEvent]]:
    """The events of these speakers still open to merging, by (speaker, kind, reason), oldest
    first."""
    groups: dict[tuple[str | None, str, str | None], list[SecurityEvent]] = {}
    for chunk in _chunks(sorted(codes)):
        rows = await session.scalars(
            select(SecurityEvent)
            .where(
                SecurityEvent.city_id == city_id,
                SecurityEvent.speaker_code.in_(chunk),
                SecurityEvent.last_at >= now - COALESCE_WINDOW,
            )
            .order_by(SecurityEvent.id)
        )
        for row in rows:
            groups.setdefault((row.speaker_code, row.kind, row.reason), []).append(row)
    return groups


def _merge(
    session: AsyncSession,
    groups: dict[tuple[str | None, str, str | None], list[SecurityEvent]],
    finding: _Finding,
    fingerprint: str,
    city_id: int,
    now: datetime,
    reports: int = 1,
) -> None:
    """Count `reports` like `finding` on the event it belongs to, or start one."""
    events = groups.setdefault((finding.code, finding.kind, _reason(finding)), [])
    command_id = finding.ack.command_id if finding.ack is not None else None
    into = next((e for e in events if e.command_id == command_id), None)
    if into is None and len(events) >= DISTINCT_PER_WINDOW:
        into = events[-1]
    if into is None:
        event = _event(finding, fingerprint, city_id, now)
        event.count = reports
        session.add(event)
        events.append(event)
    else:
        into.count += reports
        into.last_at = now


async def record_ack_floods(
    sessions: async_sessionmaker[AsyncSession],
    dropped: Mapping[tuple[str, str], int],
    *,
    city_id: int,
    now: datetime,
) -> None:
    """Acks the intake dropped unread, by (speaker, reason): one `ack_flood` event per speaker
    and reason, merged like the others, its count the acks dropped."""
    if not dropped:
        return
    async with sessions() as session:
        groups = await _recent_events(session, city_id, {code for code, _ in dropped}, now)
        for (code, reason), count in sorted(dropped.items()):
            finding = _Finding("ack_flood", code, reason=reason)
            _merge(session, groups, finding, secrets.token_hex(32), city_id, now, count)
        await session.commit()
    summary = ", ".join(f"{code}/{reason} x{n}" for (code, reason), n in sorted(dropped.items()))
    log.warning("응답 폭주 / acks dropped unread: %s", summary[:500])


def _remember(reported: MutableMapping[str, None], fingerprints: Iterable[str]) -> None:
    for fingerprint in fingerprints:
        reported[fingerprint] = None
    while len(reported) > REPORTED_MAX:
        del reported[next(iter(reported))]


async def record_security_events(
    sessions: async_sessionmaker[AsyncSession],
    batch: Sequence[Incoming],
    *,
    city_id: int,
    city_code: str,
    known: Mapping[str, int],
    now: datetime,
    reported: MutableMapping[str, None] | None = None,
) -> int:
    """Record the security events in a batch of bus messages; returns how many reports were
    counted (merged into an event or making a new one).

    Called by the intake before it applies the batch, in a transaction of its own. The same
    report (by fingerprint of topic and payload) counts once: `reported` remembers the recent
    ones (the caller keeps it, insertion ordered), and the first report of each event is
    stored. Reports of one speaker, kind and reason within `COALESCE_WINDOW` of the last are
    merged: the same command into its event, up to `DISTINCT_PER_WINDOW` commands each into
    its own, and any further one into the latest, so a speaker flooding fake refusals adds a
    count, not rows. `known`: speaker code -> id the caller already resolved.
    """
    memory: MutableMapping[str, None] = {} if reported is None else reported
    examined: list[tuple[str, contract.Ack | None, _Finding | None, Incoming]] = []
    for message in batch:
        try:
            city, code = contract.parse_speaker_topic(message.topic, "ack")
        except contract.WireError:
            continue  # presence, or not a topic of this contract at all
        if city != city_code:
            continue
        ack, finding = _examine(code, message)
        examined.append((code, ack, finding, message))
    if not examined:
        return 0
    unresolved = {code for code, *_ in examined if code not in known}
    if not unresolved and all(finding is None for _, _, finding, _ in examined):
        return 0
    async with sessions() as session:
        found = await speakers.speaker_ids_by_code(session, city_id, unresolved)
        findings: dict[str, _Finding] = {}
        for code, ack, finding, message in examined:
            if code in unresolved and code not in found:
                finding = _Finding("unknown_speaker_ack", code, reason="unknown_speaker", ack=ack)
            if finding is not None:
                fingerprint = _fingerprint(message)
                if fingerprint not in memory:
                    findings.setdefault(fingerprint, finding)
        if not findings:
            return 0
        seen: set[str] = set()
        for chunk in _chunks(sorted(findings)):
            seen.update(
                await session.scalars(
                    select(SecurityEvent.fingerprint).where(SecurityEvent.fingerprint.in_(chunk))
                )
            )
        fresh = {key: f for key, f in findings.items() if key not in seen}
        if fresh:
            groups = await _recent_events(session, city_id, {f.code for f in fresh.values()}, now)
            for fingerprint, finding in fresh.items():
                _merge(session, groups, finding, fingerprint, city_id, now)
            await session.commit()
    _remember(memory, findings)
    if fresh:
        tally = Counter(f"{f.kind}/{f.reason}" for f in fresh.values())
        summary = ", ".join(f"{key} x{count}" for key, count in sorted(tally.items()))
        log.warning("보안 이벤트 %d건 / %d security events: %s", len(fresh), len(fresh), summary)
    return len(fresh)


@dataclass(frozen=True)
class BadProof:
    """A ``played`` ack whose proof of play did not hold (see `gateway.deliveries.proof`)."""

    city_id: int
    speaker_code: str
    command_id: str
    broadcast_id: str
    at: datetime
    problem: str
    details: Mapping[str, Any]


async def record_bad_proofs(session: AsyncSession, reports: Sequence[BadProof]) -> int:
    """Record each bad proof once (as a ``bad_ack`` event, reason ``bad_proof``), in the
    caller's transaction; returns how many are new."""
    rows: dict[str, dict[str, Any]] = {}
    for report in reports:
        details = {"problem": report.problem, **report.details}
        digest = hashlib.sha256(b"bad_proof\0")
        digest.update(json.dumps([report.speaker_code, details], sort_keys=True).encode())
        rows.setdefault(
            digest.hexdigest(),
            {
                "city_id": report.city_id,
                "at": report.at,
                "last_at": report.at,
                "count": 1,
                "kind": "bad_ack",
                "speaker_code": report.speaker_code,
                "command_id": report.command_id,
                "broadcast_id": report.broadcast_id,
                "reason": "bad_proof",
                "details": details,
                "fingerprint": digest.hexdigest(),
            },
        )
    if not rows:
        return 0
    seen = set(
        await session.scalars(
            select(SecurityEvent.fingerprint).where(SecurityEvent.fingerprint.in_(sorted(rows)))
        )
    )
    fresh = [row for key, row in rows.items() if key not in seen]
    if fresh:
        await session.execute(insert(SecurityEvent), fresh)
        log.warning(
            "재생 증명 실패 %d건 / %d played acks without a valid proof of play",
            len(fresh),
            len(fresh),
        )
    return len(fresh)


async def list_security_events(
    session: AsyncSession,
    city: City,
    *,
    kind: EventKind | None,
    speaker: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> SecurityEventPage:
    """Latest report first; `since` keeps the events that had a report since then."""
    conditions = [SecurityEvent.city_id == city.id]
    if kind is not None:
        conditions.append(SecurityEvent.kind == kind)
    if speaker is not None:
        conditions.append(SecurityEvent.speaker_code == speaker)
    if since is not None:
        conditions.append(SecurityEvent.last_at >= since)
    total = await session.scalar(select(func.count()).select_from(SecurityEvent).where(*conditions))
    rows = await session.scalars(
        select(SecurityEvent)
        .where(*conditions)
        .order_by(SecurityEvent.last_at.desc(), SecurityEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return SecurityEventPage(
        items=[SecurityEventRead.model_validate(r) for r in rows],
        total=total or 0,
        limit=limit,
        offset=offset,
    )
