"""End to end on a locked-down broker: forged, replayed, expired and out-of-scope commands
published straight to the broker are never played, and the gateway records every refusal.

The broker refuses anonymous clients and each speaker logs in as itself, under its own client id
only. The attacker holds the gateway's own broker password (the worst case the broker cannot
stop), but not its signing key; or a speaker's password, with which it cannot take over the
gateway's session or another speaker's.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker
from gateway.db import create_engine, create_sessions
from gateway.devicesec import broker_files
from gateway.devicesec import service as devicesec
from gateway.devicesec.mosquitto import new_secret
from gateway.migrations import upgrade
from gateway.places.service import get_city
from gateway.seed import seed
from gateway.signing import KeySeal, active_signer
from maeul.broker import LocalMosquitto
from maeul.broker_config import MosquittoConfig, find_mosquitto, write_broker_file
from maeul.mqtt_probe import probe_async
from tests.e2e.harness import KEY_ENCRYPTION_KEY, GatewayProcess, wait_until_final
from tests.media import make_recording
from wire import contract
from wire.contract import SpeakerIdentity

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(find_mosquitto() is None, reason="no mosquitto binary"),
]

CITY = "jinju"
# The tiny preset: village d01-v001 has two speakers, d01-v002 one.
VILLAGE_A, VILLAGE_B = "d01-v001", "d01-v002"
A_SPEAKERS = {"d01-v001-s1", "d01-v001-s2"}
B_SPEAKERS = {"d01-v002-s1"}


@dataclass
class City:
    gateway: GatewayProcess
    broker: LocalMosquitto
    database_url: str
    passwords: dict[str, str]

    def attacker(self) -> aiomqtt.Client:
        """A client holding the gateway's stolen broker password."""
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username="gateway",
            password=self.passwords["gateway"],
            identifier=f"intruder-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5,
        )

    def key_seal(self) -> KeySeal:
        """The gateway's key encryption key: the one the harness gives every gateway."""
        return KeySeal(KEY_ENCRYPTION_KEY.encode())

    async def sign_as_gateway(self, command: contract.Command) -> contract.Command:
        engine = create_engine(self.database_url)
        try:
            async with create_sessions(engine)() as session:
                signer = await active_signer(session, datetime.now(UTC), self.key_seal())
        finally:
            await engine.dispose()
        return signer.sign(command)


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[City]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            await seed(session, preset="tiny", city_code=CITY)
            place = await get_city(session, CITY)
            now = datetime.now(UTC)
            passwords = await devicesec.issue_fleet_credentials(session, place, now=now)
            passwords["gateway"] = new_secret()
            await devicesec.set_account_password(
                session, place, "gateway", "gateway", passwords["gateway"], now=now
            )
            admin = broker_files.OwnUser("broker-admin", new_secret())
            rendered = await broker_files.render_dynsec_file(session, place, own=None, admin=admin)
            await session.commit()
    finally:
        await engine.dispose()
    files = tmp_path / "broker"
    write_broker_file(files / "dynamic-security.json", rendered)
    config = MosquittoConfig(
        data_dir=files, allow_anonymous=False, dynsec_file=files / "dynamic-security.json"
    )
    async with LocalMosquitto(config) as broker:
        gateway = GatewayProcess(
            database_url=url,
            mqtt_url=f"mqtt://gateway:{passwords['gateway']}@{broker.host}:{broker.port}",
            data_dir=tmp_path,
            city_code=CITY,
            extra_env={
                "GATEWAY_BROKER_ADMIN_USERNAME": admin.username,
                "GATEWAY_BROKER_ADMIN_PASSWORD": admin.password,
            },
        )
        await gateway.start()
        try:
            yield City(gateway, broker, url, passwords)
        finally:
            gateway.stop()


async def _fleet(client: httpx.AsyncClient, city: City) -> Fleet:
    fleet = (await client.get("/api/v1/speakers/fleet")).json()
    keys = {
        k["key_id"]: base64.b64decode(k["public_key"])
        for k in (await client.get("/api/v1/keys")).json()
    }
    speakers = [
        SimSpeaker(
            identity=SpeakerIdentity(
                city=CITY,
                district=s["district_code"],
                village=s["village_code"],
                speaker=s["code"],
            ),
            codecs=tuple(s["codecs"]),
        )
        for s in fleet["items"]
    ]
    config = FleetConfig(
        mqtt_url=city.broker.url,
        gateway_url=city.gateway.url,
        speed=8.0,
        public_keys=keys,
        credentials=lambda identity: (identity.speaker, city.passwords[identity.speaker]),
    )
    simulated = Fleet(config)
    await simulated.start(speakers)
    return simulated


async def _eventually(check: Callable[[], Awaitable[bool]], *, limit_s: float = 60) -> None:
    """Wait until `check` holds (bounded, so a broken run ends)."""
    async with asyncio.timeout(limit_s):
        while not await check():  # noqa: ASYNC110 - polling what the gateway recorded
            await asyncio.sleep(0.1)


async def _refusals(client: httpx.AsyncClient) -> dict[str, dict[str, set[str]]]:
    """command id -> reason -> speakers that refused it, from the gateway's security events."""
    response = await client.get(
        "/api/v1/security-events", params={"kind": "command_rejected", "limit": 1000}
    )
    assert response.status_code == 200, response.text
    found: dict[str, dict[str, set[str]]] = {}
    for event in response.json()["items"]:
        found.setdefault(event["command_id"], {}).setdefault(event["reason"], set()).add(
            event["speaker_code"]
        )
    return found


async def _broadcast_to(client: httpx.AsyncClient, village: str, recording: bytes) -> str:
    villages = (await client.get("/api/v1/villages", params={"limit": 1000})).json()["items"]
    village_id = next(v["id"] for v in villages if v["code"] == village)
    response = await client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "village_ids": [str(village_id)]},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    broadcast_id: str = response.json()["id"]
    return broadcast_id


def _forged_key_sign(command: contract.Command) -> contract.Command:
    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return contract.sign_command(command, key_id="0badc0de", private_key=raw)


async def test_forged_replayed_expired_and_out_of_scope_commands_are_refused_and_recorded(
    city: City, tmp_path: Path
) -> None:
    recording = make_recording(tmp_path / "notice.m4a", "m4a", seconds=1.0).read_bytes()
    topic_a = contract.command_topic_village(CITY, VILLAGE_A)
    topic_b = contract.command_topic_village(CITY, VILLAGE_B)
    async with city.gateway.client() as client, city.attacker() as attacker:
        fleet = await _fleet(client, city)
        try:
            # The attacker listens to village A and keeps the genuine, signed command.
            await attacker.subscribe(topic_a, qos=1)
            broadcast_id = await _broadcast_to(client, VILLAGE_A, recording)
            final = await wait_until_final(client, broadcast_id)
            async with asyncio.timeout(30):
                async for message in attacker.messages:
                    assert isinstance(message.payload, bytes)
                    captured = message.payload
                    genuine = contract.decode_command(captured)
                    if genuine.type == "play":
                        break
            played_before = {s.id: s.played for s in fleet}

            now = contract.now_ms()
            forged = _forged_key_sign(
                genuine.model_copy(
                    update={"id": contract.new_id(), "broadcast_id": contract.new_id()}
                )
            )
            renonced = genuine.model_copy(update={"nonce": contract.new_nonce()})
            renamed = genuine.model_copy(
                update={"id": contract.new_id(), "nonce": contract.new_nonce()}
            )
            expired = await city.sign_as_gateway(
                genuine.model_copy(
                    update={
                        "id": contract.new_id(),
                        "broadcast_id": contract.new_id(),
                        "issued_at_ms": now - 7_200_000,
                        "expires_at_ms": now - 3_600_000,
                        "sig": None,
                    }
                )
            )
            attacks = [
                (topic_a, forged),  # (a) signed with a key the gateway never published
                (topic_a, genuine),  # (b) the played command again, byte for byte
                (topic_a, renonced),  # (b) a new nonce under the old signature
                (topic_a, renamed),  # (b) a new id and nonce under the old signature
                (topic_a, expired),  # (c) signed by the gateway, but expired
                (topic_b, genuine),  # (d) signed for village A, sent to village B
            ]
            for topic, command in attacks:
                payload = captured if command is genuine else contract.encode_command(command)
                await attacker.publish(topic, payload, qos=1)

            expected = {
                # The fleet looked for key "0badc0de" in the gateway's key ring: not there.
                forged.id: {"unknown_key": A_SPEAKERS},
                renamed.id: {"bad_signature": A_SPEAKERS},
                expired.id: {"expired": A_SPEAKERS},
                genuine.id: {
                    "replayed": A_SPEAKERS,  # the played command again, byte for byte
                    "bad_signature": A_SPEAKERS,  # its id under a new nonce, old signature
                    "out_of_scope": B_SPEAKERS,
                },
            }

            async def recorded() -> bool:
                return await _refusals(client) == expected

            await _eventually(recorded)
            # The two copies of the played id were refused from the speakers' journals.
            assert all(fleet.speaker(c).core.counters.duplicates == 2 for c in A_SPEAKERS)
            assert all(fleet.speaker(c).core.counters.replays == 1 for c in A_SPEAKERS)
            after = (await client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
        finally:
            await fleet.stop()

    assert final["state"] == "completed"
    assert final["speakers"]["played"] == final["speakers"]["total"] == len(A_SPEAKERS)
    assert {s.id: s.played for s in fleet} == played_before
    assert {s.id for s in fleet if s.played} == A_SPEAKERS, "each played the genuine one once"
    assert all(s.played == 1 for s in fleet if s.id in A_SPEAKERS)
    assert all(s.received <= 1 for s in fleet), "no attack was even admitted"
    assert after["speakers"] == final["speakers"]


async def test_a_speakers_password_cannot_take_over_the_gateway_or_another_speaker(
    city: City,
) -> None:
    async with city.gateway.client() as client:
        speaker = "d01-v001-s1"
        for taken in (
            "maeul-gw-e2e",  # what the gateway's client ids used to be
            "maeul-gw-e2e-live",
            contract.speaker_client_id("d01-v001-s2"),
        ):
            async with asyncio.timeout(10):
                code = await probe_async(
                    city.broker.host,
                    city.broker.port,
                    username=speaker,
                    password=city.passwords[speaker],
                    client_id=taken,
                )
            assert code != 0, taken
        ready = await client.get("/readyz")
        assert ready.json()["mqtt"] is True
