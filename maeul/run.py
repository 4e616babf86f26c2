"""`maeul run`: the whole demo on embedded defaults, supervised, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import uvicorn
from rich.console import Console

from devices.simulator_config import heartbeat_for, processes_for
from gateway.app import create_app
from gateway.collector import tune_for_serving
from gateway.db import create_engine, create_sessions
from gateway.devicesec import broker_files
from gateway.devicesec import service as devicesec
from gateway.keyfiles import load_secret
from gateway.live.ingest import MAX_WS_MESSAGE_BYTES
from gateway.logs import configure_logging
from gateway.migrations import upgrade_async
from gateway.places.service import get_city
from gateway.residents.crypto import PhoneCipher
from gateway.schedules.quiet import city_zone, describe_local, parse_window
from gateway.seed import seed
from gateway.serving import GatewayServer, server_options
from gateway.settings import Settings
from gateway.speakers import service as speakers
from gateway.users.demo import DemoLogin, ensure_demo_users
from maeul import credentials
from maeul.broker import LocalMosquitto
from maeul.broker_config import MosquittoConfig, write_broker_file
from maeul.kannel import KannelConfig, KannelError, KannelProcess, find_kannel
from maeul.simulation import Simulators

console = Console(stderr=True)

# The demo gateway's broker user; its password is new at every start and lives only in memory.
GATEWAY_USER: Final = "gateway"
# The account the demo gateway manages the broker's users with (dynamic security). Its password
# is the gateway's `broker_admin_password` secret (outside production: made once, kept in the
# data directory), so the broker and the gateway started here agree on it.
ADMIN_USER: Final = "broker-admin"


def demo_data_dir() -> Path:
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
    data_dir = demo_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "environment": os.environ.get("GATEWAY_ENVIRONMENT", "development"),
        "data_dir": data_dir,
        "api_token": _token(data_dir),
    }
    fields.update(overrides)
    return Settings(**fields)


async def seed_database(
    preset: str, settings: Settings | None = None, *, households: bool = False
) -> str:
    """Seed the preset (with `households`: its homes and residents too) and say what it did."""
    settings = settings or _settings()
    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessions(engine)() as session:
            report = await seed(
                session,
                preset=preset,  # type: ignore[arg-type]
                city_code=settings.city_code,
                cipher=PhoneCipher.from_settings(settings) if households else None,
                consent_days=settings.resident_consent_days,
            )
            await session.commit()
    finally:
        await engine.dispose()
    if not report.created:
        return "이미 데이터가 있어 시드를 건너뜁니다. / Data exists; seeding skipped."
    return (
        f"시드 완료: 읍·면·동 {report.districts}곳, 마을 {report.villages}곳, "
        f"스피커 {report.speakers}대, 가구 {report.households}곳 (실내 수신기 "
        f"{report.receivers}대, 가상 번호 주민 {report.residents}명) / seeded "
        f"{report.districts} districts, {report.villages} villages, {report.speakers} speakers, "
        f"{report.households} households ({report.receivers} indoor receivers, "
        f"{report.residents} residents with a synthetic number)"
    )


@dataclass(frozen=True)
class BrokerFiles:
    """Where the local broker keeps its users: the dynamic security plugin's file, rendered
    from the database at every start and changed by the gateway at run time."""

    directory: Path

    @property
    def dynsec(self) -> Path:
        return self.directory / "dynamic-security.json"


async def provision_broker(
    settings: Settings, files: BrokerFiles, *, gateway_password: str, issue_speakers: bool
) -> dict[str, str]:
    """Give the gateway its broker user, every speaker a new password (when `issue_speakers`),
    and write the broker's users and roles from the database. Returns speaker code -> password."""
    admin = broker_files.OwnUser(
        ADMIN_USER, load_secret(settings, "broker_admin_password").decode()
    )
    engine = create_engine(settings.database_url)
    try:
        async with create_sessions(engine)() as session:
            city = await get_city(session, settings.city_code)
            now = datetime.now(UTC)
            await devicesec.set_account_password(
                session, city, GATEWAY_USER, "gateway", gateway_password, now=now
            )
            issued = (
                await devicesec.issue_fleet_credentials(session, city, now=now)
                if issue_speakers
                else {}
            )
            rendered = await broker_files.render_dynsec_file(session, city, own=None, admin=admin)
            await session.commit()
    finally:
        await engine.dispose()
    files.directory.mkdir(parents=True, exist_ok=True)
    write_broker_file(files.dynsec, rendered)
    return issued


def _without_user(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _with_user(url: str, username: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{rest}"


class _QuietServer(GatewayServer):
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


async def run_demo(
    *,
    host: str,
    port: int,
    preset: str,
    speed: float,
    simulate: bool,
    simulators: int | None = None,
) -> int:
    """The demo until SIGINT or SIGTERM: `simulators` processes share the simulated fleet
    (None: one per `DEVICES_PER_PROCESS` devices)."""
    configure_logging(os.environ.get("GATEWAY_LOG_LEVEL", "WARNING"))
    data_dir = demo_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    url = f"http://{host}:{port}"
    console.print("데이터베이스를 준비합니다...")
    # With its households: a preset's indoor receivers are part of the fleet the demo runs.
    settings = _settings(public_url=url, replica_id="local")
    console.print(await seed_database(preset, settings, households=True))
    devices = await fleet_size(settings)
    # A large simulated fleet heartbeats less often, and the gateway expects it to
    # (GATEWAY_HEARTBEAT_S still decides when set; real speakers keep their own pace).
    paced = simulate and "GATEWAY_HEARTBEAT_S" not in os.environ
    pace = {"heartbeat_s": heartbeat_for(devices)} if paced else {}

    broker: LocalMosquitto | None = None
    files = BrokerFiles(data_dir / "mosquitto")
    speaker_passwords: dict[str, str] = {}
    mqtt_url = os.environ.get("GATEWAY_MQTT_URL", "")
    speakers_url = mqtt_url  # what speakers connect to: never with the gateway's password
    if not mqtt_url:
        # No anonymous clients: the gateway and every speaker log in with their own password.
        gateway_password = secrets.token_urlsafe(32)
        speaker_passwords = await provision_broker(
            _settings(), files, gateway_password=gateway_password, issue_speakers=simulate
        )
        wanted = os.environ.get("MAEUL_MQTT_PORT")
        broker = LocalMosquitto(
            MosquittoConfig(
                data_dir=files.directory,
                port=int(wanted) if wanted else None,
                allow_anonymous=False,
                dynsec_file=files.dynsec,
            )
        )
        console.print("로컬 MQTT 브로커(Mosquitto)를 시작합니다...")
        await broker.start()
        speakers_url = broker.url
        mqtt_url = _with_user(broker.url, GATEWAY_USER, gateway_password)

    kannel, sms = await _start_kannel(data_dir)

    admin = {"broker_admin_username": ADMIN_USER} if broker is not None else {}
    settings = _settings(
        mqtt_url=mqtt_url, public_url=url, replica_id="local", **admin, **sms, **pace
    )
    logins = await demo_logins(settings)
    # Read by `maeul simulate`; no password ever goes in it.
    (data_dir / "run.json").write_text(
        json.dumps({"url": url, "mqtt_url": _without_user(speakers_url)})
    )

    app = create_app(settings)
    server = _QuietServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            ws_max_size=MAX_WS_MESSAGE_BYTES,
            **server_options(settings),
        ),
        app.state.stopping,
    )
    tune_for_serving()
    tasks = [asyncio.create_task(server.serve(), name="api")]
    if broker is not None:
        tasks.append(asyncio.create_task(broker.supervise(stop), name="broker-supervisor"))
    if kannel is not None:
        tasks.append(asyncio.create_task(kannel.supervise(stop), name="kannel-supervisor"))
    fleet: Simulators | None = None
    try:
        try:
            async with asyncio.timeout(120):
                await _wait_ready(url)
        except TimeoutError:
            console.print(
                "[red]게이트웨이가 준비되지 않았습니다. / The gateway did not become ready."
            )
            return 1
        await _log_cli_in(url, logins[0])
        if simulate:
            fleet = Simulators(simulators or processes_for(devices))
            await fleet.start(
                url=url,
                mqtt_url=speakers_url,
                speed=speed,
                heartbeat_s=settings.heartbeat_s,
                passwords=speaker_passwords,
            )
        _banner(url, settings, logins, secured=broker is not None)
        waiters = [asyncio.create_task(stop.wait()), *tasks]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        _say("\n종료합니다... / shutting down...")
        if fleet is not None:
            await fleet.stop()
        server.should_exit = True
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)
        if broker is not None:
            await broker.stop()
        if kannel is not None:
            await asyncio.to_thread(kannel.stop)
    _say("모두 정지했습니다. / everything stopped.")
    return 0


def _say(text: str) -> None:
    """A shutdown message. Stopping goes on if it cannot be printed: a SIGTERM from whoever
    also ended the terminal or the pipe the log went to must not leave the broker, Kannel and
    the simulator running. (rich turns a broken pipe into SystemExit.)"""
    with contextlib.suppress(OSError, SystemExit):
        console.print(text)


async def _start_kannel(data_dir: Path) -> tuple[KannelProcess | None, dict[str, Any]]:
    """A local Kannel against its fake SMSC, unless GATEWAY_SMS_SENDSMS_URL names a real one;
    returns it and the SMS settings that point the gateway at it."""
    if os.environ.get("GATEWAY_SMS_SENDSMS_URL"):
        return None, {}
    if find_kannel() is None:
        console.print(
            "[yellow]Kannel 이 없어 문자를 보내지 않습니다 (kannel, kannel-extras 패키지). / "
            "No Kannel installed: SMS is off."
        )
        return None, {}
    kannel = KannelProcess(KannelConfig(data_dir=data_dir / "kannel"), own_session=True)
    console.print("로컬 SMS 게이트웨이(Kannel, 가짜 SMSC)를 시작합니다...")
    try:
        await asyncio.to_thread(kannel.start)
    except KannelError as exc:
        console.print(
            f"[yellow]Kannel 을 시작하지 못해 문자를 보내지 않습니다. / SMS is off: {exc}"
        )
        return None, {}
    return kannel, kannel.gateway_settings()


def _banner(url: str, settings: Settings, logins: list[DemoLogin], *, secured: bool) -> None:
    broker_note = (
        "  (익명 접속 거부: 스피커마다 자체 비밀번호, 자기 client id, 자기 토픽만)"
        if secured
        else ""
    )
    people = "\n".join(
        f"    {login.role.value:<17} {login.username:<9} {login.password:<18} {login.scope}"
        for login in logins
    )
    console.print(
        f"""
[bold green]마을 방송 게이트웨이가 실행 중입니다.[/]
  API        {url}/docs  (OpenAPI: {url}/openapi.json)
  MQTT       {settings.mqtt.redacted()}{broker_note}
  데이터      {settings.data_dir}
  SMS        {_sms_note(settings)}

  데모 계정 (역할 / 아이디 / 비밀번호 / 권한 범위; 비밀번호는 실행할 때마다 새로 만듭니다):
{people}
  `maeul` 명령은 {logins[0].username}(시청 관리자)로 로그인되어 있습니다. 다른 역할로:
      .venv/bin/maeul login -u ijang
  부트스트랩 토큰(계정 관리용): {settings.data_dir / "api-token"}

  예) .venv/bin/maeul tts "오늘 저녁 일곱 시에 마을 회관에서 회의가 있습니다" 녹음.ogg
      .venv/bin/maeul broadcast --file 녹음.ogg --all --category administrative --wait
      .venv/bin/maeul broadcast --text "오늘 저녁 7시 마을 회관에서 회의가 있습니다" --village 1
{_quiet_hours_note(settings)}

  끝내려면 Ctrl-C 를 누르세요.
""",
        soft_wrap=True,
    )


def _sms_note(settings: Settings) -> str:
    if not settings.sms_enabled:
        return "꺼짐 / off"
    if os.environ.get("GATEWAY_SMS_SENDSMS_URL"):
        return settings.sms_sendsms_url
    fake = settings.data_dir / "kannel" / "fakesmsc.log"
    return f"로컬 Kannel, 가짜 SMSC (받은 문자: {fake})"


def _quiet_hours_note(settings: Settings) -> str:
    """Quiet hours in the demo's words: a send in them is deferred, which the first example
    would otherwise show without saying why."""
    window = parse_window(settings.quiet_hours)
    if window is None:
        return "  방송 금지 시간: 없음 (GATEWAY_QUIET_HOURS=off)"
    zone = city_zone("Asia/Seoul")  # the demo's cities are Korean
    now = datetime.now(UTC)
    lines = [
        f"  방송 금지 시간: {window.label} (재난 경보가 아닌 방송은 끝날 때까지 미뤄 예약합니다)"
    ]
    if window.contains(now, zone):
        lines.append(
            f"  [yellow]지금이 방송 금지 시간입니다: 위 예는 "
            f"{describe_local(window.ends_after(now, zone), zone)}에 나갑니다. / "
            "Quiet hours are in force now.[/]"
        )
    else:
        lines.append(
            "  지금은 방송 금지 시간이 아닙니다: 위 예는 바로 나갑니다. / Not quiet hours now."
        )
    lines.append(
        "  데모에서 바로 보내 보려면: GATEWAY_QUIET_HOURS=off make run  "
        "(Quiet hours defer all but disaster alerts; the demo can switch them off.)"
    )
    return "\n".join(lines)


async def demo_logins(settings: Settings) -> list[DemoLogin]:
    """One demo account per role with a fresh password; the city administrator first."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessions(engine)() as session:
            city = await get_city(session, settings.city_code)
            logins = await ensure_demo_users(session, city, now=datetime.now(UTC))
            await session.commit()
    finally:
        await engine.dispose()
    return logins


async def _log_cli_in(url: str, login: DemoLogin) -> None:
    """Leave the local CLI logged in as the demo city administrator."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/api/v1/auth/token", data={"username": login.username, "password": login.password}
        )
    response.raise_for_status()
    body = response.json()
    credentials.save(
        url, body["access_token"], refresh_token=body["refresh_token"], who=login.username
    )


async def fleet_size(settings: Settings) -> int:
    """How many speakers and indoor receivers the city has."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessions(engine)() as session:
            city = await get_city(session, settings.city_code)
            return (await speakers.fleet(session, city, limit=1, offset=0)).total
    finally:
        await engine.dispose()
