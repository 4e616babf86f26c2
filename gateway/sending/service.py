"""The one send use case: read what the rules need, decide (``plan``), then write (``execute``).

Every path that makes a broadcast builds a ``SendRequest`` and calls ``plan``: the rules of
``gateway.sending.rules`` are walked in the table's order, each reading its facts once (the
caller's rights, an earlier answer to the same key, the limits, the person's disaster alerts in
the two-person window, quiet hours) and judging them; targets are resolved once. ``execute``
then writes the broadcast (or the approval request) of audio already prepared, with a savepoint
around the insert whose key may collide.

Slices import downward: this module uses broadcasts, approvals' rows, quiet hours, places and
speakers; the slices' entry points (routes, ``approvals.service.approve``, the schedule worker,
live sessions, resend) call it, and nothing it imports calls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import ratelimits, scopes
from gateway.approvals import requests as approval_requests
from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import already_cleared, cleared
from gateway.broadcasts.service import BroadcastRequest, Started, StoredAudio
from gateway.deps import Runtime
from gateway.errors import Forbidden, MaeulError, TooManyRequests
from gateway.places import service as places
from gateway.places.models import City
from gateway.schedules.models import Schedule
from gateway.schedules.quiet import city_zone
from gateway.schedules.quiet_hours import quiet_for_target, quiet_refusal
from gateway.sending.rules import (
    Decision,
    NeedsApproval,
    Path,
    Reach,
    Refuse,
    Replay,
    Send,
    TwoPersonFacts,
    judge_idempotency,
    judge_quiet_hours,
    judge_rate_limit,
    judge_rights,
    judge_two_person,
)
from gateway.speakers import service as speakers
from wire.contract import Category

GATEWAY_SCOPE = "gateway"


def idempotency_scope(principal: Principal | None) -> str:
    """Whose Idempotency-Key it is: a person's (by account, whatever their name), the bootstrap
    token's, or the gateway's own (a schedule's occurrence, an approved request)."""
    if principal is None:
        return GATEWAY_SCOPE
    if principal.user_id is None:
        return f"token:{principal.name}"
    return f"user:{principal.user_id}"


@dataclass(frozen=True)
class SendRequest:
    """One request to make a broadcast, as every path states it."""

    path: Path
    # What and where, as asked; ``created_by`` is who it counts against (limits, two-person).
    broadcast: BroadcastRequest
    # Whose rights are checked (the approver on the approval path); None: the gateway's own work.
    principal: Principal | None
    source_sha256: str
    # When it would be sent (a schedule: its first occurrence), for quiet hours.
    at: datetime
    scope: str
    # Acting on a broadcast that exists (a resend): the caller must cover all these villages.
    acts_on: tuple[int, ...] | None = None
    # Given rather than resolved (a resend: the villages of the speakers that missed it).
    target: places.ResolvedTarget | None = None
    # A second person has approved it (or the broadcast it repeats).
    approved: bool = False
    # What an earlier schedule with this key must have been made from (the schedule path).
    schedule_hash: str | None = None


@dataclass(frozen=True)
class AwaitingApproval:
    """A broadcast that needs a second person (the two-person rule): nothing is sent yet."""

    approval: ApprovalRequest
    replayed: bool


# --------------------------------------------------------------------------------------------
# Plan: the rules in the table's order, each reading its facts once


async def plan(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: SendRequest,
    *,
    lock: bool = True,
) -> Decision:
    """Decide what happens to ``request``; writes nothing.

    With ``lock`` (the plan a broadcast's write follows, in the same transaction) the limits'
    counts are locked until the transaction ends; without it (a plan before a transcode, or
    for a schedule, which writes no broadcast) the limits give an early answer only."""
    decided = judge_rights(await _rights(session, request))
    if decided is not None:
        return decided
    decided = judge_idempotency(await _earlier_answer(session, city, request))
    if decided is not None:
        return decided
    decided = judge_idempotency(await _cleared_already(session, city, request, lock=lock))
    if decided is not None:
        return decided
    target = request.target or await resolve(session, city, request.broadcast)
    decided = judge_rate_limit(await _limits(session, runtime, city, request, target, lock=lock))
    if decided is not None:
        return decided
    two_person = await _two_person(session, runtime, city, request, target, lock=lock)
    decided = judge_two_person(request.path, two_person, target)
    if decided is not None:
        return decided
    quiet = None
    if request.broadcast.category is not Category.DISASTER:
        quiet = await quiet_for_target(session, runtime.settings, city, target, request.at)
    if quiet is not None:
        scheduled = request.at if request.path is Path.SCHEDULE else None
        decided = judge_quiet_hours(
            request.path,
            quiet,
            target,
            policy=runtime.settings.quiet_hours_policy,
            refusal=quiet_refusal(quiet, city_zone(city.timezone), scheduled=scheduled),
        )
        if decided is not None:
            return decided
    return Send(target)


async def _rights(session: AsyncSession, request: SendRequest) -> Forbidden | None:
    principal, wanted = request.principal, request.broadcast
    if principal is None:
        return None
    try:
        if request.acts_on is not None:
            await scopes.authorize_act(session, principal, wanted.category, request.acts_on)
        else:
            await scopes.authorize_send(
                session,
                principal,
                wanted.category,
                all_villages=wanted.all_villages,
                district_ids=wanted.district_ids,
                village_ids=wanted.village_ids,
            )
    except Forbidden as exc:
        return exc
    return None


async def _earlier_answer(
    session: AsyncSession, city: City, request: SendRequest
) -> Replay | Refuse | None:
    """The answer already given to this person's key: a broadcast, an approval request, or a
    schedule (a send deferred past quiet hours, or the schedule path's own)."""
    key, scope = request.broadcast.idempotency_key, request.scope
    if key is None or request.path is Path.LIVE:
        return None
    if request.path is Path.SCHEDULE:
        schedule = await _schedule_by_key(session, city, key, scope)
        if schedule is None:
            return None
        if schedule.request_hash != request.schedule_hash:
            return Refuse(broadcasts.key_reused())
        return Replay(schedule)
    try:
        broadcast = await broadcasts.find_replay(
            session, city, request.broadcast, request.source_sha256, scope
        )
    except MaeulError as exc:
        return Refuse(exc)
    if broadcast is not None:
        return Replay(broadcast)
    if request.path not in (Path.UPLOAD, Path.TEXT, Path.TEMPLATE):
        return None
    approval = await approval_requests.find_replay(session, city, key, scope)
    if approval is not None:
        return Replay(approval)
    schedule = await _schedule_by_key(session, city, key, scope)
    if schedule is not None and schedule.origin == "quiet_hours":
        return Replay(schedule)
    return None


async def _cleared_already(
    session: AsyncSession, city: City, request: SendRequest, *, lock: bool
) -> Refuse | None:
    """An all clear of an alert that has one already. Locked, two at once (two officers, two
    replicas) are one after the other: the second sees the first."""
    alert_id = request.broadcast.extra_target.get("all_clear_of")
    if not isinstance(alert_id, str):
        return None
    if lock:
        await ratelimits.lock_scope(session, city.id, f"clear:{alert_id}", request.at)
    if alert_id in await cleared(session, [alert_id]):
        return Refuse(already_cleared())
    return None


async def _schedule_by_key(
    session: AsyncSession, city: City, key: str, scope: str
) -> Schedule | None:
    found: Schedule | None = await session.scalar(
        select(Schedule).where(
            Schedule.city_id == city.id,
            Schedule.idempotency_scope == scope,
            Schedule.idempotency_key == key,
        )
    )
    return found


async def resolve(
    session: AsyncSession, city: City, wanted: BroadcastRequest
) -> places.ResolvedTarget:
    return await places.resolve_targets(
        session,
        city,
        all_villages=wanted.all_villages,
        district_ids=wanted.district_ids,
        village_ids=wanted.village_ids,
    )


async def _limits(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: SendRequest,
    target: places.ResolvedTarget,
    *,
    lock: bool,
) -> MaeulError | None:
    """The limit this broadcast would break, counted against the person it is sent for (the
    bootstrap token is not limited)."""
    actor = request.broadcast.created_by
    if not ratelimits.limits_actor(actor):
        return None
    principal = request.principal
    # The sender's role when the one asking is the one counted; else read from the account.
    role = principal.role if principal is not None and principal.actor == actor else None
    try:
        await ratelimits.check_send(
            session,
            runtime.settings,
            city_id=city.id,
            actor=actor,
            category=request.broadcast.category,
            village_ids=target.village_ids,
            now=runtime.clock.now(),
            role=role,
            lock=lock,
        )
    except TooManyRequests as exc:
        return exc
    return None


_NOWHERE = Reach(all=False, districts=frozenset())


async def _two_person(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: SendRequest,
    target: places.ResolvedTarget,
    *,
    lock: bool,
) -> TwoPersonFacts:
    """This alert's reach, and that of the person's disaster alerts in the window that no
    second person approved: their broadcasts and their pending requests. With ``lock``, the
    person's sends are serialized first (until the transaction ends), so two alerts sent at
    the same moment, by any two paths, each see the other."""
    wanted, person = request.broadcast, request.broadcast.created_by
    applies = (
        wanted.category is Category.DISASTER
        and not request.approved
        and ratelimits.limits_actor(person)
    )
    if not applies:
        return TwoPersonFacts(applies=False, reach=_NOWHERE, earlier=_NOWHERE)
    if lock:
        await ratelimits.lock_person(session, city.id, person, runtime.clock.now())
    reach = Reach(target.all, frozenset(await _districts_of(session, (), target.village_ids)))
    now = runtime.clock.now()
    since = now - timedelta(seconds=runtime.settings.two_person_window_s)
    whole_city = False
    district_ids: set[int] = set()
    village_ids: set[int] = set()
    sent = await session.scalars(
        select(Broadcast.target).where(
            Broadcast.city_id == city.id,
            Broadcast.created_by == person,
            Broadcast.category == Category.DISASTER.value,
            Broadcast.created_at > since,
        )
    )
    for sent_target in sent:
        if sent_target.get("approval_id") is not None:
            continue
        whole_city = whole_city or bool(sent_target.get("all"))
        village_ids |= set(_ints(sent_target, "resolved_village_ids"))
    pending = await session.scalars(
        select(ApprovalRequest.target).where(
            ApprovalRequest.city_id == city.id,
            ApprovalRequest.requested_by == person,
            ApprovalRequest.state == "pending",
            ApprovalRequest.created_at > since,
            ApprovalRequest.expires_at > now,
        )
    )
    for asked in pending:
        whole_city = whole_city or bool(asked.get("all"))
        district_ids |= set(_ints(asked, "district_ids"))
        village_ids |= set(_ints(asked, "village_ids"))
    earlier = Reach(whole_city, frozenset(await _districts_of(session, district_ids, village_ids)))
    return TwoPersonFacts(applies=True, reach=reach, earlier=earlier)


def _ints(target: dict[str, object], key: str) -> list[int]:
    values = target.get(key) or []
    assert isinstance(values, list)
    return [int(v) for v in values]


async def _districts_of(
    session: AsyncSession,
    district_ids: Sequence[int] | set[int],
    village_ids: Sequence[int] | set[int],
) -> set[int]:
    villages = await places.village_codes(session, sorted(set(village_ids)))
    return set(district_ids) | {district for _code, _name, district in villages.values()}


# --------------------------------------------------------------------------------------------
# Execute: write what was decided, in the request's transaction


async def execute(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: SendRequest,
    decision: Send | NeedsApproval,
    audio: StoredAudio,
    *,
    recipients: Sequence[speakers.TargetSpeaker] | None = None,
    per_speaker: bool = False,
) -> Started | AwaitingApproval:
    """Write the broadcast and its deliveries and publications, or the approval request, of
    audio already stored. A race on the key is lost in a savepoint and answered as a replay."""
    if isinstance(decision, NeedsApproval):
        assert request.principal is not None  # the two-person rule applies to people only
        approval, replayed = await approval_requests.request_approval(
            session,
            runtime,
            city,
            request.broadcast,
            audio,
            principal=request.principal,
            scope=request.scope,
        )
        return AwaitingApproval(approval, replayed=replayed)
    target = decision.target
    if recipients is None:
        recipients = await speakers.speakers_for(
            session, city.id, village_ids=None if target.all else target.village_ids
        )
    return await broadcasts.record_broadcast(
        session,
        runtime,
        city,
        request.broadcast,
        target,
        recipients,
        audio,
        scope=request.scope,
        per_speaker=per_speaker,
    )


def raise_refusal(decision: Decision) -> None:
    """Raise what a refusal carries (every path answers a refusal with its error's status)."""
    if isinstance(decision, Refuse):
        raise decision.error
