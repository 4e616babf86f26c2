"""Security events: what speakers refuse for a security reason, and acks the intake cannot trust
(unknown speaker, malformed, speaking for another speaker), recorded and merged per speaker, kind
and reason."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.bus import Incoming
from gateway.devicesec.models import SecurityEvent
from gateway.devicesec.schemas import (
    EventKind,
    SecurityEventPage,
    SecurityEventRead,
)
from gateway.devicesec.service import in_chunks
from gateway.places.models import City
from gateway.speakers import service as speakers
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

# Reports of one speaker, kind and reason this close to the last are merged into its events.
COALESCE_WINDOW: Final = timedelta(minutes=5)

# Distinct commands one speaker's reports of one kind and reason keep apart within the window;
# past that, each further report is counted on the latest event.
DISTINCT_PER_WINDOW: Final = 8

# Fingerprints of recent reports a caller's memory keeps (one hash each).
REPORTED_MAX: Final = 10_000
_TEXT_MAX: Final = 200


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
    for chunk in in_chunks(sorted(codes)):
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
        for chunk in in_chunks(sorted(findings)):
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
