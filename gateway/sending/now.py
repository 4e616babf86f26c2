"""Sending now (POST /broadcasts: an upload, typed text, a filled template) through the one door.

The audio is hashed before anything is read, and transcoded (or spoken) with no transaction
open: the plan is made in a short read, the transaction is released, the audio prepared, and
the plan made again (the limits and the key may have changed meanwhile) before the write, in
the request's transaction. Quiet hours defer it as a schedule made for their end.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals.models import ApprovalRequest
from gateway.broadcasts import audio_store
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.service import BroadcastRequest, Started
from gateway.deps import Runtime
from gateway.places.models import City
from gateway.schedules import service as schedules
from gateway.schedules.reading import read_schedule
from gateway.schedules.recurrence import Timing
from gateway.sending import rules
from gateway.sending.rules import Decision, Defer, NeedsApproval, Refuse, Replay, Send
from gateway.sending.service import (
    AwaitingApproval,
    SendRequest,
    execute,
    idempotency_scope,
    plan,
)
from gateway.speakers import service as speakers
from gateway.templates import service as templates

Answer = Started | AwaitingApproval | schedules.Created


async def send_now(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: BroadcastRequest,
    upload: Path | None,
    *,
    composed: templates.Composed | None = None,
) -> Answer:
    """Send now, or answer as the rules say: a replay, a refusal (raised), an approval request
    (the two-person rule), or a schedule for the end of quiet hours."""
    source_sha256 = await audio_store.source_sha256_of(runtime, request, upload)
    if composed is not None and composed.template_id is not None:
        path = rules.Path.TEMPLATE
    else:
        path = rules.Path.TEXT if upload is None else rules.Path.UPLOAD
    wanted = SendRequest(
        path=path,
        broadcast=request,
        principal=request.principal,
        source_sha256=source_sha256,
        at=runtime.clock.now(),
        scope=idempotency_scope(request.principal),
    )
    # An early answer: the limits' counts are locked only by the plan the write follows.
    decision = await plan(session, runtime, city, wanted, lock=False)
    if not isinstance(decision, Send | NeedsApproval):
        return await _answer(session, runtime, city, request, upload, decision, composed)
    target = decision.target
    recipients = await speakers.speakers_for(
        session, city.id, village_ids=None if target.all else target.village_ids
    )
    # Every speaker gets Opus unless it declared it cannot play it.
    codecs = ["opus"]
    if any("opus" not in s.codecs for s in recipients):
        codecs.append("mp3")
    sets = None
    if upload is None:  # a recording is one audio: its texts are shown, not spoken
        sets = await audio_store.language_sets(session, runtime, request, target.village_ids)
    # Release the transaction (and its pooled connection) while the audio is made.
    await session.commit()
    prepared = await audio_store.prepare_audio(
        runtime, request, upload, source_sha256, codecs=codecs, sets=sets
    )
    decision = await plan(session, runtime, city, wanted)
    if not isinstance(decision, Send | NeedsApproval):
        return await _answer(session, runtime, city, request, upload, decision, composed)
    audio = await prepared.store(session, runtime.clock.now())
    return await execute(session, runtime, city, wanted, decision, audio)


async def _answer(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: BroadcastRequest,
    upload: Path | None,
    decision: Decision,
    composed: templates.Composed | None,
) -> Answer:
    if isinstance(decision, Refuse):
        raise decision.error
    if isinstance(decision, Replay):
        return await replayed(session, decision)
    assert isinstance(decision, Defer)
    return await schedules.create_schedule(
        session,
        runtime,
        city,
        request,
        upload,
        Timing(send_at=decision.until),
        composed=composed,
        origin="quiet_hours",
    )


async def replayed(session: AsyncSession, replay: Replay) -> Answer:
    """The answer first given, whatever it was."""
    found = replay.found
    if isinstance(found, Broadcast):
        return Started(found, replayed=True)
    if isinstance(found, ApprovalRequest):
        return AwaitingApproval(found, replayed=True)
    return schedules.Created(await read_schedule(session, found), replayed=True)
