"""`maeul run`: the whole demo on embedded defaults, supervised, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gateway.app import create_app
from gateway.db import create_engine, create_sessions
from gateway.logs import configure_logging
from gateway.migrations import upgrade_async
from gateway.seed import seed
from gateway.settings import Settings
from maeul import credentials
from maeul.broker import LocalMosquitto, MosquittoConfig

console = Console(stderr=True)


def _data_dir() -> Path:
    return Path(os.environ.get("GATEWAY_DATA_DIR", "var")).resolve()


def _token(data_dir: Path) -> str:
    """The demo's API token: from the environment, else generated once and kept in the data dir."""
    configured = os.environ.get("GATEWAY_API_TOKEN")
    if configured:
        return configured
    path = data_dir / "api-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token)
    return token


def _settings(**overrides: Any) -> Settings:
    data_dir = _data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "environment": os.environ.get("GATEWAY_ENVIRONMENT", "development"),
        "data_dir": data_dir,
        "api_token": _token(data_dir),
    }
    fields.update(overrides)
    return Settings(**fields)


async def seed_database(preset: str, settings: Settings | None = None) -> str:
    settings = settings or _settings()
    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessions(engine)() as session:
            report = await seed(session, preset=preset, city_code=settings.city_code)  # type: ignore[arg-type]
            await session.commit()
    finally:
        await engine.dispose()
    if not report.created:
        return "이미 데이터가 있어 시드를 건너뜁니다. / Data exists; seeding skipped."
    return (
        f"시드 완료: 읍·면·동 {report.districts}곳, 마을 {report.villages}곳, "
        f"스피커 {report.speakers}대 / seeded {report.districts} districts, "
        f"{report.villages} villages, {report.speakers} speakers"
    )


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `maeul run` decides the order of shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _wait_ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)


async def run_demo(*, host: str, port: int, preset: str, speed: float, simulate: bool) -> int:
    configure_logging(os.environ.get("GATEWAY_LOG_LEVEL", "WARNING"))
    data_dir = _data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    broker: LocalMosquitto | None = None
    mqtt_url = os.environ.get("GATEWAY_MQTT_URL")
    if not mqtt_url:
        wanted = os.environ.get("MAEUL_MQTT_PORT")
        broker = LocalMosquitto(
            MosquittoConfig(data_dir=data_dir / "mosquitto", port=int(wanted) if wanted else None)
        )
        console.print("로컬 MQTT 브로커(Mosquitto)를 시작합니다...")
        await broker.start()
        mqtt_url = broker.url

    url = f"http://{host}:{port}"
    settings = _settings(mqtt_url=mqtt_url, public_url=url, replica_id="local")
    console.print("데이터베이스를 준비합니다...")
    console.print(await seed_database(preset, settings))
    token = _token(data_dir)
    credentials.save(url, token)
    (data_dir / "run.json").write_text(json.dumps({"url": url, "mqtt_url": mqtt_url}))

    server = _QuietServer(
        uvicorn.Config(
            create_app(settings), host=host, port=port, log_config=None, access_log=False
        )
    )
    tasks = [asyncio.create_task(server.serve(), name="api")]
    if broker is not None:
        tasks.append(asyncio.create_task(broker.supervise(stop), name="broker-supervisor"))
    simulator: asyncio.subprocess.Process | None = None
    try:
        try:
            async with asyncio.timeout(120):
                await _wait_ready(url)
        except TimeoutError:
            console.print(
                "[red]게이트웨이가 준비되지 않았습니다. / The gateway did not become ready."
            )
            return 1
        if simulate:
            simulator = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "maeul.cli", "simulate", "--speed", str(speed),
                env={**os.environ, "GATEWAY_URL": url, "GATEWAY_MQTT_URL": mqtt_url},
                start_new_session=True,
            )  # fmt: skip
        _banner(url, mqtt_url, settings, token)
        waiters = [asyncio.create_task(stop.wait()), *tasks]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        console.print("\n종료합니다... / shutting down...")
        if simulator is not None and simulator.returncode is None:
            simulator.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(simulator.wait(), 10)
            if simulator.returncode is None:
                simulator.kill()
        server.should_exit = True
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)
        if broker is not None:
            await broker.stop()
    console.print("모두 정지했습니다. / everything stopped.")
    return 0


def _banner(url: str, mqtt_url: str, settings: Settings, token: str) -> None:
    console.print(
        f"""
[bold green]마을 방송 게이트웨이가 실행 중입니다.[/]
  API        {url}/docs  (OpenAPI: {url}/openapi.json)
  MQTT       {mqtt_url}
  데이터      {settings.data_dir}
  인증        Authorization: Bearer {token}
             (토큰 파일: {settings.data_dir / "api-token"}; `maeul` 명령은 이미 로그인되어 있습니다)

  예) .venv/bin/maeul broadcast --file 녹음.m4a --all --category administrative --wait
      curl -H "Authorization: Bearer $(cat {settings.data_dir / "api-token"})" \\
           {url}/api/v1/districts

  끝내려면 Ctrl-C 를 누르세요.
""",
        soft_wrap=True,
    )


async def simulate_fleet(*, speed: float, offline_ratio: float, reject_ratio: float) -> int:
    """Load the city's speakers from the gateway and run them as a simulated fleet."""
    from devices.simulator import Fleet, FleetConfig, SimSpeaker
    from wire.contract import SpeakerIdentity

    configure_logging(os.environ.get("GATEWAY_LOG_LEVEL", "WARNING"))
    url, token = credentials.resolve()
    mqtt_url = os.environ.get("GATEWAY_MQTT_URL")
    run_file = _data_dir() / "run.json"
    if not mqtt_url and run_file.exists():
        mqtt_url = json.loads(run_file.read_text()).get("mqtt_url")
    if not mqtt_url:
        console.print("GATEWAY_MQTT_URL 을 지정하세요. / Set GATEWAY_MQTT_URL.")
        return 2
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        city = (await client.get("/api/v1/city")).raise_for_status().json()
        fleet = (await client.get("/api/v1/speakers/fleet")).raise_for_status().json()
        keys = (await client.get("/api/v1/keys")).raise_for_status().json()
    items = fleet["items"] if isinstance(fleet, dict) else fleet
    speakers = [
        SimSpeaker(
            identity=SpeakerIdentity(
                city=city["code"],
                district=s["district_code"],
                village=s["village_code"],
                speaker=s["code"],
            ),
            codecs=tuple(s["codecs"]),
            kind=s.get("kind", "loudspeaker"),
        )
        for s in items
    ]
    config = FleetConfig(
        mqtt_url=mqtt_url,
        speed=speed,
        offline_ratio=offline_ratio,
        reject_ratio=reject_ratio,
        gateway_url=url,
        # Speakers trust only commands signed by the gateway's keys.
        public_keys={k["key_id"]: base64.b64decode(k["public_key"]) for k in keys},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fleet = Fleet(config)
    progress = Progress(
        TextColumn("[bold]스피커 연결"), BarColumn(), MofNCompleteColumn(), console=console
    )
    with progress:
        task = progress.add_task("connect", total=len(speakers))
        await fleet.start(
            speakers, lambda done, total: progress.update(task, completed=done, total=total)
        )
    console.print(f"가상 스피커 {len(speakers)}대가 방송을 기다립니다. (재생 속도 x{speed:g})")
    try:
        await stop.wait()
    finally:
        stats = fleet.stats()
        await fleet.stop()
    console.print(f"가상 스피커를 멈춥니다: 수신 {stats.received}, 재생 {stats.played}")
    return 0
