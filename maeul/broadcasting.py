"""`maeul broadcast`, `status`, `cancel`, `resend`, `approve` and `templates`: sending broadcasts
through the gateway's API and following them to the end."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from maeul import held
from maeul.api import api_client, exit_for
from maeul.schedule_commands import CATEGORY_KO, WEEKDAYS_KO, print_schedule

console = Console(stderr=True)
CATEGORIES = ("village_notice", "administrative", "crime_prevention", "disaster")
FINAL_STATES = ("completed", "cancelled")
SPEAKER_KEYS = (
    "total", "queued", "sent", "received", "playing", "preempted", "played", "played_late",
    "failed", "expired", "cancelled", "offline",
)  # fmt: skip


def _summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": summary["id"],
        "state": summary["state"],
        "villages": summary["villages"],
        "speakers": {k: summary["speakers"].get(k, 0) for k in SPEAKER_KEYS},
    }


def broadcast(
    category: Annotated[
        str | None,
        typer.Option(help="|".join(CATEGORIES) + " (default with --template: the template's)"),
    ] = None,
    file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    text: Annotated[
        str | None, typer.Option(help="Typed text, spoken by the speech engine")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="A template's name (see `maeul templates`)")
    ] = None,
    value: Annotated[
        list[str] | None, typer.Option(help="A template value as key=value (repeatable)")
    ] = None,
    village: Annotated[list[int] | None, typer.Option(help="Village id (repeatable)")] = None,
    district: Annotated[list[int] | None, typer.Option(help="District id (repeatable)")] = None,
    all_villages: Annotated[bool, typer.Option("--all", help="Every village of the city")] = False,
    near: Annotated[
        str | None, typer.Option(help="Villages within --radius-m of this point: LAT,LON")
    ] = None,
    radius_m: Annotated[float | None, typer.Option(help="With --near: metres")] = None,
    polygon: Annotated[
        str | None, typer.Option(help='Villages inside a polygon: "LAT,LON;LAT,LON;..."')
    ] = None,
    codes: Annotated[
        str | None,
        typer.Option(help="Villages under 10-digit administrative codes: C1,C2,..."),
    ] = None,
    title: Annotated[str | None, typer.Option()] = None,
    expires_in: Annotated[
        int | None, typer.Option(help="Seconds until the broadcast expires")
    ] = None,
    repeat: Annotated[bool, typer.Option(help="Speak typed text twice")] = False,
    at: Annotated[
        str | None,
        typer.Option(help='Send later: "2026-11-24 07:00" (Asia/Seoul unless an offset is given)'),
    ] = None,
    repeat_count: Annotated[
        int | None, typer.Option(help="With --at: send N times in all...")
    ] = None,
    every: Annotated[int | None, typer.Option(help="...every M minutes")] = None,
    daily: Annotated[str | None, typer.Option(help="Every day at HH:MM (needs --until)")] = None,
    weekday: Annotated[
        list[str] | None, typer.Option(help="With --daily: only on mon..sun (repeatable)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="With --daily: the last day, YYYY-MM-DD")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Return when no delivery can change any more")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "--allow-duplicate",
            help="Send even if the same send is already waiting for quiet hours to end",
        ),
    ] = False,
) -> None:
    """Send a broadcast to villages, whole districts, the whole city or the villages of an area
    (a point and radius, a polygon, administrative codes), now or scheduled."""
    if sum(x is not None for x in (file, text, template)) == 0 or (
        text is not None and template is not None
    ):
        console.print(
            "[red]--file, --text 또는 --template 중 하나를 지정하세요 (--file 과 --template 은 "
            "함께 쓸 수 있습니다). / Give --file, --text or --template."
        )
        raise typer.Exit(2)
    area = area_option(near, radius_m, polygon, codes)
    if area is not None and (village or district or all_villages):
        console.print(
            "[red]--near, --polygon, --codes 는 --village, --district, --all 과 함께 쓸 수 "
            "없습니다. / An area replaces the other targets."
        )
        raise typer.Exit(2)
    if not (village or district or all_villages or area):
        console.print(
            "[red]--village, --district, --all 또는 --near/--polygon/--codes 로 대상을 "
            "지정하세요. / Give a target."
        )
        raise typer.Exit(2)
    scheduled = at is not None or daily is not None
    if wait and scheduled:
        console.print("[red]예약 방송에는 --wait 를 쓸 수 없습니다. / --wait is for sending now.")
        raise typer.Exit(2)
    if not scheduled and (repeat_count or every or weekday or until):
        console.print(
            "[red]--repeat-count, --every 는 --at 과, --weekday, --until 은 --daily 와 함께 "
            "쓰세요. / Repetition needs --at or --daily."
        )
        raise typer.Exit(2)
    values = _template_values(value or [])
    if values and template is None:
        console.print("[red]--value 는 --template 과 함께 쓰세요. / --value needs --template.")
        raise typer.Exit(2)
    with api_client() as client:
        form: dict[str, str | list[str]] = {}
        if template is not None:
            found = _find_template(client, template)
            form["template_id"] = str(found["id"])
            form["values"] = json.dumps(values, ensure_ascii=False)
            category = category or str(found["category"])
        if category is None:
            console.print("[red]--category 를 지정하세요. / Give --category.")
            raise typer.Exit(2)
        form["category"] = category
        if text is not None:
            form["text"] = text
        if repeat:
            form["repeat"] = "true"
        if title:
            form["title"] = title
        if all_villages:
            form["all_villages"] = "true"
        if village:
            form["village_ids"] = [str(v) for v in village]
        if district:
            form["district_ids"] = [str(d) for d in district]
        if area is not None:
            form["area"] = json.dumps(area)
        if expires_in:
            form["expires_in_s"] = str(expires_in)
        path = "/api/v1/broadcasts"
        if scheduled:
            path = "/api/v1/schedules"
            form.update(_schedule_form(at, repeat_count, every, daily, weekday, until))
        if not scheduled and not yes:
            twin = held.waiting_twin(client, form, file)
            if twin is not None:
                raise _refuse(
                    "같은 방송이 이미 방송 금지 시간이 끝나기를 기다리고 있습니다 "
                    f"(예약 {twin['id']}, {twin['next_fire_at']}). 두 번 나가게 하려면 --yes 를 "
                    f"붙이세요; 먼저 것을 취소하려면 maeul schedule cancel {twin['id']}",
                    "The same send is already waiting for quiet hours to end; "
                    "give --yes to send it twice.",
                )
        response = _post_broadcast(client, path, form, file)
        if (
            response.status_code == 202
            and file is not None
            and "requested_by" not in response.json()
        ):
            held.remember(response.json()["id"], file)
        if response.status_code == 202 and "requested_by" in response.json():
            _print_approval(response.json(), as_json)
            return
        if response.status_code == 202 or (scheduled and response.status_code in (200, 201)):
            print_schedule(
                response.json(),
                as_json,
                deferred=not scheduled,
                district_window=not scheduled and _held_by_a_district(client),
            )
            return
        if response.status_code not in (200, 201):
            raise exit_for(response)
        summary = response.json()
        if wait:
            summary = _follow(client, summary["id"], show=not as_json)
    _print_summary(summary, as_json)


def _held_by_a_district(client: httpx.Client) -> bool:
    """Whether a send quiet hours just held was held by a district's own window: the city's is
    not in force now."""
    answer = client.get("/api/v1/quiet-hours")
    return answer.status_code == 200 and not answer.json().get("quiet_now", True)


def _refuse(ko: str, en: str) -> typer.Exit:
    console.print(f"[red]{ko} / {en}")
    return typer.Exit(2)


def _numbers(text: str, option: str) -> list[float]:
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise _refuse(
            f"{option} 의 점은 위도,경도 두 수로 쓰세요: {text!r}",
            f"{option} takes points as LAT,LON: {text!r}",
        ) from None
    return [lat, lon]


def area_option(
    near: str | None, radius_m: float | None, polygon: str | None, codes: str | None
) -> dict[str, Any] | None:
    """The ``area`` of a send request from the command line's options (None: none given); the
    gateway checks the shape itself."""
    if (near is None) != (radius_m is None):
        raise _refuse("--near 와 --radius-m 은 함께 쓰세요.", "--near needs --radius-m.")
    given = [o for o in (near, polygon, codes) if o is not None]
    if len(given) > 1:
        raise _refuse(
            "--near, --polygon, --codes 중 하나만 쓰세요.",
            "Give one of --near, --polygon, --codes.",
        )
    if near is not None and radius_m is not None:
        lat, lon = _numbers(near, "--near")
        return {"circle": {"lat": lat, "lon": lon, "radius_m": radius_m}}
    if polygon is not None:
        points = [p for p in polygon.split(";") if p.strip()]
        return {"polygon": [_numbers(p, "--polygon") for p in points]}
    if codes is not None:
        return {"codes": [c.strip() for c in codes.split(",") if c.strip()]}
    return None


def _print_approval(approval: dict[str, Any], as_json: bool) -> None:
    if as_json:
        keys = ("id", "state", "category", "requested_by", "expires_at")
        typer.echo(json.dumps({k: approval[k] for k in keys}, ensure_ascii=False))
        return
    typer.echo(
        f"여러 읍·면·동 또는 시 전체 재난 방송은 두 번째 담당자의 승인이 필요합니다. "
        f"승인 요청 {approval['id']} 을(를) 만들었습니다 (기한 {approval['expires_at']}). / "
        "A disaster alert to several districts or the whole city needs a second person's "
        f"approval: POST /api/v1/approvals/{approval['id']}/approve"
    )


def _post_broadcast(
    client: httpx.Client, path: str, form: dict[str, str | list[str]], file: Path | None
) -> httpx.Response:
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if file is None:
        return client.post(path, data=form, headers=headers)
    with file.open("rb") as handle:
        return client.post(
            path,
            data=form,
            files={"file": (file.name, handle, "application/octet-stream")},
            headers=headers,
        )


def _template_values(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            console.print(
                f"[red]--value 는 항목=값 형태로 쓰세요: {pair!r} / --value takes key=value."
            )
            raise typer.Exit(2)
        values[key.strip()] = text
    return values


def _find_template(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get("/api/v1/templates", params={"name": name})
    if response.status_code != 200:
        raise exit_for(response)
    items: list[dict[str, Any]] = response.json()["items"]
    if not items:
        console.print(
            f"[red]'{name}' 이름의 템플릿이 없습니다. `maeul templates` 로 목록을 보세요. "
            f"/ No template named {name!r}."
        )
        raise typer.Exit(2)
    return items[0]


def _schedule_form(
    at: str | None,
    repeat_count: int | None,
    every: int | None,
    daily: str | None,
    weekday: list[str] | None,
    until: str | None,
) -> dict[str, str | list[str]]:
    form: dict[str, str | list[str]] = {}
    if at is not None:
        form["send_at"] = at.strip().replace(" ", "T", 1)
    if repeat_count is not None:
        form["repeat_count"] = str(repeat_count)
    if every is not None:
        form["repeat_every_min"] = str(every)
    if daily is not None:
        form["daily_at"] = daily
    if weekday:
        form["weekdays"] = [WEEKDAYS_KO.get(w, w).lower() for w in weekday]
    if until is not None:
        form["until"] = until
    return form


def status(
    broadcast_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    wait: Annotated[bool, typer.Option(help="Follow until no delivery can change")] = False,
) -> None:
    """Show a broadcast's summary: speakers by state and villages by outcome."""
    with api_client() as client:
        if wait:
            summary = _follow(client, broadcast_id, show=not as_json)
        else:
            response = client.get(f"/api/v1/broadcasts/{broadcast_id}", params={"detail": "false"})
            if response.status_code != 200:
                raise exit_for(response)
            summary = response.json()
    _print_summary(summary, as_json)


def cancel(
    broadcast_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a broadcast now: nothing more is sent and playing speakers stop."""
    with api_client() as client:
        response = client.post(f"/api/v1/broadcasts/{broadcast_id}/cancel")
        if response.status_code != 200:
            raise exit_for(response)
    _print_summary(response.json(), as_json)


def resend(
    broadcast_id: Annotated[str, typer.Argument()],
    village: Annotated[list[int] | None, typer.Option(help="Only these villages")] = None,
    wait: Annotated[bool, typer.Option(help="Follow it until it ends")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send a broadcast again to the speakers that missed it (failed or expired), only them."""
    with api_client() as client:
        body = {"village_ids": village} if village else {}
        response = client.post(f"/api/v1/broadcasts/{broadcast_id}/resend", json=body)
        if response.status_code not in (200, 201):
            raise exit_for(response)
        summary = response.json()
        if wait:
            summary = _follow(client, summary["id"], show=not as_json)
    _print_summary(summary, as_json)


def approve(
    approval_id: Annotated[str, typer.Argument()],
    note: Annotated[str | None, typer.Option(help="Why, for the record")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the broadcast until it ends")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a disaster alert another person asked for (the two-person rule); it goes out."""
    with api_client() as client:
        response = client.post(f"/api/v1/approvals/{approval_id}/approve", json={"note": note})
        if response.status_code != 200:
            raise exit_for(response)
        summary = response.json()["broadcast"]
        if wait:
            summary = _follow(client, summary["id"], show=not as_json)
    _print_summary(summary, as_json)


def _follow(client: httpx.Client, broadcast_id: str, *, show: bool) -> dict[str, Any]:
    """Poll until the broadcast can no longer change, drawing progress unless quiet."""
    progress = Progress(
        TextColumn("[bold]스피커 응답"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("재생 {task.fields[played]} · 실패 {task.fields[failed]}"),
        TextColumn("· 오프라인 {task.fields[offline]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )
    with progress:
        task = progress.add_task("acks", total=None, played=0, failed=0, offline=0)
        while True:
            response = client.get(f"/api/v1/broadcasts/{broadcast_id}", params={"detail": "false"})
            if response.status_code != 200:
                raise exit_for(response)
            summary: dict[str, Any] = response.json()
            counts = summary["speakers"]
            done = sum(counts.get(k, 0) for k in ("played", "failed", "expired", "cancelled"))
            progress.update(
                task,
                total=counts.get("total", 0),
                completed=done,
                played=counts.get("played", 0),
                failed=counts.get("failed", 0) + counts.get("expired", 0),
                offline=counts.get("offline", 0),
            )
            if summary["state"] in FINAL_STATES:
                return summary
            time.sleep(0.5)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    compact = _summary_json(summary)
    if as_json:
        typer.echo(json.dumps(compact, ensure_ascii=False))
        return
    v, s = compact["villages"], compact["speakers"]
    typer.echo(f"방송 {compact['id']} — 상태: {compact['state']}")
    typer.echo(
        f"  마을 {v['total']}곳: 재생 {v['played']}, 일부 {v['partial']}, 실패 {v['missed']}, "
        f"진행 중 {v['in_progress']}, 오프라인 {v['offline']}, 스피커 없음 {v['no_speakers']}"
    )
    typer.echo(
        f"  스피커 {s['total']}대: 재생 {s['played']}, 재생 중 {s['playing']}, "
        f"수신 {s['received']}, 전송 {s['sent']}, 대기 {s['queued']}, "
        f"실패 {s['failed']}, 만료 {s['expired']}, "
        f"취소 {s['cancelled']}, 오프라인 {s['offline']}"
    )


def templates(
    district: Annotated[int | None, typer.Option(help="Also that district's own templates")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """List announcement templates and the values each one needs."""
    params = {"district_id": district} if district is not None else {}
    with api_client() as client:
        response = client.get("/api/v1/templates", params=params)
        if response.status_code != 200:
            raise exit_for(response)
    items: list[dict[str, Any]] = response.json()["items"]
    if as_json:
        typer.echo(json.dumps(items, ensure_ascii=False))
        return
    for item in items:
        needs = ", ".join(item["placeholders"]) or "없음"
        scope = "" if item["district_id"] is None else f" (읍·면·동 {item['district_id']})"
        category = CATEGORY_KO.get(item["category"], item["category"])
        typer.echo(f"{item['name']}{scope} [{category}] 항목: {needs}")
    if items:
        typer.echo('예: maeul broadcast --template "마을 회의 안내" --value 날짜=5일 ... --all')
