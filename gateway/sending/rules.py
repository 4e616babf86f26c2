"""Who may send what, where and when: the rules as one table, and the pure decision they make.

Every path that makes a broadcast (upload, text, template, a schedule made or firing, an
approval, a live talk, a resend) walks ``RULES`` in the same order; the first rule that has
something to say decides (``decide``). What a rule says depends on the path only where a path
cannot wait: a live talk or a resend cannot be deferred past quiet hours, and a schedule, a live
talk or a resend cannot wait for a second person, so those are refused instead.

The README's section "Who may send what, where and when" is this table; the policy matrix
test (``tests/sending/test_policy_matrix.py``) walks it, every path against every rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Final

from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts.models import Broadcast
from gateway.errors import Conflict, Forbidden, MaeulError
from gateway.places.service import ResolvedTarget
from gateway.schedules.models import Schedule
from gateway.schedules.quiet import Quiet
from gateway.scopes import CITY_WIDE


class Path(StrEnum):
    """Every way a broadcast comes to be. A new one is a new column of the table."""

    UPLOAD = "upload"  # POST /broadcasts with a recording
    TEXT = "text"  # POST /broadcasts with typed text, spoken
    TEMPLATE = "template"  # POST /broadcasts filling a template
    SCHEDULE = "schedule"  # POST /schedules
    SCHEDULE_FIRE = "schedule_fire"  # a schedule's occurrence falling due
    APPROVAL = "approval"  # a second person approving a request
    LIVE = "live"  # a live talk (ticket, then the session)
    RESEND = "resend"  # POST /broadcasts/{id}/resend


class Step(StrEnum):
    RIGHTS = "rights"
    IDEMPOTENCY = "idempotency"
    RATE_LIMIT = "rate_limit"
    TWO_PERSON = "two_person"
    QUIET_HOURS = "quiet_hours"


@dataclass(frozen=True)
class Outcome:
    """What a path answers when a rule decides: an HTTP status and a code, or for a schedule's
    occurrence (no one is waiting for an answer) what is recorded (status None)."""

    status: int | None
    code: str

    def __str__(self) -> str:
        return self.code if self.status is None else f"{self.status} {self.code}"


@dataclass(frozen=True)
class Rule:
    step: Step
    says: str
    exempt: str
    # What each path answers when the rule decides; a path missing here cannot meet the case.
    outcomes: Mapping[Path, Outcome]


_NOW_PATHS: Final = (Path.UPLOAD, Path.TEXT, Path.TEMPLATE)


def _same(outcome: Outcome, *paths: Path) -> dict[Path, Outcome]:
    return dict.fromkeys(paths, outcome)


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        Step.RIGHTS,
        says="The role may send the category (the city's table: GATEWAY_ROLE_CATEGORIES over "
        "the defaults of `gateway.auth`; else 403 category_not_allowed) to every village of the "
        "target (the person's area: else 403 outside_scope); a resend or an approval acts for "
        "the broadcast as a whole; a schedule's occurrence is checked against its maker's "
        "rights as they are when it fires (category or area taken away: skipped with that "
        "code, and the schedule paused, `owner_rights_changed`)",
        exempt="a schedule the bootstrap token made (no account to check)",
        outcomes={
            **_same(
                Outcome(403, "outside_scope"),
                *_NOW_PATHS,
                Path.SCHEDULE,
                Path.LIVE,
                Path.RESEND,
            ),
            Path.SCHEDULE_FIRE: Outcome(None, "skipped:outside_scope"),
            # Whoever may not approve it does not see the request (`approvals.visibility`).
            Path.APPROVAL: Outcome(404, "approval_not_found"),
        },
    ),
    Rule(
        Step.IDEMPOTENCY,
        says="A repeat of the same person's request with the same Idempotency-Key gets the first "
        "answer again (a different request with that key: 422 idempotency_key_reused); checked "
        "after the rights, so nobody is shown another's answer. An all clear of an alert that "
        "has one already is refused, 409 already_all_clear (two at once: the second)",
        exempt="a live talk (no key); a schedule's occurrence (the gateway's own key, once)",
        outcomes={
            **_same(Outcome(200, "replay"), *_NOW_PATHS, Path.SCHEDULE, Path.RESEND),
            # Approving twice: the request is no longer pending.
            Path.APPROVAL: Outcome(409, "approval_not_pending"),
        },
    ),
    Rule(
        Step.RATE_LIMIT,
        says="A person sends at most GATEWAY_RATE_LIMIT_USER_PER_HOUR broadcasts an hour, a "
        "village receives at most GATEWAY_RATE_LIMIT_VILLAGE_NOTICES_PER_HOUR village notices; "
        "every broadcast counts, a resend and a schedule's occurrence too",
        exempt="disaster alerts, but for a village head's "
        "(GATEWAY_RATE_LIMIT_HEAD_DISASTER_PER_HOUR: 429 rate_limited_head_disaster); the "
        "bootstrap token",
        outcomes={
            **_same(
                Outcome(429, "rate_limited_user"),
                *_NOW_PATHS,
                Path.SCHEDULE,
                Path.LIVE,
                Path.RESEND,
            ),
            Path.SCHEDULE_FIRE: Outcome(None, "skipped:rate_limited_user"),
        },
    ),
    Rule(
        Step.TWO_PERSON,
        says="A person's disaster alerts that together reach more than one district, or the "
        "whole city, within GATEWAY_TWO_PERSON_WINDOW_S (their broadcasts not approved by a "
        "second person, and their pending requests) need a second person, however the alerts "
        "are split",
        exempt="an approved request (the second person is there); the bootstrap token",
        outcomes={
            **_same(Outcome(202, "approval"), *_NOW_PATHS),
            Path.SCHEDULE: Outcome(409, "approval_required"),
            Path.SCHEDULE_FIRE: Outcome(None, "skipped:approval_required"),
            Path.LIVE: Outcome(403, "live_needs_approval"),
            Path.RESEND: Outcome(409, "approval_required"),
        },
    ),
    Rule(
        Step.QUIET_HOURS,
        says="In quiet hours (GATEWAY_QUIET_HOURS, or a district's own) a broadcast other than a "
        "disaster alert waits for their end (GATEWAY_QUIET_HOURS_POLICY=defer) or is refused "
        "(refuse); what cannot wait (a live talk, a resend) is refused",
        exempt="disaster alerts, never held",
        outcomes={
            **_same(Outcome(202, "schedule"), *_NOW_PATHS),
            # The schedule is made; its first occurrence goes when quiet hours end.
            Path.SCHEDULE: Outcome(201, "deferred"),
            Path.SCHEDULE_FIRE: Outcome(None, "deferred"),
            Path.LIVE: Outcome(409, "quiet_hours"),
            Path.RESEND: Outcome(409, "quiet_hours"),
        },
    ),
)

RULE_OF: Final[Mapping[Step, Rule]] = {rule.step: rule for rule in RULES}


# --------------------------------------------------------------------------------------------
# What paths can do, as data


@dataclass(frozen=True)
class Traits:
    waits_for_quiet: bool  # may be deferred to the end of quiet hours
    waits_for_approval: bool  # may become an approval request


TRAITS: Final[Mapping[Path, Traits]] = {
    Path.UPLOAD: Traits(waits_for_quiet=True, waits_for_approval=True),
    Path.TEXT: Traits(waits_for_quiet=True, waits_for_approval=True),
    Path.TEMPLATE: Traits(waits_for_quiet=True, waits_for_approval=True),
    Path.SCHEDULE: Traits(waits_for_quiet=True, waits_for_approval=False),
    Path.SCHEDULE_FIRE: Traits(waits_for_quiet=True, waits_for_approval=False),
    Path.APPROVAL: Traits(waits_for_quiet=True, waits_for_approval=False),
    Path.LIVE: Traits(waits_for_quiet=False, waits_for_approval=False),
    Path.RESEND: Traits(waits_for_quiet=False, waits_for_approval=False),
}


# --------------------------------------------------------------------------------------------
# Decisions


@dataclass(frozen=True)
class Replay:
    """The same person asked this before: answer as then."""

    found: Broadcast | ApprovalRequest | Schedule


@dataclass(frozen=True)
class Refuse:
    error: MaeulError

    @property
    def code(self) -> str:
        return self.error.code


@dataclass(frozen=True)
class Defer:
    """Quiet hours: send at ``until`` instead."""

    until: datetime
    target: ResolvedTarget


@dataclass(frozen=True)
class NeedsApproval:
    target: ResolvedTarget


@dataclass(frozen=True)
class Send:
    target: ResolvedTarget


Decision = Replay | Refuse | Defer | NeedsApproval | Send


# --------------------------------------------------------------------------------------------
# Facts, read once per request, and the pure judgement of each rule


@dataclass(frozen=True)
class Reach:
    """Where disaster alerts go: the whole city, or these districts."""

    all: bool
    districts: frozenset[int]

    def __or__(self, other: Reach) -> Reach:
        return Reach(self.all or other.all, self.districts | other.districts)

    @property
    def wide(self) -> bool:
        return self.all or len(self.districts) > 1


@dataclass(frozen=True)
class TwoPersonFacts:
    """This request's reach and that of the person's earlier unapproved disaster alerts in the
    window; ``applies`` is False when the rule does not apply (not a disaster, approved, the
    bootstrap token)."""

    applies: bool
    reach: Reach
    earlier: Reach


def judge_rights(refusal: Forbidden | None) -> Decision | None:
    return Refuse(refusal) if refusal is not None else None


def judge_idempotency(found: Replay | Refuse | None) -> Decision | None:
    return found


def judge_rate_limit(refusal: MaeulError | None) -> Decision | None:
    return Refuse(refusal) if refusal is not None else None


def approval_required() -> Conflict:
    return Conflict(
        "approval_required",
        ko="여러 읍·면·동이나 시 전체에 보내는 재난 방송은 두 사람의 승인이 필요합니다. 이 "
        "방식으로는 승인을 기다릴 수 없으니, 지금 녹음 방송으로 보내고 승인을 받아 주세요.",
        en="Disaster alerts that together reach several districts or the whole city need a "
        "second person's approval, which this cannot wait for; send it now and have it approved.",
    )


def live_needs_approval() -> Forbidden:
    return Forbidden(
        "live_needs_approval",
        ko="여러 읍면동이나 시 전체에 대한 재난 방송은 승인이 필요하므로 실시간으로 할 수 "
        "없습니다. 녹음 방송으로 승인을 요청해 주세요.",
        en="A disaster alert to several districts needs a second person's approval, so it "
        "cannot go live; send a recording for approval instead.",
    )


def judge_two_person(path: Path, facts: TwoPersonFacts, target: ResolvedTarget) -> Decision | None:
    if not facts.applies or not (facts.reach | facts.earlier).wide:
        return None
    if TRAITS[path].waits_for_approval:
        return NeedsApproval(target)
    return Refuse(live_needs_approval() if path is Path.LIVE else approval_required())


def judge_quiet_hours(
    path: Path,
    quiet: Quiet | None,
    target: ResolvedTarget,
    *,
    policy: str,
    refusal: Conflict,
) -> Decision | None:
    """``refusal`` is the 409 quiet_hours this path answers when it may not wait."""
    if quiet is None:
        return None
    if TRAITS[path].waits_for_quiet and policy == "defer" and quiet.ends_at is not None:
        return Defer(quiet.ends_at, target)
    return Refuse(refusal)


# --------------------------------------------------------------------------------------------
# Stopping what someone else sent: one rule for every cancel path


class CancelPath(StrEnum):
    """Every way to stop or change what a person sent. A new one is a new column."""

    BROADCAST = "broadcast_cancel"  # POST /broadcasts/{id}/cancel
    SCHEDULE_CANCEL = "schedule_cancel"  # POST /schedules/{id}/cancel
    SCHEDULE_EDIT = "schedule_edit"  # PATCH /schedules/{id}
    SCHEDULE_RESUME = "schedule_resume"  # POST /schedules/{id}/resume


# Paths on which the sender needs no rights to stop their own: stopping is always safe, while
# an edit or a resume sends, so it takes the rights to send as they are now.
OWN_STOPS: Final = frozenset({CancelPath.BROADCAST, CancelPath.SCHEDULE_CANCEL})


class Area(IntEnum):
    """How wide a person's area is: the city over a district over villages."""

    VILLAGES = 1
    DISTRICT = 2
    CITY = 3


def area_of(person: Principal | None) -> Area:
    """``None`` is the bootstrap token or an account that is gone: taken as the city's, so only
    the city's own may stop what it sent."""
    if person is None or person.user_id is None or person.role in CITY_WIDE:
        return Area.CITY
    return Area.DISTRICT if person.district_ids else Area.VILLAGES


@dataclass(frozen=True)
class CancelRule:
    says: str
    exempt: str
    outcomes: Mapping[CancelPath, Outcome]


CANCEL: Final = CancelRule(
    says="Someone other than the sender needs the rights to send the category (403 "
    "category_not_allowed) to the whole target (403 outside_scope), and an area at least as "
    "wide as the sender's, the city over a district over villages (else 403 cancel_outranked): "
    "a village head never stops a district's or the city's broadcast, even one to their own "
    "village, and police never a disaster alert. Editing or resuming a schedule also takes the "
    "rights to send it, for its maker too",
    exempt="the sender stopping their own (a schedule's maker cancelling it)",
    outcomes=dict.fromkeys(CancelPath, Outcome(403, "cancel_outranked")),
)


def cancel_outranked() -> Forbidden:
    return Forbidden(
        "cancel_outranked",
        ko="더 넓은 지역을 맡은 사람이 보낸 방송은 취소하거나 바꿀 수 없습니다. 보낸 사람이나 "
        "그 위의 담당자(읍·면·동 또는 시)에게 요청해 주세요.",
        en="This was sent by someone whose area is wider than yours; ask them, or someone "
        "over that area, to cancel or change it.",
    )


def judge_cancel(
    path: CancelPath,
    *,
    own: bool,
    rights: Forbidden | None,
    area: Area,
    sender_area: Area,
) -> Forbidden | None:
    """``rights``: what sending the broadcast (or schedule) as it stands would answer this
    person; ``own``: they sent it."""
    if own and path in OWN_STOPS:
        return None
    if rights is not None:
        return rights
    if not own and area < sender_area:
        return cancel_outranked()
    return None


# --------------------------------------------------------------------------------------------
# The table as the README shows it (a test keeps the two the same)

_COLUMNS: Final = (
    ("upload, text, template", Path.UPLOAD),
    ("schedule made", Path.SCHEDULE),
    ("schedule fires", Path.SCHEDULE_FIRE),
    ("approval", Path.APPROVAL),
    ("live talk", Path.LIVE),
    ("resend", Path.RESEND),
)


def markdown_table() -> str:
    """The rules in order, one row each, with what every path answers (— where it cannot
    meet the rule). Upload, text and template answer alike."""
    head = ["#", "rule", "exempt", *(name for name, _ in _COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for number, rule in enumerate(RULES, 1):
        cells = [str(number), f"**{rule.step.value}**: {rule.says}", rule.exempt]
        for _, path in _COLUMNS:
            outcome = rule.outcomes.get(path)
            if outcome is None:
                cells.append("—")
            elif outcome.status is None:
                cells.append(f"`{outcome.code}`")
            else:
                cells.append(f"{outcome.status} `{outcome.code}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_CANCEL_COLUMNS: Final = (
    ("broadcast cancel", CancelPath.BROADCAST),
    ("schedule cancel", CancelPath.SCHEDULE_CANCEL),
    ("schedule edit", CancelPath.SCHEDULE_EDIT),
    ("schedule resume", CancelPath.SCHEDULE_RESUME),
)


def cancel_markdown_table() -> str:
    """The cancel rule, with what each cancel path answers."""
    head = ["rule", "exempt", *(name for name, _ in _CANCEL_COLUMNS)]
    cells = [f"**cancel**: {CANCEL.says}", CANCEL.exempt]
    cells += [str(CANCEL.outcomes[path]).replace(" ", " `", 1) + "`" for _, path in _CANCEL_COLUMNS]
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(cells) + " |"]
    )
