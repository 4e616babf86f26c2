"""`maeul schedule list`, `show` and `cancel`: scheduled broadcasts, as the gateway reports them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from maeul.api import api_client, exit_for

schedule_app = typer.Typer(help="Scheduled broadcasts / 예약 방송", no_args_is_help=True)
WEEKDAYS_KO = {
    "월": "mon",
    "화": "tue",
    "수": "wed",
    "목": "thu",
    "금": "fri",
    "토": "sat",
    "일": "sun",
}
_SCHEDULE_STATES = {"active": "대기 중", "completed": "완료", "cancelled": "취소됨"}
CATEGORY_KO = {
    "village_notice": "마을 알림",
    "administrative": "행정",
    "crime_prevention": "범죄 예방",
    "disaster": "재난",
}


def _local_time(value: str | None, zone: str) -> str:
    if value is None:
        return "-"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(value).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _schedule_json(schedule: dict[str, Any]) -> dict[str, Any]:
    return {
        "schedule_id": schedule["id"],
        "state": schedule["state"],
        "origin": schedule["origin"],
        "next_fire_at": schedule["next_fire_at"],
        "recurrence": schedule["recurrence"]["description"],
        "fired": schedule["fired_count"],
        "skipped": schedule["skipped_count"],
        "broadcast_ids": schedule["broadcast_ids"],
    }


def _send_now_advice(schedule_id: str, *, district_window: bool = False) -> tuple[str, str]:
    """How a deferred send can go out now (Korean, English): what the gateway allows, nothing
    that weakens quiet hours where they are set. `district_window`: a district's own window held
    it (the city's is not in force), which GATEWAY_QUIET_HOURS does not lift."""
    disaster = (
        "  - 실제 재난이면 --category disaster 로 보내세요. 재난 경보는 방송 금지 시간에도 "
        "바로 나갑니다.\n"
    )
    cancel = f"  - 이 예약이 필요 없으면: maeul schedule cancel {schedule_id}"
    if district_window:
        korean = (
            "지금 보내야 한다면:\n"
            + disaster
            + "  - 읍·면·동의 방송 금지 시간이 막았습니다: 시청 관리자에게 그 시간을 바꿔 "
            '달라고 하세요 (PUT /api/v1/quiet-hours/districts/{id}, {"window": "..."}).\n' + cancel
        )
        english = (
            "To send now: a real disaster alert (--category disaster) ignores quiet hours; a "
            "district's own quiet hours held it: ask the city administrator to change them "
            '(PUT /api/v1/quiet-hours/districts/{id} with {"window": "..."}); cancel this one '
            f"with `maeul schedule cancel {schedule_id}` if it is not needed."
        )
        return korean, english
    korean = (
        "지금 보내야 한다면:\n"
        + disaster
        + cancel
        + "\n  - 데모(make run)에서 시험하는 중이면: 게이트웨이를 GATEWAY_QUIET_HOURS=off make run "
        "으로 다시 시작하면 방송 금지 시간 없이 바로 보냅니다."
    )
    english = (
        "To send now: a real disaster alert (--category disaster) ignores quiet hours; cancel "
        f"this one with `maeul schedule cancel {schedule_id}` if it is not needed; a demo "
        "(make run) restarted as `GATEWAY_QUIET_HOURS=off make run` has no quiet hours."
    )
    return korean, english


def print_schedule(
    schedule: dict[str, Any],
    as_json: bool,
    *,
    deferred: bool = False,
    district_window: bool = False,
) -> None:
    """A schedule; `deferred`: one that quiet hours made of a send meant for now, said so with
    when it will go out and how to send now instead (`district_window`: a district's own
    quiet hours held it)."""
    zone = schedule["timezone"]
    if as_json:
        body = _schedule_json(schedule)
        if deferred:
            body = {
                "deferred": True,
                "reason": "quiet_hours",
                "until": schedule["next_fire_at"],
                **body,
                "how_to_send_now": _send_now_advice(
                    schedule["id"], district_window=district_window
                )[1],
            }
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    if deferred:
        korean, english = _send_now_advice(schedule["id"], district_window=district_window)
        typer.echo(
            "지금은 방송 금지 시간이라 바로 보내지 않았습니다. 금지 시간이 끝나는 "
            f"{_local_time(schedule['next_fire_at'], zone)}에 보내도록 예약했습니다. / "
            f"Quiet hours: not sent now, deferred to {schedule['next_fire_at']}."
        )
        typer.echo(korean)
        typer.echo(english)
    state = _SCHEDULE_STATES.get(schedule["state"], schedule["state"])
    typer.echo(f"예약 {schedule['id']} — 상태: {state}")
    typer.echo(f"  일정: {schedule['recurrence']['description']}")
    typer.echo(f"  다음 방송: {_local_time(schedule['next_fire_at'], zone)}")
    label = schedule["title"] or (schedule["text"] or "")[:40] or "(녹음)"
    typer.echo(f"  내용: [{CATEGORY_KO.get(schedule['category'], schedule['category'])}] {label}")
    typer.echo(
        f"  보낸 방송 {schedule['fired_count']}건, 건너뜀 {schedule['skipped_count']}건"
        + (f": {', '.join(schedule['broadcast_ids'])}" if schedule["broadcast_ids"] else "")
    )


@schedule_app.command("list")
def schedule_list(
    state: Annotated[str | None, typer.Option(help="active | completed | cancelled")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """List scheduled broadcasts, newest first, with their next time."""
    params: dict[str, str | int] = {"limit": limit}
    if state:
        params["state"] = state
    with api_client() as client:
        response = client.get("/api/v1/schedules", params=params)
        if response.status_code != 200:
            raise exit_for(response)
    page = response.json()
    if as_json:
        typer.echo(json.dumps([_schedule_json(s) for s in page["items"]], ensure_ascii=False))
        return
    if not page["items"]:
        typer.echo("예약된 방송이 없습니다.")
        return
    typer.echo(f"예약 방송 {page['total']}건")
    for schedule in page["items"]:
        state_ko = _SCHEDULE_STATES.get(schedule["state"], schedule["state"])
        label = schedule["title"] or (schedule["text"] or "")[:30] or "(녹음)"
        typer.echo(
            f"  {schedule['id']}  {state_ko:<5} "
            f"다음 {_local_time(schedule['next_fire_at'], schedule['timezone'])}  "
            f"{schedule['recurrence']['description']}  {label}"
        )


@schedule_app.command("show")
def schedule_show(
    schedule_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one scheduled broadcast and the broadcasts it created."""
    with api_client() as client:
        response = client.get(f"/api/v1/schedules/{schedule_id}")
        if response.status_code != 200:
            raise exit_for(response)
    print_schedule(response.json(), as_json)


@schedule_app.command("cancel")
def schedule_cancel(
    schedule_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a scheduled broadcast: nothing more is sent from it."""
    with api_client() as client:
        response = client.post(f"/api/v1/schedules/{schedule_id}/cancel")
        if response.status_code != 200:
            raise exit_for(response)
    print_schedule(response.json(), as_json)
