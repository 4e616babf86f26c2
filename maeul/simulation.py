"""The simulated fleet: `maeul simulate` (one process's share of the city's devices) and the
simulator processes `maeul run` starts and stops."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Final

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gateway.logs import configure_logging
from maeul import credentials

console = Console(stderr=True)
_ENROLL_CHUNK: Final = 250


class Simulators:
    """`parts` simulator processes, each running its share of the fleet (`share_of`). Speaker
    passwords go to each through a pipe: never on disk, never in an environment."""

    def __init__(self, parts: int) -> None:
        if parts < 1:
            raise ValueError("at least one simulator process")
        self.parts = parts
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(
        self,
        *,
        url: str,
        mqtt_url: str,
        speed: float,
        heartbeat_s: float,
        passwords: dict[str, str],
    ) -> None:
        # Every process is handed every password: it picks its share of the fleet itself, so
        # the split is made in one place whatever the broker knows.
        given = ["--credentials", "-"] if passwords else []
        secret = json.dumps(passwords).encode()
        for part in range(self.parts):
            self.processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "maeul.cli", "simulate", "--speed", str(speed), *given,
                    "--part", str(part), "--parts", str(self.parts),
                    "--heartbeat", f"{heartbeat_s:g}",
                    env={**os.environ, "GATEWAY_URL": url, "GATEWAY_MQTT_URL": mqtt_url},
                    stdin=asyncio.subprocess.PIPE if passwords else None,
                    start_new_session=True,
                )
            )  # fmt: skip
        # Each reads its pipe once it has started up: hand them over all at once, not in turn.
        await asyncio.gather(*(_hand_over(p, secret) for p in self.processes))

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to every process still running (its speakers leave with their will), then
        SIGKILL to any still there after `grace_s`."""
        running = [p for p in self.processes if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), grace_s)
        for process in running:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


async def _hand_over(process: asyncio.subprocess.Process, secret: bytes) -> None:
    if process.stdin is not None:
        process.stdin.write(secret)
        await process.stdin.drain()
        process.stdin.close()


async def _speaker_passwords(source: str) -> dict[str, str]:
    """Speaker code -> broker password, as JSON from a file or from standard input ("-")."""
    if source == "-":
        text = await asyncio.to_thread(sys.stdin.read)
    else:
        text = await asyncio.to_thread(Path(source).read_text)
    found = json.loads(text or "{}")
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        raise ValueError("speaker credentials must be a JSON object of code -> password")
    return found


async def _enroll(client: httpx.AsyncClient, keys: dict[str, dict[str, str]]) -> None:
    """Enroll the receipt keys a few hundred at a time: each request stays short however large
    the fleet (the gateway checks every key, a few milliseconds each). A refusal leaves the
    rest unenrolled: the devices run all the same, their plays recorded without a receipt."""
    codes = sorted(keys)
    for start in range(0, len(codes), _ENROLL_CHUNK):
        chunk = {code: keys[code] for code in codes[start : start + _ENROLL_CHUNK]}
        try:
            enrolled = await client.put("/api/v1/speakers/receipt-keys", json={"keys": chunk})
            problem = None if enrolled.status_code == 200 else str(enrolled.status_code)
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        if problem is not None:
            console.print(
                "[yellow]수신 확인 키를 등록하지 못했습니다: 재생 증명은 서명 없이 기록됩니다. / "
                f"Receipt keys not enrolled ({problem})."
            )
            return


async def simulate_fleet(
    *,
    speed: float,
    offline_ratio: float,
    reject_ratio: float,
    credentials_from: str | None = None,
    part: int = 0,
    parts: int = 1,
    heartbeat_s: float = 30.0,
) -> int:
    """Load the city's speakers from the gateway and run share `part` of `parts` of them (every
    one by default) as a simulated fleet.

    `credentials_from`: a JSON file (or "-" for standard input) of speaker code -> broker
    password; each speaker then logs in as itself. Without it speakers connect as the broker URL
    says (anonymously, or all with the URL's user).
    """
    from devices.simulator import Fleet, FleetError
    from devices.simulator_config import (
        FleetConfig,
        receipt_public_keys,
        share_of,
        sim_speaker,
        with_receipt_keys,
    )
    from maeul.run import demo_data_dir

    passwords = await _speaker_passwords(credentials_from) if credentials_from else None

    configure_logging(os.environ.get("GATEWAY_LOG_LEVEL", "WARNING"))
    url, token = credentials.resolve()
    mqtt_url = os.environ.get("GATEWAY_MQTT_URL")
    run_file = demo_data_dir() / "run.json"
    if not mqtt_url and run_file.exists():
        mqtt_url = json.loads(run_file.read_text()).get("mqtt_url")
    if not mqtt_url:
        console.print("GATEWAY_MQTT_URL 을 지정하세요. / Set GATEWAY_MQTT_URL.")
        return 2
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as client:
        city = (await client.get("/api/v1/city")).raise_for_status().json()
        fleet = (await client.get("/api/v1/speakers/fleet")).raise_for_status().json()
        keys = (await client.get("/api/v1/keys")).raise_for_status().json()
        items = fleet["items"] if isinstance(fleet, dict) else fleet
        share = share_of([sim_speaker(city["code"], s) for s in items], part, parts)
        # Each speaker makes its own receipt key, as at installation; the gateway is given
        # only the public halves, and verifies every played ack against them.
        speakers = with_receipt_keys(share)
        await _enroll(client, receipt_public_keys(speakers))
    config = FleetConfig(
        mqtt_url=mqtt_url,
        speed=speed,
        heartbeat_s=heartbeat_s,
        offline_ratio=offline_ratio,
        reject_ratio=reject_ratio,
        gateway_url=url,
        # Speakers trust only commands signed by the gateway's keys.
        public_keys={k["key_id"]: base64.b64decode(k["public_key"]) for k in keys},
        credentials=(
            None
            if passwords is None
            else lambda identity: (identity.speaker, passwords.get(identity.speaker))
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    which = f" ({part + 1}/{parts})" if parts > 1 else ""
    fleet = Fleet(config)
    # Several processes' bars on one terminal would overwrite each other: one line each instead.
    progress = Progress(
        TextColumn(f"[bold]스피커 연결{which}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=parts > 1,
    )
    with progress:
        task = progress.add_task("connect", total=len(speakers))
        try:
            await fleet.start(
                speakers, lambda done, total: progress.update(task, completed=done, total=total)
            )
        except FleetError as exc:
            console.print(f"[red]{exc}")
            if passwords is None:
                console.print(
                    "브로커가 익명 접속을 받지 않으면 --credentials 로 스피커 비밀번호(JSON)를 "
                    "주세요. / A broker that refuses anonymous clients needs --credentials."
                )
            return 1
    console.print(
        f"가상 스피커 {len(speakers)}대가 방송을 기다립니다{which}. (재생 속도 x{speed:g}, "
        f"연결 {fleet.connect_s or 0:.1f}초)"
    )
    try:
        await stop.wait()
    finally:
        stats = fleet.stats()
        await fleet.stop()
    console.print(f"가상 스피커를 멈춥니다{which}: 수신 {stats.received}, 재생 {stats.played}")
    return 0
