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

from gateway.auth import Principal
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import get_broadcast, reached_villages
from gateway.broadcasts.service import (
    BroadcastRequest,
    Started,
    StoredAudio,
)
from gateway.deliveries import service as deliveries
from gateway.deliveries.states import State
from gateway.deps import Runtime
from gateway.errors import Conflict
from gateway.places.models import City
from gateway.places.service import ResolvedTarget
from gateway.sending import service as sending
from gateway.sending.rules import Path as SendPath
from gateway.sending.rules import Refuse, Replay, Send
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
    extra: dict[str, object] = {
        "resend_of": original.id,
        "resend_states": sorted(s.value for s in states),
        "resend_village_ids": sorted(set(village_ids)),
        "resend_speaker_ids": sorted(set(speaker_ids)),
        "supersedes": supersedes_of(original),
    }
    approval_id = original.target.get("approval_id")
    if approval_id is not None:
        # A second person approved the original: the resend repeats it to fewer speakers.
        extra["approval_id"] = approval_id
    recipients = await deliveries.missed_speakers(
        session, original.id, states, village_ids=village_ids, speaker_ids=speaker_ids
    )
    villages = tuple(sorted({r.village_id for r in recipients}))
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
        extra_target=extra,
        # Its speakers are sent the audio of their village's languages, as the first time.
        texts=dict(original.texts),
    )
    audio = StoredAudio(
        source_sha256=original.source_sha256 or original.command_id,
        duration_ms=original.duration_ms,
        sha256=original.audio_sha256,
    )
    # The send rules, as for a new broadcast: the caller acts on the original as a whole, and
    # the resend counts against the limits, waits for no one and cannot be deferred.
    wanted = sending.SendRequest(
        path=SendPath.RESEND,
        broadcast=request,
        principal=principal,
        source_sha256=audio.source_sha256,
        at=runtime.clock.now(),
        scope=sending.idempotency_scope(principal),
        acts_on=tuple(reached_villages(original)),
        target=ResolvedTarget(all=False, district_ids=(), village_ids=villages),
        approved=approval_id is not None,
    )
    decision = await sending.plan(session, runtime, city, wanted)
    if isinstance(decision, Refuse):
        raise decision.error
    if isinstance(decision, Replay):
        assert isinstance(decision.found, Broadcast)
        return Started(decision.found, replayed=True)
    if original.cancelled_at is not None:
        raise Conflict(
            "broadcast_cancelled",
            ko="취소된 방송은 다시 보낼 수 없습니다.",
            en="A cancelled broadcast cannot be resent.",
        )
    if not recipients:
        raise Conflict(
            "nothing_to_resend",
            ko="다시 보낼 스피커가 없습니다. 모든 스피커가 방송했거나 아직 진행 중입니다.",
            en="No speaker matches: every targeted speaker played it or is still in progress.",
        )
    assert isinstance(decision, Send)  # a resend neither waits for approval nor is deferred
    started = await sending.execute(
        session, runtime, city, wanted, decision, audio, recipients=recipients, per_speaker=True
    )
    assert isinstance(started, Started)
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
