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
from maeul import credentials

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

console = Console(stderr=True)
CATEGORIES = ("village_notice", "administrative", "crime_prevention", "disaster")
FINAL_STATES = ("completed", "cancelled")
SPEAKER_KEYS = (
    "total", "queued", "sent", "received", "playing", "played",
    "failed", "expired", "cancelled", "offline",
)  # fmt: skip


def main() -> None:
    app()


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
    from gateway.logs import configure_logging
    from gateway.settings import Settings

    configure_logging()
    uvicorn.run(create_app(Settings()), host=host, port=port, log_config=None, access_log=False)


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
) -> None:
    """Run a simulated speaker fleet for the seeded city (fleet read from the gateway's API)."""
    from maeul.run import simulate_fleet

    raise typer.Exit(
        asyncio.run(
            simulate_fleet(speed=speed, offline_ratio=offline_ratio, reject_ratio=reject_ratio)
        )
    )


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
    category: Annotated[str, typer.Option(help="|".join(CATEGORIES))],
    file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    text: Annotated[
        str | None, typer.Option(help="Typed text, spoken by the speech engine")
    ] = None,
    village: Annotated[list[int] | None, typer.Option(help="Village id (repeatable)")] = None,
    district: Annotated[list[int] | None, typer.Option(help="District id (repeatable)")] = None,
    all_villages: Annotated[bool, typer.Option("--all", help="Every village of the city")] = False,
    title: Annotated[str | None, typer.Option()] = None,
    expires_in: Annotated[
        int | None, typer.Option(help="Seconds until the broadcast expires")
    ] = None,
    repeat: Annotated[bool, typer.Option(help="Speak typed text twice")] = False,
    wait: Annotated[bool, typer.Option(help="Return when no delivery can change any more")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Send a broadcast to villages, whole districts or the whole city."""
    if (file is None) == (text is None):
        console.print(
            "[red]--file 또는 --text 중 하나를 지정하세요. / Give exactly one of --file and --text."
        )
        raise typer.Exit(2)
    if not (village or district or all_villages):
        console.print(
            "[red]--village, --district 또는 --all 로 대상을 지정하세요. / Give a target."
        )
        raise typer.Exit(2)
    form: dict[str, str | list[str]] = {"category": category}
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
    with _client() as client:
        if file is not None:
            with file.open("rb") as handle:
                response = client.post(
                    "/api/v1/broadcasts",
                    data=form,
                    files={"file": (file.name, handle, "application/octet-stream")},
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
        else:
            response = client.post(
                "/api/v1/broadcasts",
                data=form,
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
        if response.status_code not in (200, 201):
            raise _fail(response)
        summary = response.json()
        if wait:
            summary = _follow(client, summary["id"], show=not as_json)
    _print_summary(summary, as_json)


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


if __name__ == "__main__":
    main()
