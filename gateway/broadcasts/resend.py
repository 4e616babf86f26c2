"""Resending a broadcast to the speakers that missed it, as a new broadcast of the same audio.

A speaker acts on a command id at most once, so a resend cannot reuse the original command: it
is a broadcast of its own (new ids, new expiry, the same stored audio), addressed to each
missed speaker on its own topic and linked to the original through ``target.resend_of``.

A speaker that missed the original may still hold it (it was frozen, or its acks were lost), so
the resend names every command it stands in for: ``target.supersedes`` (the original's command
id and, for a resend of a resend, those it superseded), signed in the command's ``supersedes``.
A speaker that holds both plays one: it drops a superseded command that comes late, and answers
a resend of something it already played ``played`` with ``already_played_as``. Each missed
delivery of the original names the resend sent in its place (``resent_in``).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession

from gateway import scopes
from gateway.auth import Principal
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.service import (
    BroadcastRequest,
    Runtime,
    Started,
    StoredAudio,
    find_replay,
    get_broadcast,
    reached_villages,
    record_broadcast,
)
from gateway.deliveries import service as deliveries
from gateway.deliveries.states import State
from gateway.errors import Conflict
from gateway.places.models import City
from gateway.places.service import ResolvedTarget
from wire import contract
from wire.contract import Category

# What "missed" means unless the caller narrows it: the speaker never played it and nothing
# more will happen to it. Cancelled deliveries were stopped on purpose and are not resent.
MISSED_STATES = (State.FAILED, State.EXPIRED)


async def resend_missed(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    broadcast_id: str,
    *,
    states: Collection[State] = MISSED_STATES,
    village_ids: Collection[int] = (),
    speaker_ids: Collection[int] = (),
    expires_in_s: int | None,
    idempotency_key: str | None,
    principal: Principal,
) -> Started:
    original = await get_broadcast(session, city.id, broadcast_id)
    await scopes.authorize_act(
        session, principal, Category(original.category), reached_villages(original)
    )
    if original.cancelled_at is not None:
        raise Conflict(
            "broadcast_cancelled",
            ko="취소된 방송은 다시 보낼 수 없습니다.",
            en="A cancelled broadcast cannot be resent.",
        )
    request = BroadcastRequest(
        category=Category(original.category),
        title=original.title,
        text=original.text,
        all_villages=False,
        district_ids=(),
        village_ids=(),
        expires_in_s=expires_in_s,
        idempotency_key=idempotency_key,
        created_by=principal.actor,
        mode=original.mode,
        extra_target={
            "resend_of": original.id,
            "resend_states": sorted(s.value for s in states),
            "resend_village_ids": sorted(set(village_ids)),
            "resend_speaker_ids": sorted(set(speaker_ids)),
            "supersedes": supersedes_of(original),
        },
    )
    audio = StoredAudio(
        source_sha256=original.source_sha256 or original.command_id,
        duration_ms=original.duration_ms,
        sha256=original.audio_sha256,
    )
    replay = await find_replay(session, city, request, audio.source_sha256)
    if replay is not None:
        return Started(replay, replayed=True)

    recipients = await deliveries.missed_speakers(
        session, original.id, states, village_ids=village_ids, speaker_ids=speaker_ids
    )
    if not recipients:
        raise Conflict(
            "nothing_to_resend",
            ko="다시 보낼 스피커가 없습니다. 모든 스피커가 방송했거나 아직 진행 중입니다.",
            en="No speaker matches: every targeted speaker played it or is still in progress.",
        )
    villages = tuple(sorted({r.village_id for r in recipients}))
    target = ResolvedTarget(all=False, district_ids=(), village_ids=villages)
    started = await record_broadcast(
        session, runtime, city, request, target, recipients, audio, per_speaker=True
    )
    if not started.replayed:
        await deliveries.mark_resent(
            session, original.id, [r.id for r in recipients], started.broadcast.id
        )
    return started


def supersedes_of(original: Broadcast) -> list[str]:
    """The command ids a resend of `original` stands in for: its own and those it superseded."""
    earlier = original.target.get("supersedes")
    chain = [str(i) for i in earlier] if isinstance(earlier, list) else []
    ids = [original.command_id, *(i for i in chain if i != original.command_id)]
    return ids[: contract.MAX_SUPERSEDES]
