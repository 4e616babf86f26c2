"""Every path against every rule, generated from the rules table: a new path cannot forget one.

For each rule of ``gateway.sending.rules.RULES`` and each path the table gives an outcome for,
the same situation that breaks the rule is set up and the path is taken through the API (or the
schedule worker); the answer must be the table's. A baseline without any broken rule checks
that each path, as driven here, sends.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path as FilePath
from typing import Any

import httpx
import pytest

from gateway.auth import Role
from gateway.sending.rules import (
    RULES,
    Outcome,
    Path,
    Step,
    cancel_markdown_table,
    markdown_table,
)
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_roles import _layout
from tests.support.people import Person, make_person

__all__ = ["recording", "stack"]  # the fixtures, shared

# One database is enough to walk the table (the rules read through the same queries on both);
# the finding tests run on both.
sqlite_only = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)

ROOT = FilePath(__file__).resolve().parents[2]
_TEXT = "마을 회관에서 오늘 오후 두 시에 모임이 있습니다."


@dataclass
class Case:
    """Who acts, what and where; what the preparation left for the act."""

    stack: Stack
    recording: bytes
    person: Person
    category: str
    target: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)


def outcome_of(response: httpx.Response) -> Outcome:
    body = response.json()
    if "error" in body:
        return Outcome(response.status_code, body["error"])
    if response.headers.get("idempotent-replayed") == "true":
        return Outcome(response.status_code, "replay")
    if response.status_code == 202:
        return Outcome(202, "schedule" if "origin" in body else "approval")
    return Outcome(response.status_code, "sent")


def _form(case: Case) -> dict[str, Any]:
    target = {k: ("true" if v is True else v) for k, v in case.target.items()}
    return {"category": case.category, **target}


async def _post_broadcast(case: Case, key: str | None, **form: Any) -> httpx.Response:
    headers = {**case.person.headers, **({"Idempotency-Key": key} if key else {})}
    files = form.pop("files", None)
    return await case.stack.client.post(
        "/api/v1/broadcasts", data={**_form(case), **form}, files=files, headers=headers
    )


# --------------------------------------------------------------------------------------------
# Paths: prepare (before the situation), then act


async def _nothing(case: Case) -> None:
    return None


async def act_upload(case: Case, key: str | None) -> Outcome:
    files = {"file": ("notice.m4a", case.recording, "audio/mp4")}
    return outcome_of(await _post_broadcast(case, key, files=files))


async def act_text(case: Case, key: str | None) -> Outcome:
    return outcome_of(await _post_broadcast(case, key, text=_TEXT))


async def prepare_template(case: Case) -> None:
    created = await case.stack.client.post(
        "/api/v1/templates",
        json={
            "name": f"안내 {case.person.user_id}",
            "category": case.category,
            "title": "안내",
            "body": "{내용} 알려 드립니다.",
        },
    )
    assert created.status_code == 201, created.text
    case.state["template_id"] = created.json()["id"]


async def act_template(case: Case, key: str | None) -> Outcome:
    values = json.dumps({"내용": "모임이 있음을"})
    return outcome_of(
        await _post_broadcast(case, key, template_id=case.state["template_id"], values=values)
    )


async def _make_schedule(case: Case, key: str | None, send_at: datetime) -> httpx.Response:
    headers = {**case.person.headers, **({"Idempotency-Key": key} if key else {})}
    return await case.stack.client.post(
        "/api/v1/schedules",
        data={**_form(case), "text": _TEXT, "send_at": send_at.isoformat()},
        headers=headers,
    )


async def act_schedule(case: Case, key: str | None) -> Outcome:
    send_at = case.stack.clock.now() + timedelta(minutes=5)
    response = await _make_schedule(case, key, send_at)
    found = outcome_of(response)
    if found != Outcome(201, "sent"):
        return found
    held = datetime.fromisoformat(response.json()["next_fire_at"]) != send_at
    return Outcome(201, "deferred" if held else "scheduled")


async def prepare_schedule_fire(case: Case) -> None:
    send_at = case.stack.clock.now() + timedelta(minutes=5)
    response = await _make_schedule(case, None, send_at)
    assert response.status_code == 201, response.text
    case.state["schedule_id"] = response.json()["id"]


async def act_schedule_fire(case: Case, key: str | None) -> Outcome:
    stack = case.stack
    stack.clock.advance(5 * 60)
    outcomes = await stack.app.state.scheduler.fire_due()
    if outcomes["deferred"]:
        return Outcome(None, "deferred")
    read = await stack.client.get(f"/api/v1/schedules/{case.state['schedule_id']}")
    [occurrence] = read.json()["occurrences"]
    if occurrence["state"] == "fired":
        return Outcome(None, "fired")
    return Outcome(None, f"{occurrence['state']}:{occurrence['reason']}")


async def prepare_approval(case: Case) -> None:
    """A request for a second person, by someone else, to the city (a disaster alert)."""
    requester = await make_person(case.stack.client, Role.SAFETY_OFFICER)
    response = await case.stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "disaster", "all_villages": "true", "text": _TEXT},
        headers=requester.headers,
    )
    assert response.status_code == 202, response.text
    case.state["approval_id"] = response.json()["id"]


async def act_approval(case: Case, key: str | None) -> Outcome:
    response = await case.stack.client.post(
        f"/api/v1/approvals/{case.state['approval_id']}/approve", headers=case.person.headers
    )
    found = outcome_of(response)
    return Outcome(200, "approved") if found == Outcome(200, "sent") else found


async def act_live(case: Case, key: str | None) -> Outcome:
    body: dict[str, Any] = {"category": case.category, **case.target}
    if "all_villages" in body:
        body["all"] = body.pop("all_villages")
    response = await case.stack.client.post(
        "/api/v1/live/tickets", json=body, headers=case.person.headers
    )
    found = outcome_of(response)
    return Outcome(201, "ticket") if found == Outcome(201, "sent") else found


async def prepare_resend(case: Case) -> None:
    """A broadcast of the case's category and target, by the deployment, that nobody played."""
    stack = case.stack
    response = await stack.client.post(
        "/api/v1/broadcasts", data={**_form(case), "text": _TEXT, "expires_in_s": "30"}
    )
    assert response.status_code == 201, response.text
    case.state["original"] = response.json()["id"]
    stack.clock.advance(40)
    await stack.app.state.sweeper.sweep_once()


async def act_resend(case: Case, key: str | None) -> Outcome:
    headers = {**case.person.headers, **({"Idempotency-Key": key} if key else {})}
    response = await case.stack.client.post(
        f"/api/v1/broadcasts/{case.state['original']}/resend", headers=headers
    )
    return outcome_of(response)


Prepare = Callable[[Case], Awaitable[None]]
Act = Callable[[Case, str | None], Awaitable[Outcome]]
DRIVERS: dict[Path, tuple[Prepare, Act]] = {
    Path.UPLOAD: (_nothing, act_upload),
    Path.TEXT: (_nothing, act_text),
    Path.TEMPLATE: (prepare_template, act_template),
    Path.SCHEDULE: (_nothing, act_schedule),
    Path.SCHEDULE_FIRE: (prepare_schedule_fire, act_schedule_fire),
    Path.APPROVAL: (prepare_approval, act_approval),
    Path.LIVE: (_nothing, act_live),
    Path.RESEND: (prepare_resend, act_resend),
}
BASELINE: dict[Path, Outcome] = {
    Path.UPLOAD: Outcome(201, "sent"),
    Path.TEXT: Outcome(201, "sent"),
    Path.TEMPLATE: Outcome(201, "sent"),
    Path.SCHEDULE: Outcome(201, "scheduled"),
    Path.SCHEDULE_FIRE: Outcome(None, "fired"),
    Path.APPROVAL: Outcome(200, "approved"),
    Path.LIVE: Outcome(201, "ticket"),
    Path.RESEND: Outcome(201, "sent"),
}


# --------------------------------------------------------------------------------------------
# Situations: who acts, and what breaks the rule (after the path's preparation)


@dataclass(frozen=True)
class Situation:
    role: Role
    category: str
    # Where the act goes, given the city's first two districts.
    where: Callable[[int, int], dict[str, Any]]
    # Break the rule: runs after the path's preparation, before the act.
    breaks: Callable[[Case, pytest.MonkeyPatch], Awaitable[None]]
    # Who approves on the approval path (a request by someone else, prepared for it).
    approver: Role = Role.CITY_ADMIN
    # A path that meets the rule otherwise: its own target and break.
    paths: dict[Path, Situation] = field(default_factory=dict)

    def on(self, path: Path) -> Situation:
        return self.paths.get(path, self)


def _first(first: int, second: int) -> dict[str, Any]:
    return {"district_ids": [first]}


def _second(first: int, second: int) -> dict[str, Any]:
    return {"district_ids": [second]}


async def _unbroken(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    return None


async def _one_sent_already(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(case.stack.settings, "rate_limit_user_per_hour", 1)
    files = {"file": ("notice.m4a", case.recording, "audio/mp4")}
    response = await case.stack.client.post(
        "/api/v1/broadcasts",
        data={"category": case.category, "district_ids": case.state["first"]},
        files=files,
        headers=case.person.headers,
    )
    assert response.status_code == 201, response.text


async def _disaster_to_the_other_district(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"file": ("alert.m4a", case.recording, "audio/mp4")}
    response = await case.stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "disaster", "district_ids": case.state["first"]},
        files=files,
        headers=case.person.headers,
    )
    assert response.status_code == 201, response.text


async def _area_narrowed_to_the_other_district(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """An administrator takes the person's district away after they made the schedule."""
    [first] = case.state["first"]
    districts, _ = await _layout(case.stack)
    other = next(d["id"] for d in districts if d["id"] != first)
    response = await case.stack.client.patch(
        f"/api/v1/users/{case.person.user_id}", json={"district_ids": [other]}
    )
    assert response.status_code == 200, response.text


async def _quiet_now(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    # Quiet hours around the whole test (the clock starts at 09:00 in Seoul).
    monkeypatch.setattr(case.stack.settings, "quiet_hours", "08:00-12:00")


SITUATIONS: dict[Step | None, Situation] = {
    None: Situation(Role.DISTRICT_OFFICER, "administrative", _first, _unbroken),
    # A district officer acting on another district.
    Step.RIGHTS: Situation(
        Role.DISTRICT_OFFICER,
        "administrative",
        _second,
        _unbroken,
        approver=Role.DISTRICT_OFFICER,
        # A schedule made in the person's area fires after that area is taken away.
        paths={
            Path.SCHEDULE_FIRE: Situation(
                Role.DISTRICT_OFFICER,
                "administrative",
                _first,
                _area_narrowed_to_the_other_district,
            )
        },
    ),
    Step.RATE_LIMIT: Situation(Role.DISTRICT_OFFICER, "administrative", _first, _one_sent_already),
    Step.TWO_PERSON: Situation(
        Role.SAFETY_OFFICER, "disaster", _second, _disaster_to_the_other_district
    ),
    Step.QUIET_HOURS: Situation(Role.DISTRICT_OFFICER, "administrative", _first, _quiet_now),
}
# Idempotency is broken by asking twice: see test_a_repeat_gets_the_first_answer.
SITUATIONS[Step.IDEMPOTENCY] = SITUATIONS[None]


async def _case(
    stack: Stack, recording: bytes, path: Path, situation: Situation
) -> tuple[Case, Act]:
    situation = situation.on(path)
    districts, _ = await _layout(stack)
    first, second = districts[0]["id"], districts[1]["id"]
    role = situation.approver if path is Path.APPROVAL else situation.role
    scope = {"district_ids": [first]} if role is Role.DISTRICT_OFFICER else {}
    person = await make_person(stack.client, role, **scope)
    case = Case(stack, recording, person, situation.category, situation.where(first, second))
    case.state["first"] = [first]
    prepare, act = DRIVERS[path]
    await prepare(case)
    return case, act


CELLS = [
    pytest.param(rule.step, path, outcome, id=f"{rule.step}-{path}")
    for rule in RULES
    for path, outcome in rule.outcomes.items()
    if rule.step is not Step.IDEMPOTENCY
]


@sqlite_only
@pytest.mark.parametrize("path", list(Path))
async def test_each_path_sends_when_no_rule_is_broken(
    stack: Stack, recording: bytes, path: Path
) -> None:
    case, act = await _case(stack, recording, path, SITUATIONS[None])
    assert await act(case, None) == BASELINE[path]


@sqlite_only
@pytest.mark.parametrize(("step", "path", "expected"), CELLS)
async def test_each_path_answers_a_broken_rule_as_the_table_says(
    stack: Stack,
    recording: bytes,
    monkeypatch: pytest.MonkeyPatch,
    step: Step,
    path: Path,
    expected: Outcome,
) -> None:
    situation = SITUATIONS[step].on(path)
    case, act = await _case(stack, recording, path, situation)
    await situation.breaks(case, monkeypatch)
    assert await act(case, None) == expected


@sqlite_only
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(path, outcome, id=str(path))
        for rule in RULES
        if rule.step is Step.IDEMPOTENCY
        for path, outcome in rule.outcomes.items()
    ],
)
async def test_a_repeat_gets_the_first_answer(
    stack: Stack, recording: bytes, path: Path, expected: Outcome
) -> None:
    case, act = await _case(stack, recording, path, SITUATIONS[None])
    assert await act(case, "same-key") == BASELINE[path]
    assert await act(case, "same-key") == expected


def test_every_path_meets_every_rule_it_can() -> None:
    """A path the table leaves out of a rule must be one that cannot meet it, said here."""
    cannot = {
        (Step.IDEMPOTENCY, Path.LIVE),  # no key
        (Step.IDEMPOTENCY, Path.SCHEDULE_FIRE),  # the gateway's own key, once per occurrence
        (Step.RATE_LIMIT, Path.APPROVAL),  # approvals are disaster alerts
        (Step.TWO_PERSON, Path.APPROVAL),  # the second person is approving
        (Step.QUIET_HOURS, Path.APPROVAL),  # disaster alerts are never held
    }
    for rule in RULES:
        for path in Path:
            assert (path in rule.outcomes) != ((rule.step, path) in cannot), (rule.step, path)


def test_the_readme_shows_the_rules_table_of_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, "regenerate the README's table from gateway.sending.rules"
    assert cancel_markdown_table() in readme, "and its cancel rule"
