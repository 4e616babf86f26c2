"""The generated password file and ACL on a real Mosquitto: who may connect, read and write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from gateway.db import create_engine, create_sessions
from gateway.devicesec import service
from gateway.devicesec.mosquitto import new_secret
from gateway.migrations import upgrade
from gateway.places.service import get_city
from gateway.seed import seed
from maeul.broker import (
    LocalMosquitto,
    MosquittoConfig,
    find_mosquitto,
    probe_async,
    write_broker_file,
)
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


@dataclass
class Secured:
    broker: LocalMosquitto
    database_url: str
    directory: Path
    passwords: dict[str, str]

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
        """A new password for `code`, the files rendered again and the broker reloaded."""
        engine = create_engine(self.database_url)
        try:
            async with create_sessions(engine)() as session:
                city = await get_city(session, CITY)
                now = datetime.now(UTC)
                issued = await service.issue_fleet_credentials(session, city, now=now, codes=[code])
                passwd = await service.render_passwd_file(session, city, own=None)
                await session.commit()
        finally:
            await engine.dispose()
        assert write_broker_file(self.directory / "passwd", passwd)
        assert self.broker.reload()
        return issued[code]


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
    await asyncio.to_thread(upgrade, url)
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
            passwd = await service.render_passwd_file(session, city, own=None)
            acl = await service.render_acl_file(session, city, own=None)
            await session.commit()
    finally:
        await engine.dispose()
    files = tmp_path / "broker"
    write_broker_file(files / "passwd", passwd)
    write_broker_file(files / "acl", acl)
    config = MosquittoConfig(
        data_dir=files,
        allow_anonymous=False,
        password_file=files / "passwd",
        acl_file=files / "acl",
    )
    async with LocalMosquitto(config) as broker:
        yield Secured(broker, url, files, passwords)


async def _probe(secured: Secured, user: str | None = None, password: str | None = None) -> int:
    async with asyncio.timeout(10):
        return await probe_async(
            secured.broker.host, secured.broker.port, username=user, password=password
        )


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


async def test_a_new_password_shuts_out_the_old_one(secured: Secured) -> None:
    old = secured.passwords[A]
    new = await secured.rotate(A)

    async with asyncio.timeout(20):
        while await _probe(secured, A, old) == 0:  # noqa: ASYNC110 - until the broker reloads
            await asyncio.sleep(0.05)
    assert await _probe(secured, A, new) == 0
    assert await _probe(secured, B, secured.passwords[B]) == 0, "others are untouched"
