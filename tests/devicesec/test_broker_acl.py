"""The broker's users as the gateway keeps them on a real Mosquitto (dynamic security): who may
connect under which client id, read and write, and how changes reach the broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import delete, select, update

from gateway.db import create_engine, create_sessions
from gateway.devicesec import broker_files, dynsec, service
from gateway.devicesec.brokeradmin import BrokerAdmin
from gateway.devicesec.dynsec import BrokerState
from gateway.devicesec.mosquitto import new_secret
from gateway.places.models import Village
from gateway.places.service import get_city
from gateway.seed import seed
from gateway.settings import MqttTarget
from gateway.speakers.models import Speaker
from gateway.speakers.service import speaker_ids_by_code
from maeul.broker import LocalMosquitto
from maeul.broker_config import MosquittoConfig, find_mosquitto, write_broker_file
from maeul.mqtt_probe import probe_async
from tests.support.databases import copy_database
from wire import contract

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None, reason="no mosquitto binary (install the mosquitto package)"
)

CITY = "aclcity"
# Two speakers of the tiny preset in different districts and villages, and one never given a
# password.
A, B, NONE = "d01-v001-s1", "d02-v001-s1", "d01-v001-s2"
A_TOPICS = [
    contract.command_topic_all(CITY),
    contract.command_topic_district(CITY, "d01"),
    contract.command_topic_village(CITY, "d01-v001"),
    *contract.live_subscriptions(CITY, "d01", "d01-v001"),
    contract.command_topic_speaker(CITY, A),
]
B_TOPICS = [
    contract.command_topic_district(CITY, "d02"),
    contract.command_topic_village(CITY, "d02-v001"),
    contract.live_topic_district(CITY, "d02"),
    contract.live_topic_village(CITY, "d02-v001"),
    contract.command_topic_speaker(CITY, B),
]


ADMIN = "broker-admin"


@dataclass
class Secured:
    broker: LocalMosquitto
    database_url: str
    directory: Path
    passwords: dict[str, str]
    admin: BrokerAdmin

    def client(self, user: str, *, identifier: str | None = None) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=user,
            password=self.passwords[user],
            identifier=identifier or contract.speaker_client_id(user),
            protocol=aiomqtt.ProtocolVersion.V5,
        )

    async def rotate(self, code: str) -> str:
        """A new password for `code`, pushed to the broker as the API does (no reload)."""
        engine = create_engine(self.database_url)
        try:
            async with create_sessions(engine)() as session:
                city = await get_city(session, CITY)
                ids = await speaker_ids_by_code(session, city.id, [code])
                issued = await service.issue_speaker_credentials(
                    session, city, ids[code], now=datetime.now(UTC)
                )
                client, acls = await broker_files.speaker_broker_client(session, city, ids[code])
                await self.admin.put(client, issued.password, acls)
                await session.commit()
        finally:
            await engine.dispose()
        self.passwords[code] = issued.password
        return issued.password

    async def change(self, statement: Any) -> None:
        """Change the database behind the broker's back, then reconcile."""
        engine = create_engine(self.database_url)
        try:
            async with create_sessions(engine)() as session:
                await session.execute(statement)
                await session.commit()
        finally:
            await engine.dispose()
        await self.admin.reconcile()


async def _state(url: str, admin: broker_files.OwnUser) -> BrokerState:
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            city = await get_city(session, CITY)
            return await broker_files.broker_state(session, city, own=None, admin=admin)
    finally:
        await engine.dispose()


@pytest.fixture
async def secured(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Secured]:
    url = copy_database(migrated_sqlite, tmp_path / "maeul.db")
    admin_user = broker_files.OwnUser(ADMIN, new_secret())
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            await seed(session, preset="tiny", city_code=CITY)
            city = await get_city(session, CITY)
            now = datetime.now(UTC)
            passwords = await service.issue_fleet_credentials(session, city, now=now, codes=[A, B])
            passwords["gateway"] = new_secret()
            await service.set_account_password(
                session, city, "gateway", "gateway", passwords["gateway"], now=now
            )
            rendered = await broker_files.render_dynsec_file(
                session, city, own=None, admin=admin_user
            )
            await session.commit()
    finally:
        await engine.dispose()
    files = tmp_path / "broker"
    write_broker_file(files / "dynamic-security.json", rendered)
    config = MosquittoConfig(
        data_dir=files, allow_anonymous=False, dynsec_file=files / "dynamic-security.json"
    )
    async with LocalMosquitto(config) as broker:
        admin = BrokerAdmin(
            MqttTarget(broker.url),
            username=ADMIN,
            password=admin_user.password,
            client_id=f"admin-{new_secret()[:8]}",
            load_state=lambda: _state(url, admin_user),
        )
        running = asyncio.create_task(admin.run())
        try:
            async with asyncio.timeout(10):
                while admin.reconciled == 0:  # noqa: ASYNC110 - until the first reconcile
                    await asyncio.sleep(0.02)
            yield Secured(broker, url, files, passwords, admin)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def _probe(
    secured: Secured,
    user: str | None = None,
    password: str | None = None,
    *,
    client_id: str | None = None,
) -> int:
    """The CONNACK reason code; a speaker connects under its own client id unless told."""
    if client_id is None and user is not None and user != "gateway":
        client_id = contract.speaker_client_id(user)
    async with asyncio.timeout(10):
        return await probe_async(
            secured.broker.host,
            secured.broker.port,
            username=user,
            password=password,
            client_id=client_id,
        )


async def _dropped(client: aiomqtt.Client) -> bool:
    """Whether the broker ends this client's connection (False: still up after 10 s)."""
    try:
        async with asyncio.timeout(10):
            async for _ in client.messages:
                pass
    except aiomqtt.MqttError:
        return True
    except TimeoutError:
        return False
    return True


async def test_only_a_speaker_with_its_own_password_gets_in(secured: Secured) -> None:
    assert await _probe(secured) != 0, "anonymous clients are refused"
    assert await _probe(secured, A, "wrong") != 0
    assert await _probe(secured, B, secured.passwords[A]) != 0, "A's password opens only A"
    assert await _probe(secured, NONE, secured.passwords[A]) != 0, "no password issued, no entry"
    assert await _probe(secured, A, secured.passwords[A]) == 0
    assert await _probe(secured, "gateway", secured.passwords["gateway"]) == 0


async def test_a_speaker_reads_only_its_own_command_topics(secured: Secured) -> None:
    async with secured.client(A) as speaker, secured.client("gateway", identifier="gw") as gw:
        await speaker.subscribe(
            [(t, 1) for t in [*B_TOPICS, *A_TOPICS, f"{contract.TOPIC_ROOT}/{CITY}/ack/+"]]
        )
        # Another speaker's commands and acks first, then the speaker's own: were anything of
        # the first lot delivered, it would arrive before the last of the own topics.
        for topic in [*B_TOPICS, contract.ack_topic(CITY, B), *A_TOPICS]:
            await gw.publish(topic, topic.encode(), qos=1)
        received: list[str] = []
        async with asyncio.timeout(20):
            async for message in speaker.messages:
                received.append(str(message.topic))
                if str(message.topic) == A_TOPICS[-1]:
                    break
    assert received == A_TOPICS


async def test_a_speaker_cannot_speak_for_another_or_command_anyone(secured: Secured) -> None:
    async with secured.client("gateway", identifier="gw") as gw, secured.client(A) as speaker:
        await gw.subscribe(
            [
                (contract.ack_subscription(), 1),
                (contract.presence_subscription(), 1),
                (f"{contract.TOPIC_ROOT}/{CITY}/cmd/#", 1),
            ]
        )
        forged = contract.Ack(
            command_id=contract.new_id(),
            broadcast_id=contract.new_id(),
            speaker=B,
            status=contract.AckStatus.PLAYED,
            at_ms=contract.now_ms(),
        )
        for topic in (
            contract.ack_topic(CITY, B),
            contract.presence_topic(CITY, B),
            contract.command_topic_all(CITY),
            contract.command_topic_speaker(CITY, B),
        ):
            await speaker.publish(topic, contract.encode_ack(forged), qos=1)
        own = forged.model_copy(update={"speaker": A})
        await speaker.publish(contract.ack_topic(CITY, A), contract.encode_ack(own), qos=1)
        received: list[str] = []
        async with asyncio.timeout(20):
            async for message in gw.messages:
                received.append(str(message.topic))
                if str(message.topic) == contract.ack_topic(CITY, A):
                    break
    assert received == [contract.ack_topic(CITY, A)], "the gateway heard only A's own ack"


async def test_a_new_password_shuts_out_the_old_one_without_a_reload(secured: Secured) -> None:
    old = secured.passwords[A]
    async with secured.client(A) as speaker:
        new = await secured.rotate(A)
        assert await _dropped(speaker), "the broker drops the session of the old password"

    assert await _probe(secured, A, old) != 0
    assert await _probe(secured, A, new) == 0
    assert await _probe(secured, B, secured.passwords[B]) == 0, "others are untouched"


async def test_a_speakers_password_opens_only_its_own_client_id(secured: Secured) -> None:
    gateway_id = f"maeul-gw-local-{new_secret()[:8]}"
    async with (
        secured.client("gateway", identifier=gateway_id) as gw,
        secured.client(B) as other,
    ):
        await gw.subscribe(contract.presence_subscription(), qos=1)
        for taken in (gateway_id, "maeul-gw-local", contract.speaker_client_id(B)):
            assert await _probe(secured, A, secured.passwords[A], client_id=taken) != 0, taken
        assert await _probe(secured, A, secured.passwords[A], client_id="") != 0
        # Neither the gateway nor B was disconnected: both still publish and receive.
        await other.publish(contract.presence_topic(CITY, B), b"{}", qos=1)
        await gw.publish(contract.presence_topic(CITY, "x"), b"{}", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(gw.messages))
        assert str(message.topic) == contract.presence_topic(CITY, B)


async def test_a_speaker_issued_at_run_time_connects_at_once(secured: Secured) -> None:
    assert await _probe(secured, NONE, "anything") != 0
    password = await secured.rotate(NONE)
    assert await _probe(secured, NONE, password) == 0
    assert await _probe(secured, NONE, password, client_id=contract.speaker_client_id(A)) != 0


async def test_a_deleted_speaker_is_shut_out_even_when_no_push_was_made(secured: Secured) -> None:
    async with secured.client(A) as speaker:
        await secured.change(delete(Speaker).where(Speaker.code == A))
        assert await _dropped(speaker)
    assert await _probe(secured, A, secured.passwords[A]) != 0
    assert await _probe(secured, B, secured.passwords[B]) == 0


async def test_the_broker_holds_only_the_users_and_roles_the_database_has(
    secured: Secured,
) -> None:
    await secured.admin.send(
        [
            {"command": "createRole", "rolename": "maeul-speaker-ghost"},
            {"command": "createClient", "username": "intruder", "password": "pw",
             "roles": [{"rolename": dynsec.GATEWAY_ROLE}]},
            {"command": "modifyClient", "username": B, "clientid": "anything"},
            {"command": "addRoleACL", "rolename": dynsec.speaker_role(B),
             "acltype": "publishClientSend", "topic": "#", "allow": True},
        ]
    )  # fmt: skip
    assert await _probe(secured, "intruder", "pw", client_id="intruder") == 0

    await secured.change(
        update(Speaker)
        .where(Speaker.code == B)
        .values(village_id=select(Village.id).where(Village.code == "d01-v002").scalar_subquery())
    )

    assert await _probe(secured, "intruder", "pw", client_id="intruder") != 0
    assert await _probe(secured, B, secured.passwords[B]) == 0, "bound to its own id again"
    answer = await secured.admin.send(
        [{"command": "getRole", "rolename": dynsec.speaker_role(B)}, {"command": "listRoles"}]
    )
    topics = {acl["topic"] for acl in answer[0]["data"]["role"]["acls"]}
    assert contract.command_topic_village(CITY, "d01-v002") in topics, "moved: its new village"
    assert contract.command_topic_village(CITY, "d02-v001") not in topics
    assert "#" not in topics
    assert "maeul-speaker-ghost" not in answer[1]["data"]["roles"]
    mode = (secured.directory / "dynamic-security.json").stat().st_mode & 0o777
    assert mode == 0o600, "the broker's users stay readable by their owner only"
