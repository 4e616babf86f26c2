"""The `maeul` command line: run the demo, serve, migrate, seed, simulate, broadcast, follow."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audio.cli import app as audio_app
from audio.speech.cli import app as tts_app
from maeul import accounts, credentials, live
from maeul.proof import proof_app

app = typer.Typer(
    name="maeul",
    help="Maeul smart-village broadcast gateway / 마을 방송 게이트웨이",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations / 데이터베이스", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audio_app, name="audio", help="Audio conversion and probing / 오디오 변환")
app.add_typer(tts_app, name="tts", help="Text to speech / 방송 문구 음성 변환")
schedule_app = typer.Typer(help="Scheduled broadcasts / 예약 방송", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
broker_app = typer.Typer(help="MQTT broker files / 브로커 설정 파일", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.command()(accounts.login)
app.command()(accounts.logout)
app.command()(accounts.whoami)
app.add_typer(accounts.audit_app, name="audit")
app.command()(live.live)
app.add_typer(proof_app, name="proof")

console = Console(stderr=True)
CATEGORIES = ("village_notice", "administrative", "crime_prevention", "disaster")
FINAL_STATES = ("completed", "cancelled")
SPEAKER_KEYS = (
    "total", "queued", "sent", "received", "playing", "preempted", "played", "played_late",
    "failed", "expired", "cancelled", "offline",
)  # fmt: skip


def main() -> None:
    app()


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"maeul {version('maeul')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and stop"
        ),
    ] = False,
) -> None:
    """Maeul smart-village broadcast gateway / 마을 방송 게이트웨이"""


@app.command()
def secret() -> None:
    """Print a new random secret (256 bits) for GATEWAY_JWT_SECRET and the other keys."""
    from gateway.keyfiles import new_secret

    typer.echo(new_secret())


@app.command()
def run(
    port: Annotated[int, typer.Option(help="HTTP port of the API")] = 8000,
    host: Annotated[str, typer.Option(help="Address the API listens on")] = "127.0.0.1",
    preset: Annotated[str, typer.Option(help="Demo city: jinju | gimcheon | tiny")] = "jinju",
    speed: Annotated[float, typer.Option(help="Simulated playback speed factor")] = 1.0,
    simulate: Annotated[bool, typer.Option(help="Start the simulated speaker fleet")] = True,
) -> None:
    """Run the whole demo on embedded defaults: broker, database, gateway and speakers."""
    from maeul.run import run_demo

    raise typer.Exit(
        asyncio.run(run_demo(host=host, port=port, preset=preset, speed=speed, simulate=simulate))
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve the gateway API with settings from GATEWAY_* environment variables."""
    import uvicorn

    from gateway.app import create_app
    from gateway.auth import signing_key
    from gateway.collector import tune_for_serving
    from gateway.keyfiles import SecretError
    from gateway.live.ingest import MAX_WS_MESSAGE_BYTES
    from gateway.logs import configure_logging
    from gateway.serving import GatewayServer, server_options
    from gateway.settings import Settings

    configure_logging()
    settings = Settings()
    try:
        signing_key(settings)  # the lifespan reads it again; a bad one should stop us here
    except SecretError as exc:
        typer.echo(f"maeul serve: {exc}", err=True)
        raise typer.Exit(2) from None
    app = create_app(settings)
    tune_for_serving()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ws_max_size=MAX_WS_MESSAGE_BYTES,
        **server_options(settings),
    )
    GatewayServer(config, app.state.stopping).run()


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database (GATEWAY_DATABASE_URL) to the latest schema."""
    from gateway.migrations import upgrade
    from gateway.settings import Settings

    settings = Settings(environment=os.environ.get("GATEWAY_ENVIRONMENT", "development"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    console.print(f"데이터베이스를 최신 상태로 맞췄습니다 ({revision}).")


@app.command()
def seed(
    preset: Annotated[str, typer.Option(help="jinju | gimcheon | tiny")] = "jinju",
) -> None:
    """Fill an empty database with a demo city's districts, villages and speakers."""
    from maeul.run import seed_database

    report = asyncio.run(seed_database(preset))
    console.print(report)


@app.command()
def simulate(
    speed: Annotated[float, typer.Option(help="Playback speed factor")] = 1.0,
    offline_ratio: Annotated[float, typer.Option(help="Share of speakers that stay offline")] = 0.0,
    reject_ratio: Annotated[float, typer.Option(help="Share of speakers that reject")] = 0.0,
    credentials_from: Annotated[
        str | None,
        typer.Option(
            "--credentials",
            help="JSON file of speaker code -> broker password ('-': standard input)",
        ),
    ] = None,
) -> None:
    """Run a simulated speaker fleet for the seeded city (fleet read from the gateway's API)."""
    from maeul.run import simulate_fleet

    raise typer.Exit(
        asyncio.run(
            simulate_fleet(
                speed=speed,
                offline_ratio=offline_ratio,
                reject_ratio=reject_ratio,
                credentials_from=credentials_from,
            )
        )
    )


@broker_app.command("files")
def broker_files(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory to write into")],
) -> None:
    """Write the broker's users as the gateway renders them: the dynamic security plugin's file
    (dynamic-security.json), and a password file (passwd) and ACL (acl) for a broker without it."""
    from maeul.broker_config import write_broker_file

    with _client() as client:
        rendered = {}
        for name, path in (
            ("dynamic-security.json", "dynamic-security"),
            ("passwd", "passwd"),
            ("acl", "acl"),
        ):
            response = client.get(f"/api/v1/broker/{path}")
            if response.status_code != 200:
                raise _fail(response)
            rendered[name] = response.text
    changed = [name for name, text in rendered.items() if write_broker_file(out / name, text)]
    users = sum(1 for line in rendered["passwd"].splitlines() if line)
    console.print(f"{out} 에 브로커 사용자 {users}명을 썼습니다. / wrote {users} broker users.")
    if changed:
        console.print(
            "바뀐 파일이 있습니다. 게이트웨이가 관리하는 브로커(dynamic security)는 이미 같은 "
            "상태이고, 파일은 브로커를 새로 시작할 때 씁니다. 비밀번호 파일을 쓰는 브로커에는 "
            "SIGHUP 을 보내 다시 읽히세요. / Changed: a broker the gateway manages holds this "
            "already (the file is for starting one afresh); send a broker using the password "
            "file SIGHUP to reload."
        )
    else:
        console.print("바뀐 것이 없습니다. / Nothing changed.")


# The broker accounts of the compose example (deploy/): the gateway's admin account, the gateway,
# and the health check, with their passwords from these environment variables.
TEMPLATE_ACCOUNTS = {
    "broker-admin": "MQTT_ADMIN_PASSWORD",
    "gateway": "MQTT_GATEWAY_PASSWORD",
    "healthcheck": "MQTT_HEALTHCHECK_PASSWORD",
}


@broker_app.command("template")
def broker_template(
    out: Annotated[Path, typer.Option(dir_okay=False, help="The file to write")],
) -> None:
    """Write the first dynamic-security.json of a broker provisioned by hand (the compose
    example): the gateway's admin account, the gateway and the health check, passwords from
    MQTT_ADMIN_PASSWORD, MQTT_GATEWAY_PASSWORD and MQTT_HEALTHCHECK_PASSWORD, hashed. The
    gateway adds every speaker when it connects."""
    from gateway.devicesec.dynsec import render_template
    from gateway.devicesec.mosquitto import hash_password
    from maeul.broker_config import write_broker_file

    hashes = {}
    for user, variable in TEMPLATE_ACCOUNTS.items():
        password = os.environ.get(variable, "")
        if not password:
            typer.echo(f"{variable} 가 비어 있습니다 / {variable} is not set", err=True)
            raise typer.Exit(2)
        hashes[user] = hash_password(password)
    write_broker_file(
        out,
        render_template(
            admin=("broker-admin", hashes["broker-admin"]),
            gateway=("gateway", hashes["gateway"]),
            healthcheck=("healthcheck", hashes["healthcheck"]),
        ),
    )
    console.print(f"{out} 을(를) 썼습니다 (소유자만 읽기). / wrote {out} (mode 0600).")


def _client() -> httpx.Client:
    url, token = credentials.resolve()
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(120.0)
    )


def _fail(response: httpx.Response) -> typer.Exit:
    try:
        body = response.json()
    except ValueError:
        body = {"error": "http_error", "detail": response.text[:500]}
    typer.echo(json.dumps(body, ensure_ascii=False), err=True)
    return typer.Exit(2 if 400 <= response.status_code < 500 else 1)


def _summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": summary["id"],
        "state": summary["state"],
        "villages": summary["villages"],
        "speakers": {k: summary["speakers"].get(k, 0) for k in SPEAKER_KEYS},
    }


@app.command()
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
) -> None:
    """Send a broadcast to villages, whole districts or the whole city, now or scheduled."""
    if sum(x is not None for x in (file, text, template)) == 0 or (
        text is not None and template is not None
    ):
        console.print(
            "[red]--file, --text 또는 --template 중 하나를 지정하세요 (--file 과 --template 은 "
            "함께 쓸 수 있습니다). / Give --file, --text or --template."
        )
        raise typer.Exit(2)
    if not (village or district or all_villages):
        console.print(
            "[red]--village, --district 또는 --all 로 대상을 지정하세요. / Give a target."
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
    with _client() as client:
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
        if expires_in:
            form["expires_in_s"] = str(expires_in)
        path = "/api/v1/broadcasts"
        if scheduled:
            path = "/api/v1/schedules"
            form.update(_schedule_form(at, repeat_count, every, daily, weekday, until))
        response = _post_broadcast(client, path, form, file)
        if response.status_code == 202 and "requested_by" in response.json():
            _print_approval(response.json(), as_json)
            return
        if response.status_code == 202 or (scheduled and response.status_code in (200, 201)):
            _print_schedule(response.json(), as_json, deferred=not scheduled)
            return
        if response.status_code not in (200, 201):
            raise _fail(response)
        summary = response.json()
        if wait:
            summary = _follow(client, summary["id"], show=not as_json)
    _print_summary(summary, as_json)


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
        raise _fail(response)
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
        form["weekdays"] = [_WEEKDAYS_KO.get(w, w).lower() for w in weekday]
    if until is not None:
        form["until"] = until
    return form


@app.command()
def status(
    broadcast_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    wait: Annotated[bool, typer.Option(help="Follow until no delivery can change")] = False,
) -> None:
    """Show a broadcast's summary: speakers by state and villages by outcome."""
    with _client() as client:
        if wait:
            summary = _follow(client, broadcast_id, show=not as_json)
        else:
            response = client.get(f"/api/v1/broadcasts/{broadcast_id}", params={"detail": "false"})
            if response.status_code != 200:
                raise _fail(response)
            summary = response.json()
    _print_summary(summary, as_json)


@app.command()
def cancel(
    broadcast_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a broadcast now: nothing more is sent and playing speakers stop."""
    with _client() as client:
        response = client.post(f"/api/v1/broadcasts/{broadcast_id}/cancel")
        if response.status_code != 200:
            raise _fail(response)
    _print_summary(response.json(), as_json)


@app.command()
def resend(
    broadcast_id: Annotated[str, typer.Argument()],
    village: Annotated[list[int] | None, typer.Option(help="Only these villages")] = None,
    wait: Annotated[bool, typer.Option(help="Follow it until it ends")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send a broadcast again to the speakers that missed it (failed or expired), only them."""
    with _client() as client:
        body = {"village_ids": village} if village else {}
        response = client.post(f"/api/v1/broadcasts/{broadcast_id}/resend", json=body)
        if response.status_code not in (200, 201):
            raise _fail(response)
        summary = response.json()
        if wait:
            summary = _follow(client, summary["id"], show=not as_json)
    _print_summary(summary, as_json)


@app.command()
def approve(
    approval_id: Annotated[str, typer.Argument()],
    note: Annotated[str | None, typer.Option(help="Why, for the record")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the broadcast until it ends")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a disaster alert another person asked for (the two-person rule); it goes out."""
    with _client() as client:
        response = client.post(f"/api/v1/approvals/{approval_id}/approve", json={"note": note})
        if response.status_code != 200:
            raise _fail(response)
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
                raise _fail(response)
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


_WEEKDAYS_KO = {
    "월": "mon",
    "화": "tue",
    "수": "wed",
    "목": "thu",
    "금": "fri",
    "토": "sat",
    "일": "sun",
}
_SCHEDULE_STATES = {"active": "대기 중", "completed": "완료", "cancelled": "취소됨"}
_CATEGORY_KO = {
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


def _print_schedule(schedule: dict[str, Any], as_json: bool, *, deferred: bool = False) -> None:
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
    typer.echo(f"  내용: [{_CATEGORY_KO.get(schedule['category'], schedule['category'])}] {label}")
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
    with _client() as client:
        response = client.get("/api/v1/schedules", params=params)
        if response.status_code != 200:
            raise _fail(response)
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
    with _client() as client:
        response = client.get(f"/api/v1/schedules/{schedule_id}")
        if response.status_code != 200:
            raise _fail(response)
    _print_schedule(response.json(), as_json)


@schedule_app.command("cancel")
def schedule_cancel(
    schedule_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a scheduled broadcast: nothing more is sent from it."""
    with _client() as client:
        response = client.post(f"/api/v1/schedules/{schedule_id}/cancel")
        if response.status_code != 200:
            raise _fail(response)
    _print_schedule(response.json(), as_json)


@app.command()
def templates(
    district: Annotated[int | None, typer.Option(help="Also that district's own templates")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """List announcement templates and the values each one needs."""
    params = {"district_id": district} if district is not None else {}
    with _client() as client:
        response = client.get("/api/v1/templates", params=params)
        if response.status_code != 200:
            raise _fail(response)
    items: list[dict[str, Any]] = response.json()["items"]
    if as_json:
        typer.echo(json.dumps(items, ensure_ascii=False))
        return
    for item in items:
        needs = ", ".join(item["placeholders"]) or "없음"
        scope = "" if item["district_id"] is None else f" (읍·면·동 {item['district_id']})"
        category = _CATEGORY_KO.get(item["category"], item["category"])
        typer.echo(f"{item['name']}{scope} [{category}] 항목: {needs}")
    if items:
        typer.echo('예: maeul broadcast --template "마을 회의 안내" --value 날짜=5일 ... --all')


if __name__ == "__main__":
    main()
