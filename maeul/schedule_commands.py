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


def print_schedule(schedule: dict[str, Any], as_json: bool, *, deferred: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps(_schedule_json(schedule), ensure_ascii=False))
        return
    zone = schedule["timezone"]
    if deferred:
        typer.echo(
            "조용한 시간이라 지금 보내지 않고 "
            f"{_local_time(schedule['next_fire_at'], zone)}에 보내도록 예약했습니다."
        )
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
